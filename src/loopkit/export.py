"""Export a run for the tools people train and evaluate with:

- ``model/``: the student of one round as a standard HF model directory (full weights, a LoRA adapter
  naming its base by its hub id, or the adapter merged into its base), with a model card;
- ``data/``: the synthetic data of rounds 1..N as a ``datasets`` dataset that both
  ``load_dataset(DIR)`` (a hub-layout card with YAML metadata) and ``load_from_disk(DIR)`` read, with
  TRL's ``prompt``/``completion`` columns (and ``messages`` for chat students);
- ``lm-eval/``: an lm-evaluation-harness task on the run's test split that scores as loopkit does.

No printing: the CLI says where things went.
"""

from __future__ import annotations

import errno
import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopkit import lmeval
from loopkit.errors import LoopkitError
from loopkit.files import check_dir_target
from loopkit.records import Sample
from loopkit.rundir import COMPLETE, RECIPE, RunDir, refused_write

ADAPTER_CONFIG = "adapter_config.json"
LICENSE_ID = re.compile(r"[a-z0-9][a-z0-9.+-]*")  # the hub's license ids: apache-2.0, mit, cc-by-4.0, other, unknown
DATA_FILES = "train/data-*.arrow"  # where DatasetDict.save_to_disk puts the train split, as the card's configs name it


@dataclass(frozen=True)
class ExportResult:
    round: int
    model_dir: Path
    model_kind: str  # "full", "adapter" or "merged"
    data_dir: Path
    rows: int
    lm_eval: lmeval.LmEvalTask
    lm_eval_command: str | None  # how to score the exported model (paths as given in ``to``); None: see lm_eval_note
    lm_eval_note: str | None


@dataclass(frozen=True)
class _Student:
    """What the cards and the lm-eval command say about the student."""

    name: str  # the recipe's student component
    public: str | None  # its hub id
    note: str  # how loopkit's weights differ from the hub's
    built_in_code: bool
    tokenizer: Any
    chat: bool

    def render(self, prompt: str) -> str:
        from loopkit.inference import Inference

        return Inference(None, self.tokenizer).render(prompt)


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


def check_license(license_id: str) -> str:
    if not LICENSE_ID.fullmatch(license_id):
        raise LoopkitError(f"--license: '{license_id}' is not a license id; give one the Hugging Face hub knows, "
                           "e.g. apache-2.0, mit, cc-by-4.0, other or unknown")
    return license_id


def _check_target(target: Path) -> None:
    check_dir_target(target, "--to")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise LoopkitError(f"{target} exists and is not an empty directory; choose a new --to directory")


def _remove(target: Path, keep_dir: bool) -> None:
    for path in target.iterdir() if keep_dir else [target]:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def component(run: RunDir, role: str, kind: str, checked: bool = True) -> Any:
    """The run's ``role`` component (``task``, ``student``) built from its recipe.yaml.

    ``checked=False`` takes params that no longer validate here as recorded (a student whose weights are
    not on this machine still has a hub id to name).
    """
    from pydantic import ValidationError

    from loopkit.plugins import registry
    from loopkit.component import format_validation_error

    source = run.path / RECIPE
    spec = run.recipe().get(role)
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise run.damaged(source, f"has no {role} section")
    try:
        cls = registry().load(kind, spec["name"])
    except LoopkitError as exc:
        raise LoopkitError(f"{source}: {role}.name: {exc} Install the plugin the run used, then export again") from None
    params = spec.get("params") or {}
    try:
        return cls(cls.Params.model_validate(params))
    except ValidationError as exc:
        if not checked and isinstance(params, dict):
            return cls(cls.Params.model_construct(**params))
        raise LoopkitError(format_validation_error(str(source), f"{role}.params", exc)) from None


def export_model(source: Path, target: Path, merge: bool, run: RunDir | None = None, base_id: str | None = None) -> str:
    """Copy the student (full weights or a LoRA adapter), or merge an adapter into its base.

    A copied adapter names its base by ``base_id`` (its hub id; None: no public base), never by a path on
    this machine. An adapter that names no base (a student built in code, such as ``tiny``) is merged into
    the base rebuilt from the run's ``recipe.yaml``: the student component, its params and the run seed.
    """
    if not (source / ADAPTER_CONFIG).exists():
        shutil.copytree(source, target)
        return "full"
    if not merge:
        shutil.copytree(source, target)
        config = json.loads((target / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        config["base_model_name_or_path"] = base_id
        (target / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
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
    if run is None or not run.has_recipe():
        raise LoopkitError(f"cannot merge: {source / ADAPTER_CONFIG} names no base model and the run has no recipe.yaml "
                           "to rebuild it from; export without --merge to get the adapter")
    model, _ = component(run, "student", "model").load(run.recipe().get("seed", 0))
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


def _student(run: RunDir, model_dir: Path) -> _Student:
    from transformers import AutoTokenizer

    source = component(run, "student", "model", checked=False)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise run.damaged(model_dir, f"holds no tokenizer that loads ({reason.rstrip(': ')})") from None
    public = source.public_name()
    return _Student(run.recipe()["student"]["name"], public, source.public_note,
                    public is None and source.pretrained_path() is None, tokenizer,
                    getattr(tokenizer, "chat_template", None) is not None)


# -- the dataset ---------------------------------------------------------------------------------------


def synthetic_rows(samples: list[Sample], task: Any = None, chat: bool = False) -> list[dict]:
    """The synthetic samples as dataset rows; ``meta`` as a JSON string (its shape varies).

    With the run's ``task``, TRL's columns too: ``prompt`` (the task's prompt, exactly as the student saw it)
    and ``completion`` (the answer it was trained on); for a chat student, both as conversations, and
    ``messages`` (the two turns), so TRL applies the chat template as loopkit did.
    """
    rows = []
    for s in samples:
        row = {**s.model_dump(exclude={"meta"}), "meta": json.dumps(s.meta, ensure_ascii=False)}
        if task is not None:
            prompt = task.prompt(s.question)
            if chat:
                turns = [{"role": "user", "content": prompt}], [{"role": "assistant", "content": s.answer}]
                row.update(prompt=turns[0], completion=turns[1], messages=turns[0] + turns[1])
            else:
                row.update(prompt=prompt, completion=s.answer)
        rows.append(row)
    return rows


def _features(chat: bool):
    from datasets import Features, Value

    text = Value("string")
    turns = [{"role": text, "content": text}]
    return Features({
        "id": text, "question": text, "answer": text, "final": text, "source": text, "seed_id": text,
        "round": Value("int64"), "subtask": text, "meta": text,
        **({"prompt": turns, "completion": turns, "messages": turns} if chat else {"prompt": text, "completion": text}),
    })


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M" if n < 10_000_000 else "n>10M"


def dataset_card(run: RunDir, round: int, rows: int, license_id: str, chat: bool, digest: str) -> str:
    """A dataset card in the hub's layout: YAML metadata (license, tags, the data files), then the run's recipe and versions."""
    import yaml

    recipe_text = run.recipe_text().rstrip()  # a damaged recipe.yaml is named, not copied into the card
    manifest_text = json.dumps(run.manifest(), indent=2, ensure_ascii=False)
    # datasets caches what load_dataset reads from a local directory under the directory's name and this
    # metadata alone, not the files: without the content's digest here, a second export would be read as the first.
    config = {"config_name": "default", "data_files": [{"split": "train", "path": DATA_FILES}],
              "description": f"synthetic data of the loopkit run {run.path.name}, rounds 1-{round} (content {digest})"}
    front = {
        "license": license_id, "task_categories": ["text-generation"], "tags": ["synthetic", "loopkit"],
        "size_categories": [_size_category(rows)], "configs": [config],
    }
    trl = ("`prompt` and `completion` are conversations (the user's prompt, the assistant's answer) and `messages` "
           "both turns: TRL applies the student's chat template to them, as loopkit did" if chat else
           "`prompt` is exactly the text the student saw and `completion` the answer it was trained on")
    return (
        f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n\n"
        f"# Synthetic data from the loopkit run `{run.path.name}`\n\n"
        f"{rows} synthetic samples written by the teacher in rounds 1-{round} of the closed loop "
        "(each round's `synthetic.jsonl`). Columns follow loopkit's `Sample` (`meta` is a JSON string), plus TRL's: "
        f"{trl}. `trl.SFTTrainer(model, train_dataset=dataset)` trains on it as is (loss on the completion).\n\n"
        "```python\nfrom datasets import load_dataset, load_from_disk\n"
        "dataset = load_dataset(\"DIR\", split=\"train\")  # or load_from_disk(\"DIR\")[\"train\"]\n```\n\n"
        f"License: `{license_id}`"
        + (" (loopkit does not know it: the teacher's terms of use and the seed data's license decide it; "
           "set it with `loopkit export --license`)" if license_id == "unknown" else "") + ".\n\n"
        f"## Recipe\n\n```yaml\n{recipe_text}\n```\n\n"
        f"## Versions\n\n```json\n{manifest_text}\n```\n"
    )


def write_dataset(rows: list[dict], target: Path, card: str, chat: bool) -> None:
    """``target`` as a DatasetDict with a train split (load_from_disk) whose files the card names (load_dataset).

    load_dataset refuses a directory that a plain Dataset.save_to_disk wrote (its state.json); a DatasetDict
    keeps that file one level down, so both readers see the same files.
    """
    import datasets

    split = datasets.Dataset.from_list(rows, features=_features(chat))
    datasets.DatasetDict({"train": split}).save_to_disk(str(target))
    (target / "README.md").write_text(card, encoding="utf-8")


# -- the model card ------------------------------------------------------------------------------------


def model_card(run: RunDir, rows: list[dict], round: int, kind: str, student: _Student, task: Any, test_question: str,
               license_id: str, lm_eval_line: str, command: str | None, note: str | None) -> str:
    """The model directory's README.md: base model (by hub id, never a local path), how it was trained,
    accuracy per round, the exact prompt format, and how to evaluate it."""
    import yaml

    recipe = run.recipe()
    loop = recipe.get("loop") or {}
    front: dict[str, Any] = {"base_model": student.public} if student.public else {}
    front.update(library_name="peft" if kind == "adapter" else "transformers", license=license_id,
                 pipeline_tag="text-generation", tags=["loopkit", "synthetic-data", *(["lora"] if kind == "adapter" else [])])
    weights = {"full": "the student's full weights", "adapter": "a LoRA adapter (PEFT) for the base model",
               "merged": "full weights: the round's LoRA adapter merged into the base"}[kind]
    table = "\n".join(f"| {r['round']} | {r['samples']} | {r['teacher_calls']} | {r['accuracy']:.1%} |" for r in rows)
    evaluate = f"From the export directory (this one's parent):\n\n```\n{command}\n```\n" if command else ""
    return (
        f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n\n"
        f"# Round {round} student of the loopkit run `{run.path.name}`\n\n"
        f"This is {weights}, fine-tuned with loopkit on synthetic data a teacher wrote in a closed loop "
        "(the data is in `../data`).\n\n"
        f"- Base model: {_base_model(student, recipe, kind)}\n"
        f"- Recipe `{recipe.get('name')}`: task `{recipe['task']['name']}`, teacher `{recipe['teacher']['name']}`, "
        f"selector `{recipe['selector']['name']}`, trainer `{recipe['trainer']['name']}`; "
        f"{loop.get('mode', 'active')} loop, {loop.get('per_round')} samples per round, {len(rows) - 1} of "
        f"{loop.get('rounds')} rounds complete (the whole recipe is in the dataset card)\n"
        f"- License: `{license_id}`\n\n"
        "## Accuracy on the run's held-out test split\n\n"
        f"| round | synthetic samples | teacher calls | test accuracy |\n|---|---|---|---|\n{table}\n\n"
        f"This is round {round}. Round 0 is the untrained base.\n\n"
        f"## Prompt format\n\n{_prompt_format(task, student, test_question, loop.get('max_new_tokens'))}\n\n"
        f"## Evaluate with lm-evaluation-harness\n\n{lm_eval_line}\n\n{evaluate}" + (f"\n{note}.\n" if note else "")
    )


def _base_model(student: _Student, recipe: dict, kind: str) -> str:
    if student.public:
        return f"[`{student.public}`](https://huggingface.co/{student.public})" + (f" ({student.note})" if student.note else "")
    if student.built_in_code:
        params = json.dumps(recipe["student"].get("params") or {})
        merge = "; `loopkit export --merge` merges the adapter into it" if kind == "adapter" else ""
        return (f"none on the hub: loopkit's `{student.name}` model, built in code from {params} with the run's seed "
                f"{recipe.get('seed', 0)}{merge}")
    return f"a model directory on the machine that ran loopkit (student `{student.name}`), not a hub model"


def _prompt_format(task: Any, student: _Student, question: str, max_new_tokens: Any) -> str:
    """The prompt as a template, one real prompt exactly (as JSON: every space shows), and how it was decoded."""
    template, example = task.prompt("{question}"), task.prompt(question)
    last = template.rsplit("\n", 1)[-1]
    ending = f"Nothing follows `{last}`, not even a space. " if last and last == last.rstrip() else ""
    if student.chat:
        chat = ("The chat template is applied: the prompt is the user's message, followed by the assistant's turn "
                f"(`add_generation_prompt`). The model's whole input, exactly: `{json.dumps(student.render(example))}`")
    else:
        chat = "No chat template: the prompt is the model's whole input, after the tokenizer's special tokens (its BOS)."
    return (f"The student was trained and evaluated on this prompt, the question in place of `{{question}}`:\n\n"
            f"```\n{template}\n```\n\n{ending}Exactly, as JSON: `{json.dumps(example)}`.\n{chat}\n\n"
            f"Answers were decoded greedily, at most {max_new_tokens} new tokens, up to the end-of-sequence token; "
            "the task then reads and checks the final answer (by default what follows the last `####`, else the first line).")


# -- the whole export ----------------------------------------------------------------------------------


def export_run(run_dir: str | Path, to: str | Path, round: int | None = None, merge: bool = False,
               license_id: str = "unknown") -> ExportResult:
    """Write ``to/model`` (the student of ``round``, with a card), ``to/data`` (its synthetic data, with a card)
    and ``to/lm-eval`` (an lm-evaluation-harness task on the run's test split).

    Reads only complete rounds and never takes the run's lock: a run in progress can be exported.
    """
    check_license(license_id)
    run, target = RunDir(run_dir), Path(to)
    if not run.has_round(0):
        raise LoopkitError(f"{run_dir} is not a loopkit run directory (no round-000); give the directory `loopkit run` printed")
    _check_target(target)
    # Every file of the run is read and checked, and every component built, before anything is written.
    round = pick_round(run, round)
    model_dir = run.model_dir(round)  # checked whole: a truncated model is named, not copied
    summary = run.rows()
    samples = [s for t in range(1, round + 1) for s in run.samples(t)]
    test = run.test_split(round)
    task = component(run, "task", "task")
    student = _student(run, model_dir)
    rows = synthetic_rows(samples, task, student.chat)
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]
    card = dataset_card(run, round, len(rows), license_id, student.chat, digest)
    max_new_tokens = (run.recipe().get("loop") or {}).get("max_new_tokens", 32)
    import datasets

    datasets.disable_progress_bars()
    created = not target.exists()
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LoopkitError(f"cannot create {target}: {exc.strerror}; choose another --to directory") from None
    try:
        kind = export_model(model_dir, target / "model", merge, run, student.public)
        write_dataset(rows, target / "data", card, student.chat)
        about = (f"lm-evaluation-harness task: the test split of the loopkit run {run.path.name} "
                 f"(loopkit's accuracy in round {round}: {summary[round]['accuracy']:.4f}).")
        tasks = lmeval.write_task(target / "lm-eval", lmeval.task_name(run.path.name), task, test, max_new_tokens, about)
        command, note = _lm_eval_command(kind, student, tasks, str(target / "model"), str(target / "lm-eval"))
        relative, _ = _lm_eval_command(kind, student, tasks, "model", "lm-eval")
        line = (f"`lm-eval/{tasks.name}.yaml` scores this model on the run's {len(test)} test questions as loopkit did: "
                f"`exact_match` under the filter `{tasks.readings[0]}` is loopkit's accuracy."
                + "".join(f" Where it differs: {gap}." for gap in tasks.gaps))
        (target / "model" / "README.md").write_text(
            model_card(run, summary, round, kind, student, task, test[0]["question"], license_id, line, relative, note),
            encoding="utf-8")
    except BaseException as exc:  # no half-written export left behind
        _remove(target, keep_dir=not created)
        refused = refused_write(exc)
        if refused is not None:
            space = "free space, or " if refused[0] in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else ""
            raise LoopkitError(f"cannot write the export in {target}: {refused[1]}; {space}choose another --to directory") from None
        raise
    return ExportResult(round, target / "model", kind, target / "data", len(rows), tasks, command, note)


def _lm_eval_command(kind: str, student: _Student, tasks: lmeval.LmEvalTask, model: str, tasks_dir: str):
    """(lm_eval command line, None), or (None, why there is none) for an adapter whose base is not on the hub."""
    if kind != "adapter":
        return lmeval.command(model, tasks, tasks_dir, student.chat), None
    if student.public:
        differs = f"lm-eval loads the base from the hub ({student.note}); export with --merge for the exact weights"
        return lmeval.command(model, tasks, tasks_dir, student.chat, base=student.public), differs if student.note else None
    return None, ("lm-eval loads an adapter onto a base from the hub, and this base is not there: "
                  "export with `loopkit export --merge` for full weights lm-eval can load alone")
