"""The task interface: seed pool, held-out test split, prompts and answer checking."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

from loopkit.checkers import FINAL_MARKER, Checker, final_part
from loopkit.component import Component
from loopkit.records import Sample


@dataclass(frozen=True)
class TaskData:
    pool: list[Sample]  # seed questions the selector chooses from
    test: list[Sample]  # held-out questions the student is evaluated on
    warnings: tuple[str, ...] = ()  # data problems worth saying but not fatal (shown by run and validate)


class Task(Component):
    """Owns the data and what counts as a correct answer."""

    has_reference_answers: bool = True
    # What an LLM teacher is told a final answer looks like ({answer_format} in its templates).
    answer_format: str = "the final answer alone"
    # The task's own default teacher prompts, by template kind (see teachers.llm.TEMPLATES).
    teacher_templates: dict[str, str] = {}

    @abstractmethod
    def load(self, seed: int) -> TaskData:
        """Build the seed pool and the test split (deterministic for a seed)."""

    def prompt(self, question: str) -> str:
        """The text the student sees for a question."""
        return f"Question: {question}\nAnswer:"

    def read_final(self, answer: str, plain: bool = False) -> tuple[str | None, str]:
        """A worked answer's final answer and the reading that found it, or (None, why): see ``Checker.final``."""
        return self.answer_checker().final(answer, plain)

    def answer_checker(self) -> Checker:
        """How this task reads a final answer (a task whose ``check`` is its own: verbatim text)."""
        return Checker()

    def extract(self, completion: str) -> str | None:
        """The final answer in a completion: after the last ``####`` if any, else its first line."""
        return final_part(completion)

    @abstractmethod
    def check(self, sample: Sample, completion: str) -> bool:
        """Whether a completion answers the sample's question correctly."""

    def readings(self, sample: Sample, completion: str) -> dict[str, bool]:
        """``check`` under each way the task reads answers (e.g. GSM8K's strict and flexible); the first is ``check``."""
        return {"match": self.check(sample, completion)}

    def lm_eval_checker(self) -> tuple[Checker, str | None]:
        """The checker an exported lm-evaluation-harness task scores with, and where that can differ from
        ``check`` (None: nowhere). A task whose ``check`` is its own says so; lm-eval then compares the final
        answer (after ``####``, else the first line) verbatim with the reference."""
        return Checker(), ("this task's own answer check is unknown to lm-eval, which compares the final answer "
                           "verbatim with the reference")


def format_answer(final: str, steps: str | None = None) -> str:
    """The completion a student is trained on: worked steps (if any), then the final answer."""
    if steps:
        return f"{steps.strip()}\n{FINAL_MARKER} {final}"
    return final
