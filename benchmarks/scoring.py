"""How fast the student scores the seed pool, and what share of a round that is.

    python benchmarks/scoring.py                      # recipes/logic.yaml: scoring figures + 1 round
    python benchmarks/scoring.py --no-round           # scoring figures only
    python benchmarks/scoring.py --summary runs/x/summary.json   # round share from an existing run

Side by side, on the recipe's student and seed pool (the student's own greedy answers):
  * pool scoring: ``student_signals`` for ``own_loss`` and for every own-answer signal;
  * a bare batched forward pass of the same model over the same padded batches (the floor);
  * a naive loop: one sample at a time, full logits, log-softmax, gather.
Then the share of a round's wall time spent on predict + score + select, from ``summary.json``.
Not a test: timings depend on the machine and its load. Best of ``--repeat`` interleaved runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def best_times(repeat: int, fns: dict) -> dict[str, float]:
    """The best of ``repeat`` timings of each function, interleaved so a load change hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            clock = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - clock)
    return {name: min(t) for name, t in times.items()}


def scoring_figures(recipe_path: Path, repeat: int) -> list[tuple[str, float]]:
    import torch

    from loopkit.prepare import load_task_data
    from loopkit.recipe import load_recipe
    from loopkit.signals import OWN_PASS, student_signals
    from loopkit.inference import Inference

    resolved = load_recipe(recipe_path)
    recipe = resolved.recipe
    task = resolved.build("task")
    pool = load_task_data(task, resolved).pool
    model, tokenizer = resolved.build("student").load(recipe.seed)
    student = Inference(model, tokenizer, recipe.loop.batch_size, recipe.loop.max_new_tokens)
    prompts = [task.prompt(s.question) for s in pool]
    answers = student.generate(prompts)
    n = len(pool)

    # The same padded batches the student builds, for the bare forward pass.
    rows = [ids + [tokenizer.eos_token_id] for ids in student._encode([student.render(p) + a for p, a in zip(prompts, answers)])]
    batches = [student._left_pad([rows[i] for i in batch]) for batch in student._batches([len(r) for r in rows])]

    def bare():
        with torch.inference_mode():
            for ids, mask in batches:
                model(input_ids=ids, attention_mask=mask)

    def naive():
        with torch.inference_mode():
            for row in rows:
                ids = torch.tensor([row])
                logprobs = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
                logprobs.gather(-1, ids[0, 1:, None])

    fns = {
        "bare batched forward pass": bare,
        "pool scoring: own_loss": lambda: student_signals(student, task, pool, answers, frozenset({"own_loss"})),
        "pool scoring: loss+entropy+embedding+grad_embedding": lambda: student_signals(student, task, pool, answers, OWN_PASS),
        "naive one-at-a-time loss loop": naive,
    }
    rates = [(name, n / seconds) for name, seconds in best_times(repeat, fns).items()]
    clock = time.perf_counter()
    student.generate(prompts)
    return rates + [("(greedy generation of the answers, for scale)", n / (time.perf_counter() - clock))]


def run_one_round(recipe_path: Path) -> Path:
    from loopkit.loop import Loop
    from loopkit.recipe import load_recipe
    from loopkit.rundir import RunDir

    resolved = load_recipe(recipe_path, ["loop.rounds=1", "selector.name=loss"])
    out = Path(tempfile.mkdtemp(prefix="loopkit-bench-"))
    result = Loop(resolved).run(RunDir.create(out, resolved.recipe.name))
    return result.run_dir.path / "summary.json"


def round_share(summary: Path) -> list[tuple[str, float]]:
    rounds = [r for r in json.loads(summary.read_text())["rounds"] if r["round"] > 0]
    seconds = {k: sum(r["seconds"].get(k, 0.0) for r in rounds) for k in rounds[0]["seconds"]}
    total = sum(seconds.values())
    selecting = sum(seconds.get(k, 0.0) for k in ("predict", "score", "judge", "select"))
    rows = [(f"{k} (s)", v) for k, v in seconds.items()]
    return rows + [
        ("round total (s)", total),
        ("predict+score+select share (%)", 100 * selecting / total),
        ("score+select share (%)", 100 * (seconds.get("score", 0.0) + seconds.get("select", 0.0)) / total),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "logic.yaml")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--no-round", action="store_true", help="skip the round-share measurement")
    parser.add_argument("--summary", type=Path, help="read the round share from this run's summary.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"recipe {args.recipe.name}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    figures = scoring_figures(args.recipe, args.repeat)
    floor = figures[0][1]
    print(f"\n{'pool pass':<55} {'samples/s':>10} {'vs bare':>8}")
    for name, rate in figures:
        print(f"{name:<55} {rate:>10.0f} {rate / floor:>7.0%}")
    if args.summary or not args.no_round:
        summary = args.summary or run_one_round(args.recipe)
        print(f"\nround wall time, {summary}")
        for name, value in round_share(summary):
            print(f"{name:<55} {value:>10.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
