"""LION's referee (Jiang et al., EMNLP 2023, arXiv 2305.12870): a mix of hard and easy seeds.

The teacher, as referee, scores its own answer and the student's in both orders (``referee_gap``
is the teacher's minus the student's score, averaged over the orders). A gap of at least
``threshold`` makes a seed hard. ``hard_fraction`` of the m picks are drawn uniformly from the hard
seeds and the rest from the easy ones; if one group is short, the other fills in. Easy seeds carry
the prompt variant ``RARER`` (LION's generator then writes a new, rarer question in the same
domain instead of a similar one); it is recorded in ``selected.jsonl`` and passed to the teacher
as the seed's ``meta["prompt_variant"]``. Hard seeds come first in the selection.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pydantic import Field

from loopkit.component import Params
from loopkit.records import RARER
from loopkit.selectors.base import Selection, Selector, Signals, finite


class LionSelector(Selector):
    needs = frozenset({"answer", "referee_gap"})

    class Params(Params):
        threshold: float = Field(1.0, gt=0, description="referee gap (teacher minus student) at which a seed is hard")
        hard_fraction: float = Field(0.5, ge=0, le=1, description="share of the m picks drawn from hard seeds")

    def select(self, signals: Signals, pool_size: int, m: int, rng: np.random.Generator,
               history: Sequence[int] = ()) -> Selection:
        gap = finite(signals["referee_gap"], type(self).__name__, "referee_gap")
        hard = np.flatnonzero(gap >= self.params.threshold)
        easy = np.flatnonzero((gap < self.params.threshold) & np.isfinite(gap))
        unscored = np.flatnonzero(~np.isfinite(gap))
        want_hard = round(m * self.params.hard_fraction)
        n_hard = min(len(hard), max(want_hard, m - len(easy)))
        n_easy = min(len(easy), m - n_hard)
        picked_hard = [int(i) for i in rng.permutation(hard)[:n_hard]]
        picked_easy = [int(i) for i in rng.permutation(easy)[:n_easy]]
        rest = [int(i) for i in rng.permutation(unscored)[: m - n_hard - n_easy]]
        return Selection(picked_hard + picked_easy + rest, {i: RARER for i in picked_easy})
