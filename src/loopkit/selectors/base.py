"""The selector interface: student signals for the pool in, the indices of m seeds out.

Selectors never run models. They declare the signals they need (``answer``, ``own_loss``,
``correct``, ...); the student computes all of them for the whole pool in one batched pass.
Most selectors only write ``score``: ranking, tie-breaking and non-finite handling live here.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from typing import Any, ClassVar, Mapping

import numpy as np

from loopkit.component import Component

logger = logging.getLogger(__name__)

Signals = Mapping[str, Any]  # signal name -> array (or list) aligned with the pool


class Selector(Component):
    needs: ClassVar[frozenset[str]] = frozenset()  # the signals this selector reads

    @abstractmethod
    def select(self, signals: Signals, pool_size: int, m: int, rng: np.random.Generator) -> list[int]:
        """The pool indices of the ``m`` seeds to expand, most wanted first."""


def top_m(scores: np.ndarray, m: int, rng: np.random.Generator, who: str) -> list[int]:
    """Indices of the ``m`` highest scores. Ties are broken by ``rng``; non-finite scores rank last."""
    scores = np.asarray(scores, dtype=np.float64)
    bad = ~np.isfinite(scores)
    if bad.any():
        logger.warning("%s: %d non-finite scores; those seeds rank last", who, int(bad.sum()))
        scores = np.where(bad, -np.inf, scores)
    tiebreak = rng.permutation(len(scores))
    order = np.lexsort((tiebreak, -scores))  # by score descending, then by the random tie-break
    return [int(i) for i in order[:m]]


class ScoreSelector(Selector):
    """Takes the ``m`` highest-scoring seeds; ties are broken by the run's random generator."""

    @abstractmethod
    def score(self, signals: Signals) -> np.ndarray:
        """One score per pool seed; higher means expand first."""

    def select(self, signals: Signals, pool_size: int, m: int, rng: np.random.Generator) -> list[int]:
        scores = np.asarray(self.score(signals), dtype=np.float64)
        if scores.shape != (pool_size,):
            raise ValueError(f"{type(self).__name__}.score returned shape {scores.shape}, expected ({pool_size},)")
        return top_m(scores, m, rng, type(self).__name__)
