"""Decide the levels testbed's pre-registered hypotheses (benchmarks/REPRODUCTION.md) from a report.json.

    python benchmarks/preregistered.py benchmarks/results/levels/report.json

The rules are the pre-registration's, applied mechanically to the paired AUC differences that
`loopkit report` computed (mean, 95% t interval, two-sided sign-flip p over shared seeds):
- H1a loss − static, H1b loss − static-matched, H2 loss − random: one family, Holm-corrected;
- H3 entropy − random and badge − random: secondary, uncorrected.
Outcomes at α = 0.05 with a smallest effect of interest of 2 AUC points: *supported* (mean > 0 and
p < α), *reversed* (mean < 0 and p < α), *refuted* (not supported and the interval's upper end below
+2 points), else *inconclusive*.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ALPHA = 0.05
SMALLEST_EFFECT = 0.02  # AUC, as a fraction
PRIMARY = [("H1a", "loss", "static"), ("H1b", "loss", "static-matched"), ("H2", "loss", "random")]
SECONDARY = [("H3", "entropy", "random"), ("H3", "badge", "random")]


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def outcome(mean: float, upper: float, p: float) -> str:
    if p < ALPHA:
        return "supported" if mean > 0 else "reversed"
    return "refuted" if upper < SMALLEST_EFFECT else "inconclusive"


def decisions(report: dict) -> list[dict]:
    paired = {(row["arm"], row["baseline"]): row["auc"] for row in report["paired"]}
    rows = []
    for family, corrected in ((PRIMARY, True), (SECONDARY, False)):
        found = [(name, arm, base, paired.get((arm, base))) for name, arm, base in family]
        tested = [f for f in found if f[3] is not None]
        adjusted = holm([f[3]["p"] for f in tested]) if corrected else [f[3]["p"] for f in tested]
        p_of = {(f[1], f[2]): p for f, p in zip(tested, adjusted)}
        for name, arm, base, auc in found:
            if auc is None:
                rows.append({"hypothesis": name, "contrast": f"{arm} − {base}", "outcome": "not tested"})
                continue
            p = p_of[(arm, base)]
            low, high = auc["ci95"] if auc.get("ci95") else (float("nan"), float("nan"))
            rows.append({"hypothesis": name, "contrast": f"{arm} − {base}", "pairs": auc["n"], "mean": auc["mean"],
                         "ci95": [low, high], "p": auc["p"], "p_used": p, "holm": corrected,
                         "outcome": outcome(auc["mean"], high, p)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    args = parser.parse_args()
    print("| hypothesis | AUC difference | pairs | mean [95% interval], points | p (sign-flip) | p used | outcome |")
    print("|---|---|---:|---|---:|---:|---|")
    for r in decisions(json.loads(args.report.read_text())):
        if r["outcome"] == "not tested":
            print(f"| {r['hypothesis']} | {r['contrast']} | | | | | not tested |")
            continue
        low, high = (100 * v for v in r["ci95"])
        used = f"{r['p_used']:.3f} (Holm)" if r["holm"] else f"{r['p_used']:.3f}"
        print(f"| {r['hypothesis']} | {r['contrast']} | {r['pairs']} | {100 * r['mean']:+.1f} [{low:+.1f}, {high:+.1f}] "
              f"| {r['p']:.4f} | {used} | **{r['outcome']}** |")


if __name__ == "__main__":
    main()
