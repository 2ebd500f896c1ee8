"""``loopkit report``: compare runs arm by arm (mean ± standard error over seeds, and paired
differences with intervals and p-values), plot the curves, and measure fidelity (do seeds with
high scores beget offspring with high scores?).

A run is a directory with ``recipe.yaml`` and its rounds, of which only the complete ones count
(a run in progress is read as far as it got); its arm is its selector's name for ``mode: active``,
else its mode (``static``, ``static-matched``: the two baselines, see ``BASELINE_NOTES``). Per run: final accuracy; the area under accuracy vs synthetic samples
over the run's own budget (rounds x per_round from its recipe.yaml, so an arm's AUC does not depend
on the other runs reported beside it: it is the mean accuracy over the budget); the samples needed
to reach accuracy τ (N(τ), linearly interpolated between evaluated rounds; unreached: missing),
and the teacher calls, tokens and USD spent by then; the teacher spend; the training compute
(optimizer steps, tokens, seconds, summed over rounds from each round's metrics.json ``train``).
Arms share seeds, so each arm is also compared seed by seed with ``random`` and the static
baselines present (``stats.py``). Fidelity uses the rounds' ``fidelity.jsonl`` (``loop.score_offspring: true``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from loopkit import stats
from loopkit.errors import LoopkitError
from loopkit.rundir import RECIPE, RunDir

SPEND = ("teacher_calls", "teacher_tokens", "usd")
STATIC_ARMS = ("static", "static-matched")  # baselines that generate everything up front (loop.mode, prepare.STATIC_MODES)
BASELINE_NOTES = {  # what the report says of each baseline present
    "static": "static: the whole budget generated at once from uniformly random seeds and trained on once (the paper's "
              "baseline); it trains less than the active arms, so a gap to it mixes data with training compute",
    "static-matched": "static-matched: static's data (the same seeds, the same samples), trained through the active arms' "
                      "rounds (round t on the first t/rounds of it), so with about their training steps: a gap to it is "
                      "which seeds the data came from and when they were chosen",
}
BASELINES = ("random", *STATIC_ARMS)  # every other arm is compared with each of these that is present
TRAINING = {"steps": "steps", "tokens": "tokens", "seconds": "train_seconds"}  # report's name -> the trainer's metric
STEPS_TOLERANCE = 0.10  # arms whose total training steps differ by more are compared at unequal compute


@dataclass(frozen=True)
class Run:
    path: Path
    arm: str
    seed: int
    task: dict
    rows: list[dict]
    fidelity: list[dict]  # per kept offspring: seed_own_loss, offspring_own_loss, round
    budget: int = 0  # the recipe's sample budget: the AUC's axis
    recipe: str = ""  # the recipe the run was made from (its file's stem), for titles
    training: dict = field(default_factory=dict)  # totals over rounds: steps, tokens, seconds (None: unknown)
    final_loss: float | None = None  # the training loss of the last round that trained (None: none said)


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


def arm_name(recipe: dict) -> str:
    """The arm a run belongs to: its selector for ``mode: active``, else its mode (``static``, ``static-matched``)."""
    mode = recipe["loop"]["mode"]
    return str(recipe["selector"]["name"]) if mode == "active" else str(mode)


def _read_run(path: Path) -> Run:
    """A run's complete rounds, read through RunDir (which names a damaged file); never its lock: a run may be in progress."""
    run = RunDir(path)
    recipe = run.recipe()
    try:
        arm = arm_name(recipe)
        seed, task = recipe["seed"], recipe["task"]
        if not isinstance(seed, int) or not isinstance(task, dict):
            raise TypeError
    except (KeyError, TypeError):
        raise run.damaged(path / RECIPE, "lacks loop.mode, selector.name, an integer seed or the task") from None
    budget = _budget(run, recipe)
    source = run.manifest().get("recipe")
    name = Path(source).stem if isinstance(source, str) and source else str(recipe.get("name", path.name))
    if run.has_round(0):
        rows = [row.to_json() for row in run.rows()]
        fidelity = [pair for t in range(len(rows)) for pair in _fidelity_pairs(run, t)]
        trains = [run.metrics(t).get("train") for t in range(1, len(rows))]
        training, final_loss = _training(trains), _final_loss(trains)
    else:  # summary.json alone: a run copied without its round directories
        rows, fidelity, training = [row.to_json() for row in run.summary_rows()], [], dict.fromkeys(TRAINING)
        final_loss = None
    return Run(path, arm, seed, task, rows, fidelity, budget, name, training, final_loss)


def _fidelity_pairs(run: RunDir, t: int) -> list[dict]:
    """Round t's fidelity rows, each with its round and its seed's sub-task (from selected.jsonl; None without)."""
    rows = run.fidelity(t)
    subtask = {s.get("id"): s.get("subtask") for s in run.selected(t)} if rows else {}
    return [{**row, "round": t, "subtask": subtask.get(row["seed_id"])} for row in rows]


def _final_loss(rounds: list[Any]) -> float | None:
    """The mean training loss (``train_loss``) of the last round that trained, or None."""
    for train in reversed(rounds):
        if isinstance(train, dict) and not train.get("skipped"):
            loss = train.get("train_loss")
            return float(loss) if isinstance(loss, (int, float)) and not isinstance(loss, bool) else None
    return None


def _budget(run: RunDir, recipe: dict) -> int:
    """The recipe's sample budget (LoopSpec.sample_budget; lower if budget.samples caps it)."""
    from pydantic import ValidationError

    from loopkit.recipe import BudgetSpec, LoopSpec

    try:
        loop = LoopSpec.model_validate(recipe.get("loop") or {})
        cap = BudgetSpec.model_validate(recipe.get("budget") or {}).samples
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(map(str, error.get("loc", ())))
        raise run.damaged(run.path / RECIPE, f"has an invalid loop or budget ({where}: {error['msg']})") from None
    return loop.sample_budget if cap is None else min(loop.sample_budget, cap)


def _training(rounds: list[Any]) -> dict[str, float | None]:
    """Training compute summed over the rounds' ``train`` metrics; None where a round that trained does not say."""
    totals: dict[str, float | None] = dict.fromkeys(TRAINING, 0.0)
    for train in rounds:
        if not isinstance(train, dict):
            return dict.fromkeys(TRAINING)  # a round that does not say how it trained
        if train.get("skipped"):
            continue  # nothing to train on that round
        for key, metric in TRAINING.items():
            value = train.get(metric)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and totals[key] is not None
            totals[key] = totals[key] + value if ok else None
    return totals


def n_to_reach(rows: list[dict], target: float, key: str = "samples") -> float | None:
    """Synthetic samples (or another cumulative ``key``: teacher calls, tokens, USD) needed to first reach
    ``target`` accuracy, interpolated between rounds."""
    for before, row in zip(rows, rows[1:]):
        if row["accuracy"] >= target:
            if before["accuracy"] >= target:
                return float(before.get(key) or 0)
            share = (target - before["accuracy"]) / (row["accuracy"] - before["accuracy"])
            return (before.get(key) or 0) + share * ((row.get(key) or 0) - (before.get(key) or 0))
    return float(rows[0].get(key) or 0) if rows and rows[0]["accuracy"] >= target else None


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


def within_group_spearman(groups: list[tuple[list[float], list[float]]]) -> dict[str, Any] | None:
    """Spearman's ρ inside groups, pooled: x and y are ranked within each group (of ≥ 3 pairs with variation
    in both), the ranks centred, and the centred ranks correlated over all groups; so differences between
    groups (a round's student scoring everything lower) cannot make a correlation. ``p``: two-sided, for
    shuffling y within each group. Up to 1,000 pairs, the share of 10,000 such shuffles (fixed random seed;
    the observed order counted as one) at least as far from 0; beyond, the normal approximation (that
    distribution's exact mean 0 and variance), which is then close and costs nothing. None without a group."""
    usable = [(_ranks(np.asarray(x, float)), _ranks(np.asarray(y, float))) for x, y in groups if len(x) >= 3]
    usable = [(rx - rx.mean(), ry - ry.mean()) for rx, ry in usable if rx.std() > 0 and ry.std() > 0]
    if not usable:
        return None
    products = sum(float(rx @ ry) for rx, ry in usable)
    norm = math.sqrt(sum(float(rx @ rx) for rx, _ in usable) * sum(float(ry @ ry) for _, ry in usable))
    pairs = sum(len(rx) for rx, _ in usable)
    if pairs <= 1000:  # a shuffle keeps every norm: only sum(rx·ry) changes
        rng = np.random.default_rng(0)
        shuffled = sum(rng.permuted(np.tile(ry, (10_000, 1)), axis=1) @ rx for rx, ry in usable)
        p = (1 + int(np.sum(np.abs(shuffled) >= abs(products) - 1e-9))) / (1 + 10_000)  # never 0 from a sample
    else:  # under a shuffle within its group, rx·ry has mean 0 and variance |rx|²|ry|²/(n-1)
        spread = math.sqrt(sum(float(rx @ rx) * float(ry @ ry) / (len(rx) - 1) for rx, ry in usable))
        p = math.erfc(abs(products) / spread / math.sqrt(2))
    return {"rho": products / norm, "p": p, "groups": len(usable), "pairs": pairs}


def _ranks(values: np.ndarray) -> np.ndarray:
    """0-based ranks; ties share their mean rank."""
    _, tie_group, counts = np.unique(values, return_inverse=True, return_counts=True)
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))  # the rank where each tie group starts
    return (first + (counts - 1) / 2)[tie_group]


def mean_se(values: list[float]) -> dict[str, Any]:
    """Mean and standard error over seeds (None with one seed: one value has no spread to measure)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "se": None, "n": 0}
    se = float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None
    return {"mean": float(np.mean(values)), "se": se, "n": len(values)}


def accuracy_se(scores: list[dict]) -> dict[str, Any]:
    """Accuracy (rows, or sub-task entries: ``accuracy``, ``accuracy_se``) as mean ± standard error over seeds;
    from one run, its binomial standard error over the test items instead. ``se_over`` says which."""
    if len(scores) == 1 and scores[0].get("accuracy_se") is not None:
        return {"mean": float(scores[0]["accuracy"]), "se": float(scores[0]["accuracy_se"]), "n": 1, "se_over": "test items"}
    out = mean_se([s["accuracy"] for s in scores])
    return {**out, "se_over": "seeds" if out["se"] is not None else None}


def _by_subtask(runs: list["Run"]) -> dict[str, dict[str, Any]]:
    """Final accuracy per sub-task (tasks with sub-tasks; {} otherwise), over the runs that report it."""
    names = sorted({name for r in runs for name in r.rows[-1].get("subtasks") or {}})
    return {name: accuracy_se([r.rows[-1]["subtasks"][name] for r in runs if name in (r.rows[-1].get("subtasks") or {})])
            for name in names}


def summarize(runs: list[Run], target: float) -> dict[str, Any]:
    """The report's numbers: per arm, paired between arms, and for fidelity; with what to beware of."""
    arms: dict[str, Any] = {}
    for arm in sorted({r.arm for r in runs}):
        mine = [r for r in runs if r.arm == arm]
        reached = [n_to_reach(r.rows, target) for r in mine]
        arms[arm] = {
            "runs": [str(r.path) for r in mine],
            "seeds": sorted(r.seed for r in mine),
            "final_accuracy": accuracy_se([r.rows[-1] for r in mine]),
            "final_accuracy_by_subtask": _by_subtask(mine),
            "auc": mean_se([auc(r.rows, r.budget) for r in mine]),
            "n_to_target": {**mean_se(reached), "reached": sum(x is not None for x in reached)},
            "cost_to_target": {k: mean_se([n_to_reach(r.rows, target, k) for r in mine]) for k in SPEND},
            **{k: mean_se([r.rows[-1].get(k, 0) or 0 for r in mine]) for k in SPEND},
            "training": {k: mean_se([r.training.get(k) for r in mine]) for k in TRAINING},
            "final_train_loss": mean_se([r.final_loss for r in mine]),
            "curve": _curve(mine),
        }
    budgets = sorted({r.budget for r in runs})
    return {
        "title": ", ".join(sorted({r.recipe for r in runs})[:3]),
        "target": target,
        "budget": budgets[0] if len(budgets) == 1 else None,
        "arms": arms,
        "paired": _paired(runs, target),
        "paired_method": stats.METHOD,
        "warnings": _warnings(runs, arms, budgets),
        "baselines": {arm: note for arm, note in BASELINE_NOTES.items() if arm in arms},
        "fidelity": _fidelity(runs),
    }


def _per_seed(runs: list[Run], value) -> dict[int, float | None]:
    """seed -> value of its run (several runs of one seed: their mean; a None among them: None)."""
    by_seed: dict[int, list] = {}
    for r in runs:
        by_seed.setdefault(r.seed, []).append(value(r))
    return {s: None if None in v else float(np.mean(v)) for s, v in by_seed.items()}


def comparisons(arms: list[str]) -> list[tuple[str, str]]:
    """(arm, baseline) pairs: every arm vs random and each static baseline present; static-matched vs static."""
    present = [b for b in BASELINES if b in arms]
    return [(arm, base) for arm in arms for base in present
            if arm != base and (arm not in STATIC_ARMS or (arm, base) == ("static-matched", "static"))]


def _paired(runs: list[Run], target: float) -> list[dict]:
    metrics = {
        "final_accuracy": lambda r: r.rows[-1]["accuracy"],
        "auc": lambda r: auc(r.rows, r.budget),
        "n_to_target": lambda r: n_to_reach(r.rows, target),
    }
    out = []
    for arm, base in comparisons(sorted({r.arm for r in runs})):
        mine, theirs = [r for r in runs if r.arm == arm], [r for r in runs if r.arm == base]
        entry: dict[str, Any] = {"arm": arm, "baseline": base}
        for name, value in metrics.items():
            entry[name] = stats.paired(_per_seed(mine, value), _per_seed(theirs, value))
        out.append(entry)
    return out


def _warnings(runs: list[Run], arms: dict[str, Any], budgets: list[int]) -> list[str]:
    """What makes the comparison unfair or the numbers partial, each in one line."""
    warnings = []
    known = {arm for arm, a in arms.items() if a["training"]["steps"]["n"] == len(a["runs"])}
    steps = {arm: arms[arm]["training"]["steps"]["mean"] for arm in known}
    if len(steps) > 1 and min(steps.values()) > 0 and max(steps.values()) > (1 + STEPS_TOLERANCE) * min(steps.values()):
        listed = ", ".join(f"{arm} {n:,.0f}" for arm, n in sorted(steps.items(), key=lambda kv: kv[1]))
        warnings.append(f"the arms' total training steps differ by more than {STEPS_TOLERANCE:.0%} ({listed}; mean per run): "
                        "their accuracy differences mix which data they had with how much they trained")
    unknown = sorted(arms.keys() - known)
    if unknown:
        warnings.append(f"training compute is unknown for some runs of {', '.join(unknown)} (their rounds do not record "
                        "steps: an older loopkit, or a trainer that does not report them); steps are not compared there")
    if len(budgets) > 1:
        listed = ", ".join(f"{arm} {sorted({r.budget for r in runs if r.arm == arm})}" for arm in arms)
        warnings.append(f"the runs have different sample budgets ({listed}): each AUC is over its run's own budget, "
                        "so arms of different budgets are not comparable")
    twice = sorted({f"{r.arm} seed {r.seed}" for r in runs if sum(o.arm == r.arm and o.seed == r.seed for o in runs) > 1})
    if twice:
        warnings.append(f"several runs of {', '.join(twice)}: the paired statistics use their mean")
    return warnings


def _curve(runs: list[Run]) -> list[dict]:
    """Per round: mean samples, mean teacher calls, and accuracy mean ± SE over the arm's seeds."""
    rounds = min(len(r.rows) for r in runs)
    return [{
        "round": i,
        "samples": float(np.mean([r.rows[i]["samples"] for r in runs])),
        "teacher_calls": float(np.mean([r.rows[i]["teacher_calls"] for r in runs])),
        "accuracy": accuracy_se([r.rows[i] for r in runs]),
    } for i in range(rounds)]


def _fidelity(runs: list[Run]) -> dict[str, Any]:
    pairs = [p for r in runs for p in r.fidelity]
    if not pairs:
        return {"available": False, "why": "no fidelity.jsonl: run with loop.score_offspring: true"}
    rounds = _fidelity_groups(runs, lambda p: p["round"])
    seed_medians = [float(np.median([p["seed_own_loss"] for p in g])) for g in rounds]
    offspring_medians = [float(np.median([p["offspring_own_loss"] for p in g])) for g in rounds]
    has_subtasks = any(p["subtask"] is not None for p in pairs)
    return {
        "available": True,
        "signal": "own_loss",
        "pairs": len(pairs),
        "kept_pairs": sum(p.get("kept", True) for p in pairs),  # runs before `kept` was recorded scored kept ones only
        "per_item_spearman": spearman([p["seed_own_loss"] for p in pairs], [p["offspring_own_loss"] for p in pairs]),
        "within_round_spearman": _within(rounds),
        # a seed's sub-task alone can carry its difficulty to the offspring (a procedural teacher keeps it by design)
        "within_round_subtask_spearman": _within(_fidelity_groups(runs, lambda p: (p["round"], p["subtask"])))
                                         if has_subtasks else None,
        "dataset_level_spearman": spearman(seed_medians, offspring_medians),
        "groups": len(rounds),
    }


def _fidelity_groups(runs: list[Run], key: Callable[[dict], Any]) -> list[list[dict]]:
    """The fidelity pairs grouped by run and ``key``."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        for p in r.fidelity:
            groups.setdefault((str(r.path), key(p)), []).append(p)
    return list(groups.values())


def _within(groups: list[list[dict]]) -> dict[str, Any] | None:
    return within_group_spearman([([p["seed_own_loss"] for p in g], [p["offspring_own_loss"] for p in g]) for g in groups])


def plot(report: dict[str, Any], directory: Path) -> list[Path]:
    """accuracy_vs_samples.png and accuracy_vs_teacher_calls.png: one curve per arm with a ±SE band; an arm
    that trained once (static) as its measured points only; τ as a dashed line; the legend gives each
    arm's paired difference in final accuracy to each baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    target = report["target"]
    written = []
    for x_key, label, name in (("samples", "synthetic samples", "accuracy_vs_samples.png"),
                               ("teacher_calls", "teacher calls", "accuracy_vs_teacher_calls.png")):
        fig, ax = plt.subplots(figsize=(9, 4.5), dpi=120)
        for arm, data in report["arms"].items():
            xs = [c[x_key] for c in data["curve"]]
            ys = np.array([c["accuracy"]["mean"] for c in data["curve"]])
            se = np.array([c["accuracy"]["se"] or 0.0 for c in data["curve"]])
            label_lines = [f"{arm} (n={data['final_accuracy']['n']})", *_legend_differences(report, arm)]
            if len(xs) <= 2:  # evaluated untrained and after its one training: no curve in between was measured
                ax.errorbar(xs, ys, yerr=se, fmt="s", capsize=3, label="\n".join(label_lines))
            else:
                ax.plot(xs, ys, marker="o", label="\n".join(label_lines))
                ax.fill_between(xs, ys - se, ys + se, alpha=0.2)
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"τ = {target:.0%}")
        if x_key == "samples" and report["budget"]:
            ax.set_xlim(0, report["budget"] * 1.03)
        ax.set_ylim(0, 1)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{report.get('title') or 'loopkit'}: accuracy vs {label} (τ = {target:.0%})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        fig.tight_layout()
        path = directory / name
        fig.savefig(path, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def _legend_differences(report: dict[str, Any], arm: str) -> list[str]:
    lines = []
    for entry in report["paired"]:
        d = entry["final_accuracy"]
        if entry["arm"] == arm and d["mean"] is not None:
            lines.append(f"  final − {entry['baseline']}: {points(d)} (n={d['n']})")
    return lines


def points(d: dict[str, Any], scale: float = 100, fmt: str = "{:+.1f}", unit: str = " pts") -> str:
    """A paired difference as text: '+7.4 pts [-3.1, +17.9] p=0.19' (accuracy in percentage points by default)."""
    if d["mean"] is None:
        return "-"
    text = fmt.format(d["mean"] * scale) + unit
    if d["ci95"] is not None:
        text += " [" + ", ".join(fmt.format(x * scale) for x in d["ci95"]) + "]"
    return f"{text} p={d['p']:.2g}"


def tables(report: dict[str, Any]) -> list[Any]:
    """What ``report`` prints: rich tables (per arm; training compute and cost to τ; paired differences), then notes."""
    from loopkit.console import table as Table

    target, arms = report["target"], report["arms"]

    budget = f"budget {report['budget']:,} samples" if report["budget"] else "budgets differ"
    spread = _spread(arms)
    main = Table("arm", "seeds", "final accuracy", "AUC", f"N({target:g})", "teacher calls", "tokens", "USD",
                 title=f"{report.get('title') or 'runs'}: {spread} ({budget})")
    compute = Table("arm", "train steps", "train tokens", "train seconds", "final train loss", f"teacher calls to {target:g}",
                    f"tokens to {target:g}", f"USD to {target:g}",
                    title=f"training compute (total per run) and teacher cost to reach accuracy {target:g}")
    for arm, a in arms.items():
        reached = a["n_to_target"]
        n = len(a["seeds"])
        main.add_row(arm, str(n), cell(a["final_accuracy"]), cell(a["auc"]),
                     f"{cell(reached, '{:.0f}')} ({reached['reached']}/{n} reached)",
                     cell(a["teacher_calls"], "{:,.0f}"), cell(a["teacher_tokens"], "{:,.0f}"), cell(a["usd"], "{:.4f}"))
        t, c = a["training"], a["cost_to_target"]
        compute.add_row(arm, cell(t["steps"], "{:,.0f}"), cell(t["tokens"], "{:,.0f}"), cell(t["seconds"], "{:,.0f}"),
                        cell(a.get("final_train_loss") or mean_se([]), "{:.3f}"),
                        cell(c["teacher_calls"], "{:,.0f}"), cell(c["teacher_tokens"], "{:,.0f}"), cell(c["usd"], "{:.4f}"))
    out: list[Any] = [main, compute, *_subtask_table(arms, spread), *report.get("baselines", {}).values()]
    if report["paired"]:
        paired = Table("arm − baseline", "pairs", "final accuracy", "AUC", f"N({target:g})",
                       title="paired differences over shared seeds: mean [95% t interval] and sign-flip p")
        notes = []
        for e in report["paired"]:
            paired.add_row(f"{e['arm']} − {e['baseline']}", str(e["final_accuracy"]["n"]), points(e["final_accuracy"]),
                           points(e["auc"]), points(e["n_to_target"], 1, "{:+.0f}", ""))
            notes += _left_out(e)
        out += [paired, *notes]
    return out


def _spread(arms: dict[str, Any]) -> str:
    """What the ± of the accuracies is: the standard error over seeds, or for an arm of one seed the binomial one."""
    single = [arm for arm, a in arms.items() if a["final_accuracy"].get("se_over") == "test items"]
    if not single:
        return "mean ± standard error over seeds"
    if len(single) == len(arms):
        return "one seed each: accuracy ± its binomial standard error over the test items"
    return "mean ± standard error over seeds; accuracy of an arm of one seed ± its binomial standard error over the test items"


def _subtask_table(arms: dict[str, Any], spread: str) -> list[Any]:
    """Final accuracy per arm and sub-task (none for a task without several)."""
    from loopkit.console import table as Table

    names = sorted({name for a in arms.values() for name in a.get("final_accuracy_by_subtask", {})})
    if len(names) < 2:  # one sub-task is the whole test split: the main table has it
        return []
    table = Table("arm", *names, title=f"final accuracy per sub-task ({spread})")
    for arm, a in arms.items():
        subtasks = a.get("final_accuracy_by_subtask", {})
        table.add_row(arm, *(cell(subtasks[n]) if n in subtasks else "-" for n in names))
    return [table]


def cell(m: dict[str, Any], fmt: str = "{:.1%}") -> str:
    """'41.7% ± 3.2%'; without the ± where there is no standard error (one seed), '-' for no value."""
    if m["mean"] is None:
        return "-"
    return fmt.format(m["mean"]) + ("" if m["se"] is None else f" ± {fmt.format(m['se'])}")


def _left_out(entry: dict[str, Any]) -> list[str]:
    """Notes on seeds a comparison could not pair."""
    arm, base = entry["arm"], entry["baseline"]
    notes = []
    first = entry["final_accuracy"]
    for key, who in (("only_arm", arm), ("only_baseline", base)):
        if first.get(key):
            notes.append(f"{arm} − {base}: seed(s) {', '.join(map(str, first[key]))} only in {who}, left out of the pairing")
    n = entry["n_to_target"]
    unreached = [f"{', '.join(map(str, n[k]))} ({who})" for k, who in (("no_value_arm", arm), ("no_value_baseline", base)) if n.get(k)]
    if unreached:
        notes.append(f"{arm} − {base}: N(τ) leaves out seed(s) that never reached τ: {'; '.join(unreached)}")
    return notes
