"""A teacher behind any API litellm speaks: a hosted provider, or an OpenAI-compatible ``api_base``.

Calls run concurrently (at most ``concurrency`` at a time). Each attempt must end within
``timeout`` seconds in all (litellm's own timeout bounds each read, so a server that drips bytes
would hold a call forever). A call that hits a 429, a 5xx, a body that is not JSON, a dropped
connection or the deadline is retried up to ``max_retries`` times, after the server's
``Retry-After`` when it sends one, else after an exponential backoff with jitter; the retries a
call needed are recorded in the journal. litellm's own retries are off.

A reply that is JSON but no usable chat completion (no choices, no message, null content, content
as a list of parts) was answered, and paid: it becomes ``Completion.problem``, which the journal
keeps and the sample is dropped for (see ``teachers.llm``); it is not sent again.

``api_base`` may list several OpenAI-compatible endpoints serving the same model (e.g. several vLLM
servers): litellm's own ``Router`` then spreads the calls over them, and within each attempt fails
over to another endpoint (the Router's retries, immediate; it cools a failing endpoint down); the
retries above still wrap each attempt. Which endpoint answered is no part of a call's journal key.

The API key is read from the environment variable named by ``api_key_env`` (a recipe never holds a
key); a missing variable is an error before any call. Tokens come from the response's usage and
the cost in USD from litellm's offline cost map (0 for a model it does not know).

Needs ``pip install 'loopkit[litellm]'``; litellm is imported on the first call.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import os
import random
import re
import time
import warnings
from typing import Any

from pydantic import Field, field_validator

from loopkit import stopping
from loopkit.errors import LoopkitError, UnavailableError
from loopkit.secrets import redact, remember
from loopkit.tasks.base import Task
from loopkit.teachers.calls import BatchError, Completion, Done, Messages, token_count
from loopkit.teachers.llm import LLMTeacher, LLMTeacherParams


ROUTED = "loopkit-teacher"  # the Router's name for the model group of every api_base endpoint


class TeacherCallError(BatchError):
    """A teacher call that still failed after its retries."""

    def __init__(self, message: str, completions: list[Completion | None] | None = None, field: str | None = None) -> None:
        super().__init__(message, completions or [], field)


class LiteLLMTeacher(LLMTeacher):
    backend = "litellm"

    @classmethod
    def missing(cls) -> str | None:
        return None if importlib.util.find_spec("litellm") else "litellm (pip install 'loopkit[litellm]')"

    class Params(LLMTeacherParams):
        model: str = Field(description="a litellm model string, e.g. openai/gpt-4o-mini")
        api_base: str | list[str] | None = Field(
            None, description="an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1, or a list of servers "
                              "of the same model (calls spread over them by litellm's Router, with failover)")
        api_key_env: str | None = Field(
            None, description="the environment variable that holds the API key; default: the provider's own")
        concurrency: int = Field(8, ge=1, description="calls in flight at once")
        timeout: float = Field(60.0, gt=0, description="seconds a call attempt may take in all (not per read)")
        max_retries: int = Field(5, ge=0, description="retries of a call on 429, 5xx, malformed responses and timeouts")
        backoff: float = Field(1.0, gt=0, description="seconds before the first retry; doubles after each")
        max_backoff: float = Field(60.0, gt=0, description="the longest wait before a retry, Retry-After included")
        max_tokens: int = Field(512, ge=1, description="most tokens per completion (the API's max_tokens)")

        @field_validator("api_key_env")
        @classmethod
        def _a_name_not_a_key(cls, name: str | None) -> str | None:
            if name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError("must name an environment variable (e.g. OPENAI_API_KEY), not hold the key itself; "
                                 "export the key in that variable")
            return name

        @field_validator("api_base")
        @classmethod
        def _endpoints(cls, base: str | list[str] | None) -> str | list[str] | None:
            if isinstance(base, list):
                if not base:
                    raise ValueError("lists no endpoint; give one URL or a list of URLs")
                if len(set(base)) < len(base):
                    raise ValueError("lists an endpoint twice; list each server once")
                return base[0] if len(base) == 1 else base
            return base

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False  # set on a stop (Ctrl-C, SIGTERM, SIGHUP): no new call or retry is sent
        self._in_flight = 0  # calls sent and not yet answered
        self._router: Any = None  # litellm's Router over several api_base endpoints (built on the first call)

    @property
    def model_id(self) -> str:
        # Not the api_base: the same model behind another endpoint answers from the journal.
        return self.params.model

    def price(self, prompt_tokens: int, completion_tokens: int) -> float:
        try:
            prompt_usd, completion_usd = _litellm().cost_per_token(
                model=self.params.model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        except Exception:  # a model the offline cost map does not know
            return 0.0
        return float(prompt_usd + completion_usd)

    def bind(self, task: Task) -> None:
        super().bind(task)
        self._api_key()  # a missing key fails validation, long before the first call

    def _api_key(self) -> str | None:
        name = self.params.api_key_env
        if name is None:
            return None
        key = os.environ.get(name)
        if not key:
            raise UnavailableError(f"teacher.params.api_key_env: the environment variable {name} is not set; "
                               f"export {name}=<your key>")
        remember(key)  # a backend that echoes it (in a reply, in an error) has it masked
        return key

    def complete(self, prompts: list[Messages], params: list[dict[str, Any]], done: Done | None = None) -> list[Completion]:
        key = self._api_key()
        if self._loop is None:
            self._loop = asyncio.new_event_loop()  # one loop for the teacher's life: litellm keeps state on it
        self._stopping = False
        batch = self._loop.create_task(self._complete_all(prompts, params, key, done))
        # A stop (Ctrl-C, SIGTERM, SIGHUP) sends nothing new, but lets the calls in flight finish (they
        # are paid for) and be journaled through ``done`` until its grace period ends; then it is raised.
        try:
            with stopping.deferred(on_stop=self._stop_sending):
                results = self._loop.run_until_complete(self._within_grace(batch))
        except KeyboardInterrupt:
            if not batch.done():  # an interrupt no handler deferred (library use): the same wait
                self._stop_sending()
                self._loop.run_until_complete(self._within_grace(batch))
            raise
        failed = [r for r in results if isinstance(r, BaseException)]
        if not failed:
            return results
        bugs = [r for r in failed if not isinstance(r, TeacherCallError)]
        if bugs:
            raise bugs[0]
        more = f" ({len(failed) - 1} more calls of this batch failed too)" if len(failed) > 1 else ""
        raise TeacherCallError(f"{failed[0]}{more}", [None if isinstance(r, BaseException) else r for r in results],
                               failed[0].field)

    async def _complete_all(self, prompts: list[Messages], params: list[dict[str, Any]], key: str | None,
                            done: Done | None) -> list[Any]:
        """Each conversation's Completion, or the exception that ended its call."""
        litellm = _litellm()
        gate = asyncio.Semaphore(self.params.concurrency)

        async def one(i: int, messages: Messages) -> Completion:
            async with gate:
                self._in_flight += 1
                try:
                    completion = await self._complete_one(litellm, messages, params[i], key)
                finally:
                    self._in_flight -= 1
            if done is not None:
                done(i, completion)
            return completion

        return list(await asyncio.gather(*(one(i, m) for i, m in enumerate(prompts)), return_exceptions=True))

    def _stop_sending(self) -> None:
        self._stopping = True  # called from a signal handler: only set the flag

    async def _within_grace(self, batch: asyncio.Task) -> list[Any]:
        """The batch's results; once stopping, only until the grace period ends (then the calls in flight are abandoned)."""
        deadline = None
        while not batch.done():
            if self._stopping and deadline is None:
                deadline = stopping.deadline()
            await asyncio.wait([batch], timeout=0.1 if deadline is None else max(deadline - time.monotonic(), 0))
            if deadline is not None and not batch.done() and time.monotonic() >= deadline:
                stopping.abandon(self._in_flight)
                batch.cancel()
                await asyncio.wait([batch], timeout=1.0)
                return []
        return batch.result()

    def _send(self, litellm: Any, key: str | None) -> tuple[Any, dict[str, Any], float]:
        """The function one attempt calls, its arguments beside the messages, and the attempt's deadline: litellm
        itself for one endpoint; for several, litellm's Router, which picks one and fails over to another (its retries:
        one more than the endpoints, as a pick may repeat a failing endpoint until the Router cools it down)."""
        p = self.params
        if not isinstance(p.api_base, list):
            single = {"model": p.model, "api_base": p.api_base, "api_key": key, "num_retries": 0, "max_retries": 0}
            return litellm.acompletion, single, p.timeout
        if self._router is None:
            self._router = litellm.Router(
                model_list=[{"model_name": ROUTED, "litellm_params": {
                    "model": p.model, "api_base": base, "api_key": key, "timeout": p.timeout, "max_retries": 0}}
                    for base in p.api_base],
                num_retries=len(p.api_base), retry_after=0, timeout=p.timeout,  # a pick may repeat a failed one
            )
        return self._router.acompletion, {"model": ROUTED}, p.timeout * (len(p.api_base) + 1)

    async def _complete_one(self, litellm: Any, messages: Messages, params: dict[str, Any], key: str | None) -> Completion:
        p = self.params
        endpoints = p.api_base if isinstance(p.api_base, str) else " or ".join(p.api_base or [])
        target = p.model + (f" at {endpoints}" if endpoints else "")
        send, where, deadline = self._send(litellm, key)
        retries = 0
        clock = time.monotonic()  # this call's latency includes its retries and their waits
        while True:
            if self._stopping:
                raise TeacherCallError(f"teacher call to {target} not sent: the run is stopping")
            try:
                response = await asyncio.wait_for(send(
                    messages=messages, timeout=p.timeout, drop_params=True, **where, **params), deadline)
                reply, cost = response.model_dump(), _cost(litellm, response)
                break
            except Exception as exc:
                reply = _unreadable_reply(exc)
                if reply is not None:  # answered, but litellm could not read it: paid, so not sent again
                    cost = None
                    break
                error = redact(_describe(exc, p.timeout))  # never let a key reach the journal or a log
                if not _retryable(litellm, exc):
                    raise TeacherCallError(f"teacher call to {target} failed: {error}", field=_blamed(exc)) from None
                if retries >= p.max_retries:
                    raise TeacherCallError(f"teacher call to {target} failed after {retries} retries: {error}",
                                           field=_blamed(exc)) from None
                retries += 1
                await asyncio.sleep(self._delay(retries, _retry_after(exc)))
        text, problem = _read(reply)
        usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
        prompt_tokens = token_count(usage.get("prompt_tokens"))
        completion_tokens = token_count(usage.get("completion_tokens"))
        return Completion(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost=self.price(prompt_tokens, completion_tokens) if cost is None else cost,
            retries=retries,
            latency=time.monotonic() - clock,
            problem=problem,
        )

    def _delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds before retry number ``retry`` (1, 2, ...): Retry-After, else exponential with jitter."""
        if retry_after is not None:
            return min(retry_after, self.params.max_backoff)
        ceiling = min(self.params.backoff * 2 ** (retry - 1), self.params.max_backoff)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def _litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # else it fetches the cost map at import
    try:
        import litellm
    except ImportError:
        raise LoopkitError("the litellm teacher needs litellm: pip install 'loopkit[litellm]'") from None
    litellm.suppress_debug_info = True
    # litellm reading an off-spec reply (content as a list) warns through pydantic; the reply's problem says it once.
    warnings.filterwarnings("ignore", message="Pydantic serializer warnings", category=UserWarning)
    return litellm


def _retryable(litellm: Any, exc: Exception) -> bool:
    """429, 5xx (a body that is not JSON counts as one), timeouts (the deadline's too) and dropped connections."""
    if isinstance(exc, (asyncio.TimeoutError, litellm.Timeout, litellm.RateLimitError, litellm.APIConnectionError)):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status == 429 or status >= 500)


def _blamed(exc: Exception) -> str:
    """The param most likely at fault for a failed call: a refused key, an unknown model, else the address."""
    status = getattr(exc, "status_code", None)
    if status in (401, 403):
        return "api_key_env"
    if status in (400, 404) and "model" in str(exc).lower():
        return "model"
    return "api_base"  # unreachable, not an OpenAI-compatible server (HTML, 404 on the path), timeouts, 5xx


def _describe(exc: Exception, timeout: float) -> str:
    """One short line: a server's error page can be long, and span lines."""
    if isinstance(exc, asyncio.TimeoutError):
        return f"no complete reply within timeout={timeout:g} s"
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 400 else text[:400] + " ..."


# litellm's error when a reply is JSON but does not fit its chat-completion model; it quotes the reply.
_INVALID = re.compile(r"Invalid response object.*?received_args=\{'response_object': (\{.*?\}), 'model_response_object'", re.S)


def _unreadable_reply(exc: Exception) -> dict | None:
    """The reply litellm could not read as a chat completion (the server answered it), else None.

    ``{}`` where the reply cannot be recovered from the error.
    """
    message = str(exc)
    if "Invalid response object" not in message:
        return None
    found = _INVALID.search(message)
    try:
        reply = ast.literal_eval(found.group(1)) if found else None
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        reply = None
    return reply if isinstance(reply, dict) else {}


def _read(reply: dict) -> tuple[str, str | None]:
    """A chat completion's text, or why there is none: ("", problem)."""
    if not reply:
        return "", "the reply is not a chat completion litellm can read"
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices:
        return "", "the reply has no choices"
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    if not isinstance(message, dict):
        return "", "the reply's choice has no message"
    content = message.get("content")
    if content is None:
        return "", f"the reply has no text (content: null, finish_reason: {choices[0].get('finish_reason')})"
    if isinstance(content, list):
        return "", "the reply's content is a list of parts, not text"
    if not isinstance(content, str):
        return "", f"the reply's content is a {type(content).__name__}, not text"
    return content, None


def _retry_after(exc: Exception) -> float | None:
    """The server's Retry-After in seconds (the seconds form; an HTTP date is ignored)."""
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def _cost(litellm: Any, response: Any) -> float:
    try:
        return float(litellm.completion_cost(completion_response=response) or 0.0)
    except Exception:  # a model the offline cost map does not know
        return 0.0
