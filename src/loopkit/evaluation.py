"""Evaluating a student on a task's test split: the one evaluation the loop's rounds and ``loopkit eval`` share.

The student answers every test question greedily (``Inference.generate``); the task checks each answer.
The result is the accuracy with its binomial standard error over the test items, the same per
sub-task where the task has sub-tasks (``Sample.subtask``), and one row per item for ``eval.jsonl``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loopkit.inference import Advance, Inference
from loopkit.records import Sample, Score
from loopkit.stats import binomial_se
from loopkit.tasks.base import Task


@dataclass(frozen=True)
class Evaluation:
    score: Score  # over the whole test split
    subtasks: dict[str, Score]  # per sub-task, by name ({}: the task has none)
    rows: list[dict]  # per test item: id, question, reference, prediction, correct (and readings, subtask)
    by_reading: dict[str, float] | None = None  # e.g. GSM8K's strict and flexible accuracy, where a task reads both ways


def score(correct: list[bool]) -> Score:
    accuracy = sum(correct) / len(correct)
    return Score(accuracy, round(binomial_se(accuracy, len(correct)), 6), len(correct))


def evaluate(student: Inference, task: Task, test: list[Sample], advance: Advance | None = None) -> Evaluation:
    """Answer and check every test item (``advance`` is called as answers are made)."""
    predictions = student.generate([task.prompt(s.question) for s in test], advance or (lambda n: None))
    rows: list[dict[str, Any]] = []
    for s, p in zip(test, predictions):
        readings = task.readings(s, p)
        row = {"id": s.id, "question": s.question, "reference": s.final, "prediction": p,
               "correct": next(iter(readings.values()))}
        if s.subtask is not None:
            row["subtask"] = s.subtask
        if len(readings) > 1:  # e.g. GSM8K's strict and flexible matches, side by side
            row["readings"] = readings
        rows.append(row)
    groups: dict[str, list[bool]] = {}
    for s, row in zip(test, rows):
        if s.subtask is not None:
            groups.setdefault(s.subtask, []).append(row["correct"])
    by_reading = None
    if rows and "readings" in rows[0]:
        by_reading = {name: sum(r["readings"][name] for r in rows) / len(rows) for name in rows[0]["readings"]}
    return Evaluation(score([r["correct"] for r in rows]), {name: score(groups[name]) for name in sorted(groups)},
                      rows, by_reading)
