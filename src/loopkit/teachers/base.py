"""The teacher interface: for each picked seed, write a new question like it and answer it."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

from loopkit.component import Component
from loopkit.records import Sample
from loopkit.tasks.base import Task


@dataclass(frozen=True)
class Generation:
    """One teacher attempt: a synthetic sample, or the reason there is none."""

    seed: Sample
    sample: Sample | None
    dropped: str | None = None
    calls: int = 0  # teacher calls this attempt cost


class Teacher(Component):
    def bind(self, task: Task) -> None:
        """Check the teacher can serve this task; raise RecipeError if not."""

    @abstractmethod
    def generate(self, seeds: list[Sample], round: int, seed: int) -> list[Generation]:
        """One new sample per seed, in order."""
