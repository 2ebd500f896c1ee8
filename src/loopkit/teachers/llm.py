"""The base of every language-model teacher: the paper's two-call protocol, judging, parsing, and the journal.

For each seed, call 1 shows the seed question as an example and asks for a new one; call 2 asks
for a step-by-step answer to that new question ending in a final line ``#### <answer>`` (the
completion format loopkit trains on, see ``tasks.base.format_answer``). A sample is dropped, with
its reason, when the new question is empty or repeats its seed, or when the answer has no final
answer the task can extract. (The loop then drops new questions that repeat a pool seed, a test
question or an earlier synthetic question.)

The prompts are ``str.format`` templates over a fixed set of variables per template (see
``TEMPLATES``); a task may supply its own defaults (``Task.teacher_templates``) and a recipe may
override any of them. As a judge (``llm-judge``) the teacher grades each student answer 1-10; as
LION's referee it grades its own answer and the student's side by side, in both orders.

Every call goes through the run's journal (``teacher-journal.sqlite``): a call already answered
there is not sent again (unless the run asked for fresh calls). ``Generation.calls`` counts the
calls a sample needed, whether sent now or answered by the journal (which belongs to one run
directory: a journal answer is a call this run paid for before an interruption).

A reply enters the run in one place (``_call``), where it is made what the journal can hold and
what a resume replays: echoed secrets masked, lone surrogates replaced, and a reply far longer than
the token limit allows (a server that ignores it) refused. An answered call whose reply cannot be
used (that one, or an off-spec reply a backend reports as ``Completion.problem``) is journaled as
answered, since it was paid for; its sample is dropped with the problem as the reason, and a
resume replays the same problem instead of paying again.

A subclass implements only ``complete`` (one batch of chat conversations in, one ``Completion``
each out) and names its ``backend`` and ``model_id``. When some calls of a batch fail for good,
``complete`` may raise ``BatchError`` with the others' completions, which the journal then keeps.
"""

from __future__ import annotations

import math
import re
import string
import time
from abc import abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from pydantic import Field, field_validator

from loopkit.component import Params
from loopkit.errors import LoopkitError
from loopkit.journal import FILENAME, Journal, call_key, storable
from loopkit.records import Sample, normalize_question
from loopkit.secrets import redact
from loopkit.seeding import derive_seed
from loopkit.tasks.base import FINAL_MARKER, Task, format_answer
from loopkit.teachers.base import Generation, Judgement, Teacher

Messages = list[dict[str, str]]  # a chat conversation: [{"role": "user", "content": ...}]

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
    "answer": (
        "Answer the question below. Reason step by step, then end with a final line of the form "
        "'#### <answer>', where <answer> is {answer_format}.\n\nQuestion: {question}"
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

# Appended to call 1 for seeds a selector flags "rarer" (LION asks for rarer questions on easy seeds).
RARER_INSTRUCTION = " Make it rarer and harder than the example: an unusual case of the same kind."

# No tokenizer's tokens are this long on average: a longer reply came from a server that ignored the limit.
MAX_CHARS_PER_TOKEN = 32


@dataclass(frozen=True)
class Completion:
    """What a backend returns for one conversation."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0  # USD
    retries: int = 0  # attempts that failed (and were retried) before this answer
    latency: float | None = None  # seconds for this call; None: the batch's wall time is shared by its calls
    problem: str | None = None  # why the reply cannot be used although the server answered (and was paid)


@dataclass(frozen=True)
class Reply:
    """A call's reply as the run uses it (and a resume replays it): its text, or why it cannot be used."""

    text: str
    problem: str | None = None


Done = Callable[[int, "Completion"], None]  # called by a backend as each call of a batch is answered


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


class LLMTeacherParams(Params):
    question_template: str | None = Field(
        None, description="call 1: writes a new question like the seed; default: the task's, else loopkit's")
    answer_template: str | None = Field(None, description="call 2: answers {question}, the new question")
    judge_template: str | None = Field(None, description="llm-judge: grades the student's {answer} to {question}")
    referee_template: str | None = Field(None, description="LION: grades {answer_1} and {answer_2} to {question}")
    temperature: float = Field(0.7, ge=0, description="0 decodes greedily")
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = Field(None, description="sampling seed (where the backend takes one); default: derived from the run seed and round")

    @field_validator("question_template", "answer_template", "judge_template", "referee_template")
    @classmethod
    def _known_variables(cls, template: str | None, info) -> str | None:
        return None if template is None else check_template(info.field_name.removesuffix("_template"), template)


class LLMTeacher(Teacher):
    Params = LLMTeacherParams
    backend: str = "llm"  # the registered name; also the synthetic samples' source
    calls_per_sample = 2  # a new question, then its answer
    max_tokens_field = "max_tokens"  # the param that caps a call's completion tokens

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self.journal: Journal | None = None
        self.use_cache = True
        self.task: Task | None = None

    @property
    @abstractmethod
    def model_id(self) -> str:
        """What identifies the model in journal keys (a name and everything that changes its weights)."""

    @abstractmethod
    def complete(self, prompts: list[Messages], params: dict[str, Any], done: Done | None = None) -> list[Completion]:
        """One completion per conversation, in order, sampled with ``params``.

        A backend that finishes calls one by one (an API) calls ``done(index, completion)`` as each
        finishes, so it is journaled at once and an interruption loses no answered call.
        """

    def sampling(self, seed: int) -> dict[str, Any]:
        """The sampling params of one batch of calls (part of every journal key)."""
        p = self.params
        limit = getattr(p, self.max_tokens_field, None)
        return {"temperature": p.temperature, "top_p": p.top_p, **({self.max_tokens_field: limit} if limit else {}),
                "seed": p.seed if p.seed is not None else seed}

    def bind(self, task: Task) -> None:
        self.task = task

    def open(self, run_dir: Path, use_cache: bool = True) -> None:
        self.journal = Journal(Path(run_dir) / FILENAME)
        self.use_cache = use_cache

    def judge_calls(self, needs: frozenset[str], seeds: list[Sample]) -> int:
        own_answers = sum(s.answer is None for s in seeds)  # the referee writes its own answer where there is none
        return super().judge_calls(needs, seeds) + (own_answers if "referee_gap" in needs else 0)

    def estimate_call(self, seeds: list[Sample]) -> tuple[float, float]:
        """Tokens: a rendered call-1 prompt (~4 characters a token) plus the completion limit; priced by ``price``."""
        sample = seeds[:200]
        prompt = sum(len(self._question_prompt(s)) for s in sample) / max(len(sample), 1) / 4
        completion = float(getattr(self.params, self.max_tokens_field, 0))
        return prompt + completion, self.price(int(prompt), int(completion))

    def price(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD of one call with these token counts (0: a local model)."""
        return 0.0

    def spent(self) -> dict[str, float]:
        if self.journal is None:
            return super().spent()
        t = self.journal.totals()
        return {"teacher_calls_answered": t["calls"], "teacher_tokens": t["tokens"], "usd": t["usd"]}

    def template(self, kind: str) -> str:
        """The ``kind`` template in use: the recipe's, else the task's default, else loopkit's."""
        own = getattr(self.params, f"{kind}_template")
        task_default = self.task.teacher_templates.get(kind) if self.task is not None else None
        return own or task_default or DEFAULT_TEMPLATES[kind]

    def _render(self, kind: str, **values: str) -> str:
        answer_format = self.task.answer_format if self.task is not None else "the answer alone"
        return self.template(kind).format(answer_format=answer_format, **values)

    # -- generation ---------------------------------------------------------------------------

    def generate(self, seeds: list[Sample], round: int, seed: int) -> list[Generation]:
        params = self.sampling(derive_seed(seed, self.backend, round))
        asked = [self._question_prompt(s) for s in seeds]
        replies, question_calls = self._call(asked, params)
        questions = [_strip_question(r.text) for r in replies]
        reasons: list[str | None] = [_unusable("question", r) for r in replies]
        for i, (s, q) in enumerate(zip(seeds, questions)):
            if reasons[i] is not None:
                continue
            if not q:
                reasons[i] = "teacher wrote an empty question"
            elif normalize_question(q) == normalize_question(s.question):
                reasons[i] = "new question repeats its seed"
        todo = [i for i, r in enumerate(reasons) if r is None]
        answers, answer_calls = self._call([self._render("answer", question=questions[i]) for i in todo], params)
        answer_of = dict(zip(todo, answers))
        calls_of = list(question_calls)
        for i, c in zip(todo, answer_calls):
            calls_of[i] += c
        result = []
        for i, s in enumerate(seeds):
            sample = None
            if reasons[i] is None:
                sample, reasons[i] = self._sample(s, questions[i], answer_of[i], round)
            result.append(Generation(s, sample, reasons[i], calls=calls_of[i]))
        return result

    def _question_prompt(self, seed: Sample) -> str:
        prompt = self._render("question", question=seed.question, answer=seed.final or "")
        if seed.meta.get("prompt_variant") == "rarer":
            prompt += RARER_INSTRUCTION
        return prompt

    def _sample(self, seed: Sample, question: str, reply: Reply, round: int) -> tuple[Sample | None, str | None]:
        answer = reply.text
        final = self.task.extract(answer) if reply.problem is None and FINAL_MARKER in answer else None
        if not final:
            return Sample.create(question, source=self.backend, seed_id=seed.id, round=round), (
                _unusable("answer", reply) or f"no final answer: the teacher's answer has no '{FINAL_MARKER} <answer>' line"
            )
        steps = answer.rsplit(FINAL_MARKER, 1)[0]
        sample = Sample.create(
            question, format_answer(final, steps), final=final, source=self.backend, seed_id=seed.id, round=round,
            meta={"teacher_model": self.model_id},
        )
        return sample, None

    # -- judging --------------------------------------------------------------------------------

    def judge(self, seeds: list[Sample], answers: list[str], seed: int) -> Judgement:
        """A 1-10 grade per student answer (NaN where the reply has no 'Score: N'), decoded greedily."""
        prompts = [self._render("judge", question=s.question, answer=a, reference=s.final or "")
                   for s, a in zip(seeds, answers)]
        replies, calls = self._call(prompts, self._judging(seed))
        return Judgement([_score(r) for r in replies], calls=sum(calls))

    def referee(self, seeds: list[Sample], answers: list[str], seed: int) -> Judgement:
        """Per seed: the teacher's own answer's grade minus the student's, averaged over both orders.

        The teacher's own answer is the seed's reference answer where the task has one, else one
        more call (the answer template, sampled like generation). A seed whose own answer is an
        unusable reply gets NaN, without referee calls.
        """
        params = self._judging(seed)
        own: list[str | None] = [s.answer for s in seeds]
        missing = [i for i, a in enumerate(own) if a is None]
        written, own_calls = self._call([self._render("answer", question=seeds[i].question) for i in missing],
                                        self.sampling(seed))
        for i, reply in zip(missing, written):
            own[i] = reply.text if reply.problem is None else None
        graded = [i for i, t in enumerate(own) if t is not None]
        first = [self._render("referee", question=seeds[i].question, answer_1=own[i], answer_2=answers[i]) for i in graded]
        second = [self._render("referee", question=seeds[i].question, answer_1=answers[i], answer_2=own[i]) for i in graded]
        replies, calls = self._call(first + second, params)
        gaps = [math.nan] * len(seeds)
        for j, i in enumerate(graded):
            t1, s1 = _pair(replies[j])
            s2, t2 = _pair(replies[len(graded) + j])
            gaps[i] = ((t1 - s1) + (t2 - s2)) / 2
        return Judgement(gaps, calls=sum(calls) + sum(own_calls))

    def _judging(self, seed: int) -> dict[str, Any]:
        return {**self.sampling(derive_seed(seed, self.backend, "judge")), "temperature": 0.0}

    # -- calls and the journal ----------------------------------------------------------------

    def _call(self, prompts: list[str], params: dict[str, Any]) -> tuple[list[Reply], list[int]]:
        """Each prompt's reply, and the calls it is charged (1 each; a repeat within the batch 0).

        The same conversation twice in one batch is sent once; one the journal has answered is not sent.
        """
        if not prompts:
            return [], []
        if self.journal is None:
            self.journal = Journal(":memory:")  # not opened on a run directory: remember calls in memory
        conversations = [[{"role": "user", "content": p}] for p in prompts]
        keys = [call_key(self.backend, self.model_id, c, params) for c in conversations]
        replies: dict[str, Reply] = {}
        if self.use_cache:
            for key in keys:
                entry = self.journal.lookup(key)
                if entry is not None:
                    replies[key] = Reply(entry.response or "", entry.problem)
        missing = list(dict.fromkeys(k for k in keys if k not in replies))
        sent = [(k, conversations[keys.index(k)]) for k in missing]
        if sent:
            recorded: set[int] = set()

            def record(i: int, c: Completion | None, shared: float = 0.0, error: str | None = None) -> None:
                if i not in recorded:
                    recorded.add(i)
                    key, conversation = sent[i]
                    c = None if c is None else self._received(c, params)
                    self._record(key, conversation, params, c, shared, error)
                    if c is not None:
                        replies[key] = Reply(c.text, c.problem)

            clock = time.monotonic()
            try:
                completions = self.complete([c for _, c in sent], params, record)
            except Exception as exc:
                # The calls of a failed batch that were answered are kept: a re-run does not pay for them again.
                shared = (time.monotonic() - clock) / len(sent)
                answered = exc.completions if isinstance(exc, BatchError) else [None] * len(sent)
                for i, c in enumerate(answered):
                    record(i, c, shared, error=f"{type(exc).__name__}: {exc}" if c is None else None)
                raise
            # A backend that cannot time single calls (a batched local model) shares the batch's wall time.
            shared = (time.monotonic() - clock) / len(sent)
            for i, c in enumerate(completions):
                record(i, c, shared)
        # A call is charged once per run: also when this run's journal answers it (it was paid for
        # before an interruption, and no complete round counted it), never twice within a batch.
        charged = set()
        calls = []
        for key in keys:
            calls.append(0 if key in charged else 1)
            charged.add(key)
        return [replies[k] for k in keys], calls

    def _received(self, c: Completion, params: dict[str, Any]) -> Completion:
        """A reply as this run uses it and the journal keeps it (so a resume replays the same text).

        Text from outside is masked (a backend may echo the key) and made storable; a reply longer
        than the token limit can hold is refused (kept cut to that length, for a look); counts and
        cost are ones SQLite can hold (a NaN cost would fail the insert).
        """
        text, problem = storable(redact(c.text)), c.problem
        limit = params.get(self.max_tokens_field)
        most = limit * MAX_CHARS_PER_TOKEN if limit else None
        if problem is None and most is not None and len(text) > most:
            problem = (f"the reply has {len(text):,} characters, more than {self.max_tokens_field}={limit} tokens "
                       f"can hold; the server ignores {self.max_tokens_field}")
            text = text[:most]
        return replace(c, text=text, problem=None if problem is None else storable(redact(problem)),
                       prompt_tokens=token_count(c.prompt_tokens), completion_tokens=token_count(c.completion_tokens),
                       cost=c.cost if isinstance(c.cost, (int, float)) and 0 <= c.cost < math.inf else 0.0)

    def _record(self, key: str, conversation: Messages, params: dict[str, Any], c: Completion | None, shared: float,
                error: str | None = None) -> None:
        request = {"messages": conversation, "params": params}
        if c is None:
            self.journal.record(key, backend=self.backend, model=self.model_id, request=request, latency=shared,
                                error=redact(error or "unknown error"))
        else:
            self.journal.record(key, backend=self.backend, model=self.model_id, request=request, response=c.text,
                                prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens, cost=c.cost,
                                latency=shared if c.latency is None else c.latency, retries=c.retries, problem=c.problem)


def token_count(tokens: Any) -> int:
    """A token count as a server reports it, 0 where it is none (or more than SQLite can hold)."""
    return tokens if isinstance(tokens, int) and not isinstance(tokens, bool) and 0 <= tokens < 2**63 else 0


def _unusable(call: str, reply: Reply) -> str | None:
    """The drop reason of a sample whose ``call`` ("question" or "answer") got an unusable reply, else None."""
    return None if reply.problem is None else f"unusable reply to the {call} call: {reply.problem}"


def _strip_question(text: str) -> str:
    """The new question: the reply without surrounding blank space or a leading ``Question:`` label."""
    text = text.strip()
    if text.lower().startswith("question:"):
        text = text[len("question:"):].strip()
    return text


_SCORE = re.compile(r"score\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_ANSWER_SCORE = re.compile(r"answer\s*([12])\s*[:=]\s*\**\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


def _grade(value: str) -> float:
    x = float(value)
    return x if 1 <= x <= 10 else math.nan


def _score(reply: Reply) -> float:
    """The last 'Score: N' in a judge's reply (1-10), else NaN."""
    found = _SCORE.findall(reply.text) if reply.problem is None else []
    return _grade(found[-1]) if found else math.nan


def _pair(reply: Reply) -> tuple[float, float]:
    """The grades of 'Answer 1: N' and 'Answer 2: N' in a referee's reply (the last of each), NaN where absent."""
    grades = {"1": math.nan, "2": math.nan}
    for which, value in _ANSWER_SCORE.findall(reply.text if reply.problem is None else ""):
        grades[which] = _grade(value)
    return grades["1"], grades["2"]
