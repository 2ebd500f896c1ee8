"""Rerun every experiment of benchmarks/REPRODUCTION.md offline and say how long it took.

    python benchmarks/reproduce.py [--out runs/reproduction] [--only levels,logic] [--jobs 2]

The experiments (each a resumable `loopkit compare`, then `loopkit report`; run again to finish an
interrupted one):
- levels: the pre-registered comparison on the levels testbed (`recipes/levels.yaml`): loss, entropy,
  badge and random, plus both static baselines, 8 seeds, τ = 0.4; also the accuracy and the picks per
  level (`benchmarks/levels.py`). Exactly the command the pre-registration names.
- logic: the shipped logic mix (`recipes/logic.yaml`) with the same four selectors and both static
  baselines, 5 seeds, with `loop.score_offspring: true` (the fidelity analysis), τ = 0.5.
  (recipes/math.yaml, at the floor for this student in the first reproduction, is not rerun: `--only math`.)

Each arm runs with one torch thread at --jobs 2 on 2 cores (`compare` gives each job cores / jobs
threads). The numbers depend on the thread count, not on the machine's load; wall times do depend
on the load, so the CPU time of every experiment (user + system, all its processes) is stated too.
Reports, plots and per-run summaries are copied to benchmarks/results/<experiment>/; the times go to
benchmarks/results/reproduce-run.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class Experiment:
    recipe: str  # under recipes/
    selectors: str
    seeds: int
    target: float
    static: bool = True
    sets: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)  # analysis scripts under benchmarks/, given the comparison directory


EXPERIMENTS = {
    # Pre-registered in REPRODUCTION.md: do not change.
    "levels": Experiment("levels.yaml", "loss,entropy,badge,random", 8, 0.4, after=["levels.py"]),
    "logic": Experiment("logic.yaml", "loss,random,badge,entropy", 5, 0.5, sets=["loop.score_offspring=true"]),
    "math": Experiment("math.yaml", "loss,random,badge,entropy", 3, 0.5, sets=["loop.score_offspring=true"]),
}
DEFAULT = ("levels", "logic")


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "loopkit.cli", *args], check=True)


def run(name: str, exp: Experiment, out: Path, jobs: int) -> None:
    directory, results = out / name, RESULTS / name
    results.mkdir(parents=True, exist_ok=True)
    sets = [arg for s in exp.sets for arg in ("--set", s)]
    common = ["--seeds", str(exp.seeds), "--jobs", str(jobs), "--target", str(exp.target), *sets]
    cli("compare", str(ROOT / "recipes" / exp.recipe), "--selectors", exp.selectors, *(["--static"] if exp.static else []),
        "-d", str(directory), *common)
    cli("report", str(directory), "--target", str(exp.target), "--out", str(results))
    for run_dir in sorted(p for p in directory.iterdir() if (p / "summary.json").is_file()):
        shutil.copy(run_dir / "summary.json", results / f"{run_dir.name.rsplit('-', 2)[0]}.summary.json")
    for script in exp.after:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), str(directory),
                        "--json", str(results / script.replace(".py", ".json"))], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "reproduction")
    parser.add_argument("--only", default=",".join(DEFAULT), help=f"experiments to run, of {', '.join(EXPERIMENTS)}")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(EXPERIMENTS))
    if unknown:
        parser.error(f"unknown experiment(s) {', '.join(unknown)}; choose from {', '.join(EXPERIMENTS)}")

    import torch
    import transformers
    import trl

    machine = (f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores; python "
               f"{platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}")
    print(machine, flush=True)
    record_path = RESULTS / "reproduce-run.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    record.update({"machine": machine, "jobs": args.jobs})
    for name in names:
        wall, cpu = time.perf_counter(), _children_cpu()
        run(name, EXPERIMENTS[name], args.out, args.jobs)
        took = {"wall_seconds": round(time.perf_counter() - wall, 1), "cpu_seconds": round(_children_cpu() - cpu, 1),
                "finished": time.strftime("%Y-%m-%d %H:%M")}
        record.setdefault("experiments", {})[name] = took
        record_path.write_text(json.dumps(record, indent=2) + "\n")
        print(f"{name}: {took['wall_seconds'] / 60:.1f} min wall, {took['cpu_seconds'] / 60:.1f} min CPU", flush=True)
    done = [record["experiments"][n] for n in names]
    print(f"total: {sum(d['wall_seconds'] for d in done) / 60:.1f} min wall, {sum(d['cpu_seconds'] for d in done) / 60:.1f} min CPU "
          "(wall time depends on the machine's load, CPU time much less)")


def _children_cpu() -> float:
    """User + system seconds of every finished child process (with their children) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
