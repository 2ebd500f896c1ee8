"""Lowest grade first: the teacher, as an LLM judge, grades each student answer from 1 to 10.

LLM-as-a-judge (Zheng et al., NeurIPS 2023, arXiv 2306.05685) as a selection criterion, one of the
expensive baselines of Kessler et al. (2025): one teacher call per seed per round, charged to the
run's teacher-call budget. The teacher must implement ``Teacher.judge`` (checked when the recipe loads).
"""

from __future__ import annotations

import numpy as np

from loopkit.selectors.base import ScoreSelector, Signals


class LLMJudgeSelector(ScoreSelector):
    needs = frozenset({"answer", "judge_score"})
    signal = "judge_score"

    def score(self, signals: Signals) -> np.ndarray:
        return -np.asarray(signals["judge_score"], dtype=np.float64)
