"""Highest gold loss first: the student's mean token NLL on the seed's reference answer.

One of the criteria of Kessler et al. (2025, arXiv 2512.00884), reported weaker than the loss on
the student's own answer. Needs a task with reference answers (checked when the recipe loads).
"""

from __future__ import annotations

from loopkit.selectors.base import ScoreSelector


class GoldLossSelector(ScoreSelector):
    needs = frozenset({"gold_loss"})
    signal = "gold_loss"
