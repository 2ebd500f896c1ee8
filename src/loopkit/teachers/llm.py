"""The base of every language-model teacher: the paper's two-call protocol, parsing, and the journal.

For each seed, call 1 shows the seed question as an example and asks for a new one; call 2 asks
for a step-by-step answer to that new question ending in a final line ``#### <answer>`` (the
completion format loopkit trains on, see ``tasks.base.format_answer``). A sample is dropped, with
its reason, when the new question is empty or repeats its seed, or when the answer has no final
answer the task can extract.

Every call goes through the run's journal (``teacher-journal.sqlite``): a call already answered
there is not sent again. ``Generation.calls`` counts the calls actually sent to the backend, so a
sample replayed from the journal costs 0 calls.

A subclass implements only ``complete`` (one batch of chat conversations in, one ``Completion``
each out) and names its ``backend`` and ``model_id``. When some calls of a batch fail for good,
``complete`` may raise ``BatchError`` with the others' completions, which the journal then keeps.
"""

from __future__ import annotations

import string
import time
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from loopkit.component import Params
from loopkit.errors import LoopkitError
from loopkit.journal import FILENAME, Journal, call_key
from loopkit.records import Sample, normalize_question
from loopkit.seeding import derive_seed
from loopkit.tasks.base import FINAL_MARKER, Task, format_answer
from loopkit.teachers.base import Generation, Teacher

Messages = list[dict[str, str]]  # a chat conversation: [{"role": "user", "content": ...}]

TEMPLATE_VARIABLES = frozenset({"question"})

QUESTION_TEMPLATE = (
    "Here is an example question:\n\n{question}\n\n"
    "Write one new question of the same kind and difficulty. Reply with the new question only."
)
ANSWER_TEMPLATE = (
    "Answer the question below. Reason step by step, then end with a final line of the form "
    "'#### <answer>'.\n\nQuestion: {question}"
)


@dataclass(frozen=True)
class Completion:
    """What a backend returns for one conversation."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0  # USD
    retries: int = 0  # attempts that failed (and were retried) before this answer


class BatchError(LoopkitError):
    """Some calls of a batch failed for good; ``completions`` holds the others' answers (None where one failed)."""

    def __init__(self, message: str, completions: list[Completion | None]) -> None:
        super().__init__(message)
        self.completions = completions


def template_variables(template: str) -> set[str]:
    """The variables a ``str.format`` template uses (``{a.b}`` and ``{a[0]}`` use ``a``)."""
    names = set()
    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None:
            names.add(field.split(".", 1)[0].split("[", 1)[0])
    return names


def _check_template(template: str) -> str:
    try:
        used = template_variables(template)
    except ValueError as exc:
        raise ValueError(f"not a valid format string ({exc}); write a literal brace as {{{{ or }}}}") from None
    unknown = sorted(used - TEMPLATE_VARIABLES)
    if unknown:
        raise ValueError(
            f"unknown template variable {{{unknown[0]}}}; the variables are "
            + ", ".join(f"{{{v}}}" for v in sorted(TEMPLATE_VARIABLES))
        )
    if "question" not in used:
        raise ValueError("the template must contain {question}")
    return template


class LLMTeacherParams(Params):
    question_template: str = Field(QUESTION_TEMPLATE, description="call 1: writes a new question from {question}, the seed")
    answer_template: str = Field(ANSWER_TEMPLATE, description="call 2: answers {question}, the new question")

    @field_validator("question_template", "answer_template")
    @classmethod
    def _known_variables(cls, template: str) -> str:
        return _check_template(template)


class LLMTeacher(Teacher):
    Params = LLMTeacherParams
    backend: str = "llm"  # the registered name; also the synthetic samples' source

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self.journal: Journal | None = None

    @property
    @abstractmethod
    def model_id(self) -> str:
        """What identifies the model in journal keys (a name and everything that changes its weights)."""

    @abstractmethod
    def complete(self, prompts: list[Messages], params: dict[str, Any]) -> list[Completion]:
        """One completion per conversation, in order, sampled with ``params``."""

    def sampling(self, seed: int) -> dict[str, Any]:
        """The sampling params of one batch of calls (part of every journal key)."""
        return {"seed": seed}

    def bind(self, task: Task) -> None:
        self.task = task

    def open(self, run_dir: Path) -> None:
        self.journal = Journal(Path(run_dir) / FILENAME)

    def generate(self, seeds: list[Sample], round: int, seed: int) -> list[Generation]:
        params = self.sampling(derive_seed(seed, self.backend, round))
        asked = [self.params.question_template.format(question=s.question) for s in seeds]
        questions, question_calls = self._call(asked, params)
        questions = [_strip_question(q) for q in questions]
        reasons: list[str | None] = [None] * len(seeds)
        for i, (s, q) in enumerate(zip(seeds, questions)):
            if not q:
                reasons[i] = "teacher wrote an empty question"
            elif normalize_question(q) == normalize_question(s.question):
                reasons[i] = "new question repeats its seed"
        todo = [i for i, r in enumerate(reasons) if r is None]
        answers, answer_calls = self._call([self.params.answer_template.format(question=questions[i]) for i in todo], params)
        answer_of = dict(zip(todo, answers))
        calls_of = [question_calls[i] for i in range(len(seeds))]
        for i, c in zip(todo, answer_calls):
            calls_of[i] += c
        result = []
        for i, s in enumerate(seeds):
            sample = None
            if reasons[i] is None:
                sample, reasons[i] = self._sample(s, questions[i], answer_of[i], round)
            result.append(Generation(s, sample, reasons[i], calls=calls_of[i]))
        return result

    def _sample(self, seed: Sample, question: str, answer: str, round: int) -> tuple[Sample | None, str | None]:
        final = self.task.extract(answer) if FINAL_MARKER in answer else None
        if not final:
            return Sample.create(question, source=self.backend, seed_id=seed.id, round=round), (
                f"no final answer: the teacher's answer has no '{FINAL_MARKER} <answer>' line"
            )
        steps = answer.rsplit(FINAL_MARKER, 1)[0]
        sample = Sample.create(
            question, format_answer(final, steps), final=final, source=self.backend, seed_id=seed.id, round=round,
            meta={"teacher_model": self.model_id},
        )
        return sample, None

    def _call(self, prompts: list[str], params: dict[str, Any]) -> tuple[list[str], list[int]]:
        """Each prompt's response text, and the backend calls it cost (0 when the journal answered it).

        The same conversation twice in one batch is sent once.
        """
        if self.journal is None:
            self.journal = Journal(":memory:")  # not opened on a run directory: remember calls in memory
        conversations = [[{"role": "user", "content": p}] for p in prompts]
        keys = [call_key(self.backend, self.model_id, c, params) for c in conversations]
        texts: dict[str, str] = {}
        for key in keys:
            entry = self.journal.lookup(key)
            if entry is not None:
                texts[key] = entry.response or ""
        missing = list(dict.fromkeys(k for k in keys if k not in texts))
        sent = {k: conversations[keys.index(k)] for k in missing}
        if missing:
            clock = time.monotonic()
            try:
                completions = self.complete(list(sent.values()), params)
            except Exception as exc:
                # A batch's wall time is shared equally by its calls. The calls of a failed batch that
                # were answered are kept: a re-run does not pay for them again.
                latency = (time.monotonic() - clock) / len(missing)
                answered = exc.completions if isinstance(exc, BatchError) else [None] * len(sent)
                for (key, conversation), c in zip(sent.items(), answered):
                    self._record(key, conversation, params, c, latency, error=f"{type(exc).__name__}: {exc}" if c is None else None)
                raise
            latency = (time.monotonic() - clock) / len(missing)
            for (key, conversation), c in zip(sent.items(), completions):
                self._record(key, conversation, params, c, latency)
                texts[key] = c.text
        charged = set()
        calls = []
        for key in keys:
            calls.append(1 if key in sent and key not in charged else 0)
            charged.add(key)
        return [texts[k] for k in keys], calls

    def _record(self, key: str, conversation: Messages, params: dict[str, Any], c: Completion | None, latency: float,
                error: str | None = None) -> None:
        request = {"messages": conversation, "params": params}
        if c is None:
            self.journal.record(key, backend=self.backend, model=self.model_id, request=request, latency=latency, error=error)
        else:
            self.journal.record(key, backend=self.backend, model=self.model_id, request=request, response=c.text,
                                prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens, cost=c.cost,
                                latency=latency, retries=c.retries)


def _strip_question(text: str) -> str:
    """The new question: the reply without surrounding blank space or a leading ``Question:`` label."""
    text = text.strip()
    if text.lower().startswith("question:"):
        text = text[len("question:"):].strip()
    return text
