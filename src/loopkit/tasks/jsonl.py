"""Your own questions from JSON Lines files: a seed file and a test file, or one file split in two.

Each line is a JSON object. ``question_field`` holds the question; ``answer_field`` (optional) a
worked answer (GSM8K's ``answer`` ends in ``#### <number>``); ``final_field`` (optional) the final
answer. Without ``final_field`` the final answer is read from the worked answer by the task's
checker (``numeric``, ``exact``, ``boolean``, ``choice``; see ``loopkit.checkers``); ``subtask_field``
(optional) names each record's sub-task, for accuracy per sub-task. Every data
problem is one error naming the file, line and field. Questions in both splits are removed from the
seed pool with a warning; ``strict: true`` refuses such files instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from loopkit.checkers import CHECKERS, Checker
from loopkit.component import Params, RecipePath
from loopkit.errors import DataError
from loopkit.files import MiB, read_text, shown
from loopkit.records import Sample, normalize_question
from loopkit.tasks.base import Task, TaskData


MAX_FILE_BYTES = 256 * MiB  # read whole into memory; larger sets belong in the hf-dataset task (memory-mapped)


class JsonlTask(Task):
    class Params(Params):
        seed_file: RecipePath = Field(description="JSONL file of seed questions (the pool); relative to the recipe's folder")
        test_file: RecipePath | None = Field(None, description="JSONL file of test questions; default: split test_size off seed_file")
        test_size: float = Field(0.2, gt=0, description="without test_file: a fraction (< 1) or a count of seed_file's records")
        split_seed: int = Field(0, ge=0, description="without test_file: the shuffle that splits seed_file")
        question_field: str = Field("question", description="the field of each record that holds the question")
        answer_field: str | None = Field("answer", description="the worked answer; null if the file has none")
        final_field: str | None = Field(None, description="the final answer; default: read from answer_field by the checker")
        checker: Literal["numeric", "exact", "boolean", "choice", "math"] = Field(
            "exact", description="how answers are compared: numeric (GSM8K strict + flexible), exact, boolean, choice, math")
        strict: bool = Field(False, description="refuse seed/test overlap instead of removing it with a warning")
        subtask_field: str | None = Field(None, description="a field naming each record's sub-task (e.g. its source "
                                                            "dataset): accuracy is then also reported per sub-task")

        @model_validator(mode="after")
        def _a_final_answer_somewhere(self) -> "JsonlTask.Params":
            if self.answer_field is None and self.final_field is None:
                raise ValueError("set answer_field or final_field: the test split needs reference answers")
            if self.test_file is None and self.test_size >= 1 and self.test_size != int(self.test_size):
                raise ValueError("test_size is a fraction below 1 or a whole count")
            return self

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.checker: Checker = CHECKERS[self.params.checker]()
        self.answer_format = {"numeric": "a number", "boolean": "Yes or No", "choice": "one letter, A to E"}.get(
            self.params.checker, "the final answer alone")

    @property
    def label(self) -> str:
        """How messages name this task's seed data."""
        return self.params.seed_file

    def splits(self) -> tuple[list[Sample], list[Sample] | None]:
        """The seed records and the test records (None: split them off the seed records)."""
        p = self.params
        return self._read(Path(p.seed_file), "seed_file"), self._read(Path(p.test_file), "test_file") if p.test_file is not None else None

    def load(self, seed: int) -> TaskData:
        p = self.params
        pool, test = self.splits()
        if test is None:
            import random

            order = list(range(len(pool)))
            random.Random(p.split_seed).shuffle(order)
            count = int(p.test_size) if p.test_size >= 1 else round(p.test_size * len(pool))
            if not 0 < count < len(pool):
                raise DataError(f"{self.label}: cannot split {len(pool)} records into seed and test "
                                f"(test_size {p.test_size:g}); add records or give a test split")
            pool, test = [pool[i] for i in sorted(order[count:])], [pool[i] for i in sorted(order[:count])]
        test_questions = {normalize_question(s.question) for s in test}
        overlap = [s for s in pool if normalize_question(s.question) in test_questions]
        warnings: tuple[str, ...] = ()
        if overlap:
            message = (f"{self.label}: {len(overlap)} seed question(s) also in the test split "
                       f"(first: {overlap[0].meta['line']}: {overlap[0].question[:60]!r})")
            if p.strict:
                raise DataError(f"{message}; remove them (strict: true refuses overlap)")
            pool = [s for s in pool if normalize_question(s.question) not in test_questions]
            warnings = (f"{message}; removed from the seed pool",)
        return TaskData(pool=pool, test=test, warnings=warnings)

    def _read(self, path: Path, field: str) -> list[Sample]:
        text = read_text(path.absolute(), MAX_FILE_BYTES, DataError, ".jsonl file",
                         missing=f"file not found (task.params.{field}; a relative path is read from the recipe's folder)")
        records = []
        # JSON Lines are split at "\n" alone: str.splitlines would also split inside a JSON string
        # that holds U+2028 or U+0085, which JSON allows unescaped. A trailing "\r" (CRLF) is blank space.
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            where = f"{shown(path)}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg}, column {exc.colno})") from None
            except ValueError as exc:  # e.g. an integer of 5,000 digits (Python's int-string limit)
                raise DataError(f"{where}: not usable JSON ({str(exc).split(';')[0]})") from None
            except RecursionError:
                raise DataError(f"{where}: JSON nested too deeply; a record is an object of fields") from None
            if not isinstance(record, dict):
                raise DataError(f"{where}: a line must be a JSON object, not {type(record).__name__}")
            records.append((where, record))
        if not records:
            raise DataError(f"{shown(path)}: no records (the file is empty)")
        return self.to_samples(records, f"jsonl:{shown(path.name)}")

    def to_samples(self, records: list[tuple[str, dict[str, Any]]], source: str) -> list[Sample]:
        """Records (each with where it came from, e.g. ``file:line``) as samples, checked field by field."""
        p = self.params
        samples, seen = [], {}
        for where, record in records:
            question = _field(record, p.question_field, where, "question_field")
            key = normalize_question(question)
            if key in seen:
                raise DataError(f"{where}: field '{p.question_field}': duplicate question (first at line {seen[key]}); "
                                "remove one")
            seen[key] = where.rsplit(":", 1)[-1] if ":" in where else where
            answer = _field(record, p.answer_field, where, "answer_field") if p.answer_field else None
            final = _field(record, p.final_field, where, "final_field") if p.final_field else None
            if final is None:
                final, why = self.read_final(answer, plain=True)
                if final is None:
                    raise DataError(f"{where}: field '{p.answer_field}': the {p.checker} checker reads no final answer "
                                    f"from it ({why}); set final_field or end answers with '#### <answer>'")
            if not self.checker.matches_itself(final):
                field = p.final_field or p.answer_field
                raise DataError(f"{where}: field '{field}': the {p.checker} checker can never match the final answer "
                                f"{final[:40]!r}; fix the answer or choose another task.params.checker")
            subtask = _field(record, p.subtask_field, where, "subtask_field") if p.subtask_field else None
            samples.append(Sample.create(question, answer if answer is not None else final, final=final,
                                         source=source, subtask=subtask, meta={"line": where}))
        return samples

    def check(self, sample: Sample, completion: str) -> bool:
        return next(iter(self.readings(sample, completion).values()))

    def readings(self, sample: Sample, completion: str) -> dict[str, bool]:
        return self.checker.score(sample.final, completion)

    def lm_eval_checker(self) -> tuple[Checker, str | None]:
        return self.checker, self.checker.lm_eval_gap

    def answer_checker(self) -> Checker:
        return self.checker


def _field(record: dict[str, Any], name: str, where: str, param: str) -> str:
    if name not in record:
        fields = ", ".join(sorted(record)[:10]) + (", ..." if len(record) > 10 else "") if record else "none"
        raise DataError(f"{where}: no field '{name}' (its fields: {fields}); set task.params.{param}")
    value = record[name]
    if value is None or isinstance(value, (dict, list)) or str(value).strip() == "":
        raise DataError(f"{where}: field '{name}' is empty or not text")
    return str(value)
