"""Spend in four currencies (samples, teacher calls, teacher tokens, USD): estimates and hard caps.

A round's cost is known before it runs up to the teacher's per-call averages: it generates at most
``m`` samples, each costing ``calls_per_sample`` calls, and a judging selector adds calls per pool
seed. Tokens and USD per call are the run's observed averages once calls were made, before that the
teacher's own estimate (prompt length + its completion limit, priced by the offline cost map), so
the estimate errs high before the first call. The loop stops *before* a round whose estimate
would take any currency past its cap.
"""

from __future__ import annotations

from dataclasses import dataclass

from loopkit.records import Sample
from loopkit.signals import TEACHER
from loopkit.teachers.base import Teacher

CURRENCIES = ("samples", "teacher_calls", "teacher_tokens", "usd")


@dataclass(frozen=True)
class RoundCost:
    samples: int
    teacher_calls: int
    teacher_tokens: float
    usd: float

    def as_dict(self) -> dict[str, float]:
        return {c: getattr(self, c) for c in CURRENCIES}


def round_cost(teacher: Teacher, needs: frozenset[str], pool: list[Sample], m: int, spent: dict[str, float]) -> RoundCost:
    """What a round that generates ``m`` samples, picked with the signals it ``needs``, is expected to cost
    (a selector that needs the teacher's judgements adds their calls over the pool)."""
    calls = m * teacher.calls_per_sample + (teacher.judge_calls(needs, pool) if needs & TEACHER else 0)
    if spent.get("teacher_calls_answered"):
        per_call_tokens = spent["teacher_tokens"] / spent["teacher_calls_answered"]
        per_call_usd = spent["usd"] / spent["teacher_calls_answered"]
    else:
        per_call_tokens, per_call_usd = teacher.estimate_call(pool)
    return RoundCost(m, calls, calls * per_call_tokens, calls * per_call_usd)


def first_exceeded(caps: dict[str, float | None], spent: dict[str, float], cost: RoundCost) -> str | None:
    """A one-line reason if adding ``cost`` to ``spent`` would pass a cap, else None."""
    for currency in CURRENCIES:
        cap = caps.get(currency)
        if cap is None:
            continue
        after = spent.get(currency, 0) + getattr(cost, currency)
        if after > cap:
            return (f"budget.{currency}: the next round would bring it to ~{_fmt(after)} "
                    f"(spent {_fmt(spent.get(currency, 0))}, cap {_fmt(cap)})")
    return None


def _fmt(x: float) -> str:
    return f"{x:,.4f}".rstrip("0").rstrip(".") if isinstance(x, float) and x != int(x) else f"{int(x):,}"
