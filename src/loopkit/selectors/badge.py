"""BADGE: k-means++ seeding on gradient embeddings (Ash et al., ICLR 2020, arXiv 1906.03671).

Each seed's ``grad_embedding`` is the gradient of the loss at the student's own answer w.r.t. the
output layer; its norm grows with uncertainty, and spreading picks over the embedding space adds
diversity. As in the reference code, the first pick is the largest embedding; each next one is
drawn with probability proportional to its squared distance to the nearest pick so far. When all
remaining distances are zero (duplicates), the next pick is uniform among the rest. Seeds with
non-finite embeddings come last.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from loopkit.selectors.base import Selection, Selector, Signals, pick_finite_rows


def kmeans_pp(vectors: np.ndarray, m: int, rng: np.random.Generator) -> list[int]:
    """k-means++ seeding of ``m`` distinct rows, starting from the row of largest norm."""
    norms = np.einsum("ij,ij->i", vectors, vectors)
    best = np.flatnonzero(norms == norms.max())
    picked = [int(best[rng.integers(len(best))])]
    nearest = np.full(len(vectors), np.inf)
    while len(picked) < m:
        diff = vectors - vectors[picked[-1]]
        nearest = np.minimum(nearest, np.einsum("ij,ij->i", diff, diff))
        nearest[picked] = 0.0
        weights = nearest / nearest.sum() if nearest.sum() > 0 else None
        if weights is None:
            weights = np.ones(len(vectors))
            weights[picked] = 0.0
            weights /= weights.sum()
        picked.append(int(rng.choice(len(vectors), p=weights)))
    return picked


class BadgeSelector(Selector):
    needs = frozenset({"grad_embedding"})

    def select(self, signals: Signals, pool_size: int, m: int, rng: np.random.Generator,
               history: Sequence[int] = ()) -> Selection:
        return Selection(pick_finite_rows(signals["grad_embedding"], m, rng, type(self).__name__, "grad_embedding",
                                          lambda vectors, k, _: kmeans_pp(vectors, k, rng)))
