"""An lm-evaluation-harness task for an exported run: its test split, scored as loopkit scored it.

The task is plain YAML and a JSON-lines data file, with no code (no ``!function``): the prompt is
loopkit's exact text (a data column, so no template adds or strips a space), decoding is greedy
with loopkit's ``max_new_tokens`` and stops only at the end-of-sequence token, and the answer is
read and compared with lm-eval's own filters and ``exact_match`` in the task's checker's way
(``Checker.lm_eval``). Where lm-eval cannot do what the task's check does, the task says so.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA = "test.jsonl"


@dataclass(frozen=True)
class LmEvalTask:
    name: str  # what --tasks takes
    directory: Path  # what --include_path takes
    readings: tuple[str, ...]  # lm-eval's filters, one per reading; the first gives loopkit's accuracy
    gaps: tuple[str, ...]  # where lm-eval's scoring can differ from loopkit's (empty: nowhere)


def task_name(run_name: str) -> str:
    """An lm-eval task name for a run directory's name: loopkit_<name>, lowercase letters, digits and _."""
    return "loopkit_" + re.sub(r"[^a-z0-9]+", "_", run_name.lower()).strip("_")


def write_task(directory: Path, name: str, task: Any, test: list[dict], max_new_tokens: int, about: str) -> LmEvalTask:
    """``directory``/<name>.yaml and its data file ``test.jsonl``: the rows of a round's eval.jsonl (id,
    question, reference), each with the prompt the student saw (before any chat template) and the target."""
    checker, gap = task.lm_eval_checker()
    gaps = [gap] if gap else []
    unanswered = sum(row.get("reference") is None for row in test)
    if unanswered:
        gaps.append(f"{unanswered} of {len(test)} test questions have no reference answer (their task checks answers "
                    "without one); lm-eval counts them wrong")
    directory.mkdir(parents=True)
    data = directory / DATA
    with open(data, "w", encoding="utf-8") as f:
        for row in test:
            reference = row.get("reference")
            f.write(json.dumps({
                "id": row["id"], "question": row["question"], "prompt": task.prompt(row["question"]),
                "reference": reference, "target": "" if reference is None else checker.lm_eval_target(reference),
            }, ensure_ascii=False) + "\n")
    readings = checker.lm_eval()
    config = {
        "task": name,
        "dataset_path": "json",
        # lm-eval hands data_files to datasets.load_dataset, which reads a relative path from the working
        # directory, not from this file's: the path is absolute.
        "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "prompt",
        "doc_to_target": "target",
        "generation_kwargs": {"until": [], "do_sample": False, "max_gen_toks": max_new_tokens},
        "filter_list": [{"name": reading, "filter": [*pipeline, {"function": "take_first"}]}
                        for reading, pipeline in readings.items()],
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                         **checker.lm_eval_metric()}],
        "metadata": {"version": 1.0},
    }
    import yaml

    first = next(iter(readings))
    header = [
        f"# {about}",
        f"# The prompt is the `prompt` column verbatim; greedy decoding of at most {max_new_tokens} new tokens, stopped",
        "# only by the end-of-sequence token (lm-eval adds it to `until`), as loopkit evaluates.",
        f"# exact_match under the filter `{first}` is loopkit's accuracy.",
        *(f"# Differs from loopkit: {g}." for g in gaps),
        f"# Moved this directory? Point data_files at {DATA}'s new place.",
    ]
    text = "\n".join(header) + "\n" + yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=1000)
    (directory / f"{name}.yaml").write_text(text, encoding="utf-8")
    return LmEvalTask(name, directory, tuple(readings), tuple(gaps))


def command(model: str, tasks: LmEvalTask, tasks_dir: str, chat: bool, base: str | None = None) -> str:
    """The lm_eval command line that scores ``model`` (a directory, or an adapter on ``base``) on the task.

    A chat student sees its prompt through the chat template with no BOS token added beyond the template's
    own (``add_bos_token=False``), as loopkit renders it; a plain one sees the prompt after the
    tokenizer's usual special tokens (lm-eval's default).
    """
    args = f"pretrained={base},peft={model},tokenizer={model}" if base else f"pretrained={model}"
    if chat:
        args += ",add_bos_token=False"
    line = ["lm_eval", "--model", "hf", "--model_args", args, "--include_path", tasks_dir, "--tasks", tasks.name]
    return shlex.join(line + (["--apply_chat_template"] if chat else []))
