"""`loopkit compare` on the local engine vs on Ray (a local instance), side by side in one run.

    python benchmarks/compare_engines.py [--repeat 2] [--out runs/bench-engines]

The same small grid both ways: `recipes/logic.yaml` cut to one round of 50 samples on a 200-seed pool,
selectors loss and random, one seed: two arms, two at a time (local `--jobs 2`; Ray `--cpus-per-arm 1`
on this machine's cores). Each repeat runs both engines into fresh directories, alternating which goes
first; the best wall time of each is kept. The difference is Ray's overhead: starting the local
instance, scheduling the tasks and shutting down.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRID = ["--selectors", "loss,random", "--seeds", "1", "--set", "loop.rounds=1", "--set", "loop.per_round=50",
        "--set", "task.params.pool_size=200", "--set", "task.params.test_size=100"]
ENGINES = {"local": ["--jobs", "2"], "ray": ["--engine", "ray", "--cpus-per-arm", "1"]}


def once(engine: str, directory: Path) -> float:
    shutil.rmtree(directory, ignore_errors=True)
    clock = time.perf_counter()
    subprocess.run([sys.executable, "-m", "loopkit.cli", "compare", str(ROOT / "recipes" / "logic.yaml"), *GRID,
                    *ENGINES[engine], "-d", str(directory)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-engines")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    best = {engine: float("inf") for engine in ENGINES}
    for k in range(args.repeat):
        for engine in (ENGINES if k % 2 == 0 else reversed(list(ENGINES))):
            best[engine] = min(best[engine], once(engine, args.out / engine))
    print(json.dumps({**{f"{e}_seconds": round(s, 1) for e, s in best.items()},
                      "ray_overhead_seconds": round(best["ray"] - best["local"], 1),
                      "ray_over_local": round(best["ray"] / best["local"], 2)}))


if __name__ == "__main__":
    main()
