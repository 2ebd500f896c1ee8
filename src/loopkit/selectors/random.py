"""Uniformly random seeds: the baseline every criterion must beat. Needs no signals."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from loopkit.selectors.base import Selection, Selector, Signals


class RandomSelector(Selector):
    def select(self, signals: Signals, pool_size: int, m: int, rng: np.random.Generator,
               history: Sequence[int] = ()) -> Selection:
        return Selection(rng.choice(pool_size, size=m, replace=False))
