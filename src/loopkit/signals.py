"""Student signals over the seed pool, computed only when a selector declares it needs them."""

from __future__ import annotations

from typing import Any

import numpy as np

from loopkit.records import Sample
from loopkit.student import Advance, Student, _noop
from loopkit.tasks.base import Task

SCORED = ("own_loss", "own_loss_sum", "correct")  # signals that need the student's answers
KNOWN = frozenset({"answer", *SCORED})


def needs_answers(needs: frozenset[str]) -> bool:
    return bool(needs & KNOWN)


def score_answers(student: Student, task: Task, pool: list[Sample], answers: list[str], needs: frozenset[str],
                  advance: Advance = _noop) -> dict[str, Any]:
    """Every requested signal derived from the student's answers, as arrays aligned with the pool."""
    signals: dict[str, Any] = {"answer": answers}
    if needs & {"own_loss", "own_loss_sum"}:
        nll = student.token_nll([task.prompt(s.question) for s in pool], answers, advance)
        signals["own_loss"] = np.array([float(x.mean()) for x in nll])
        signals["own_loss_sum"] = np.array([float(x.sum()) for x in nll])
    if "correct" in needs:
        signals["correct"] = np.array([task.check(s, a) for s, a in zip(pool, answers)], dtype=bool)
    return signals
