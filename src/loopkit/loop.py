"""Algorithm 1 of Kessler et al. (2025): the closed loop, with no printing and no CLI.

Round 0 evaluates the untrained student. Each later round: the student answers every seed
question (predict), computes the signals the selector needs (score; and judge when it wants the
teacher's verdicts, whose calls are charged like generation calls), the selector picks m seeds,
knowing the picks of earlier rounds (select), the teacher writes one new sample per seed
(generate), the trainer fine-tunes on all synthetic data so far (train), and the student is
evaluated on the test split (evaluate).
``mode: static`` spends the whole sample budget at once on uniformly random seeds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from loopkit import stopping
from loopkit.budget import first_exceeded, round_cost
from loopkit.errors import DataError, LoopkitError, RecipeError, RunDirError, UnavailableError
from loopkit.progress import NullProgress, Progress
from loopkit.recipe import ResolvedRecipe
from loopkit.records import Sample, normalize_question
from loopkit.rundir import RunDir
from loopkit.seeding import derive_seed
from loopkit.selectors.base import call_select
from loopkit.signals import VECTORS, needs_answers, student_signals, teacher_signals
from loopkit.student import Student
from loopkit.tasks.base import Task, TaskData
from loopkit.teachers.base import Teacher


@dataclass
class RunResult:
    run_dir: RunDir
    rows: list[dict] = field(default_factory=list)  # one per round: accuracy, samples, calls, times
    stopped: str | None = None  # why the run ended early (a budget cap), if it did

    @property
    def accuracies(self) -> list[float]:
        return [row["accuracy"] for row in self.rows]


def load_task_data(task: Task, resolved: ResolvedRecipe) -> TaskData:
    """The task's data, checked against the recipe (non-empty splits, m within the pool)."""
    recipe, source = resolved.recipe, resolved.source
    data = task.load(recipe.seed)
    if not data.pool:
        raise DataError(f"{source}: task '{recipe.task.name}' gives an empty seed pool")
    if not data.test:
        raise DataError(f"{source}: task '{recipe.task.name}' gives no test items; the student cannot be evaluated")
    if recipe.loop.mode == "active" and recipe.loop.per_round > len(data.pool):
        raise RecipeError(
            f"{source}: loop.per_round: {recipe.loop.per_round} is larger than the seed pool "
            f"({len(data.pool)} questions); lower per_round or enlarge the pool"
        )
    for split, samples in (("seed pool", data.pool), ("test split", data.test)):
        for i, sample in enumerate(samples):
            for field_name in ("question", "answer"):
                text = getattr(sample, field_name) or ""
                if len(text) > MAX_TEXT_CHARS:
                    raise DataError(
                        f"{_where(sample, split, i, resolved)}: the {field_name} is {len(text):,} characters; loopkit takes at "
                        f"most {MAX_TEXT_CHARS:,} (far more than a small model reads at once); shorten or remove it")
    return data


# A question or answer longer than this is no task for a small language model, and tokenizing it
# can exhaust memory outright (a 50 MB question made the Rust tokenizer abort the process).
MAX_TEXT_CHARS = 100_000


def _where(sample: Sample, split: str, index: int, resolved: ResolvedRecipe) -> str:
    """Where a task item came from, for messages: its file and line if the task knows them."""
    return sample.meta.get("line") or f"{resolved.source}: task {resolved.recipe.task.name}: {split} item {index} (id {sample.id})"


def check_fit(resolved: ResolvedRecipe, data: TaskData, task: Task, model_source: Any, trainer: Any,
              teacher: Teacher | None = None) -> list[str]:
    """Refuse what validates but cannot work, before any model loads: a student whose weights do not fit
    in memory, a question longer than the student's context window, a trainer ``max_length`` that
    cuts off every answer. Returns warnings for what works but badly. Checks only what the student
    component can tell without its weights (its tokenizer, context window and size)."""
    from loopkit.device import available_memory

    source, warnings = resolved.source, []
    free = available_memory()
    student = model_source.weight_bytes() or 0
    if free is not None and student > free:
        raise RecipeError(
            f"{source}: student.params: the student's weights need about {_gib(student)}, more than the "
            f"{_gib(free)} of memory free here; choose a smaller student (e.g. fewer layers or a smaller hidden_size)")
    beside = sum(m.weight_bytes() or 0 for m in (teacher.local_models() if teacher is not None else []))
    if free is not None and student + beside > free:
        raise RecipeError(
            f"{source}: teacher.params.model: the teacher's model needs about {_gib(beside)} beside the student's "
            f"{_gib(student)}, more than the {_gib(free)} of memory free here; choose a smaller teacher model")
    tokenizer = model_source.tokenizer()
    if tokenizer is None:
        return warnings
    from loopkit.student import Student

    render = Student(None, tokenizer).render
    context = model_source.context_window()
    if context:
        for split, samples in (("seed pool", data.pool), ("test split", data.test)):
            lengths = token_lengths(tokenizer, [render(task.prompt(s.question)) for s in samples])
            i = int(np.argmax(lengths))
            if lengths[i] > context:
                raise DataError(
                    f"{_where(samples[i], split, i, resolved)}: the question's prompt is {lengths[i]:,} tokens, longer than the "
                    f"student's context window ({context:,} tokens); shorten or remove it, or use a student with a longer "
                    "context (student.params)")
    trained = [s for s in data.pool if s.answer]
    if trained:
        prompts = token_lengths(tokenizer, [render(task.prompt(s.question)) for s in trained])
        answers = token_lengths(tokenizer, [s.answer for s in trained], special=False)
        try:
            warnings += trainer.check_lengths(prompts, [a + 1 for a in answers], "seed")  # + EOS
        except LoopkitError as exc:
            raise RecipeError(f"{source}: {exc}") from None
    return warnings


def token_lengths(tokenizer: Any, texts: list[str], special: bool = True) -> list[int]:
    """Token counts of ``texts``, a few at a time (one call on thousands of long texts can exhaust memory)."""
    add = special and getattr(tokenizer, "chat_template", None) is None
    lengths: list[int] = []
    for start in range(0, len(texts), 256):
        lengths += [len(ids) for ids in tokenizer(texts[start : start + 256], add_special_tokens=add)["input_ids"]]
    return lengths


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def bind_teacher(teacher: Teacher, task: Task, resolved: ResolvedRecipe) -> None:
    try:
        teacher.bind(task)
    except RecipeError as exc:
        raise RecipeError(f"{resolved.source}: teacher.name: {exc}") from None


def check_recipe(resolved: ResolvedRecipe) -> tuple[TaskData | None, list[str]]:
    """Everything ``validate`` checks beyond the schema: the task's data and the teacher/task fit.

    What this machine cannot check right now (a dataset on an unreachable hub, an API key not set
    here) comes back as a message instead of an error; the data are None when they could not load.
    """
    unchecked: list[str] = []
    task = resolved.build("task")
    try:
        data = load_task_data(task, resolved)
    except UnavailableError as exc:
        data = None
        unchecked.append(str(exc))
    teacher = resolved.build("teacher")
    if data is not None:
        fit = check_fit(resolved, data, task, resolved.build("student"), resolved.build("trainer"), teacher)
        data = replace(data, warnings=(*data.warnings, *fit))
    try:
        bind_teacher(teacher, task, resolved)
    except UnavailableError as exc:
        unchecked.append(str(exc))
    return data, unchecked


class Loop:
    """One run of a resolved recipe into a run directory."""

    def __init__(self, resolved: ResolvedRecipe, progress: Progress | None = None, use_cache: bool = True) -> None:
        """Build every component and load the task's data; no model is loaded yet.

        ``use_cache=False`` makes the teacher call its backend even for calls its journal has answered.
        """
        self.resolved = resolved
        self.use_cache = use_cache
        self.recipe = resolved.recipe
        self.progress = progress or NullProgress()
        self.task: Task = resolved.build("task")
        self.model_source = resolved.build("student")
        self.teacher = resolved.build("teacher")
        self.selector = resolved.build("selector")
        self.trainer = resolved.build("trainer")
        self.data = load_task_data(self.task, resolved)
        fit = check_fit(resolved, self.data, self.task, self.model_source, self.trainer, self.teacher)
        self.data = replace(self.data, warnings=(*self.data.warnings, *fit))
        bind_teacher(self.teacher, self.task, resolved)
        self.test_questions = {normalize_question(s.question) for s in self.data.test}
        self.known_questions = {normalize_question(s.question) for s in self.data.pool}  # grows with synthetic ones
        self.synthetic: list[Sample] = []
        self.teacher_calls = 0
        self.history: list[int] = []  # pool indices selected in earlier rounds, oldest first
        self.rows: list[dict] = []
        self.stopped: str | None = None  # why the run ended before its last round (a budget cap)
        self._loaded: Any = None  # the untrained student, once load_student ran
        self.run_dir: RunDir | None = None  # set by open
        self.done = -1  # the last complete round when the run was opened
        self._writing: Any = None  # the directory of the round being made (named if a library's write fails)
        self.started = time.monotonic()

    def open(self, run_dir: RunDir, resume: bool = False) -> int:
        """Take ``run_dir`` for this run: its lock, the teacher's journal there and, with ``resume``, the state
        its complete rounds left (synthetic data, selections, counts, the last saved student).

        A resumed run is read and checked whole before its lock is taken and before anything is
        written: a damaged file, a hole in the rounds or another process holding the run stops it with
        the directory exactly as it was. Returns the last complete round (-1: none).
        """
        self.run_dir = run_dir
        model = self.load_student()
        if resume:
            run_dir.check_free()  # a second process stops here, before it reads, loads or writes anything
            model = self._restore(model)
        run_dir.lock()  # held until run() ends (a new run's directory was locked as it was made)
        try:
            if resume and run_dir.complete_rounds() != self.done:  # another process completed rounds meanwhile
                model = self._restore(self.load_student())
            self.teacher.open(run_dir.path, use_cache=self.use_cache)
        except BaseException:
            run_dir.unlock()
            raise
        self._loaded = None
        self.student = self._student(model)
        return self.done

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
            self.run_dir.unlock()
        return RunResult(self.run_dir, self.rows, self.stopped)

    def _run(self) -> None:
        done = self.done
        self.run_dir.discard_rounds_after(done)
        if done >= 0:
            self.started = time.monotonic() - self.rows[-1].get("elapsed", 0.0)
            self._write_summary()  # a view of the complete rounds: whatever an interruption left in it is replaced
        else:
            self._finish_round(0, {}, {})
        if self.recipe.loop.mode == "static":
            plan = [(1, self.recipe.sample_budget)]
        else:
            plan = [(t, self.recipe.loop.per_round) for t in range(1, self.recipe.loop.rounds + 1)]
        for round, m in plan:
            if round > done:
                reason = self._over_budget(m)
                if reason is not None:
                    self.stopped = f"stopped before round {round}: {reason}"
                    self._write_summary()
                    self.progress.note(self.stopped)
                    break
                self._round(round, m)

    def _settle(self) -> None:
        """After a failure: no half-made round left, and summary.json back to the complete rounds (best effort:
        removing the half-made round frees the space a full disk needs for it)."""
        try:
            self.run_dir.discard_rounds_after(self.run_dir.complete_rounds())
            self._write_summary()
        except (OSError, LoopkitError):
            pass

    def spent(self) -> dict[str, float]:
        """Spend so far in every budget currency (plus the answered calls the per-call averages need)."""
        return {"samples": len(self.synthetic), "teacher_calls": self.teacher_calls, **self.teacher.spent()}

    def _over_budget(self, m: int) -> str | None:
        caps = self.recipe.budget.model_dump()
        if all(v is None for v in caps.values()):
            return None
        judged = self.recipe.loop.mode == "active" and bool(self.selector.needs & {"judge_score", "referee_gap"})
        spent = self.spent()
        return first_exceeded(caps, spent, round_cost(self.teacher, self.selector.needs, self.data.pool, m, judged, spent))

    def load_student(self) -> Any:
        """Load the untrained student and let the trainer check it fits (call early: no run directory needed)."""
        if self._loaded is None:
            model, self.tokenizer = self.model_source.load(self.recipe.seed)
            self.trainer.check(model)
            self._loaded = model
        return self._loaded

    def _restore(self, untrained: Any) -> Any:
        """Read the state the complete rounds left (through RunDir, which checks every file; nothing is written)
        and return the student as it was after the last of them."""
        run = self.run_dir
        rows = run.rows()  # refuses a hole in the rounds: never redo a middle round over later complete ones
        run.check_journal()
        history, synthetic = [], []
        for round in range(len(rows)):
            run.check_round(round)
        for round in range(1, len(rows)):
            for n, row in enumerate(run.selected(round), 1):
                self._check_seed(run.round_path(round) / "selected.jsonl", n, row)
                history.append(row["index"])
            synthetic += run.samples(round)
        model = self._saved_student(len(rows) - 1, untrained)
        self.rows, self.history, self.synthetic = rows, history, synthetic
        self.known_questions = {normalize_question(s.question) for s in [*self.data.pool, *synthetic]}
        self.teacher_calls = rows[-1]["teacher_calls"] if rows else 0
        self.done = len(rows) - 1
        return model

    def _check_seed(self, path, n: int, row: dict) -> None:
        """A selection names a seed of the pool this recipe's task gives now (else the data changed since the run began)."""
        index, pool = row["index"], self.data.pool
        if index >= len(pool):
            problem = f"names seed {index}, but the task's pool has {len(pool)} seeds"
        elif "id" in row and pool[index].id != row["id"]:
            problem = f"names seed {index} as {row['id']}, but the task's seed {index} is now {pool[index].id}"
        else:
            return
        raise RunDirError(f"{path}: row {n} {problem}: the task's data changed since the run started; restore the data "
                          "the run was started with, or start a new run")

    def _saved_student(self, done: int, untrained: Any) -> Any:
        """The student as it was after round ``done``: the model the last round that trained saved."""
        run = self.run_dir
        trained = [t for t in range(1, done + 1) if _trained(run.metrics(t)) or run.has_model(t)]
        if not trained:
            return untrained  # nothing was trained yet
        if not any(run.has_model(t) for t in trained):
            raise RecipeError(
                f"cannot resume {run.path}: its rounds saved no student (trainer.params.save_model: false); "
                "start a new run"
            )
        return self.trainer.load(run.model_dir(trained[-1]), lambda: self.model_source.load(self.recipe.seed)[0])

    def _student(self, model: Any) -> Student:
        return Student(model, self.tokenizer, self.recipe.loop.batch_size, self.recipe.loop.max_new_tokens)

    def _round(self, round: int, m: int) -> None:
        times: dict[str, float] = {}
        out = self._writing = self.run_dir.round_dir(round)
        calls_before = self.teacher_calls
        indices = self._select(round, m, times)
        selector_calls = self.teacher_calls - calls_before
        self.history.extend(indices)
        variants = getattr(indices, "variants", {})
        chosen = [_with_variant(self.data.pool[i], variants.get(i)) for i in indices]
        self.run_dir.write_jsonl(out / "selected.jsonl", (
            {"index": i, "id": s.id, "question": s.question, **({"variant": variants[i]} if i in variants else {})}
            for i, s in zip(indices, chosen)
        ))

        clock = time.monotonic()
        with self.progress.stage(round, "generate", len(chosen)) as stage:
            generations = []
            for start in range(0, len(chosen), 64):  # in chunks, so the display moves
                generations += self.teacher.generate(chosen[start : start + 64], round, derive_seed(self.recipe.seed, "generate", start))
                stage.advance(min(64, len(chosen) - start))
        new, dropped = [], []
        for g in generations:
            self.teacher_calls += g.calls
            reason = g.dropped or self._duplicate(g.sample)
            if reason is None:
                new.append(g.sample)
                self.known_questions.add(normalize_question(g.sample.question))
            else:
                dropped.append({"seed_id": g.seed.id, "reason": reason, "question": g.sample.question if g.sample else None})
        times["generate"] = time.monotonic() - clock
        self.run_dir.write_jsonl(out / "synthetic.jsonl", new)
        self.run_dir.write_jsonl(out / "dropped.jsonl", dropped)
        if self.recipe.loop.score_offspring and new:
            clock = time.monotonic()
            self.run_dir.write_jsonl(out / "fidelity.jsonl", self._fidelity(round, new))
            times["fidelity"] = time.monotonic() - clock
        self.synthetic.extend(new)

        clock = time.monotonic()
        if not self.synthetic:  # every sample so far was dropped: nothing to train on, keep the student
            train_metrics = {"examples": 0, "steps": 0, "skipped": "no synthetic samples yet"}
        else:
            if self.recipe.loop.retrain == "base":
                model, _ = self.model_source.load(self.recipe.seed)
            else:
                model = self.student.model
            with self.progress.stage(round, "train") as stage:
                model, train_metrics = self.trainer.train(
                    model, self.tokenizer,
                    [self.student.render(self.task.prompt(s.question)) for s in self.synthetic],
                    [s.answer for s in self.synthetic],
                    out / "train", derive_seed(self.recipe.seed, "train", round), stage,
                )
            self.student = self._student(model)
        times["train"] = time.monotonic() - clock
        self._finish_round(round, times, {"train": train_metrics, "dropped": len(dropped), "selector_teacher_calls": selector_calls})

    def _fidelity(self, round: int, offspring: list[Sample]) -> list[dict]:
        """Each kept offspring's own loss beside its seed's, both under the student that picked the seed."""
        by_id = {s.id: s for s in self.data.pool}
        seeds = [by_id[o.seed_id] for o in offspring]
        items = seeds + offspring
        with self.progress.stage(round, "fidelity", 2 * len(items)) as stage:
            answers = self.student.generate([self.task.prompt(s.question) for s in items], stage.advance)
            loss = student_signals(self.student, self.task, items, answers, frozenset({"own_loss"}), stage.advance)["own_loss"]
        n = len(offspring)
        return [{"seed_id": s.id, "offspring_id": o.id, "seed_own_loss": float(loss[i]), "offspring_own_loss": float(loss[n + i])}
                for i, (s, o) in enumerate(zip(seeds, offspring))]

    def _write_summary(self, rows: list[dict] | None = None) -> None:
        summary = {"name": self.recipe.name, "mode": self.recipe.loop.mode, "rounds": self.rows if rows is None else rows}
        if self.stopped:
            summary["stopped"] = self.stopped
        self.run_dir.write_summary(summary)

    def _duplicate(self, sample: Sample) -> str | None:
        """Why a new question cannot be kept as a duplicate (compared normalised), or None."""
        question = normalize_question(sample.question)
        if question in self.test_questions:
            return "new question duplicates a test question"
        if self.recipe.loop.unique_questions and question in self.known_questions:
            return "new question duplicates a pool seed or an earlier synthetic question"
        return None

    def _select(self, round: int, m: int, times: dict[str, float]) -> list[int]:
        rng = np.random.default_rng(derive_seed(self.recipe.seed, "select", round))
        pool = self.data.pool
        if self.recipe.loop.mode == "static":
            return [int(i) for i in rng.choice(len(pool), size=m, replace=m > len(pool))]
        needs = self.selector.needs
        signals: dict[str, Any] = {}
        answers = None
        if needs_answers(needs):
            clock = time.monotonic()
            with self.progress.stage(round, "predict", len(pool)) as stage:
                answers = self.student.generate([self.task.prompt(s.question) for s in pool], stage.advance)
            times["predict"] = time.monotonic() - clock
        if needs:
            clock = time.monotonic()
            with self.progress.stage(round, "score", len(pool)) as stage:
                signals = student_signals(self.student, self.task, pool, answers, needs, stage.advance)
            times["score"] = time.monotonic() - clock
        if answers is not None and needs & {"judge_score", "referee_gap"}:
            clock = time.monotonic()
            with self.progress.stage(round, "judge", len(pool)) as stage:
                judged, calls = teacher_signals(self.teacher, pool, answers, needs, derive_seed(self.recipe.seed, "judge", round))
                stage.advance(len(pool))
            signals.update(judged)
            self.teacher_calls += calls
            times["judge"] = time.monotonic() - clock
        if signals:
            self.run_dir.write_jsonl(self.run_dir.round_dir(round) / "pool_signals.jsonl", _signal_rows(pool, signals))
        clock = time.monotonic()
        indices = call_select(self.selector, signals, len(pool), m, rng, tuple(self.history))
        times["select"] = time.monotonic() - clock
        return indices

    def _evaluate(self, round: int) -> tuple[float, list[dict]]:
        test = self.data.test
        with self.progress.stage(round, "evaluate", len(test)) as stage:
            predictions = self.student.generate([self.task.prompt(s.question) for s in test], stage.advance)
        rows = []
        for s, p in zip(test, predictions):
            readings = self.task.readings(s, p)
            row = {"id": s.id, "question": s.question, "reference": s.final, "prediction": p,
                   "correct": next(iter(readings.values()))}
            if len(readings) > 1:  # e.g. GSM8K's strict and flexible matches, side by side
                row["readings"] = readings
            rows.append(row)
        return sum(r["correct"] for r in rows) / len(rows), rows

    def _finish_round(self, round: int, times: dict[str, float], extra: dict) -> None:
        clock = time.monotonic()
        accuracy, rows = self._evaluate(round)
        times["evaluate"] = time.monotonic() - clock
        out = self._writing = self.run_dir.round_dir(round)
        self.run_dir.write_jsonl(out / "eval.jsonl", rows)
        if rows and "readings" in rows[0]:
            extra = {**extra, "accuracy_by_reading": {
                name: sum(r["readings"][name] for r in rows) / len(rows) for name in rows[0]["readings"]}}
        spent = self.teacher.spent()
        row = {
            "round": round,
            "samples": len(self.synthetic),
            "teacher_calls": self.teacher_calls,
            "teacher_tokens": spent["teacher_tokens"],
            "usd": round_usd(spent["usd"]),
            "accuracy": accuracy,
            "seconds": {k: _seconds(v) for k, v in times.items()},
            "elapsed": _seconds(time.monotonic() - self.started),
        }
        self.run_dir.write_json(out / "metrics.json", {**row, **extra})
        # summary.json before the marker: a failure in between leaves a half-made round, which is discarded
        # (freeing space) and summary.json rewritten; after the marker nothing can fail (it is empty).
        # A stop never falls between them either: the two always agree.
        with stopping.deferred():
            self._write_summary(self.rows + [row])
            self.run_dir.mark_complete(round)
            self.rows.append(row)
        self.progress.round_done(row)


def round_usd(x: float) -> float:
    return round(x, 6)


def _trained(metrics: dict) -> bool:
    """Whether a round trained the student (a round whose samples were all dropped keeps the one before)."""
    train = metrics.get("train")
    return isinstance(train, dict) and not train.get("skipped") and bool(train.get("examples"))


def _seconds(x: float) -> float:
    return round(x, 3)


def _with_variant(seed: Sample, variant: str | None) -> Sample:
    """The seed as the teacher gets it: with the selector's prompt variant (if any) in its meta."""
    return seed if variant is None else seed.model_copy(update={"meta": {**seed.meta, "prompt_variant": variant}})


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
