"""Reproduce the paper's comparison offline: iterative `loss` vs iterative `random` vs `static` (plus
`badge` and `entropy`) at an equal sample budget, on a logic mix and a math mix, 3 seeds each.

    python benchmarks/reproduce.py [--out runs/reproduction] [--jobs 2] [--seeds 3]

Each task is one `loopkit compare` (resumable: run again to finish an interrupted reproduction)
followed by `loopkit report`; the recipes are the shipped `recipes/logic.yaml` and
`recipes/math.yaml`, unchanged except for `loop.score_offspring: true` (the fidelity analysis).
The reports (report.json and the PNG plots) are copied to benchmarks/results/reproduction/<task>/.
Results and their reading: benchmarks/REPRODUCTION.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS = {"logic": ROOT / "recipes" / "logic.yaml", "math": ROOT / "recipes" / "math.yaml"}
SELECTORS = "loss,random,badge,entropy"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "reproduction")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--selectors", default=SELECTORS)
    args = parser.parse_args()

    import torch
    import transformers
    import trl

    machine = (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads; python "
               f"{platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}")
    print(machine, flush=True)
    timings = {}
    for task, recipe in TASKS.items():
        directory = args.out / task
        clock = time.perf_counter()
        subprocess.run([sys.executable, "-m", "loopkit.cli", "compare", str(recipe), "--selectors", args.selectors,
                        "--seeds", str(args.seeds), "--static", "--jobs", str(args.jobs), "-d", str(directory),
                        "--set", "loop.score_offspring=true"], check=True)
        timings[task] = round(time.perf_counter() - clock, 1)
        results = ROOT / "benchmarks" / "results" / "reproduction" / task
        results.mkdir(parents=True, exist_ok=True)
        for name in ("report.json", "accuracy_vs_samples.png", "accuracy_vs_teacher_calls.png"):
            shutil.copy(directory / name, results / name)
        print(f"{task}: {timings[task]} s", flush=True)
    (ROOT / "benchmarks" / "results" / "reproduction" / "run.json").write_text(
        json.dumps({"machine": machine, "seconds": timings, "jobs": args.jobs, "seeds": args.seeds,
                    "selectors": args.selectors.split(",") + ["static"]}, indent=2) + "\n")
    print(f"total: {sum(timings.values()):.0f} s")


if __name__ == "__main__":
    main()
