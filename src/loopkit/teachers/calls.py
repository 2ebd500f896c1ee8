"""An LLM teacher's calls: journaled, de-duplicated, and made what the run can keep.

Every call goes through the run's journal (``teacher-journal.sqlite``): a call already answered
there is not sent again (unless the run asked for fresh calls), and the same conversation twice in
one batch is sent once. A call is charged once per run: also when this run's journal answers it (it
was paid for before an interruption, and no complete round counted it), never twice within a batch.

A reply enters the run in one place (``JournaledCalls._received``), where it is made what the
journal can hold and what a resume replays: echoed secrets masked, lone surrogates replaced, and a
reply far longer than the token limit allows (a server that ignores it) refused. An answered call
whose reply cannot be used (that one, or an off-spec reply a backend reports as
``Completion.problem``) is journaled as answered, since it was paid for; its sample is dropped with
the problem as the reason, and a resume replays the same problem instead of paying again.

A backend (``Backend``: an ``LLMTeacher`` subclass) answers one batch of chat conversations with
one ``Completion`` each. When some calls of a batch fail for good, it may raise ``BatchError`` with
the others' completions, which the journal then keeps.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

from loopkit.errors import LoopkitError
from loopkit.journal import Journal, call_key, storable
from loopkit.secrets import redact
from loopkit.seeding import derive_seed

Messages = list[dict[str, str]]  # a chat conversation: [{"role": "user", "content": ...}]

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


Done = Callable[[int, Completion], None]  # called by a backend as each call of a batch is answered


class BatchError(LoopkitError):
    """Some calls of a batch failed for good; ``completions`` holds the others' answers (None where one failed).

    ``field``: the teacher param most likely at fault (``api_base``, ``model``, ``api_key_env``), if known.
    """

    def __init__(self, message: str, completions: list[Completion | None], field: str | None = None) -> None:
        super().__init__(message)
        self.completions = completions
        self.field = field


class Backend(Protocol):
    """What sends the calls: a name, a model, and a batch of conversations in, completions out."""

    backend: str  # the registered name
    max_tokens_field: str  # the sampling param that caps a call's completion tokens

    @property
    def model_id(self) -> str: ...

    def complete(self, prompts: list[Messages], params: list[dict[str, Any]], done: Done | None = None) -> list[Completion]: ...

    def answered(self, n: int = 1) -> None: ...  # progress: n more calls answered (``Teacher.answered``)


def per_call(params: dict[str, Any], role: str, items: Iterable[int]) -> list[dict[str, Any]]:
    """Each call's sampling params: the batch's, with a seed derived from the batch's seed, ``role`` and the item."""
    return [{**params, "seed": derive_seed(params["seed"], role, i)} for i in items]


class JournaledCalls:
    """A backend's calls through a journal (in memory until ``open`` names the run's file)."""

    def __init__(self, teacher: Backend) -> None:
        self.teacher = teacher
        self.journal: Journal | None = None
        self.use_cache = True

    def open(self, path: Path, use_cache: bool = True) -> None:
        self.journal = Journal(path)
        self.use_cache = use_cache

    def totals(self) -> dict[str, float] | None:
        """The journal's totals (answered calls, tokens, USD), or None before any journal exists."""
        return None if self.journal is None else self.journal.totals()

    def send(self, prompts: list[str], params: list[dict[str, Any]]) -> tuple[list[Reply], list[int]]:
        """Each prompt's reply (one user turn each, sampled with its ``params``), and the calls it is charged
        (1 each; a repeat within the batch 0).

        The same call (conversation and params) twice in one batch is sent once; one the journal has
        answered is not sent.
        """
        if not prompts:
            return [], []
        if len(params) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(params)} sampling params")
        if self.journal is None:
            self.journal = Journal(":memory:")  # not opened on a run directory: remember calls in memory
        conversations = [[{"role": "user", "content": p}] for p in prompts]
        keys = [call_key(self.teacher.backend, self.teacher.model_id, c, p) for c, p in zip(conversations, params)]
        replies: dict[str, Reply] = {}
        if self.use_cache:
            for key in keys:
                entry = self.journal.lookup(key)
                if entry is not None:
                    replies[key] = Reply(entry.response or "", entry.problem)
        missing = list(dict.fromkeys(k for k in keys if k not in replies))
        sent = [(k, conversations[keys.index(k)], params[keys.index(k)]) for k in missing]
        reported = self.teacher.answered_calls
        self.teacher.answered(len(keys) - sum(k in missing for k in keys))  # the journal answered these at once
        if sent:
            recorded: set[int] = set()
            sending = True  # a call recorded while the backend works is progress (after it, the batch's end says so)

            def record(i: int, c: Completion | None, shared: float = 0.0, error: str | None = None) -> None:
                if i not in recorded:
                    recorded.add(i)
                    key, conversation, p = sent[i]
                    c = None if c is None else self._received(c, p)
                    self._record(key, conversation, p, c, shared, error)
                    if c is not None:
                        replies[key] = Reply(c.text, c.problem)
                    if sending:
                        self.teacher.answered(1)

            clock = time.monotonic()
            try:
                completions = self.teacher.complete([c for _, c, _ in sent], [p for _, _, p in sent], record)
            except Exception as exc:
                sending = False
                # The calls of a failed batch that were answered are kept: a re-run does not pay for them again.
                shared = (time.monotonic() - clock) / len(sent)
                answered = exc.completions if isinstance(exc, BatchError) else [None] * len(sent)
                for i, c in enumerate(answered):
                    record(i, c, shared, error=f"{type(exc).__name__}: {exc}" if c is None else None)
                raise
            sending = False
            # A backend that cannot time single calls (a batched local model) shares the batch's wall time.
            shared = (time.monotonic() - clock) / len(sent)
            for i, c in enumerate(completions):
                record(i, c, shared)
        self.teacher.answered(max(len(keys) - (self.teacher.answered_calls - reported), 0))  # the batch is answered
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
        field = self.teacher.max_tokens_field
        limit = params.get(field)
        most = limit * MAX_CHARS_PER_TOKEN if limit else None
        if problem is None and most is not None and len(text) > most:
            problem = (f"the reply has {len(text):,} characters, more than {field}={limit} tokens "
                       f"can hold; the server ignores {field}")
            text = text[:most]
        return replace(c, text=text, problem=None if problem is None else storable(redact(problem)),
                       prompt_tokens=token_count(c.prompt_tokens), completion_tokens=token_count(c.completion_tokens),
                       cost=c.cost if isinstance(c.cost, (int, float)) and 0 <= c.cost < math.inf else 0.0)

    def _record(self, key: str, conversation: Messages, params: dict[str, Any], c: Completion | None, shared: float,
                error: str | None = None) -> None:
        request = {"messages": conversation, "params": params}
        backend, model = self.teacher.backend, self.teacher.model_id
        if c is None:
            self.journal.record(key, backend=backend, model=model, request=request, latency=shared,
                                error=redact(error or "unknown error"))
        else:
            self.journal.record(key, backend=backend, model=model, request=request, response=c.text,
                                prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens, cost=c.cost,
                                latency=shared if c.latency is None else c.latency, retries=c.retries, problem=c.problem)


def token_count(tokens: Any) -> int:
    """A token count as a server reports it, 0 where it is none (or more than SQLite can hold)."""
    return tokens if isinstance(tokens, int) and not isinstance(tokens, bool) and 0 <= tokens < 2**63 else 0
