"""Highest loss first: the student's mean token NLL on its own greedy answer.

The "uncertainty" criterion that Kessler et al. (2025, arXiv 2512.00884) find best overall:
seeds the student is least sure of are the ones worth a new teacher sample.
"""

from __future__ import annotations

from loopkit.selectors.base import ScoreSelector


class LossSelector(ScoreSelector):
    needs = frozenset({"own_loss"})
    signal = "own_loss"
