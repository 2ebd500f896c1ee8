"""k-center greedy coreset on hidden-state embeddings (Sener & Savarese, ICLR 2018, arXiv 1708.00489).

Each pick is the seed farthest (Euclidean, on the student's ``embedding``) from its nearest
center. The centers start as the seeds expanded in earlier rounds (``history``), re-embedded by
the current student, so a round keeps away from regions already covered. With no history the
first pick is the seed farthest from the pool's mean. Ties go to the round's random generator;
seeds with non-finite embeddings come last.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from loopkit.selectors.base import Selection, Selector, Signals, pick_finite_rows


def k_center(vectors: np.ndarray, m: int, rng: np.random.Generator, centers: Sequence[int] = ()) -> list[int]:
    """Greedy k-center: ``m`` distinct rows, each farthest from the nearest of ``centers`` and earlier picks."""
    priority = rng.permutation(len(vectors))  # tie-break: lowest priority wins among equal distances

    def farthest(distance: np.ndarray) -> int:
        best = np.flatnonzero(distance == distance.max())
        return int(best[np.argmin(priority[best])])

    def distance_to(i: int) -> np.ndarray:
        diff = vectors - vectors[i]
        return np.sqrt(np.einsum("ij,ij->i", diff, diff))

    picked: list[int] = []
    if len(centers):
        nearest = np.min([distance_to(c) for c in set(centers)], axis=0)
    else:
        picked.append(farthest(np.linalg.norm(vectors - vectors.mean(axis=0), axis=1)))
        nearest = distance_to(picked[0])
    while len(picked) < m:
        available = nearest.copy()
        available[picked] = -np.inf
        picked.append(farthest(available))
        nearest = np.minimum(nearest, distance_to(picked[-1]))
    return picked


class KCenterSelector(Selector):
    needs = frozenset({"embedding"})

    def select(self, signals: Signals, pool_size: int, m: int, rng: np.random.Generator,
               history: Sequence[int] = ()) -> Selection:
        def pick(vectors: np.ndarray, k: int, good: np.ndarray) -> list[int]:
            where = {int(g): j for j, g in enumerate(good)}  # pool index -> row among the finite ones
            return k_center(vectors, k, rng, [where[i] for i in history if i in where])

        return Selection(pick_finite_rows(signals["embedding"], m, rng, type(self).__name__, "embedding", pick))
