"""Teacher throughput: the litellm teacher's concurrency, and the hf teacher's batching.

    python benchmarks/teachers.py                     # both, defaults below
    python benchmarks/teachers.py --calls 128 --delay 0.2 --concurrency 16
    python benchmarks/teachers.py --prompts 64 --max-new-tokens 32 --batch-size 32

Side by side, on real parts (no mocks):
  * litellm: ``LiteLLMTeacher.generate`` (both calls of the two-call protocol, through the journal)
    against ``loopkit.testing_server.ChatServer`` on 127.0.0.1, which adds ``--delay`` seconds to
    every reply; concurrency 1 vs ``--concurrency``, ``--calls`` calls per arm, each arm with a fresh
    run directory so the journal answers nothing from cache. Figure: calls sent per second.
  * hf: ``HFTeacher.complete`` on the tiny model (hidden 64, 4 layers, untrained), greedy, the same
    ``--prompts`` conversations one at a time vs in batches of ``--batch-size``. Figure: samples/s.
Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

KEY_ENV = "LOOPKIT_BENCH_LITELLM_KEY"


def _task():
    """Just enough of a task for the teacher's parsing: the base Task's final-answer extraction."""
    from loopkit.tasks.base import Task

    class _Task(Task):
        def load(self, seed):
            raise NotImplementedError

        def check(self, sample, completion):
            return self.extract(completion) == sample.final

    return _Task()


def litellm_arm(url: str, concurrency: int, seeds: list, run_dir: Path) -> tuple[float, int]:
    """(seconds, calls sent) of one ``generate`` over ``seeds`` with a fresh journal in ``run_dir``."""
    from loopkit.teachers.litellm import LiteLLMTeacher

    teacher = LiteLLMTeacher(LiteLLMTeacher.Params(
        model="openai/bench-model", api_base=url, api_key_env=KEY_ENV, concurrency=concurrency,
        timeout=30, max_retries=0))
    teacher.bind(_task())
    run_dir.mkdir(parents=True)
    teacher.open(run_dir)
    clock = time.perf_counter()
    generations = teacher.generate(seeds, round_no=1, random_seed=7)
    seconds = time.perf_counter() - clock
    assert all(g.sample is not None and g.sample.final == "42" for g in generations), "unexpected drops"
    return seconds, sum(g.calls for g in generations)


def litellm_figures(calls: int, delay: float, concurrency: int) -> list[tuple[str, float, int, int]]:
    from loopkit.records import Sample
    from loopkit.testing_server import ChatServer

    os.environ.setdefault(KEY_ENV, "sk-loopkit-bench")
    n = max(calls // 2, 1)  # two calls per seed: a new question, then its answer
    seeds = [Sample.create(f"What is {i} + {i + 1}?", f"#### {2 * i + 1}", final=str(2 * i + 1)) for i in range(n)]
    rows = []
    with ChatServer() as server, tempfile.TemporaryDirectory(prefix="loopkit-bench-") as tmp:
        litellm_arm(server.url, 2, seeds[:1], Path(tmp, "warmup"))  # import litellm, open its client
        server.delay = delay
        for c in (1, concurrency):
            server.peak = 0
            seconds, sent = litellm_arm(server.url, c, seeds, Path(tmp, f"concurrency-{c}"))
            rows.append((f"litellm, concurrency {c}", sent / seconds, sent, server.peak))
    return rows


def hf_figures(prompts: int, max_new_tokens: int, batch_size: int, repeat: int) -> list[tuple[str, float, int, int]]:
    from loopkit.teachers.hf import HFTeacher

    conversations = [[{"role": "user", "content": f"Answer the question below.\n\nQuestion: what is {i} + {3 * i}?"}]
                     for i in range(prompts)]
    teachers = {}
    for size in (1, batch_size):
        teacher = HFTeacher(HFTeacher.Params(
            model={"name": "tiny", "params": {"hidden_size": 64, "layers": 4}}, temperature=0,
            max_new_tokens=max_new_tokens, batch_size=size))
        teachers[size] = teacher
        teacher.complete(conversations[:2], [teacher.sampling(0)] * 2)  # load the model, warm up
    times = {size: [] for size in teachers}
    tokens = {}
    for _ in range(repeat):  # interleaved, so a load change hits both alike
        for size, teacher in teachers.items():
            clock = time.perf_counter()
            out = teacher.complete(conversations, [teacher.sampling(0)] * len(conversations))
            times[size].append(time.perf_counter() - clock)
            tokens[size] = sum(c.completion_tokens for c in out)
    return [(f"hf tiny, batch size {size}", prompts / min(times[size]), prompts, tokens[size]) for size in teachers]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=64, help="litellm calls per arm")
    parser.add_argument("--delay", type=float, default=0.2, help="seconds the server adds to every reply")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--prompts", type=int, default=64, help="hf prompts per arm")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3, help="hf: best of this many interleaved runs")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--skip-hf", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    versions = [f"python {platform.python_version()}", f"torch {torch.__version__}", f"transformers {transformers.__version__}"]
    try:
        from importlib.metadata import version

        versions.append(f"litellm {version('litellm')}")
    except Exception:
        pass
    print(f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads; " + ", ".join(versions))

    groups = []
    if not args.skip_litellm:
        groups.append(("calls/s", "peak in flight", litellm_figures(args.calls, args.delay, args.concurrency)))
    if not args.skip_hf:
        groups.append(("samples/s", "tokens generated", hf_figures(args.prompts, args.max_new_tokens, args.batch_size, args.repeat)))
    for unit, extra, rows in groups:
        base = rows[0][1]
        print(f"\n{'arm':<32} {unit:>10} {'vs first':>9} {'n':>5} {extra:>17}")
        for name, rate, n, more in rows:
            print(f"{name:<32} {rate:>10.2f} {rate / base:>8.1f}x {n:>5} {more:>17}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
