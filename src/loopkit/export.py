"""Export a run: the student of one round as a standard HF model directory, and the synthetic data
of rounds 1..N as a ``datasets`` dataset with a card (recipe, versions, the "synthetic" tag).

No printing: the CLI says where things went.
"""

from __future__ import annotations

import errno
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from loopkit.errors import LoopkitError
from loopkit.files import check_dir_target
from loopkit.rundir import COMPLETE, RECIPE, RunDir, refused_write

ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class ExportResult:
    round: int
    model_dir: Path
    model_kind: str  # "full", "adapter" or "merged"
    data_dir: Path
    rows: int


def pick_round(run: RunDir, round: int | None) -> int:
    """``round`` if it is complete and has a saved model; by default the last such round."""
    last = run.last_round()  # refuses a hole in the rounds
    complete = list(range(last + 1))
    if round is None:
        with_model = [t for t in complete if run.has_model(t)]
        if not with_model:
            raise LoopkitError(f"{run.path} has no complete round with a saved model (train/model); nothing to export")
        return with_model[-1]
    if not run.has_round(round):
        raise LoopkitError(f"{run.path} has no round {round}; complete rounds: {complete or 'none'}")
    if not run.is_complete(round):
        raise LoopkitError(f"round {round} of {run.path} is incomplete (no {COMPLETE} marker); choose a complete round")
    if not run.has_model(round):
        raise LoopkitError(
            f"round {round} of {run.path} has no saved model (train/model); round 0 is the untrained student, "
            "and trainer.params.save_model: false saves none"
        )
    return round


def _check_target(target: Path) -> None:
    check_dir_target(target, "--to")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise LoopkitError(f"{target} exists and is not an empty directory; choose a new --to directory")


def _remove(target: Path, keep_dir: bool) -> None:
    for path in target.iterdir() if keep_dir else [target]:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def export_model(source: Path, target: Path, merge: bool, run: RunDir | None = None) -> str:
    """Copy the student (full weights or a LoRA adapter), or merge an adapter into its base.

    An adapter that names no base (a student built in code, such as ``tiny``) is merged into the
    base rebuilt from the run's ``recipe.yaml``: the student component, its params and the run seed.
    """
    if not (source / ADAPTER_CONFIG).exists():
        shutil.copytree(source, target)
        return "full"
    if not merge:
        shutil.copytree(source, target)
        return "adapter"
    from peft import PeftModel
    from transformers import AutoTokenizer

    base_path = json.loads((source / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base_path:
        base = _student_base(run, source)
    else:
        base = _load_base(base_path, source)
    merged = PeftModel.from_pretrained(base, str(source)).merge_and_unload()
    merged.save_pretrained(target)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    return "merged"


def _student_base(run: RunDir | None, source: Path):
    """The untrained student of the run, rebuilt from its recipe.yaml (for adapters that name no base)."""
    from loopkit.models.spec import ModelSpec

    if run is None or not run.has_recipe():
        raise LoopkitError(f"cannot merge: {source / ADAPTER_CONFIG} names no base model and the run has no recipe.yaml "
                           "to rebuild it from; export without --merge to get the adapter")
    data = run.recipe()
    try:
        student = ModelSpec(name=data["student"]["name"], params=data["student"].get("params") or {})
    except (KeyError, TypeError, AttributeError):
        raise run.damaged(run.path / RECIPE, "has no student section") from None
    model, _ = student.build().load(data.get("seed", 0))
    return model.cpu()


def _load_base(base_path: str, source: Path):
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(base_path)
    except (OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LoopkitError(
            f"cannot merge: the base model '{base_path}' named in {source / ADAPTER_CONFIG} cannot be loaded offline "
            f"({reason}); export without --merge to get the adapter"
        ) from None


def synthetic_rows(run: RunDir, round: int) -> list[dict]:
    """Every synthetic sample of rounds 1..``round``; ``meta`` as a JSON string (its shape varies)."""
    return [{**s.model_dump(exclude={"meta"}), "meta": json.dumps(s.meta, ensure_ascii=False)} for s in run.synthetic(round)]


def dataset_card(run: RunDir, round: int, rows: int) -> str:
    """A dataset card: YAML front matter with the tags, then the run's recipe and versions."""
    recipe_text = run.recipe_text().rstrip()  # a damaged recipe.yaml is named, not copied into the card
    manifest_text = json.dumps(run.manifest(), indent=2, ensure_ascii=False)
    return (
        "---\ntags:\n- synthetic\n- loopkit\n---\n\n"
        f"# Synthetic data from the loopkit run `{run.path.name}`\n\n"
        f"{rows} synthetic samples written by the teacher in rounds 1-{round} of the closed loop "
        "(each round's `synthetic.jsonl`). Columns follow loopkit's `Sample`; `meta` is a JSON string.\n\n"
        f"## Recipe\n\n```yaml\n{recipe_text}\n```\n\n"
        f"## Versions\n\n```json\n{manifest_text}\n```\n"
    )


def _features():
    from datasets import Features, Value

    text = Value("string")
    return Features({
        "id": text, "question": text, "answer": text, "final": text, "source": text, "seed_id": text,
        "round": Value("int64"), "meta": text,
    })


def export_run(run_dir: str | Path, to: str | Path, round: int | None = None, merge: bool = False) -> ExportResult:
    """Write ``to/model`` (the student of ``round``) and ``to/data`` (its synthetic data and card).

    Reads only complete rounds and never takes the run's lock: a run in progress can be exported.
    """
    run, target = RunDir(run_dir), Path(to)
    if not run.has_round(0):
        raise LoopkitError(f"{run_dir} is not a loopkit run directory (no round-000); give the directory `loopkit run` printed")
    _check_target(target)
    round = pick_round(run, round)
    model_dir = run.model_dir(round)  # checked whole: a truncated model is named, not copied
    rows = synthetic_rows(run, round)
    card = dataset_card(run, round, len(rows))
    import datasets

    datasets.disable_progress_bars()
    created = not target.exists()
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LoopkitError(f"cannot create {target}: {exc.strerror}; choose another --to directory") from None
    try:
        kind = export_model(model_dir, target / "model", merge, run)
        data_dir = target / "data"
        datasets.Dataset.from_list(rows, features=_features()).save_to_disk(str(data_dir))
        (data_dir / "README.md").write_text(card, encoding="utf-8")
    except BaseException as exc:  # no half-written export left behind
        _remove(target, keep_dir=not created)
        refused = refused_write(exc)
        if refused is not None:
            space = "free space, or " if refused[0] in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else ""
            raise LoopkitError(f"cannot write the export in {target}: {refused[1]}; {space}choose another --to directory") from None
        raise
    return ExportResult(round, target / "model", kind, data_dir, len(rows))
