"""Signals about the seed pool, computed only when the selector declares it needs them, and what each takes.

| signal | one per seed | computed by |
|---|---|---|
| ``question`` | the seed's question text | the pool itself |
| ``answer`` | the student's greedy answer | one batched ``generate`` (``predict``) |
| ``own_loss``, ``own_loss_sum`` | mean and summed token NLL of that answer (then EOS) | the same ``generate``: its |
| ``entropy`` | mean token entropy of the student over that answer | raw logits (no second pass) |
| ``embedding`` | mean last hidden state over the answer's positions | one forward pass over prompt + |
| ``grad_embedding`` | BADGE gradient embedding (see ``Inference.answer_stats``) | own answer, shared by both |
| ``gold_loss`` | mean token NLL of the seed's reference answer (the task must have them) | a forward pass over prompt + reference |
| ``correct`` | the task's checker on the student's answer | the task |
| ``reward`` | a reward model's score of question + the student's answer | the model the selector names (``signal_params``) |
| ``judge_score`` | the teacher's 1-10 grade of the student's answer | ``Teacher.judge`` |
| ``referee_gap`` | teacher's minus student's referee score, both orders | ``Teacher.referee`` |

Teacher calls made for ``judge_score`` and ``referee_gap`` are returned so the loop charges them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from loopkit.inference import STATS, AnswerStats, Advance, Inference, _noop
from loopkit.records import Sample
from loopkit.tasks.base import Task
from loopkit.teachers.base import JUDGE_SCORE, REFEREE_GAP, Teacher, can

OWN_PASS = frozenset({"own_loss", "own_loss_sum", *STATS})  # every signal about the student's own answer
FROM_GENERATION = frozenset({"own_loss", "own_loss_sum", "entropy"})  # given by the pass that generates the answer
TEACHER_METHODS = {JUDGE_SCORE: "judge", REFEREE_GAP: "referee"}  # the teacher method that computes each
TEACHER = frozenset(TEACHER_METHODS)
VECTORS = frozenset({"embedding", "grad_embedding"})  # one array per seed, not written to pool_signals.jsonl
KNOWN = frozenset({"question", "answer", "correct", "gold_loss", "reward", *OWN_PASS, *TEACHER})


def needs_answers(needs: frozenset[str]) -> bool:
    return bool(needs & (KNOWN - {"question", "gold_loss"}))


def unmet_needs(selector: str, needs: frozenset[str], teacher: tuple[str, type[Teacher]],
                task: tuple[str, type[Task]]) -> str | None:
    """Why selector ``selector`` cannot have the signals it ``needs`` from this ``(name, class)`` of teacher and
    task, in a sentence that says what to change; None if it can."""
    unknown = sorted(needs - KNOWN)
    if unknown:
        return f"'{selector}' needs unknown signals {unknown}; loopkit computes {sorted(KNOWN)}"
    for signal, method in TEACHER_METHODS.items():
        if signal in needs and not can(teacher[1], method):
            return (f"'{selector}' needs the teacher to {method} answers, which teacher '{teacher[0]}' cannot; "
                    "choose another teacher or selector")
    if "gold_loss" in needs and not getattr(task[1], "has_reference_answers", True):
        return f"'{selector}' needs reference answers, which task '{task[0]}' does not have; choose another selector"
    return None


def named_reward_model(selector: Any, needs: frozenset[str]) -> Any:
    """The reward model behind ``reward`` (not loaded yet), if ``needs`` has it: the one the selector names."""
    if "reward" not in needs:
        return None
    params = selector.signal_params().get("reward")
    if params is None:
        raise ValueError(f"{type(selector).__name__} needs the 'reward' signal but names no reward model "
                         "(signal_params() has no 'reward')")
    from loopkit.reward_model import RewardModel

    return RewardModel(params)


def predict(student: Inference, task: Task, pool: list[Sample], needs: frozenset[str],
            advance: Advance = _noop) -> tuple[list[str], list[AnswerStats] | None]:
    """The student's greedy answers to the pool and, if ``needs`` has any of ``FROM_GENERATION``, their token
    statistics from the same generation pass (pass them on to ``student_signals`` as ``own``)."""
    prompts = [task.prompt(s.question) for s in pool]
    if needs & FROM_GENERATION:
        return student.generate_scored(prompts, "entropy" in needs, advance)
    return student.generate(prompts, advance), None


def own_losses(student: Inference, task: Task, items: list[Sample], advance: Advance = _noop) -> np.ndarray:
    """The student's own loss on each item's question (the mean NLL of its greedy answer, then EOS), from one
    generation pass; needs no reference answer."""
    answers, own = predict(student, task, items, frozenset({"own_loss"}), advance)
    return student_signals(student, task, items, answers, frozenset({"own_loss"}), own=own)["own_loss"]


def student_signals(student: Inference, task: Task, pool: list[Sample], answers: list[str] | None,
                    needs: frozenset[str], advance: Advance = _noop, reward_model: Any = None,
                    own: list[AnswerStats] | None = None) -> dict[str, Any]:
    """Every requested signal the student (with the reward model, for ``reward``) and the task give, as arrays
    aligned with the pool.

    ``own``: the answers' statistics from the pass that generated them (``predict``); without them
    (answers from elsewhere) the own-answer losses and entropy come from a forward pass over them.
    """
    signals: dict[str, Any] = {}
    if "question" in needs:
        signals["question"] = [s.question for s in pool]
    if answers is not None:
        signals["answer"] = answers
    prompts = [task.prompt(s.question) for s in pool]
    forward = needs & VECTORS or (needs & OWN_PASS and own is None)  # a forward pass over prompt + own answer
    if forward:
        passed = student.answer_stats(prompts, answers, frozenset(needs & (STATS if own is None else VECTORS)), advance)
        for name in VECTORS & needs:
            signals[name] = np.stack([getattr(s, name) for s in passed])
        own = passed if own is None else own
    if own is not None:
        signals["own_loss"] = np.array([float(s.nll.mean()) for s in own])
        signals["own_loss_sum"] = np.array([float(s.nll.sum()) for s in own])
        if "entropy" in needs:
            signals["entropy"] = np.array([float(s.entropy.mean()) for s in own])
    if "gold_loss" in needs:
        missing = [s.id for s in pool if s.answer is None]
        if missing:
            raise ValueError(f"gold_loss needs reference answers; {len(missing)} seeds have none (first: {missing[0]})")
        nll = student.token_nll(prompts, [s.answer for s in pool], _noop if forward else advance)
        signals["gold_loss"] = np.array([float(x.mean()) for x in nll])
    elif not forward:
        advance(len(pool))  # nothing here ran the model: the scores were ready
    if "correct" in needs:
        signals["correct"] = np.array([task.check(s, a) for s, a in zip(pool, answers)], dtype=bool)
    if "reward" in needs:
        signals["reward"] = reward_model.scores([s.question for s in pool], answers)
    return signals


def teacher_signals(teacher: Teacher, pool: list[Sample], answers: list[str], needs: frozenset[str],
                    random_seed: int) -> tuple[dict[str, Any], int]:
    """The teacher's judgements of the student's answers, and the teacher calls they cost."""
    signals: dict[str, Any] = {}
    calls = 0
    for signal, method in TEACHER_METHODS.items():
        if signal in needs:
            judged = getattr(teacher, method)(pool, answers, random_seed)
            signals[signal], calls = np.asarray(judged.scores, dtype=np.float64), calls + judged.calls
    return signals, calls
