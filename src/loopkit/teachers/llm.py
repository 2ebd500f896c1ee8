"""The base of every language-model teacher: the paper's two-call protocol on top of a backend.

For each seed, call 1 shows the seed question as an example and asks for a new one; call 2 asks
for a step-by-step answer to that new question ending in a final line ``#### <answer>`` (the
completion format loopkit trains on, see ``tasks.base.format_answer``). A sample is dropped, with
its reason, when the new question is empty or repeats its seed, when the answer has no final
answer the task can extract, or when a call's reply cannot be used. (The loop then drops new
questions that repeat a pool seed, a test question or an earlier synthetic question.)
``Generation.calls`` counts the calls a sample needed, whether sent now or answered by the
journal (which belongs to one run directory: a journal answer is a call this run paid for before
an interruption).

The rest of an LLM teacher's work lives beside this module, one job each: the prompt templates
(``teachers.prompts``), judging and refereeing (``teachers.judging``) and the journaled,
de-duplicating calls (``teachers.calls``). Every call of every job goes through ``_call``.

A subclass implements only ``complete`` (one batch of chat conversations in, each with its own
sampling params, one ``Completion`` each out) and names its ``backend`` and ``model_id``. Every
call samples with its own seed, derived from the batch's, its role (question, answer, judge,
referee) and its seed's place in the batch (``calls.per_call``). When some calls of a batch fail
for good, ``complete`` may raise ``BatchError`` with the others' completions, which the journal
then keeps.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any

from pydantic import Field

from loopkit.errors import TeacherCheckError
from loopkit.journal import FILENAME
from loopkit.records import Sample, normalize_question
from loopkit.seeding import derive_seed
from loopkit.tasks.base import FINAL_MARKER, Task, format_answer
from loopkit.teachers import judging
from loopkit.teachers.base import REFEREE_GAP, Generation, Judgement, Teacher
from loopkit.teachers.calls import BatchError, Completion, Done, JournaledCalls, Messages, Reply, per_call, token_count
from loopkit.teachers.prompts import DEFAULT_TEMPLATES, RARER_INSTRUCTION, TEMPLATES, Prompts, TemplateParams

__all__ = ["BatchError", "Completion", "DEFAULT_TEMPLATES", "Done", "LLMTeacher", "LLMTeacherParams", "Messages",
           "RARER_INSTRUCTION", "TEMPLATES", "token_count"]


class LLMTeacherParams(TemplateParams):
    temperature: float = Field(0.7, ge=0, description="0 decodes greedily")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling: sample from the smallest set of tokens with this much probability")
    seed: int | None = Field(None, description="the seed each call's sampling seed is derived from (where the backend "
                                               "takes one); default: derived from the run seed and round")


class LLMTeacher(Teacher):
    Params = LLMTeacherParams
    backend: str = "llm"  # the registered name; also the synthetic samples' source
    calls_per_sample = 2  # a new question, then its answer
    max_tokens_field = "max_tokens"  # the param that caps a call's completion tokens

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self.calls = JournaledCalls(self)
        self.task: Task | None = None
        self.prompts = Prompts(self.params)

    @property
    @abstractmethod
    def model_id(self) -> str:
        """What identifies the model in journal keys (a name and everything that changes its weights)."""

    @abstractmethod
    def complete(self, prompts: list[Messages], params: list[dict[str, Any]], done: Done | None = None) -> list[Completion]:
        """One completion per conversation, in order, each sampled with its own ``params`` (they differ in ``seed``).

        A backend that finishes calls one by one (an API) calls ``done(index, completion)`` as each
        finishes, so it is journaled at once and an interruption loses no answered call.
        """

    def sampling(self, random_seed: int) -> dict[str, Any]:
        """The sampling params of one batch of calls; each call's own (``per_call``) are part of its journal key."""
        p = self.params
        limit = getattr(p, self.max_tokens_field, None)
        return {"temperature": p.temperature, "top_p": p.top_p, **({self.max_tokens_field: limit} if limit else {}),
                "seed": p.seed if p.seed is not None else random_seed}

    def bind(self, task: Task) -> None:
        self.task = task
        self.prompts = Prompts(self.params, task)

    def open(self, run_dir: Path, use_cache: bool = True) -> None:
        self.calls.open(Path(run_dir) / FILENAME, use_cache)

    def judge_calls(self, needs: frozenset[str], seeds: list[Sample]) -> int:
        own_answers = sum(s.answer is None for s in seeds)  # the referee writes its own answer where there is none
        return super().judge_calls(needs, seeds) + (own_answers if REFEREE_GAP in needs else 0)

    def estimate_call(self, seeds: list[Sample]) -> tuple[float, float]:
        """Tokens: a rendered call-1 prompt (~4 characters a token) plus the completion limit; priced by ``price``."""
        sample = seeds[:200]
        prompt = sum(len(self.prompts.question(s)) for s in sample) / max(len(sample), 1) / 4
        completion = float(getattr(self.params, self.max_tokens_field, 0))
        return prompt + completion, self.price(int(prompt), int(completion))

    def price(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD of one call with these token counts (0: a local model)."""
        return 0.0

    def spent(self) -> dict[str, float]:
        t = self.calls.totals()
        if t is None:
            return super().spent()
        return {"teacher_calls_answered": t["calls"], "teacher_tokens": t["tokens"], "usd": t["usd"]}

    def template(self, kind: str) -> str:
        """The ``kind`` template in use: the recipe's, else the task's default, else loopkit's."""
        return self.prompts.template(kind)

    def _call(self, prompts: list[str], params: list[dict[str, Any]]) -> tuple[list[Reply], list[int]]:
        """Each prompt's reply and the calls it is charged, through the journal (see ``teachers.calls``)."""
        return self.calls.send(prompts, params)

    # -- the check call (--check-teacher) --------------------------------------------------------

    def preflight(self) -> str:
        params = {**self.sampling(0), "temperature": 0.0, self.max_tokens_field: 8}
        use_cache, self.calls.use_cache = self.calls.use_cache, False  # a check must reach the backend
        try:
            (reply,), _ = self._call([PREFLIGHT_PROMPT], [params])
        except BatchError as exc:
            field = getattr(exc, "field", None) or "model"
            raise TeacherCheckError(f"teacher.params.{field}: the teacher's check call failed ({exc}); "
                                    f"{_CHECK_FIXES.get(field, 'fix it')}") from None
        finally:
            self.calls.use_cache = use_cache
        if reply.problem is not None:
            raise TeacherCheckError(f"teacher.params.model: the teacher answered the check call with an unusable reply "
                                    f"({reply.problem}); use a chat model the backend serves")
        return f"{self.backend} teacher {self.model_id} answered the check call ({reply.text.strip()[:40]!r})"

    # -- generation: the two-call protocol -----------------------------------------------------

    def generate(self, seeds: list[Sample], round_no: int, random_seed: int) -> list[Generation]:
        params = self.sampling(derive_seed(random_seed, self.backend, round_no))
        replies, question_calls = self._call([self.prompts.question(s) for s in seeds],
                                             per_call(params, "question", range(len(seeds))))
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
        answers, answer_calls = self._call([self.prompts.render("answer", question=questions[i]) for i in todo],
                                           per_call(params, "answer", todo))
        answer_of = dict(zip(todo, answers))
        calls_of = list(question_calls)
        for i, c in zip(todo, answer_calls):
            calls_of[i] += c
        result = []
        for i, s in enumerate(seeds):
            sample = None
            if reasons[i] is None:
                sample, reasons[i] = self._sample(s, questions[i], answer_of[i], round_no)
            result.append(Generation(s, sample, reasons[i], calls=calls_of[i]))
        return result

    def _sample(self, seed: Sample, question: str, reply: Reply, round_no: int) -> tuple[Sample | None, str | None]:
        """The sample of a usable answer whose final answer the task can read (as it reads its seeds'), else why not.

        Without a '####' line, the task's flexible reading (GSM8K's last number) may find the final;
        the sample records which reading did (``meta["final_reading"]``).
        """
        answer = reply.text
        final, how = self.task.read_final(answer) if reply.problem is None else (None, "")
        if final is None:  # ``how`` says why not
            return Sample.create(question, source=self.backend, seed_id=seed.id, round=round_no), (
                _unusable("answer", reply) or f"no final answer: {_teachers(how)}"
            )
        steps = answer.rsplit(FINAL_MARKER, 1)[0] if FINAL_MARKER in answer else answer
        sample = Sample.create(
            question, format_answer(final, steps), final=final, source=self.backend, seed_id=seed.id, round=round_no,
            meta={"teacher_model": self.model_id, "final_reading": how},
        )
        return sample, None

    # -- judging (see teachers.judging) ----------------------------------------------------------

    def judge(self, seeds: list[Sample], answers: list[str], random_seed: int) -> Judgement:
        """A 1-10 grade per student answer (NaN where the reply has no 'Score: N'), decoded greedily."""
        return judging.judge(self._call, self.prompts, seeds, answers, self._judging(random_seed))

    def referee(self, seeds: list[Sample], answers: list[str], random_seed: int) -> Judgement:
        """Per seed: the teacher's own answer's grade minus the student's, averaged over both orders (greedy);
        where a seed has no reference answer, the teacher writes its own (sampled like generation)."""
        return judging.referee(self._call, self.prompts, seeds, answers, self._judging(random_seed),
                               self.sampling(random_seed))

    def _judging(self, random_seed: int) -> dict[str, Any]:
        return {**self.sampling(derive_seed(random_seed, self.backend, "judge")), "temperature": 0.0}


PREFLIGHT_PROMPT = "Reply with the word OK."
# What to do when the check call fails, by the recipe field a backend blames (``BatchError.field``).
_CHECK_FIXES = {
    "api_base": "check the server's address (e.g. http://127.0.0.1:8000/v1) and that it is up",
    "model": "name a model the backend serves",
    "api_key_env": "export a valid key in the variable api_key_env names",
}


def _unusable(call: str, reply: Reply) -> str | None:
    """The drop reason of a sample whose ``call`` ("question" or "answer") got an unusable reply, else None."""
    return None if reply.problem is None else f"unusable reply to the {call} call: {reply.problem}"


def _teachers(why: str) -> str:
    """Why the teacher's answer has no final answer, as a drop reason."""
    return f"the teacher's answer has {why}" if why.startswith(("no ", "nothing ")) else why


def _strip_question(text: str) -> str:
    """The new question: the reply without surrounding blank space or a leading ``Question:`` label."""
    text = text.strip()
    if text.lower().startswith("question:"):
        text = text[len("question:"):].strip()
    return text
