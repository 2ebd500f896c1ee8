"""The selector interface: student signals for the pool in, the indices of m seeds out.

Selectors never run the student or the teacher. They declare the signals they need (``answer``,
``own_loss``, ``correct``, ... listed in ``loopkit.signals``); the loop computes those for the
whole pool in batched passes. Most selectors only name a signal or write ``score``: ranking,
tie-breaking (by the round's random generator) and non-finite handling live here.

``select`` may also take ``history``: the pool indices picked in earlier rounds, oldest first
(``kcenter`` keeps away from them). The loop passes it only to selectors whose ``select`` accepts
it, so selectors written before it existed keep working.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
import inspect
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from loopkit.component import Component

logger = logging.getLogger(__name__)

Signals = Mapping[str, Any]  # signal name -> array (or list) aligned with the pool


class Selection(list):
    """Pool indices, most wanted first, with an optional prompt variant per index for the teacher
    (LION asks for a "rarer" question on seeds the student finds easy)."""

    def __init__(self, indices: Sequence[int] = (), variants: Mapping[int, str] | None = None) -> None:
        super().__init__(int(i) for i in indices)
        self.variants = dict(variants or {})


class Selector(Component):
    needs: ClassVar[frozenset[str]] = frozenset()  # the signals this selector reads

    @abstractmethod
    def select(self, signals: Signals, pool_size: int, m: int, rng: np.random.Generator,
               history: Sequence[int] = ()) -> list[int]:
        """The pool indices of the ``m`` seeds to expand, most wanted first (a ``Selection`` to
        attach prompt variants)."""


def call_select(selector: Selector, signals: Signals, pool_size: int, m: int, rng: np.random.Generator,
                history: Sequence[int]) -> list[int]:
    """``selector.select``, passing ``history`` only if it takes it (older plugins do not)."""
    parameters = inspect.signature(selector.select).parameters
    if "history" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return selector.select(signals, pool_size, m, rng, history=history)
    return selector.select(signals, pool_size, m, rng)


def finite(values: Any, who: str, signal: str) -> np.ndarray:
    """``values`` as floats; non-finite ones become -inf after one warning naming selector and signal."""
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        logger.warning("%s: %d non-finite values of signal '%s'; those seeds rank last", who, int(bad.sum()), signal)
        values = np.where(bad, -np.inf, values)
    return values


def finite_rows(vectors: Any, who: str, signal: str) -> tuple[np.ndarray, np.ndarray]:
    """A (pool, dim) array of embeddings and a mask of its fully finite rows (with one warning if any is not)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    ok = np.isfinite(vectors).all(axis=1)
    if not ok.all():
        logger.warning("%s: %d seeds have non-finite '%s'; they rank last", who, int((~ok).sum()), signal)
        vectors = np.where(ok[:, None], vectors, 0.0)
    return vectors, ok


def pick_finite_rows(vectors: Any, m: int, rng: np.random.Generator, who: str, signal: str,
                     pick: Callable[[np.ndarray, int, np.ndarray], list[int]]) -> list[int]:
    """Run ``pick(finite_vectors, k, their_pool_indices)`` on the seeds whose embedding is finite;
    seeds with a non-finite one (one warning) fill up the rest in random order."""
    vectors, ok = finite_rows(vectors, who, signal)
    good = np.flatnonzero(ok)
    picked = [int(good[i]) for i in pick(vectors[good], min(m, len(good)), good)] if len(good) else []
    rest = rng.permutation(np.flatnonzero(~ok))
    return picked + [int(i) for i in rest[: m - len(picked)]]


def top_m(scores: np.ndarray, m: int, rng: np.random.Generator, who: str, signal: str = "score") -> list[int]:
    """Indices of the ``m`` highest scores. Ties are broken by ``rng``; non-finite scores rank last."""
    scores = finite(scores, who, signal)
    tiebreak = rng.permutation(len(scores))
    order = np.lexsort((tiebreak, -scores))  # by score descending, then by the random tie-break
    return [int(i) for i in order[:m]]


class ScoreSelector(Selector):
    """Takes the ``m`` highest-scoring seeds; ties are broken by the run's random generator.

    A subclass names the ``signal`` it ranks by (highest first), or overrides ``score``.
    """

    signal: ClassVar[str] = "score"  # the signal ``score`` reads, also named in warnings

    def score(self, signals: Signals) -> np.ndarray:
        """One score per pool seed; higher means expand first."""
        return np.asarray(signals[self.signal])

    def select(self, signals: Signals, pool_size: int, m: int, rng: np.random.Generator,
               history: Sequence[int] = ()) -> list[int]:
        scores = np.asarray(self.score(signals), dtype=np.float64)
        if scores.shape != (pool_size,):
            raise ValueError(f"{type(self).__name__}.score returned shape {scores.shape}, expected ({pool_size},)")
        return top_m(scores, m, rng, type(self).__name__, self.signal)
