"""An LLM teacher's prompts: ``str.format`` templates over a fixed set of variables, and their validation.

Each template kind has its own variables (``TEMPLATES``); every template must use ``{question}``.
The template in use is the recipe's, else the task's default (``Task.teacher_templates``), else
loopkit's (``DEFAULT_TEMPLATES``). A selector may flag a seed with a prompt variant
(``records.RARER``: LION's easy seeds), which call 1 honours.
"""

from __future__ import annotations

import string

from pydantic import Field, field_validator

from loopkit.component import Params
from loopkit.records import RARER, Sample, prompt_variant
from loopkit.tasks.base import Task

# Each template's variables. Every template must use {question}.
TEMPLATES: dict[str, frozenset[str]] = {
    # call 1: {question} and {answer} are the seed's (answer: its reference final answer, or "")
    "question": frozenset({"question", "answer", "answer_format"}),
    # call 2: {question} is the new question
    "answer": frozenset({"question", "answer_format"}),
    # llm-judge: the seed {question}, the student's {answer}, the seed's {reference} final answer (or "")
    "judge": frozenset({"question", "answer", "reference", "answer_format"}),
    # LION's referee: the seed {question} and two answers to it
    "referee": frozenset({"question", "answer_1", "answer_2"}),
}

DEFAULT_TEMPLATES = {
    "question": (
        "Here is an example question:\n\n{question}\n\n"
        "Write one new question of the same kind and difficulty. Reply with the new question only."
    ),
    # A worked example of the final line: from the instruction alone SmolLM2-135M wrote it in 0 of 16
    # answers, with the example in 8 of 16 (benchmarks/README.md).
    "answer": (
        "Answer the question below. Think step by step in a few short sentences, then write the final answer "
        "on its own last line, starting with '#### ', where the answer is {answer_format}.\n\n"
        "Example:\nQuestion: Ann has 3 red pens and 4 blue pens. How many pens does she have?\n"
        "Ann has 3 + 4 = 7 pens.\n#### 7\n\nQuestion: {question}"
    ),
    "judge": (
        "Grade a student's answer to the question below from 1 (wrong or useless) to 10 (correct and "
        "complete).\n\nQuestion: {question}\n\nStudent's answer: {answer}\n\n"
        "Reply with one line of the form 'Score: <1-10>'."
    ),
    "referee": (
        "Two answers to the question below follow. Grade each from 1 (wrong or useless) to 10 "
        "(correct and complete).\n\nQuestion: {question}\n\nAnswer 1: {answer_1}\n\nAnswer 2: {answer_2}\n\n"
        "Reply with two lines of the form 'Answer 1: <1-10>' and 'Answer 2: <1-10>'."
    ),
}

# Appended to call 1 for seeds a selector flags RARER (LION asks for rarer questions on easy seeds).
RARER_INSTRUCTION = " Make it rarer and harder than the example: an unusual case of the same kind."


def template_variables(template: str) -> set[str]:
    """The variables a ``str.format`` template uses (``{a.b}`` and ``{a[0]}`` use ``a``)."""
    names = set()
    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None:
            names.add(field.split(".", 1)[0].split("[", 1)[0])
    return names


def check_template(kind: str, template: str) -> str:
    """``template`` if it is a valid ``kind`` template, else ValueError saying what to fix."""
    try:
        used = template_variables(template)
    except ValueError as exc:
        raise ValueError(f"not a valid format string ({exc}); write a literal brace as {{{{ or }}}}") from None
    allowed = TEMPLATES[kind]
    unknown = sorted(used - allowed)
    if unknown:
        raise ValueError(
            f"unknown template variable {{{unknown[0]}}}; the variables are "
            + ", ".join(f"{{{v}}}" for v in sorted(allowed))
        )
    if "question" not in used:
        raise ValueError("the template must contain {question}")
    return template


class TemplateParams(Params):
    """A recipe's own templates (``teacher.params.<kind>_template``), validated before the run."""

    question_template: str | None = Field(
        None, description="call 1: writes a new question like the seed; default: the task's, else loopkit's")
    answer_template: str | None = Field(None, description="call 2: answers {question}, the new question")
    judge_template: str | None = Field(None, description="llm-judge: grades the student's {answer} to {question}")
    referee_template: str | None = Field(None, description="LION: grades {answer_1} and {answer_2} to {question}")

    @field_validator("question_template", "answer_template", "judge_template", "referee_template")
    @classmethod
    def _known_variables(cls, template: str | None, info) -> str | None:
        return None if template is None else check_template(info.field_name.removesuffix("_template"), template)


class Prompts:
    """The prompts of one teacher for one task: the templates in use, rendered."""

    def __init__(self, params: TemplateParams, task: Task | None = None) -> None:
        self.params, self.task = params, task

    def template(self, kind: str) -> str:
        """The ``kind`` template in use: the recipe's, else the task's default, else loopkit's."""
        own = getattr(self.params, f"{kind}_template")
        task_default = self.task.teacher_templates.get(kind) if self.task is not None else None
        return own or task_default or DEFAULT_TEMPLATES[kind]

    def render(self, kind: str, **values: str) -> str:
        answer_format = self.task.answer_format if self.task is not None else "the answer alone"
        return self.template(kind).format(answer_format=answer_format, **values)

    def question(self, seed: Sample) -> str:
        """Call 1 for ``seed``: write a new question like it (a rarer one if its selector asked)."""
        prompt = self.render("question", question=seed.question, answer=seed.final or "")
        if prompt_variant(seed) == RARER:
            prompt += RARER_INSTRUCTION
        return prompt
