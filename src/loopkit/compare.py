"""``loopkit compare``: every arm (selector x seed, plus the static baseline at the same budget) as
its own run directory under one comparison directory, in parallel processes, resumable.

An arm is ``loopkit run RECIPE --set name=<arm> --set seed=<k> --set selector.name=<s>`` (static:
``loop.mode=static``, random seeds) run as a subprocess whose output goes to ``<arm>.log``. Run
again on the same directory, a finished arm is skipped and an interrupted one resumed (through
``run --resume``, so its paid teacher calls are reused). Each job gets ``cores / jobs`` threads.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from loopkit.errors import LoopkitError
from loopkit.recipe import ResolvedRecipe
from loopkit.rundir import RunDir

STATIC = "static"


@dataclass(frozen=True)
class Arm:
    name: str  # also its run directory's name prefix and its recipe name
    selector: str  # "static" for the static baseline
    seed: int
    overrides: list[str] = field(default_factory=list)


def plan_arms(resolved: ResolvedRecipe, selectors: list[str], seeds: int, static: bool) -> list[Arm]:
    """Every arm of the comparison; unknown selectors fail here, before any arm starts."""
    from loopkit.plugins import registry

    for name in selectors:
        registry().load("selector", name)  # raises a one-line "unknown selector" error with suggestions
    if seeds < 1:
        raise LoopkitError("--seeds must be at least 1")
    base = resolved.recipe.seed
    arms = []
    for k in range(seeds):
        seed = base + k
        for name in selectors:
            arms.append(Arm(f"{name}-seed{seed}", name, seed, [f"selector.name={name}", "loop.mode=active"]))
        if static:
            arms.append(Arm(f"{STATIC}-seed{seed}", STATIC, seed, ["selector.name=random", "loop.mode=static"]))
    return arms


def arm_state(directory: Path, arm: Arm, last_round: int) -> tuple[str, Path | None]:
    """("done" | "partial" | "new" | "running", its run directory); "running": another process holds the run."""
    runs = sorted(p for p in directory.glob(f"{arm.name}-*") if p.is_dir() and (p / "recipe.yaml").exists())
    if not runs:
        return "new", None
    run = RunDir(runs[-1])
    if run.holder() is not None:
        return "running", run.path
    summary = run.summary() or {}  # only for a budget stop; the rounds themselves say how far the run got
    if summary.get("stopped") or run.complete_rounds() >= last_round:
        return "done", run.path
    return "partial", run.path


def run_arms(recipe_path: Path, resolved: ResolvedRecipe, arms: list[Arm], directory: Path, jobs: int,
             extra_overrides: list[str], on_change: Callable[[Arm, str], None]) -> dict[str, str]:
    """Run every unfinished arm (at most ``jobs`` at once); returns each arm's final state."""
    static_last, active_last = 1, resolved.recipe.loop.rounds
    directory.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "COLUMNS": "120"}

    def one(arm: Arm) -> str:
        last = static_last if arm.selector == STATIC else active_last
        state, run = arm_state(directory, arm, last)
        if state == "done":
            on_change(arm, "done (skipped)")
            return "done"
        if state == "running":  # another process runs it (an earlier compare still going): never a second one
            result = f"failed ({run} is in use by {RunDir(run).holder() or 'another process'}; run compare again once it ends)"
            on_change(arm, result)
            return result
        sets = [*extra_overrides, *arm.overrides, f"name={arm.name}", f"seed={arm.seed}"]
        command = [sys.executable, "-m", "loopkit.cli", "run", str(recipe_path), "-o", str(directory)]
        if state == "partial":
            command += ["--resume", str(run)]
        for s in sets:
            command += ["--set", s]
        on_change(arm, "resuming" if state == "partial" else "running")
        with open(directory / f"{arm.name}.log", "a", encoding="utf-8") as log:
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
        result = "done" if code == 0 else f"failed (exit {code}; see {arm.name}.log)"
        on_change(arm, result)
        return result

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return dict(zip((a.name for a in arms), pool.map(one, arms)))
