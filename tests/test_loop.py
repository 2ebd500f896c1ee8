"""The closed loop end to end on a tiny model: real generation, real TRL training, real verifiers."""

import json
from collections import Counter
from contextlib import contextmanager

import pytest
import yaml

from loopkit.loop import Loop
from loopkit.recipe import load_recipe
from loopkit.records import read_samples
from loopkit.testing import TINY_RECIPE, registered, run_recipe
from loopkit.trainers.trl_sft import TRLSFTTrainer


def test_two_active_rounds_leave_every_artifact(write_recipe, tmp_path):
    from typer.testing import CliRunner

    from loopkit.cli import build_app

    result = CliRunner().invoke(build_app(), ["run", str(write_recipe()), "--output", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("tiny-test-")

    summary = json.loads((run / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2]
    assert [r["samples"] for r in summary["rounds"]] == [0, 6, 12]
    assert [r["teacher_calls"] for r in summary["rounds"]] == [0, 6, 12]
    for r in summary["rounds"]:  # the share of the 12 test items answered right, as eval.jsonl records them
        graded = [json.loads(line)["correct"] for line in (run / f"round-{r['round']:03d}" / "eval.jsonl").read_text().splitlines()]
        assert len(graded) == 12 and r["accuracy"] == sum(graded) / 12
    assert set(summary["rounds"][1]["seconds"]) == {"predict", "score", "select", "generate", "train", "evaluate"}

    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    assert recipe["trainer"]["params"]["epochs"] == 1 and recipe["trainer"]["params"]["bf16"] == "auto"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["seed"] == 3 and "torch" in manifest["libraries"] and "loopkit==0.1.0" in manifest["plugins"]

    assert (run / "round-000" / "COMPLETE").exists() and len((run / "round-000" / "eval.jsonl").read_text().splitlines()) == 12
    for t in (1, 2):
        rd = run / f"round-{t:03d}"
        assert (rd / "COMPLETE").exists()
        selected = [json.loads(line) for line in (rd / "selected.jsonl").read_text().splitlines()]
        signals = [json.loads(line) for line in (rd / "pool_signals.jsonl").read_text().splitlines()]
        assert len(selected) == 6 and len(signals) == 24
        # loss selection: every picked seed has an own loss at least as high as every other seed
        picked = {s["index"] for s in selected}
        lowest_picked = min(signals[i]["own_loss"] for i in picked)
        assert all(s["own_loss"] <= lowest_picked for s in signals if s["index"] not in picked)
        synthetic = read_samples(rd / "synthetic.jsonl")
        assert len(synthetic) + len((rd / "dropped.jsonl").read_text().splitlines()) == 6
        assert all(s.source == "reasoning-gym" and s.round == t and s.seed_id for s in synthetic)
        assert {s.seed_id for s in synthetic} <= {s["id"] for s in selected}
        assert (rd / "train" / "model" / "config.json").exists()
        metrics = json.loads((rd / "metrics.json").read_text())
        assert metrics["train"]["examples"] == 6 * t and metrics["train"]["steps"] >= 1
    assert "test accuracy" in result.output


def test_synthetic_questions_never_repeat_test_questions(tmp_path):
    result = run_recipe(tmp_path, "loop.rounds=1")
    test = {json.loads(line)["question"] for line in (result.run_dir.path / "round-000" / "eval.jsonl").read_text().splitlines()}
    synthetic = read_samples(result.run_dir.path / "round-001" / "synthetic.jsonl")
    assert synthetic and not {s.question for s in synthetic} & test


def test_static_spends_the_budget_at_once_and_static_matched_trains_its_data_like_an_active_run(tmp_path):
    result = run_recipe(tmp_path, "loop.mode=static", "selector.name=random", "trainer.params.batch_size=2")
    assert [r["round"] for r in result.rows] == [0, 1]
    assert result.rows[-1]["teacher_calls"] == 12  # rounds x per_round
    assert "predict" not in result.rows[-1]["seconds"]  # static draws seeds uniformly: no scoring

    # static-matched: static's data (same seeds, same samples), trained through the active rounds, so with
    # an active run's optimizer steps; it spends every teacher call in its first round
    matched = run_recipe(tmp_path / "matched", "loop.mode=static-matched", "selector.name=random", "trainer.params.batch_size=2")
    active = run_recipe(tmp_path / "active", "loop.mode=active", "selector.name=random", "trainer.params.batch_size=2")
    static, run = result.run_dir, matched.run_dir
    for name in ("selected.jsonl", "synthetic.jsonl"):
        assert (run.path / "round-001" / name).read_text() == (static.path / "round-001" / name).read_text()
    kept = len(run.synthetic(2))
    assert kept == len(static.synthetic(1)) and kept == 12  # nothing dropped here, so the counts below are exact
    train = [run.metrics(t)["train"] for t in (1, 2)]
    assert [t["examples"] for t in train] == [6, 12] == [r["samples"] for r in matched.rows[1:]]
    assert [t["steps"] for t in train] == [active.run_dir.metrics(t)["train"]["steps"] for t in (1, 2)] == [3, 6]
    assert static.metrics(1)["train"]["steps"] == 6  # static trains once: 6 steps against 9
    assert [r["teacher_calls"] for r in matched.rows] == [0, 12, 12] and run.selected(2) == [] and run.samples(2) == []
    assert "generate" not in matched.rows[2]["seconds"] and "train" in matched.rows[2]["seconds"]

    # resumed after its first round, it trains round 2 on the same share and ends where it ended uninterrupted
    (run.path / "round-002" / "COMPLETE").unlink()
    resumed = Loop(load_recipe(tmp_path / "matched" / "recipe.yaml", ["loop.mode=static-matched", "selector.name=random",
                                                                      "trainer.params.batch_size=2"])).run(run, resume=True)
    assert resumed.accuracies == matched.accuracies and run.metrics(2)["train"]["examples"] == 12


def test_same_seed_same_run(tmp_path):
    first = run_recipe(tmp_path / "a", "loop.rounds=1")
    second = run_recipe(tmp_path / "b", "loop.rounds=1")
    for name in ("round-001/selected.jsonl", "round-001/synthetic.jsonl", "round-001/eval.jsonl"):
        assert (first.run_dir.path / name).read_text() == (second.run_dir.path / name).read_text()
    assert first.accuracies == second.accuracies


class RecordingTrainer(TRLSFTTrainer):
    """TRL SFT that keeps a copy of the weights each round's training starts from."""

    starts: list[dict] = []

    def train(self, model, *args):
        self.starts.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return super().train(model, *args)


def test_continue_training_keeps_the_previous_weights(tmp_path):
    import torch
    from safetensors.torch import load_file

    RecordingTrainer.starts.clear()
    with registered("trainer", "recording", RecordingTrainer):
        result = run_recipe(tmp_path, "loop.retrain=continue", "selector.name=random", "trainer.name=recording")
    metrics = json.loads((result.run_dir.path / "round-002" / "metrics.json").read_text())
    assert metrics["train"]["examples"] == 12
    (weights,) = (result.run_dir.path / "round-001" / "train" / "model").glob("*.safetensors")
    round_1 = load_file(weights)
    base, second = RecordingTrainer.starts
    assert all(torch.equal(second[k], v) for k, v in round_1.items())  # round 2 trains on from round 1's student
    assert not all(torch.equal(base[k], v) for k, v in round_1.items())  # which is not the base model


class FailingSecondRound(TRLSFTTrainer):
    def train(self, model, tokenizer, prompts, completions, output_dir, seed, stage):
        if len(prompts) > 6:
            raise RuntimeError("disk on fire")
        return super().train(model, tokenizer, prompts, completions, output_dir, seed, stage)


def test_a_failed_round_keeps_the_finished_rounds(tmp_path):
    with registered("trainer", "fails-in-round-2", FailingSecondRound):
        with pytest.raises(RuntimeError, match="disk on fire"):
            run_recipe(tmp_path, "trainer.name=fails-in-round-2")
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "round-000" / "COMPLETE").exists() and (run / "round-001" / "COMPLETE").exists()
    assert not (run / "round-002" / "COMPLETE").exists()
    summary = json.loads((run / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1]
    assert not list(run.rglob("*.tmp"))


def test_a_relative_output_directory_keeps_every_file_in_the_run_directory(write_recipe, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from loopkit.cli import build_app

    recipe = write_recipe()
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(build_app(), ["run", str(recipe), "--set", "loop.rounds=1", "-o", "rel"])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "rel").iterdir()
    assert sorted(p.name for p in run.iterdir()) == [".lock", "manifest.json", "recipe.yaml", "round-000", "round-001", "status.json",
                                                     "summary.json"]
    assert (run / "round-001" / "synthetic.jsonl").exists() and (run / "round-001" / "COMPLETE").exists()


DUPLICATE_PRONE = [  # aiw "siblings" questions come from a small space of names and counts: repeats are common
    "task.params.generators={aiw: {config: {task_types: [siblings], task_type_weights: [1.0]}}}",
    "task.params.pool_size=150", "loop.per_round=120", "loop.rounds=1", "selector.name=random",
]


@pytest.mark.parametrize("unique", [True, False])
def test_new_questions_that_repeat_a_pool_seed_or_each_other_are_dropped(tmp_path, unique):
    from loopkit.records import normalize_question

    result = run_recipe(tmp_path, *DUPLICATE_PRONE, f"loop.unique_questions={str(unique).lower()}")
    run = result.run_dir.path
    selected = {json.loads(line)["question"] for line in (run / "round-001" / "selected.jsonl").read_text().splitlines()}
    new = [normalize_question(s.question) for s in read_samples(run / "round-001" / "synthetic.jsonl")]
    dropped = [json.loads(line) for line in (run / "round-001" / "dropped.jsonl").read_text().splitlines()]
    repeats = [d for d in dropped if d["reason"] == "new question duplicates a pool seed or an earlier synthetic question"]
    if unique:
        assert repeats and len(new) == len(set(new))
        assert not set(new) & {normalize_question(q) for q in selected}
    else:
        assert not repeats and len(new) > len(set(new))  # the same draws, kept


class StageLog:
    """A progress display that only remembers which stage is running (for counting model calls by stage)."""

    def __init__(self):
        self.current = None

    @contextmanager
    def stage(self, round_no, name, total=None):
        self.current = (round_no, name)
        try:
            yield self
        finally:
            self.current = None

    def advance(self, n=1):
        pass

    def set_total(self, total):
        pass

    def round_done(self, row):
        pass

    def note(self, message):
        pass


@pytest.mark.parametrize("selector,second_pass", [("loss", False), ("kcenter", True)])
def test_own_loss_selection_runs_the_student_once_per_seed(tmp_path, selector, second_pass):
    """loss takes own_loss from the generation pass (no forward pass in 'score'); an embedding selector still needs one."""
    import torch
    from transformers import GenerationMixin

    from loopkit.rundir import RunDir

    (tmp_path / "recipe.yaml").write_text(TINY_RECIPE, encoding="utf-8")
    resolved = load_recipe(tmp_path / "recipe.yaml", ["loop.rounds=1", f"selector.name={selector}"])
    log, calls = StageLog(), Counter()

    def count(module, args):
        if isinstance(module, GenerationMixin):  # the causal LM itself, not its layers
            calls[log.current] += 1

    hook = torch.nn.modules.module.register_module_forward_pre_hook(count)
    try:
        Loop(resolved, progress=log).run(RunDir.create(tmp_path / "runs", resolved.recipe.name))
    finally:
        hook.remove()
    assert calls[(1, "predict")] > 0 and calls[(1, "evaluate")] > 0  # the hook sees the student's calls
    assert (calls[(1, "score")] > 0) == second_pass
