"""Lowest reward first: a sequence-classification reward model scores question + student answer.

The reward-model criterion of Kessler et al. (2025), in the style of reward-guided data selection
(e.g. RAFT, Dong et al., 2023, arXiv 2304.06767): low reward marks a seed the student handles badly.
The params name the reward model (see ``loopkit.reward_model``); the student side loads it and
computes the ``reward`` signal, as for every other signal.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from loopkit.reward_model import RewardModelParams
from loopkit.selectors.base import ScoreSelector, Signals


class RewardSelector(ScoreSelector):
    needs = frozenset({"reward"})
    signal = "reward"
    Params = RewardModelParams

    def signal_params(self) -> Mapping[str, Any]:
        return {"reward": self.params}

    def score(self, signals: Signals) -> np.ndarray:
        return -np.asarray(signals["reward"], dtype=np.float64)
