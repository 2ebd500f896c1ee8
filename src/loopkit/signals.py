"""Signals about the seed pool, computed only when the selector declares it needs them.

| signal | one per seed | computed by |
|---|---|---|
| ``question`` | the seed's question text | the pool itself |
| ``answer`` | the student's greedy answer | one batched ``generate`` |
| ``own_loss``, ``own_loss_sum`` | mean and summed token NLL of that answer (then EOS) | one forward pass over |
| ``entropy`` | mean token entropy of the student over that answer | prompt + own answer, |
| ``embedding`` | mean last hidden state over the answer's positions | shared by all four |
| ``grad_embedding`` | BADGE gradient embedding (see ``Student.answer_stats``) | |
| ``gold_loss`` | mean token NLL of the seed's reference answer | a forward pass over prompt + reference |
| ``correct`` | the task's checker on the student's answer | the task |
| ``judge_score`` | the teacher's 1-10 grade of the student's answer | ``Teacher.judge`` |
| ``referee_gap`` | teacher's minus student's referee score, both orders | ``Teacher.referee`` |

Teacher calls made for ``judge_score`` and ``referee_gap`` are returned so the loop charges them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from loopkit.records import Sample
from loopkit.student import STATS, Advance, Student, _noop
from loopkit.tasks.base import Task
from loopkit.teachers.base import Teacher

OWN_PASS = frozenset({"own_loss", "own_loss_sum", *STATS})  # from one pass over prompt + own answer
TEACHER = frozenset({"judge_score", "referee_gap"})
VECTORS = frozenset({"embedding", "grad_embedding"})  # one array per seed, not written to pool_signals.jsonl
KNOWN = frozenset({"question", "answer", "correct", "gold_loss", *OWN_PASS, *TEACHER})


def needs_answers(needs: frozenset[str]) -> bool:
    return bool(needs & (KNOWN - {"question", "gold_loss"}))


def student_signals(student: Student, task: Task, pool: list[Sample], answers: list[str] | None,
                    needs: frozenset[str], advance: Advance = _noop) -> dict[str, Any]:
    """Every requested signal the student and the task give, as arrays aligned with the pool."""
    signals: dict[str, Any] = {}
    if "question" in needs:
        signals["question"] = [s.question for s in pool]
    if answers is not None:
        signals["answer"] = answers
    prompts = [task.prompt(s.question) for s in pool]
    if needs & OWN_PASS:
        stats = student.answer_stats(prompts, answers, frozenset(needs & STATS), advance)
        signals["own_loss"] = np.array([float(s.nll.mean()) for s in stats])
        signals["own_loss_sum"] = np.array([float(s.nll.sum()) for s in stats])
        if "entropy" in needs:
            signals["entropy"] = np.array([float(s.entropy.mean()) for s in stats])
        for name in VECTORS & needs:
            signals[name] = np.stack([getattr(s, name) for s in stats])
    if "gold_loss" in needs:
        missing = [s.id for s in pool if s.answer is None]
        if missing:
            raise ValueError(f"gold_loss needs reference answers; {len(missing)} seeds have none (first: {missing[0]})")
        nll = student.token_nll(prompts, [s.answer for s in pool], _noop if needs & OWN_PASS else advance)
        signals["gold_loss"] = np.array([float(x.mean()) for x in nll])
    if "correct" in needs:
        signals["correct"] = np.array([task.check(s, a) for s, a in zip(pool, answers)], dtype=bool)
    return signals


def teacher_signals(teacher: Teacher, pool: list[Sample], answers: list[str], needs: frozenset[str],
                    seed: int) -> tuple[dict[str, Any], int]:
    """The teacher's judgements of the student's answers, and the teacher calls they cost."""
    signals: dict[str, Any] = {}
    calls = 0
    if "judge_score" in needs:
        judged = teacher.judge(pool, answers, seed)
        signals["judge_score"], calls = np.asarray(judged.scores, dtype=np.float64), calls + judged.calls
    if "referee_gap" in needs:
        judged = teacher.referee(pool, answers, seed)
        signals["referee_gap"], calls = np.asarray(judged.scores, dtype=np.float64), calls + judged.calls
    return signals, calls
