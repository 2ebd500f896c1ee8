"""Deterministic seeds derived from the recipe seed, so every stage is reproducible on its own."""

from __future__ import annotations

from loopkit.records import content_id


def derive_seed(seed: int, *labels: object) -> int:
    """A 31-bit seed from the run seed and some labels (stable across machines and Python runs)."""
    return int(content_id(str(seed), *map(str, labels)), 16) % (2**31 - 1)
