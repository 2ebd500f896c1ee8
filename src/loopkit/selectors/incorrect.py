"""Wrong answers first, as in LLM2LLM (Lee et al., 2024, arXiv 2403.15042).

LLM2LLM expands every seed the student answers wrongly (by the task's checker). Here m is fixed:
with more than m wrong seeds, m of them are drawn uniformly (the round's random generator); with
fewer, every wrong seed is taken and the rest are filled with correct seeds by own loss, highest
first (the ``loss`` criterion), so a round always yields m seeds.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from loopkit.selectors.base import Selection, Selector, Signals, finite


class IncorrectSelector(Selector):
    needs = frozenset({"correct", "own_loss"})

    def select(self, signals: Signals, pool_size: int, m: int, rng: np.random.Generator,
               history: Sequence[int] = ()) -> Selection:
        wrong = ~np.asarray(signals["correct"], dtype=bool)
        loss = np.where(wrong, 0.0, finite(signals["own_loss"], type(self).__name__, "own_loss"))
        # wrong first; then by loss, highest first (wrong seeds tie at 0 and so come in random order)
        order = np.lexsort((rng.permutation(pool_size), -loss, ~wrong))
        return Selection(order[:m])
