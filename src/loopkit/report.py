"""``loopkit report``: compare runs arm by arm (mean ± standard error over seeds), plot the curves,
and measure fidelity (do seeds with high scores beget offspring with high scores?).

A run is a directory with ``recipe.yaml`` and its rounds, of which only the complete ones count
(a run in progress is read as far as it got); its arm is its selector's name, or ``static`` for
``mode: static``. Per run: final accuracy, the area under accuracy vs synthetic
samples (normalised by the largest sample count, so it is a mean accuracy over the budget), the
samples needed to reach accuracy τ (N(τ), linearly interpolated; unreached: missing) and the
teacher spend. Fidelity uses the rounds' ``fidelity.jsonl`` (``loop.score_offspring: true``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loopkit.errors import LoopkitError
from loopkit.rundir import RECIPE, RunDir

SPEND = ("teacher_calls", "teacher_tokens", "usd")


@dataclass(frozen=True)
class Run:
    path: Path
    arm: str
    seed: int
    task: dict
    rows: list[dict]
    fidelity: list[dict]  # per kept offspring: seed_own_loss, offspring_own_loss, round


def find_runs(paths: list[Path]) -> list[Run]:
    """Every run directory at or one level below the given paths (runs in progress: their complete rounds)."""
    found = []
    for path in paths:
        if not path.is_dir():
            raise LoopkitError(f"{path} is not a directory; give run directories or a comparison directory")
        candidates = [path] if _is_run(path) else sorted(p for p in path.iterdir() if p.is_dir())
        found += [run for run in map(_read_run, filter(_is_run, candidates)) if run.rows]
    if not found:
        raise LoopkitError(f"no loopkit runs in {', '.join(map(str, paths))} (a run has recipe.yaml and a complete round-000)")
    tasks = {json.dumps(r.task, sort_keys=True) for r in found}
    if len(tasks) > 1:
        names = sorted({f"{r.path.name}: {r.task.get('name')}" for r in found})[:4]
        raise LoopkitError(f"these runs are of different tasks ({'; '.join(names)}); report runs of one task together")
    return found


def _is_run(path: Path) -> bool:
    """A run directory: its recipe, and its rounds (or, copied without them, its summary.json)."""
    run = RunDir(path)
    return run.has_recipe() and (run.has_round(0) or run.has_summary())


def _read_run(path: Path) -> Run:
    """A run's complete rounds, read through RunDir (which names a damaged file); never its lock: a run may be in progress."""
    run = RunDir(path)
    recipe = run.recipe()
    try:
        arm = "static" if recipe["loop"]["mode"] == "static" else str(recipe["selector"]["name"])
        seed, task = recipe["seed"], recipe["task"]
        if not isinstance(seed, int) or not isinstance(task, dict):
            raise TypeError
    except (KeyError, TypeError):
        raise run.damaged(path / RECIPE, "lacks loop.mode, selector.name, an integer seed or the task") from None
    if run.has_round(0):
        rows = [row.to_json() for row in run.rows()]
        fidelity = [{**row, "round": t} for t in range(len(rows)) for row in run.fidelity(t)]
    else:  # summary.json alone: a run copied without its round directories
        rows, fidelity = [row.to_json() for row in run.summary_rows()], []
    return Run(path, arm, seed, task, rows, fidelity)


def n_to_reach(rows: list[dict], target: float) -> float | None:
    """Synthetic samples needed to first reach ``target`` accuracy (interpolated between rounds)."""
    for before, row in zip(rows, rows[1:]):
        if row["accuracy"] >= target:
            if before["accuracy"] >= target:
                return float(before["samples"])
            share = (target - before["accuracy"]) / (row["accuracy"] - before["accuracy"])
            return before["samples"] + share * (row["samples"] - before["samples"])
    return float(rows[0]["samples"]) if rows and rows[0]["accuracy"] >= target else None


def auc(rows: list[dict], budget: float) -> float:
    """Mean accuracy over samples 0..budget (trapezoids; the last accuracy holds to the budget)."""
    xs = [r["samples"] for r in rows] + ([budget] if rows[-1]["samples"] < budget else [])
    ys = [r["accuracy"] for r in rows] + ([rows[-1]["accuracy"]] if rows[-1]["samples"] < budget else [])
    area = sum((x1 - x0) * (y0 + y1) / 2 for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:]))
    return area / budget if budget else ys[-1]


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None below 3 pairs or without variation."""
    if len(x) < 3:
        return None
    rx, ry = _ranks(np.asarray(x, float)), _ranks(np.asarray(y, float))
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    order = values.argsort(kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    for v in np.unique(values):  # ties share their mean rank
        tied = values == v
        ranks[tied] = ranks[tied].mean()
    return ranks


def mean_se(values: list[float]) -> dict[str, Any]:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "se": None, "n": 0}
    se = float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)), "se": se, "n": len(values)}


def summarize(runs: list[Run], target: float) -> dict[str, Any]:
    """The report's numbers, per arm and for fidelity."""
    budget = max(r.rows[-1]["samples"] for r in runs)
    arms: dict[str, Any] = {}
    for arm in sorted({r.arm for r in runs}):
        mine = [r for r in runs if r.arm == arm]
        reached = [n_to_reach(r.rows, target) for r in mine]
        arms[arm] = {
            "runs": [str(r.path) for r in mine],
            "seeds": sorted(r.seed for r in mine),
            "final_accuracy": mean_se([r.rows[-1]["accuracy"] for r in mine]),
            "auc": mean_se([auc(r.rows, budget) for r in mine]),
            "n_to_target": {**mean_se(reached), "reached": sum(x is not None for x in reached)},
            **{k: mean_se([r.rows[-1].get(k, 0) or 0 for r in mine]) for k in SPEND},
            "curve": _curve(mine),
        }
    return {"target": target, "budget": budget, "arms": arms, "fidelity": _fidelity(runs)}


def _curve(runs: list[Run]) -> list[dict]:
    """Per round: mean samples, mean teacher calls, and accuracy mean ± SE over the arm's seeds."""
    rounds = min(len(r.rows) for r in runs)
    return [{
        "round": i,
        "samples": float(np.mean([r.rows[i]["samples"] for r in runs])),
        "teacher_calls": float(np.mean([r.rows[i]["teacher_calls"] for r in runs])),
        "accuracy": mean_se([r.rows[i]["accuracy"] for r in runs]),
    } for i in range(rounds)]


def _fidelity(runs: list[Run]) -> dict[str, Any]:
    pairs = [p for r in runs for p in r.fidelity]
    if not pairs:
        return {"available": False, "why": "no fidelity.jsonl: run with loop.score_offspring: true"}
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        for p in r.fidelity:
            groups.setdefault((str(r.path), p["round"]), []).append(p)
    seed_medians = [float(np.median([p["seed_own_loss"] for p in g])) for g in groups.values()]
    offspring_medians = [float(np.median([p["offspring_own_loss"] for p in g])) for g in groups.values()]
    return {
        "available": True,
        "signal": "own_loss",
        "pairs": len(pairs),
        "per_item_spearman": spearman([p["seed_own_loss"] for p in pairs], [p["offspring_own_loss"] for p in pairs]),
        "dataset_level_spearman": spearman(seed_medians, offspring_medians),
        "groups": len(groups),
    }


def plot(report: dict[str, Any], directory: Path) -> list[Path]:
    """accuracy_vs_samples.png and accuracy_vs_teacher_calls.png, one line per arm with a ±SE band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for x_key, label, name in (("samples", "synthetic samples", "accuracy_vs_samples.png"),
                               ("teacher_calls", "teacher calls", "accuracy_vs_teacher_calls.png")):
        fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
        for arm, data in report["arms"].items():
            xs = [c[x_key] for c in data["curve"]]
            ys = np.array([c["accuracy"]["mean"] for c in data["curve"]])
            se = np.array([c["accuracy"]["se"] for c in data["curve"]])
            ax.plot(xs, ys, marker="o", label=f"{arm} (n={data['final_accuracy']['n']})")
            ax.fill_between(xs, ys - se, ys + se, alpha=0.2)
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = directory / name
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
