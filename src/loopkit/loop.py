"""Algorithm 1 of Kessler et al. (2025): the closed loop, with no printing and no CLI.

Round 0 evaluates the untrained student. Each later round: the student answers every seed
question (predict), computes the signals the selector needs (score; and judge when it wants the
teacher's verdicts, whose calls are charged like generation calls), the selector picks m seeds,
knowing the picks of earlier rounds (select), the teacher writes one new sample per seed
(generate), the trainer fine-tunes on all synthetic data so far (train), and the student is
evaluated on the test split (evaluate).
``mode: static`` spends the whole sample budget at once on uniformly random seeds and trains once;
``mode: static-matched`` makes the same first round (the same data) and then trains on it through
the active rounds' schedule (``prepare.plan_rounds``).

A round that drops more than half of its samples is warned about; ``loop.stop_after_empty_rounds``
rounds in a row that keep none stop the run before the next (the teacher's output cannot be used as
the recipe stands: spending more would buy nothing).

The loop runs a prepared run (``prepare.py``: components, data, round plan) and keeps its files
through ``RunDir``, which alone knows the run directory's layout.
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from loopkit import stopping
from loopkit.budget import first_exceeded, round_cost
from loopkit.errors import LoopkitError, NothingKeptError, RecipeError
from loopkit.evaluation import Evaluation, evaluate
from loopkit.inference import Inference
from loopkit.prepare import PlannedRound, PreparedRun, prepare
from loopkit.progress import NullProgress, Progress, Stage
from loopkit.recipe import ResolvedRecipe
from loopkit.records import RoundRow, Sample, normalize_question, of_subtask, with_variant
from loopkit.rundir import RunDir
from loopkit.seeding import derive_seed
from loopkit.selectors.base import Selection
from loopkit.signals import VECTORS, named_reward_model, needs_answers, own_losses, predict, student_signals, teacher_signals
from loopkit.student_engine import StudentEngine, VLLMInference
from loopkit.trainers.base import Trainer


@dataclass
class RunResult:
    run_dir: RunDir
    rows: list[RoundRow] = field(default_factory=list)  # one per round: accuracy, samples, calls, times
    stopped: str | None = None  # why the run ended early (a budget cap), if it did

    @property
    def accuracies(self) -> list[float]:
        return [row.accuracy for row in self.rows]


class Loop:
    """One run of a prepared recipe into a run directory."""

    def __init__(self, run: PreparedRun | ResolvedRecipe, progress: Progress | None = None, use_cache: bool = True) -> None:
        """Take a prepared run (or prepare a resolved recipe: build, load the data, validate); no model is loaded yet.

        ``use_cache=False`` makes the teacher call its backend even for calls its journal has answered.
        """
        self.prepared = run if isinstance(run, PreparedRun) else prepare(run)
        p = self.prepared
        self.recipe, self.plan, self.data = p.recipe, p.plan, p.data
        self.task, self.teacher, self.selector, self.trainer = p.task, p.teacher, p.selector, p.trainer
        self.use_cache = use_cache
        self.progress = progress or NullProgress()
        self.reward_model = named_reward_model(self.selector, self.plan.needs)  # loaded on first use, kept for later rounds
        self.test_questions = {normalize_question(s.question) for s in self.data.test}
        self.known_questions = {normalize_question(s.question) for s in self.data.pool}  # grows with synthetic ones
        self.synthetic: list[Sample] = []
        self.trained_on = 0  # how many of them the student has been trained on (static-matched: its share so far)
        self.teacher_calls = 0
        self.history: list[int] = []  # pool indices selected in earlier rounds, oldest first
        self.rows: list[RoundRow] = []
        self.stopped: str | None = None  # why the run ended before its last round (a budget cap)
        self.run_dir: RunDir | None = None  # set by open
        self.done = -1  # the last complete round when the run was opened
        self._writing: Any = None  # the directory of the round being made (named if a library's write fails)
        self.engine: StudentEngine | None = None  # the student's vLLM engine (loop.engine: vllm), started on first use
        self.started = time.monotonic()

    def open(self, run_dir: RunDir, resume: bool = False) -> int:
        """Take ``run_dir`` for this run: its lock, the teacher's journal there and, with ``resume``, the state
        its complete rounds left (synthetic data, selections, counts, the last saved student).

        A resumed run is read and checked whole before its lock is taken and before anything is
        written: a damaged file, a hole in the rounds or another process holding the run stops it with
        the directory exactly as it was. Returns the last complete round (-1: none).
        """
        self.run_dir = run_dir
        model, self.tokenizer = self.prepared.load_student()
        if resume:
            run_dir.check_free()  # a second process stops here, before it reads, loads or writes anything
            model = self._restore(model)
        run_dir.lock()  # held until run() ends (a new run's directory was locked as it was made)
        try:
            if resume and run_dir.complete_rounds() != self.done:  # another process completed rounds meanwhile
                model = self._restore(self.prepared.load_student()[0])
            self.teacher.open(run_dir.path, use_cache=self.use_cache)
        except BaseException:
            run_dir.unlock()
            raise
        self.prepared.release_student()
        self.student = self._inference(model)
        return self.done

    def check_teacher(self) -> str | None:
        """The teacher's check call (``--check-teacher``), journaled and charged to this run; None: nothing to check."""
        said = self.teacher.preflight()
        self.teacher_calls += said is not None
        return said

    def run(self, run_dir: RunDir, resume: bool = False) -> RunResult:
        """Run every round into ``run_dir``; with ``resume``, continue after its last complete round.

        A resumed run restores what the complete rounds left on disk (see ``open``), discards the
        unfinished round and runs it again; its teacher calls are answered from the journal. The
        result equals an uninterrupted run's. Whatever stops it (a crash, Ctrl-C, a full disk), the
        directory keeps its complete rounds, no half-made one, and a summary.json that agrees.
        """
        if self.run_dir is not run_dir:
            self.open(run_dir, resume)
        try:
            self._run()
        except BaseException as exc:
            self._settle()
            failed = self.run_dir.write_error(exc, f"loopkit run --resume {self.run_dir.path}", self._writing)
            if failed is not None:
                raise failed from exc
            raise
        finally:
            if self.engine is not None:
                self.engine.close()
            self.run_dir.unlock()
        return RunResult(self.run_dir, self.rows, self.stopped)

    def _run(self) -> None:
        done = self.done
        self._tell("plan", done + 1, self.plan.last)
        self.run_dir.discard_rounds_after(done)
        if done >= 0:
            self.started = time.monotonic() - self.rows[-1].elapsed
            self._write_summary()  # a view of the complete rounds: whatever an interruption left in it is replaced
        else:
            self._finish_round(0, {}, {})
        for planned in self.plan.rounds:
            if planned.number > done:
                reason = self._over_budget(planned)
                if reason is not None:
                    self.stopped = f"stopped before round {planned.number}: {reason}"
                    self._write_summary()
                    self.progress.note(self.stopped)
                    break
                self._stop_if_nothing_kept()
                self._round(planned)
                self._warn_if_mostly_dropped(self.rows[-1])

    def _warn_if_mostly_dropped(self, row: RoundRow) -> None:
        if row.dropped > row.kept:
            self.progress.note(f"warning: round {row.round} dropped {row.dropped} of its {row.kept + row.dropped} samples "
                               f"({_reasons(row)}); see {self.run_dir.dropped_path(row.round)}")

    def _stop_if_nothing_kept(self) -> None:
        """Stop before a round when the last ``stop_after_empty_rounds`` rounds this process ran kept no sample."""
        n = self.recipe.loop.stop_after_empty_rounds
        last = self.rows[self.done + 1:][-n:] if n else []  # a resumed run counts afresh (its teacher may be fixed)
        if not n or len(last) < n or any(r.kept or not r.dropped for r in last):
            return
        rounds = f"round {last[0].round}" if n == 1 else f"rounds {last[0].round}-{last[-1].round}"
        self.stopped = (f"{rounds} kept none of their samples ({_reasons(last[-1])}); make the teacher's answers usable "
                        "(its server; or teacher.params answer_template, model, max_tokens in a new run), "
                        "or set loop.stop_after_empty_rounds: 0")
        self._write_summary()
        raise NothingKeptError(self.stopped)

    def _settle(self) -> None:
        """After a failure: no half-made round left, and summary.json back to the complete rounds (best effort:
        removing the half-made round frees the space a full disk needs for it)."""
        try:
            self.run_dir.discard_incomplete()
            self._write_summary()
        except (OSError, LoopkitError):
            pass

    def spent(self) -> dict[str, float]:
        """Spend so far in every budget currency (plus the answered calls the per-call averages need)."""
        return {"samples": len(self.synthetic), "teacher_calls": self.teacher_calls, **self.teacher.spent()}

    def _stage(self, t: int, name: str, total: int | None = None) -> Any:
        """The display's bar for a stage; the run directory says which stage runs (for ``compare``)."""
        stopping.check()  # a stop whose KeyboardInterrupt was lost stops here, before the stage starts
        self.run_dir.write_status(t, name, self.plan.last)
        return self.progress.stage(t, name, total)

    def _teacher_calls(self, stage: Stage, expected: int, work: Callable[..., Any], *args: Any) -> Any:
        """``work(*args)``, making about ``expected`` teacher calls, with ``stage`` moving as the teacher answers them
        (per batch or per call, as it reports); whatever it did not report (calls it did not need) at the end."""
        before = self.teacher.answered_calls
        with self.teacher.reporting(stage.advance):
            result = work(*args)
        stage.advance(max(expected - (self.teacher.answered_calls - before), 0))
        return result

    def _report_spend(self, pending: int = 0) -> None:
        """Tell the display what the run has spent so far (``pending``: calls made this stage, not yet counted)."""
        self._tell("spent", self.teacher_calls + pending, self.teacher.spent()["usd"])

    def _tell(self, method: str, *args: Any) -> None:
        """Call a Progress method added after the first (``plan``, ``spent``): a display written before them still works."""
        getattr(self.progress, method, lambda *_: None)(*args)

    def _over_budget(self, planned: PlannedRound) -> str | None:
        caps = self.recipe.budget.model_dump()
        if all(v is None for v in caps.values()):
            return None
        spent = self.spent()
        return first_exceeded(caps, spent, round_cost(self.teacher, self.plan.needs, self.data.pool, planned.samples, spent))

    def _restore(self, untrained: Any) -> Any:
        """Read the state the complete rounds left (through RunDir, which checks every file; nothing is written)
        and return the student as it was after the last of them."""
        run = self.run_dir
        rows = run.rows()  # refuses a hole in the rounds: never redo a middle round over later complete ones
        run.check_journal()
        for t in range(len(rows)):
            run.check_round(t)
        history = [pick["index"] for t in range(1, len(rows)) for pick in run.selected(t, self.data.pool)]
        synthetic = run.synthetic(len(rows) - 1)
        model = self._saved_student(len(rows) - 1, untrained)
        self.rows, self.history, self.synthetic = rows, history, synthetic
        self.known_questions = {normalize_question(s.question) for s in [*self.data.pool, *synthetic]}
        self.teacher_calls = rows[-1].teacher_calls if rows else 0
        self.trained_on = rows[-1].samples if rows else 0
        self.done = len(rows) - 1
        return model

    def _saved_student(self, done: int, untrained: Any) -> Any:
        return saved_student(self.run_dir, self.trainer, done, untrained, self.prepared.fresh_student, "resume")

    def _inference(self, model: Any) -> Inference:
        loop = self.recipe.loop
        if loop.engine == "vllm":
            if self.engine is None:
                self.engine = StudentEngine(loop.vllm, self.tokenizer, self.prepared.fresh_student, self.trainer.adapter_rank)
            return VLLMInference(self.engine, model, self.tokenizer, loop.batch_size, loop.max_new_tokens)
        return Inference(model, self.tokenizer, loop.batch_size, loop.max_new_tokens)

    def _round(self, planned: PlannedRound) -> None:
        t, times = planned.number, {}
        self._writing = self.run_dir.round_dir(t)
        calls_before = self.teacher_calls
        # A round that generates nothing (static-matched after its first) picks nothing: it only trains and evaluates.
        selection = self._select(t, planned.samples, times) if planned.samples else Selection(())
        selector_calls = self.teacher_calls - calls_before
        self.history.extend(selection.indices)
        chosen = [with_variant(self.data.pool[i], selection.variants.get(i)) for i in selection.indices]
        self.run_dir.write_selected(t, zip(selection.indices, chosen))

        clock = time.monotonic()
        generations = []
        per_sample = self.teacher.calls_per_sample
        with self._stage(t, "generate", len(chosen) * per_sample) if chosen else nullcontext() as stage:
            for start in range(0, len(chosen), 64):  # in chunks of 64 seeds (each its own random seed)
                chunk = chosen[start : start + 64]
                generations += self._teacher_calls(stage, len(chunk) * per_sample, self.teacher.generate, chunk, t,
                                                   derive_seed(self.recipe.seed, "generate", start))
                self._report_spend(sum(g.calls for g in generations))
        new, dropped, rewritten = [], [], []
        reasons: Counter[str] = Counter()
        for g in generations:
            self.teacher_calls += g.calls
            reason = g.dropped or self._duplicate(g.sample)
            if g.sample is not None:
                rewritten.append((g.sample, reason is None))
            if reason is None:
                new.append(of_subtask(g.sample, g.seed.subtask))
                self.known_questions.add(normalize_question(g.sample.question))
            else:
                dropped.append({"seed_id": g.seed.id, "reason": reason, "question": g.sample.question if g.sample else None})
                reasons[reason] += 1
        if chosen:
            times["generate"] = time.monotonic() - clock
        self.run_dir.write_synthetic(t, new)
        self.run_dir.write_dropped(t, dropped)
        if self.recipe.loop.score_offspring and rewritten:
            clock = time.monotonic()
            self.run_dir.write_fidelity(t, self._fidelity(t, rewritten))
            times["fidelity"] = time.monotonic() - clock
        self.synthetic.extend(new)

        clock = time.monotonic()
        train_set = self._train_set(planned)
        if not train_set:  # every sample so far was dropped: nothing to train on, keep the student
            train_metrics = {"examples": 0, "steps": 0, "skipped": "no synthetic samples yet"}
        else:
            model = self.prepared.fresh_student() if self.recipe.loop.retrain == "base" else self.student.model
            with self._stage(t, "train") as stage, self.engine.asleep() if self.engine else nullcontext():
                model, train_metrics = self.trainer.train(
                    model, self.tokenizer,
                    [self.student.render(self.task.prompt(s.question)) for s in train_set],
                    [s.answer for s in train_set],
                    self.run_dir.train_dir(t), derive_seed(self.recipe.seed, "train", t), stage,
                )
            self.student = self._inference(model)
        self.trained_on = len(train_set)
        times["train"] = time.monotonic() - clock
        self._finish_round(t, times, {"train": train_metrics, "selector_teacher_calls": selector_calls},
                           {"kept": len(new), "dropped": len(dropped), "drop_reasons": dict(reasons.most_common(3))})

    def _train_set(self, planned: PlannedRound) -> list[Sample]:
        """What the round trains on: every sample kept so far; static-matched: the first ``train_share`` of them
        (all were made in its first round, in the order their seeds were drawn)."""
        share = planned.train_share
        return self.synthetic if share is None else self.synthetic[: len(self.synthetic) * share.numerator // share.denominator]

    def _fidelity(self, t: int, rewritten: list[tuple[Sample, bool]]) -> list[dict]:
        """Each offspring's own loss beside its seed's, both under the student that picked the seed; every
        question the teacher wrote counts, also one dropped (an answer without a readable final, a duplicate),
        since the student's own loss needs no teacher answer; ``kept`` says which were kept."""
        by_id = {s.id: s for s in self.data.pool}
        offspring = [o for o, _ in rewritten]
        seeds = [by_id[o.seed_id] for o in offspring]
        items = seeds + offspring
        with self._stage(t, "fidelity", 2 * len(items)) as stage:
            loss = own_losses(self.student, self.task, items, stage.advance)
        n = len(offspring)
        return [{"seed_id": s.id, "offspring_id": o.id, "kept": kept, "seed_own_loss": float(loss[i]),
                 "offspring_own_loss": float(loss[n + i])} for i, (s, (o, kept)) in enumerate(zip(seeds, rewritten))]

    def _write_summary(self, rows: list[RoundRow] | None = None) -> None:
        self.run_dir.write_summary(self.recipe.name, self.recipe.loop.mode, self.rows if rows is None else rows, self.stopped)

    def _duplicate(self, sample: Sample) -> str | None:
        """Why a new question cannot be kept as a duplicate (compared normalised), or None."""
        question = normalize_question(sample.question)
        if question in self.test_questions:
            return "new question duplicates a test question"
        if self.recipe.loop.unique_questions and question in self.known_questions:
            return "new question duplicates a pool seed or an earlier synthetic question"
        return None

    def _select(self, t: int, m: int, times: dict[str, float]) -> Selection:
        rng = np.random.default_rng(derive_seed(self.recipe.seed, "select", t))
        pool = self.data.pool
        if self.plan.static:
            return Selection([int(i) for i in rng.choice(len(pool), size=m, replace=m > len(pool))])
        needs = self.plan.needs
        signals: dict[str, Any] = {}
        answers = own = None
        if needs_answers(needs):
            clock = time.monotonic()
            with self._stage(t, "predict", len(pool)) as stage:
                answers, own = predict(self.student, self.task, pool, needs, stage.advance)  # own losses come with them
            times["predict"] = time.monotonic() - clock
        if needs:
            clock = time.monotonic()
            with self._stage(t, "score", len(pool)) as stage:
                signals = student_signals(self.student, self.task, pool, answers, needs, stage.advance, self.reward_model, own)
            times["score"] = time.monotonic() - clock
        if answers is not None and self.plan.judged:
            clock = time.monotonic()
            expected = self.teacher.judge_calls(needs, pool)
            with self._stage(t, "judge", expected) as stage:
                judged, calls = self._teacher_calls(stage, expected, teacher_signals, self.teacher, pool, answers, needs,
                                                    derive_seed(self.recipe.seed, "judge", t))
            signals.update(judged)
            self.teacher_calls += calls
            self._report_spend()
            times["judge"] = time.monotonic() - clock
        if signals:
            self.run_dir.write_pool_signals(t, _signal_rows(pool, signals))
        clock = time.monotonic()
        selection = Selection.of(self.selector.select(signals, len(pool), m, rng, history=tuple(self.history)))
        times["select"] = time.monotonic() - clock
        return selection

    def _evaluate(self, t: int) -> Evaluation:
        with self._stage(t, "evaluate", len(self.data.test)) as stage:
            return evaluate(self.student, self.task, self.data.test, stage.advance)

    def _finish_round(self, t: int, times: dict[str, float], extra: dict, drops: dict | None = None) -> None:
        clock = time.monotonic()
        evaluation = self._evaluate(t)
        times["evaluate"] = time.monotonic() - clock
        self._writing = self.run_dir.round_dir(t)
        self.run_dir.write_eval(t, evaluation.rows)
        if evaluation.by_reading:
            extra = {**extra, "accuracy_by_reading": evaluation.by_reading}
        spent, score = self.teacher.spent(), evaluation.score
        row = RoundRow(
            round=t, samples=self.trained_on, teacher_calls=self.teacher_calls,
            teacher_tokens=spent["teacher_tokens"], usd=round(spent["usd"], 6), accuracy=score.accuracy,
            accuracy_se=score.se, test_items=score.n,
            subtasks={name: sub.to_json() for name, sub in evaluation.subtasks.items()},
            seconds={k: round(v, 3) for k, v in times.items()}, elapsed=round(time.monotonic() - self.started, 3),
            **(drops or {}),
        )
        self.run_dir.write_metrics(t, row, extra)
        # summary.json before the marker: a failure in between leaves a half-made round, which is discarded
        # (freeing space) and summary.json rewritten; after the marker nothing can fail (it is empty).
        # A stop never falls between them either: the two always agree.
        with stopping.deferred():
            self._write_summary(self.rows + [row])
            self.run_dir.mark_complete(t)
            self.rows.append(row)
        self.progress.round_done(row)


def saved_student(run: RunDir, trainer: Trainer, done: int, untrained: Any, fresh: Callable[[], Any], what: str) -> Any:
    """The student as it was after round ``done`` of ``run``: the model the last round that trained saved
    (``untrained`` if none trained yet; ``fresh`` gives a new untrained model to load the weights into)."""
    trained = [t for t in range(1, done + 1) if run.trained(t) or run.has_model(t)]
    if not trained:
        return untrained  # nothing was trained yet
    if not any(run.has_model(t) for t in trained):
        raise RecipeError(
            f"cannot {what} {run.path}: its rounds saved no student (trainer.params.save_model: false); "
            + ("start a new run" if what == "resume" else "only round 0 (the untrained student) can be evaluated")
        )
    return trainer.load(run.model_dir(trained[-1]), fresh)


def _reasons(row: RoundRow) -> str:
    """A round's most common drop reasons, with their counts, for a message."""
    return "; ".join(f"{n} x {reason}" for reason, n in row.drop_reasons.items())


def _signal_rows(pool: list[Sample], signals: dict[str, Any]):
    """One row per seed with every per-seed scalar signal; embeddings are too big and are left out."""
    scalars = {name: values for name, values in signals.items() if name not in VECTORS | {"question"}}
    for i, s in enumerate(pool):
        row = {"index": i, "id": s.id}
        for name, values in scalars.items():
            value = values[i]
            row[name] = value.item() if hasattr(value, "item") else value
        yield row


def run(resolved: ResolvedRecipe, run_dir: RunDir, progress: Progress | None = None, use_cache: bool = True,
        resume: bool = False) -> RunResult:
    """Run a validated recipe into ``run_dir`` (continuing it with ``resume``)."""
    return Loop(resolved, progress, use_cache).run(run_dir, resume)
