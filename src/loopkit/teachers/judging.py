"""An LLM teacher as a judge (``llm-judge``) and as LION's referee: the calls, and reading the grades in the replies.

Judges and referees decode greedily (each call still gets its own seed, ``calls.per_call``). A
judge replies ``Score: N``; a referee ``Answer 1: N`` and ``Answer 2: N``. A grade outside 1-10,
a reply without one, or an unusable reply scores NaN (the selectors rank it last, with a warning).
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

from loopkit.records import Sample
from loopkit.teachers.base import Judgement
from loopkit.teachers.calls import Reply, per_call
from loopkit.teachers.prompts import Prompts

# Prompts and each one's sampling params in; replies and the calls charged out.
Ask = Callable[[list[str], list[dict[str, Any]]], tuple[list[Reply], list[int]]]


def judge(ask: Ask, prompts: Prompts, seeds: list[Sample], answers: list[str], params: dict[str, Any]) -> Judgement:
    """A 1-10 grade per student answer (NaN where the reply has no 'Score: N')."""
    asked = [prompts.render("judge", question=s.question, answer=a, reference=s.final or "") for s, a in zip(seeds, answers)]
    replies, calls = ask(asked, per_call(params, "judge", range(len(asked))))
    return Judgement([score(r) for r in replies], calls=sum(calls))


def referee(ask: Ask, prompts: Prompts, seeds: list[Sample], answers: list[str], params: dict[str, Any],
            answer_params: dict[str, Any]) -> Judgement:
    """Per seed: the teacher's own answer's grade minus the student's, averaged over both orders.

    The teacher's own answer is the seed's reference answer where the task has one, else one more
    call (the answer template, sampled with ``answer_params``). A seed whose own answer is an
    unusable reply gets NaN, without referee calls.
    """
    own: list[str | None] = [s.answer for s in seeds]
    missing = [i for i, a in enumerate(own) if a is None]
    written, own_calls = ask([prompts.render("answer", question=seeds[i].question) for i in missing],
                             per_call(answer_params, "referee-answer", missing))
    for i, reply in zip(missing, written):
        own[i] = reply.text if reply.problem is None else None
    graded = [i for i, t in enumerate(own) if t is not None]
    first = [prompts.render("referee", question=seeds[i].question, answer_1=own[i], answer_2=answers[i]) for i in graded]
    second = [prompts.render("referee", question=seeds[i].question, answer_1=answers[i], answer_2=own[i]) for i in graded]
    replies, calls = ask(first + second, per_call(params, "referee-1", graded) + per_call(params, "referee-2", graded))
    gaps = [math.nan] * len(seeds)
    for j, i in enumerate(graded):
        t1, s1 = grades(replies[j])
        s2, t2 = grades(replies[len(graded) + j])
        gaps[i] = ((t1 - s1) + (t2 - s2)) / 2
    return Judgement(gaps, calls=sum(calls) + sum(own_calls))


_SCORE = re.compile(r"score\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_ANSWER_SCORE = re.compile(r"answer\s*([12])\s*[:=]\s*\**\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


def _grade(value: str) -> float:
    x = float(value)
    return x if 1 <= x <= 10 else math.nan


def score(reply: Reply) -> float:
    """The last 'Score: N' in a judge's reply (1-10), else NaN."""
    found = _SCORE.findall(reply.text) if reply.problem is None else []
    return _grade(found[-1]) if found else math.nan


def grades(reply: Reply) -> tuple[float, float]:
    """The grades of 'Answer 1: N' and 'Answer 2: N' in a referee's reply (the last of each), NaN where absent."""
    found = {"1": math.nan, "2": math.nan}
    for which, value in _ANSWER_SCORE.findall(reply.text if reply.problem is None else ""):
        found[which] = _grade(value)
    return found["1"], found["2"]
