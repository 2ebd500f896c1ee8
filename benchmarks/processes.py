"""Training in 1 vs 2 processes: `trainer.params.processes` (accelerate launch, DDP; gloo on a CPU).

    python benchmarks/processes.py [--rounds 2] [--out runs/bench-processes]

Runs `recipes/logic.yaml` (its first ``--rounds`` rounds, the same seed) with in-process training,
with `processes: 2` at the recipe's batch_size per process (a global batch twice as large, so half the
optimizer steps at the same learning rate), and with `processes: 2` at half the batch_size per
process (the single process's global batch and steps), one after another in one run, and prints per arm: final accuracy,
the trainer's own training seconds (summed over rounds), the training stage's wall time (with
`accelerate launch`'s start-up: two fresh Python processes per round), optimizer steps and tokens
(DDP takes a global batch of processes x batch_size, so about half the steps; a last short batch is
filled on every process, so slightly more tokens). On a 2-core CPU the two processes share the
cores the single one had: the speed-up this shows is the start-up cost, not what N GPUs give.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(processes: int, batch_size: int, rounds: int, out: Path) -> dict:
    name = f"processes{processes}-batch{batch_size}"
    clock = time.perf_counter()
    subprocess.run([sys.executable, "-m", "loopkit.cli", "run", str(ROOT / "recipes" / "logic.yaml"), "-o", str(out),
                    "--set", f"name={name}", "--set", f"loop.rounds={rounds}", "--set", f"trainer.params.processes={processes}",
                    "--set", f"trainer.params.batch_size={batch_size}"],
                   check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - clock
    run_dir = max(out.glob(f"{name}-*"), key=os.path.getmtime)
    rounds_metrics = [json.loads((run_dir / f"round-{t:03d}" / "metrics.json").read_text()) for t in range(1, rounds + 1)]
    train = [m["train"] for m in rounds_metrics]
    return {"processes": processes, "batch_size_per_process": batch_size, "final_accuracy": rounds_metrics[-1]["accuracy"], "run_seconds": round(wall, 1),
            "train_seconds": round(sum(t["train_seconds"] for t in train), 1),
            "train_stage_seconds": round(sum(m["seconds"]["train"] for m in rounds_metrics), 1),
            "steps": sum(t["steps"] for t in train), "tokens": sum(t["tokens"] for t in train),
            "final_train_loss": round(train[-1]["train_loss"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-processes")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    for processes, batch_size in ((1, 8), (2, 8), (2, 4)):  # logic.yaml trains at batch_size 8
        print(json.dumps(run(processes, batch_size, args.rounds, args.out)), flush=True)


if __name__ == "__main__":
    main()
