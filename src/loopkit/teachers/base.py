"""The teacher interface: for each picked seed, write a new question like it and answer it.

A teacher may also judge the student's answers for the selectors that ask it to (``llm-judge``,
``lion``); those calls are charged to the same budget as generation calls.
"""

from __future__ import annotations

from abc import abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from loopkit.component import Component
from loopkit.records import Sample
from loopkit.tasks.base import Task

# The signals a teacher computes for the selectors that need them (see loopkit.signals).
JUDGE_SCORE = "judge_score"  # by ``judge``
REFEREE_GAP = "referee_gap"  # by ``referee``


@dataclass(frozen=True)
class Generation:
    """One teacher attempt: a synthetic sample, or the reason there is none."""

    seed: Sample
    sample: Sample | None
    dropped: str | None = None
    calls: int = 0  # teacher calls this attempt cost


@dataclass(frozen=True)
class Judgement:
    """One score per seed, and the teacher calls they cost."""

    scores: list[float]
    calls: int


class Teacher(Component):
    calls_per_sample: int = 1  # teacher calls one synthetic sample costs

    def judge_calls(self, needs: frozenset[str], seeds: list[Sample]) -> int:
        """Calls to judge ``seeds`` for a selector that needs ``judge_score`` / ``referee_gap`` (both orders)."""
        return len(seeds) * ((JUDGE_SCORE in needs) + 2 * (REFEREE_GAP in needs))

    def estimate_call(self, seeds: list[Sample]) -> tuple[float, float]:
        """Expected (tokens, USD) of one call, before any call was made; (0, 0) for a free teacher."""
        return 0.0, 0.0

    def spent(self) -> dict[str, float]:
        """What this run's calls cost so far: ``teacher_calls_answered``, ``teacher_tokens``, ``usd``."""
        return {"teacher_calls_answered": 0, "teacher_tokens": 0, "usd": 0.0}

    answered_calls: int = 0  # calls this teacher has reported answered (see ``answered``)
    _on_answered: Callable[[int], None] | None = None

    @contextmanager
    def reporting(self, on_answered: Callable[[int], None]) -> Iterator[None]:
        """While the block runs, ``on_answered(n)`` hears of calls as they are answered (the loop's stage bar)."""
        previous, self._on_answered = self._on_answered, on_answered
        try:
            yield
        finally:
            self._on_answered = previous

    def answered(self, n: int = 1) -> None:
        """Say that ``n`` more calls were answered (by a batch, one call, or the journal), so a long stage moves
        as it goes, not only when it ends. A teacher that never says so moves once per 64 seeds."""
        self.answered_calls += n
        if n and self._on_answered is not None:
            self._on_answered(n)

    def local_models(self) -> list[Any]:
        """The model components this teacher loads into this process (checked to fit in memory before round 0)."""
        return []

    def bind(self, task: Task) -> None:
        """Check the teacher can serve this task; raise RecipeError if not."""

    def open(self, run_dir: Path, use_cache: bool = True) -> None:
        """Called once by the loop, before any call, with the run directory (e.g. to open a journal there).

        ``use_cache=False`` (``loopkit run --no-cache``): send every call even if a journal has answered it.
        """

    def preflight(self) -> str | None:
        """One cheap call through the backend, journaled and charged like any other (``--check-teacher``): what
        answered, or None for a teacher that makes no calls (nothing to check). Raises ``TeacherCheckError``
        naming the recipe field most likely at fault."""
        return None

    @abstractmethod
    def generate(self, seeds: list[Sample], round_no: int, random_seed: int) -> list[Generation]:
        """One new sample per seed question, in order, for round ``round_no``; ``random_seed`` seeds any sampling."""

    def judge(self, seeds: list[Sample], answers: list[str], random_seed: int) -> Judgement:
        """Grade each student answer to its seed from 1 (wrong, useless) to 10 (correct, complete)."""
        raise NotImplementedError(f"teacher {type(self).__name__} cannot judge answers")

    def referee(self, seeds: list[Sample], answers: list[str], random_seed: int) -> Judgement:
        """LION's referee: score the teacher's own answer and the student's, 1-10 each, in both
        presentation orders; per seed, the teacher's score minus the student's, averaged over orders."""
        raise NotImplementedError(f"teacher {type(self).__name__} cannot referee answers")


def can(teacher: type[Teacher], method: str) -> bool:
    """Whether a teacher class implements an optional method (``judge``, ``referee``)."""
    return getattr(teacher, method, None) not in (None, getattr(Teacher, method))
