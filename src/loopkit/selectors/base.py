"""The selector interface: student signals for the pool in, a ``Selection`` of m seeds out.

Selectors never run the student or the teacher. They declare the signals they need (``answer``,
``own_loss``, ``correct``, ... listed in ``loopkit.signals``); the loop computes those for the
whole pool in batched passes (a signal that takes settings, such as the reward model behind
``reward``, gets them from ``signal_params``). Most selectors only name a signal or write
``score``: ranking, tie-breaking (by the round's random generator) and non-finite handling live here.

``select`` has one signature, ``select(signals, pool_size, m, rng, history=())``; ``history`` is the
pool indices picked in earlier rounds, oldest first (``kcenter`` keeps away from them). A selector
defined with another signature is refused when its plugin loads.
"""

from __future__ import annotations

import inspect
import logging
from abc import abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

from loopkit.component import Component
from loopkit.errors import PluginLoadError

logger = logging.getLogger(__name__)

Signals = Mapping[str, Any]  # signal name -> array (or list) aligned with the pool


@dataclass(frozen=True)
class Selection(Sequence):
    """What a selector picks: pool indices, most wanted first, and a prompt variant for some of them, which
    the teacher gets in the seed's meta (LION asks for a ``records.RARER`` question on seeds the student
    finds easy). It is a sequence of its indices."""

    indices: tuple[int, ...] = ()  # any iterable of ints is taken
    variants: Mapping[int, str] = field(default_factory=dict)  # pool index -> variant name

    def __post_init__(self) -> None:
        object.__setattr__(self, "indices", tuple(int(i) for i in self.indices))
        object.__setattr__(self, "variants", {int(i): v for i, v in self.variants.items()})

    def __getitem__(self, i):
        return self.indices[i]

    def __len__(self) -> int:
        return len(self.indices)

    @classmethod
    def of(cls, picked: "Selection | Iterable[int]") -> "Selection":
        """What ``select`` returned, as a Selection (a plain list of indices has no variants)."""
        return picked if isinstance(picked, Selection) else cls(picked)


class Selector(Component):
    needs: ClassVar[frozenset[str]] = frozenset()  # the signals this selector reads

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # One documented signature, checked as pluggy checks a hookimpl's: a selector written against
        # another one fails when its plugin loads, not in the middle of a run.
        super().__init_subclass__(**kwargs)
        parameters = inspect.signature(cls.select).parameters
        if "history" not in parameters and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            raise PluginLoadError(f"{cls.__module__}.{cls.__qualname__}.select must take (self, signals, pool_size, m, rng, "
                                  "history=()); add the history parameter (the pool indices picked in earlier rounds)")

    @abstractmethod
    def select(self, signals: Signals, pool_size: int, m: int, rng: np.random.Generator,
               history: Sequence[int] = ()) -> Selection:
        """The ``m`` seeds to expand, most wanted first, with any prompt variants."""

    def signal_params(self) -> Mapping[str, Any]:
        """Settings of the signals this selector needs, by signal, for those that take some (``reward``: the
        reward model that computes it, ``loopkit.reward_model.RewardModelParams``)."""
        return {}


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
               history: Sequence[int] = ()) -> Selection:
        scores = np.asarray(self.score(signals), dtype=np.float64)
        if scores.shape != (pool_size,):
            raise ValueError(f"{type(self).__name__}.score returned shape {scores.shape}, expected ({pool_size},)")
        return Selection(top_m(scores, m, rng, type(self).__name__, self.signal))
