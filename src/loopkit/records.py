"""The one record that flows through the loop: a question with its answer."""

from __future__ import annotations

import hashlib
import json
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
