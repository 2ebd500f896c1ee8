"""The records that flow through the loop: a question with its answer (``Sample``), a round's row (``RoundRow``)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel, ConfigDict, Field

SEED_SOURCE = "seed"


def content_id(*parts: str) -> str:
    """A stable short hash of some text parts (the same on every machine and run)."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return digest[:16]


class Sample(BaseModel):
    """A question/answer pair: a seed from the task or a synthetic one from a teacher.

    ``answer`` is the full completion the student is trained on (worked steps, if any, then the
    final answer); ``final`` is the bare final answer the task's checker compares against.
    Stages build new samples instead of mutating them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    question: str
    answer: str | None = None
    final: str | None = None
    source: str = SEED_SOURCE
    seed_id: str | None = None
    round: int | None = None
    # The sub-task a sample is of (a reasoning-gym mix's key, a jsonl task's subtask_field); None: the task has
    # none. Evaluation reports accuracy per sub-task, and a teacher's offspring keeps its seed's.
    subtask: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def create(cls, question: str, answer: str | None = None, **fields: Any) -> "Sample":
        """A sample whose id is the hash of its source, question and answer."""
        source = fields.get("source", SEED_SOURCE)
        return cls(id=content_id(source, question, answer or ""), question=question, answer=answer, **fields)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, line: str) -> "Sample":
        return cls.model_validate_json(line)


def of_subtask(sample: Sample, subtask: str | None) -> Sample:
    """The sample as one of ``subtask`` (an offspring is of its seed's sub-task, whichever teacher wrote it)."""
    return sample if sample.subtask == subtask else sample.model_copy(update={"subtask": subtask})


def normalize_question(text: str) -> str:
    """The form two questions are compared in to catch near-verbatim duplicates."""
    return " ".join(text.lower().split())


def write_jsonl(path: Path, rows: Iterable[BaseModel | dict]) -> None:
    """Write rows as JSON lines (use ``RunDir`` for atomic writes inside a run)."""
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write((row.model_dump_json() if isinstance(row, BaseModel) else json.dumps(row)) + "\n")


def read_samples(path: Path) -> list[Sample]:
    with open(path, encoding="utf-8") as f:
        return [Sample.from_json(line) for line in f if line.strip()]


# A selector may ask the teacher for a variant of its call-1 prompt for some seeds (``Selection.variants``);
# the seed carries it to the teacher in its meta, and selected.jsonl records it.
PROMPT_VARIANT = "prompt_variant"
RARER = "rarer"  # LION: a rarer, harder question than the seed (for seeds the student finds easy)


def with_variant(seed: Sample, variant: str | None) -> Sample:
    """The seed as the teacher gets it: with the selector's prompt variant (if any) in its meta."""
    return seed if variant is None else seed.model_copy(update={"meta": {**seed.meta, PROMPT_VARIANT: variant}})


def prompt_variant(seed: Sample) -> str | None:
    return seed.meta.get(PROMPT_VARIANT)


@dataclass(frozen=True)
class Score:
    """An accuracy from one evaluation: on ``n`` test items, with its binomial standard error over them."""

    accuracy: float
    se: float
    n: int

    def to_json(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "accuracy_se": self.se, "test_items": self.n}


@dataclass(frozen=True, kw_only=True)
class RoundRow:
    """One round of a run as ``summary.json`` lists it and its ``metrics.json`` begins: what the run had spent
    by its end, what the student reached, and how long each stage took."""

    round: int
    samples: int  # synthetic samples the student has been trained on so far (static-matched: its share of them)
    teacher_calls: int  # so far, judging included
    teacher_tokens: int = 0
    usd: float = 0.0
    accuracy: float  # on the test split
    accuracy_se: float | None = None  # its binomial standard error over the test items (None: an older run)
    test_items: int | None = None
    subtasks: dict[str, dict] = field(default_factory=dict)  # sub-task -> Score.to_json() (tasks with sub-tasks)
    seconds: dict[str, float] = field(default_factory=dict)  # per stage of this round
    elapsed: float = 0.0  # since the run started, resumes included
    kept: int = 0  # this round's new samples kept
    dropped: int = 0  # this round's attempts dropped (dropped.jsonl says why, each)
    drop_reasons: dict[str, int] = field(default_factory=dict)  # the most common reasons, with their counts

    _REQUIRED = {"round": int, "samples": int, "teacher_calls": int, "accuracy": (int, float)}
    _OPTIONAL = {"accuracy_se": (int, float), "test_items": int}  # absent in older runs

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Any) -> "RoundRow":
        """The row in a JSON object (other keys are ignored); ValueError saying what is missing or wrong."""
        if not isinstance(data, dict):
            raise ValueError("is not a JSON object")
        for key, kind in cls._REQUIRED.items():
            if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
                raise ValueError(f"has no valid '{key}'" if key not in data else f"'{key}' is not a number")
        for key, kind in cls._OPTIONAL.items():
            if data.get(key) is not None and (not isinstance(data[key], kind) or isinstance(data[key], bool)):
                raise ValueError(f"'{key}' is not a number")
        subtasks = data.get("subtasks", {})
        if not isinstance(subtasks, dict) or not all(
                isinstance(v, dict) and isinstance(v.get("accuracy"), (int, float)) for v in subtasks.values()):
            raise ValueError("'subtasks' is not an object of sub-task accuracies")
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)  # row["accuracy"], as when rows were dicts

    @property
    def score(self) -> Score | None:
        """The accuracy with its binomial standard error (None: an older run that did not record them)."""
        return None if self.accuracy_se is None or not self.test_items else Score(self.accuracy, self.accuracy_se, self.test_items)
