"""Accuracy per sub-task and its binomial standard error (metrics.json, the round line, report), and
`loopkit eval` on an export and on a run directory: the loop's own evaluation, so the same numbers."""

import io
import json
import math
import shutil
from collections import defaultdict

import pytest
from test_cli import assert_one_line_error, invoke

from rich.console import Console

from loopkit.records import read_samples
from loopkit.report import tables
from loopkit.testing import TINY_RECIPE

SUBTASKS = {"syllogism", "family_relationships"}  # the tiny recipe's reasoning-gym mix
# One round, trained long enough that the student gets some test items right (most syllogisms: "Yes").
TRAINED = ["loop.rounds=1", "task.params.pool_size=40", "task.params.test_size=16", "loop.per_round=24",
           "selector.name=random", "trainer.params.epochs=6", "trainer.params.learning_rate=0.01"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One round of the tiny recipe through `loopkit run` (output captured), and what it printed."""
    tmp = tmp_path_factory.mktemp("evaluation")
    recipe = tmp / "recipe.yaml"
    recipe.write_text(TINY_RECIPE, encoding="utf-8")
    result = invoke("run", str(recipe), "-o", str(tmp / "runs"), *[a for o in TRAINED for a in ("--set", o)])
    assert result.exit_code == 0, result.output
    (path,) = (tmp / "runs").iterdir()
    return path, result.output


def wide(*parts):
    """What rich prints, on a console wide enough that no cell wraps."""
    console = Console(width=300, record=True, file=io.StringIO())
    for part in parts:
        console.print(part)
    return console.export_text()


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_metrics_record_accuracy_per_subtask_with_binomial_standard_errors(run):
    path, output = run
    for t in (0, 1):
        round_dir = path / f"round-{t:03d}"
        metrics = json.loads((round_dir / "metrics.json").read_text())
        graded = rows(round_dir / "eval.jsonl")
        by_subtask = defaultdict(list)
        for item in graded:
            by_subtask[item["subtask"]].append(item["correct"])
        assert set(by_subtask) == set(metrics["subtasks"]) == SUBTASKS
        for name, correct in by_subtask.items():
            p, n = sum(correct) / len(correct), len(correct)
            assert metrics["subtasks"][name] == {"accuracy": p, "accuracy_se": round(math.sqrt(p * (1 - p) / n), 6),
                                                 "test_items": n}
        p = metrics["accuracy"]
        assert metrics["test_items"] == 16 and p == sum(i["correct"] for i in graded) / 16
        assert metrics["accuracy_se"] == round(math.sqrt(p * (1 - p) / 16), 6) and (t == 0 or p > 0)
        summary = json.loads((path / "summary.json").read_text())["rounds"][t]
        assert summary["subtasks"] == metrics["subtasks"] and summary["accuracy_se"] == metrics["accuracy_se"]
        # the round line: the accuracy ± its standard error, then each sub-task's accuracy
        line = next(x for x in output.splitlines() if x.startswith(f"round {t} of 1: accuracy"))
        assert f"{p:.1%} ± {metrics['accuracy_se']:.1%} (" in line
        assert all(f"{name} {s['accuracy']:.1%}" in line for name, s in metrics["subtasks"].items())
    # every offspring is of its seed's sub-task
    pool = {s["id"]: s for s in rows(path / "round-001" / "selected.jsonl")}
    synthetic = read_samples(path / "round-001" / "synthetic.jsonl")
    assert synthetic and all(s.subtask == pool[s.seed_id]["subtask"] for s in synthetic)


def test_report_gives_final_accuracy_per_subtask_and_the_binomial_error_of_a_single_seed(run, tmp_path):
    path, _ = run
    result = invoke("report", str(path), "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    metrics = json.loads((path / "round-001" / "metrics.json").read_text())
    arm = json.loads((tmp_path / "report.json").read_text())["arms"]["random"]
    assert arm["final_accuracy"] == {"mean": metrics["accuracy"], "se": metrics["accuracy_se"], "n": 1,
                                     "se_over": "test items"}
    assert {name: (s["mean"], s["se"], s["se_over"]) for name, s in arm["final_accuracy_by_subtask"].items()} == {
        name: (s["accuracy"], s["accuracy_se"], "test items") for name, s in metrics["subtasks"].items()}
    text = wide(*tables(json.loads((tmp_path / "report.json").read_text())))
    assert "final accuracy per sub-task" in text and "binomial standard error over the test items" in text
    assert f"{metrics['accuracy']:.1%} ± {metrics['accuracy_se']:.1%}" in text and metrics["accuracy_se"] > 0
    assert arm["auc"]["se"] is None  # one seed: no spread over seeds, and no "± 0.0%" claiming one


def evaluated(*args):
    result = invoke("eval", *map(str, args))
    assert result.exit_code == 0, result.output
    return result.output


def test_eval_of_an_export_gives_the_accuracy_the_run_recorded(run, tmp_path):
    path, _ = run
    exported = tmp_path / "export"
    assert invoke("export", str(path), "--to", str(exported)).exit_code == 0
    out = tmp_path / "results" / "eval.json"
    output = evaluated(exported, "--task", path / "recipe.yaml", "--out", out)  # the recipe as run
    metrics = json.loads((path / "round-001" / "metrics.json").read_text())
    result = json.loads(out.read_text())
    assert (result["accuracy"], result["accuracy_se"], result["test_items"]) == (
        metrics["accuracy"], metrics["accuracy_se"], metrics["test_items"])
    assert result["subtasks"] == metrics["subtasks"] and result["chat_template"] is False
    text = " ".join(output.split())
    assert f"{metrics['accuracy']:.1%} ± {metrics['accuracy_se']:.1%}" in text and "syllogism" in text


def test_eval_of_a_run_directory_takes_its_last_complete_round_or_the_one_named(run, tmp_path):
    path, _ = run
    for args, t in (((), 1), (("--round", 0), 0)):
        out = tmp_path / f"round-{t}.json"
        evaluated(path, *args, "--out", out)
        result, metrics = json.loads(out.read_text()), json.loads((path / f"round-{t:03d}" / "metrics.json").read_text())
        assert result["round"] == t and result["subtasks"] == metrics["subtasks"]
        assert (result["accuracy"], result["accuracy_se"]) == (metrics["accuracy"], metrics["accuracy_se"])
    # --limit: the first N test items, scored as the round scored them
    out = tmp_path / "limited.json"
    evaluated(path, "--limit", 5, "--out", out)
    first = rows(path / "round-001" / "eval.jsonl")[:5]
    result = json.loads(out.read_text())
    assert result["test_items"] == 5 and result["accuracy"] == sum(i["correct"] for i in first) / 5


def test_eval_mistakes_are_one_line(run, tmp_path):
    path, _ = run
    recipe = path.parent.parent / "recipe.yaml"
    (tmp_path / "empty").mkdir()
    assert_one_line_error(invoke("eval", str(tmp_path / "empty"), "--task", str(recipe)), "is not a model directory")
    assert_one_line_error(invoke("eval", str(path), "--round", "7"), "--round 7", "does not exist", "complete rounds: 0-1")
    assert_one_line_error(invoke("eval", str(path), "--set", "loop.rounds=-1"), "loop.rounds")
    assert_one_line_error(invoke("eval", str(tmp_path / "empty")), "--task", "give the recipe")
    assert_one_line_error(invoke("eval", str(path), "--chat-template"), "has no chat template")
    assert_one_line_error(invoke("eval", str(path), "--out", str(tmp_path)), "--out", "is a directory")
    assert_one_line_error(invoke("eval", str(tmp_path / "nowhere"), "--task", str(recipe)), "is not a directory")
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    (copy / "round-002").mkdir()  # a round in progress
    assert_one_line_error(invoke("eval", str(copy), "--round", "2"), "round 2 of", "is incomplete", "complete rounds: 0-1")


def test_the_round_line_names_the_subtasks_only_where_there_are_several():
    from dataclasses import replace

    from loopkit.records import RoundRow, Score
    from loopkit.runner import RichProgress

    console = Console(width=300, record=True, file=io.StringIO())
    row = RoundRow(round=1, samples=6, teacher_calls=6, accuracy=0.5, accuracy_se=0.144338, test_items=12,
                   subtasks={"aiw": Score(0.25, 0.176777, 6).to_json(), "syllogism": Score(0.75, 0.176777, 6).to_json()})
    for shown in (row, replace(row, subtasks={"aiw": Score(0.5, 0.144338, 12).to_json()})):
        RichProgress(console).round_done(shown)
    lines = console.export_text().splitlines()
    assert lines[0].startswith("round 1: accuracy 50.0% ± 14.4% (aiw 25.0%, syllogism 75.0%) with 6 synthetic samples")
    assert lines[1].startswith("round 1: accuracy 50.0% ± 14.4% with 6 synthetic samples")
