"""Highest entropy first: the student's mean token entropy over its own greedy answer.

Classic uncertainty sampling (Settles, "Active Learning Literature Survey", 2009, max-entropy),
measured per token as in LLM uncertainty work; listed as a natural baseline by Kessler et al. (2025).
"""

from __future__ import annotations

from loopkit.selectors.base import ScoreSelector


class EntropySelector(ScoreSelector):
    needs = frozenset({"entropy"})
    signal = "entropy"
