"""``loopkit eval``: evaluate a model on a recipe's task and test split, as the loop evaluates its rounds.

The model is an HF model directory, a ``loopkit export`` output (its ``model/``), or a run directory
(the student of one of its complete rounds, rebuilt as a resumed run rebuilds it). The evaluation is
the loop's own (``evaluation.evaluate``), with the recipe's ``loop.batch_size`` and ``max_new_tokens``,
so a run's round evaluated here on its own recipe gives the accuracy the run recorded. No printing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from loopkit.errors import LoopkitError
from loopkit.evaluation import Evaluation, evaluate
from loopkit.files import shown
from loopkit.inference import Inference, has_chat_template
from loopkit.records import Score
from loopkit.rundir import COMPLETE, RECIPE, RunDir

EXPORTED_MODEL = "model"  # where `loopkit export` puts the student
ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class EvalResult:
    model: str  # what was evaluated: a directory, or a run's round
    round: int | None  # the run's round (None: not a run)
    task: str  # the recipe whose task and test split it was evaluated on
    chat_template: bool
    limit: int | None
    evaluation: Evaluation

    @property
    def score(self) -> Score:
        return self.evaluation.score

    def to_json(self) -> dict[str, Any]:
        e = self.evaluation
        return {"model": self.model, "round": self.round, "task": self.task, "chat_template": self.chat_template,
                "limit": self.limit, **e.score.to_json(),
                "subtasks": {name: s.to_json() for name, s in e.subtasks.items()},
                **({"accuracy_by_reading": e.by_reading} if e.by_reading else {})}


def evaluate_model(target: Path, recipe: Path | None, overrides: list[str], round: int | None = None,
                   limit: int | None = None, chat: bool | None = None,
                   progress: Callable[[int], Callable[[int], None]] | None = None) -> EvalResult:
    """Evaluate ``target`` on ``recipe``'s task (a run's own recipe by default). ``progress(total)`` returns
    the callback that advances a display as answers are made."""
    from loopkit.prepare import load_task_data
    from loopkit.recipe import load_recipe

    run = _run(target)
    if run is None and round is not None:
        raise LoopkitError(f"--round: {shown(target)} is not a run directory; --round picks a round of a run")
    if recipe is None:
        if run is None:
            raise LoopkitError(f"--task: give the recipe whose task and test split to evaluate {shown(target)} on "
                               "(loopkit eval MODEL --task RECIPE); only a run directory has a recipe of its own")
        run.recipe()  # damaged, or changed since the run started: refused here
        recipe = run.path / RECIPE
    resolved = load_recipe(recipe, overrides)  # an invalid recipe fails here, before any model loads
    task = resolved.build("task")
    test = load_task_data(task, resolved).test[:limit]
    if run is not None:
        round = _complete_round(run, round)
        model, tokenizer = _run_student(run, round)
        label = f"{run.path} round {round}"
    else:
        model, tokenizer = _model_dir(target)
        label = str(target)
    if chat and not has_chat_template(tokenizer):
        raise LoopkitError(f"--chat-template: the tokenizer of {label} has no chat template; evaluate without it")
    loop = resolved.recipe.loop
    student = Inference(model, tokenizer, loop.batch_size, loop.max_new_tokens, chat=chat)
    evaluation = evaluate(student, task, test, progress(len(test)) if progress else None)
    return EvalResult(label, round, resolved.source, student.chat, limit, evaluation)


def _run(target: Path) -> RunDir | None:
    """The run directory ``target`` is, or None (a model directory or an export)."""
    run = RunDir(target)
    return run if target.is_dir() and run.has_recipe() and (run.has_round(0) or run.has_manifest()) else None


def _complete_round(run: RunDir, round: int | None) -> int:
    """``round`` if complete, by default the last complete round."""
    last = run.last_round()  # refuses a hole in the rounds
    if last < 0:
        raise LoopkitError(f"{run.path} has no complete round yet; evaluate it once round 0 is complete")
    if round is None:
        return last
    if not run.is_complete(round):
        why = f"is incomplete (no {COMPLETE} marker)" if run.has_round(round) else "does not exist"
        raise LoopkitError(f"--round {round}: round {round} of {run.path} {why}; complete rounds: 0-{last}")
    return round


def _run_student(run: RunDir, round: int) -> tuple[Any, Any]:
    """The student after ``round``, rebuilt from the run's recipe as a resumed run rebuilds it."""
    from loopkit.loop import saved_student
    from loopkit.recipe import load_recipe

    run.recipe()  # damaged, or changed since the run started: refused, even where --task names another recipe
    resolved = load_recipe(run.path / RECIPE)
    source, trainer = resolved.build("student"), resolved.build("trainer")
    seed = resolved.recipe.seed
    model, tokenizer = source.load(seed)
    return saved_student(run, trainer, round, model, lambda: source.load(seed)[0], "evaluate"), tokenizer


def _model_dir(target: Path) -> tuple[Any, Any]:
    """An HF model directory, or the model an export holds, loaded with transformers."""
    from loopkit.models.hf import HFModel, check_model_path

    if not target.is_dir():
        raise LoopkitError(f"{shown(target)} is not a directory; give an HF model directory, a `loopkit export` "
                           "output or a run directory")
    directory = target / EXPORTED_MODEL if (target / EXPORTED_MODEL).is_dir() else target
    if (directory / ADAPTER_CONFIG).is_file() and not (directory / "config.json").is_file():
        raise LoopkitError(f"{shown(directory)} is a LoRA adapter, not a whole model; export the run with "
                           "`loopkit export --merge` (or evaluate the run directory itself)")
    try:
        check_model_path(str(directory))
    except ValueError:
        raise LoopkitError(f"{shown(target)} is not a model directory (no config.json), an export (no model/) or a run "
                           "directory (no recipe.yaml and round-000); give one of those") from None
    return HFModel(HFModel.Params(path=str(directory))).load(0)
