"""Per level: test accuracy after each round, and the seeds each round picked, for runs of a task with
levels (reasoning-gym's `generator:` levels, e.g. recipes/levels.yaml). Arms are averaged over seeds.

    python benchmarks/levels.py RUN_DIR_OR_COMPARE_DIR... [--json out.json]

It rebuilds each run's task from its recipe.yaml (to know every test and pool item's level) and
reads the run through RunDir: eval.jsonl and selected.jsonl of every complete round.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def levels_of_run(run) -> dict:
    """{arm, seed, rounds: [{round, samples, accuracy: {level: acc}, picked: {level: n}}]} of a report.Run."""
    from loopkit.recipe import load_recipe
    from loopkit.rundir import RunDir

    path = run.path
    resolved = load_recipe(path / "recipe.yaml")
    data = resolved.build("task").load(resolved.recipe.seed)
    test_level = {s.id: s.subtask or "?" for s in data.test}
    pool_level = [s.subtask or "?" for s in data.pool]
    rundir = RunDir(path)
    rounds = []
    for t, row in enumerate(run.rows):
        hits: dict[str, list[bool]] = defaultdict(list)
        for e in rundir.read_jsonl(rundir.round_path(t) / "eval.jsonl"):
            hits[test_level[e["id"]]].append(bool(e["correct"]))
        picked: dict[str, int] = defaultdict(int)
        if t and (rundir.round_path(t) / "selected.jsonl").exists():
            for s in rundir.selected(t):
                picked[pool_level[s["index"]]] += 1
        rounds.append({"round": t, "samples": row["samples"], "accuracy": {k: float(np.mean(v)) for k, v in sorted(hits.items())},
                       "picked": dict(sorted(picked.items()))})
    return {"arm": run.arm, "seed": run.seed, "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, help="also write the per-run numbers here")
    args = parser.parse_args()

    from loopkit.report import find_runs

    runs = [levels_of_run(r) for r in find_runs(args.paths)]
    by_arm: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        by_arm[r["arm"]].append(r)
    for arm, mine in sorted(by_arm.items()):
        levels = sorted({k for r in mine for row in r["rounds"] for k in row["accuracy"]})
        print(f"\n{arm} ({len(mine)} run(s), seeds {sorted(r['seed'] for r in mine)}): accuracy per level after each round, "
              "mean over seeds [seeds picked per level that round]")
        print("round  samples  " + "  ".join(f"{lv:>14}" for lv in levels))
        for t in range(min(len(r["rounds"]) for r in mine)):
            rows = [r["rounds"][t] for r in mine]
            cells = []
            for lv in levels:
                acc = np.mean([row["accuracy"].get(lv, 0.0) for row in rows])
                picked = np.mean([row["picked"].get(lv, 0) for row in rows])
                cells.append(f"{acc:6.1%} [{picked:4.0f}]")
            print(f"{t:5d}  {np.mean([row['samples'] for row in rows]):7.0f}  " + "  ".join(f"{c:>14}" for c in cells))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
