"""Paired statistics (stats.py) on known inputs, and the report built on them: paired differences,
training compute, AUC over the recipe's budget, plots that draw what was measured."""

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from loopkit.cli import build_app
from loopkit.report import comparisons, find_runs, summarize
from loopkit.stats import paired, sign_flip_p, t_quantile


def test_an_arm_identical_to_its_baseline_differs_by_zero_with_p_one():
    values = {0: 0.61, 1: 0.85, 2: 0.57, 3: 0.70, 4: 0.64}
    d = paired(values, dict(values))
    assert d["mean"] == 0 and d["ci95"] == [0, 0] and d["p"] == 1.0 and d["n"] == 5 and d["seeds"] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("n", [3, 5, 6, 8])
def test_a_constant_shift_gives_that_shift_and_the_smallest_p_the_test_allows(n):
    base = {k: 0.1 * k for k in range(n)}
    d = paired({k: v + 0.25 for k, v in base.items()}, base)
    assert d["mean"] == pytest.approx(0.25) and d["ci95"] == pytest.approx([0.25, 0.25])
    assert d["p"] == pytest.approx(2 / 2**n)  # only all-plus and all-minus are as extreme: 0.0625 for 5 seeds


def test_sign_flip_p_on_hand_counted_patterns():
    assert sign_flip_p(np.array([1.0, 2.0, 3.0])) == pytest.approx(2 / 8)  # |sum| 6 only for +++ and ---
    assert sign_flip_p(np.array([1.0, 1.0, -1.0])) == pytest.approx(1.0)  # every pattern has |sum| >= 1
    assert sign_flip_p(np.array([4.0, 1.0, 1.0, -1.0])) == pytest.approx(8 / 16)  # |sum| >= 5: 4 patterns, each sign of 4
    assert sign_flip_p(np.ones(20)) < 1e-4  # Monte Carlo above 16 pairs, still tiny


def test_t_interval_uses_students_t():
    for df, expected in ((1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (30, 2.042)):
        assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-3)
    d = paired({0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.0, 1: 0.0, 2: 0.0})  # differences 1, 2, 3: SD 1, n 3
    half = 4.303 / np.sqrt(3)
    assert d["ci95"] == pytest.approx([2 - half, 2 + half], abs=1e-3)


def test_unpaired_seeds_are_left_out_and_named():
    d = paired({0: 0.5, 1: 0.6, 2: 0.7, 5: 0.9}, {0: 0.4, 1: 0.5, 2: 0.6, 7: 0.1})
    assert d["seeds"] == [0, 1, 2] and d["n"] == 3 and d["mean"] == pytest.approx(0.1)
    assert d["only_arm"] == [5] and d["only_baseline"] == [7]
    unreached = paired({0: 300.0, 1: None, 2: 500.0}, {0: 400.0, 1: 600.0, 2: None})  # N(τ): None = never reached
    assert unreached["seeds"] == [0] and unreached["no_value_arm"] == [1] and unreached["no_value_baseline"] == [2]
    assert unreached["ci95"] is None and unreached["p"] == 1.0  # one pair: no interval, and no evidence
    assert paired({0: 1.0}, {1: 1.0})["mean"] is None


def test_every_arm_is_compared_with_random_and_each_static_baseline():
    assert comparisons(["entropy", "loss", "random", "static", "static-matched"]) == [
        ("entropy", "random"), ("entropy", "static"), ("entropy", "static-matched"),
        ("loss", "random"), ("loss", "static"), ("loss", "static-matched"),
        ("random", "static"), ("random", "static-matched"), ("static-matched", "static")]
    assert comparisons(["loss", "entropy"]) == []


# -- the report, on run directories written as `loopkit run` writes them ---------------------------------

TASK = {"name": "reasoning-gym", "params": {"generators": {"syllogism": {"weight": 1}}, "pool_size": 40}}


def write_run(parent, arm, seed, curve, steps=100, rounds=2, per_round=100, tokens=True):
    """A run directory: recipe.yaml and one complete round per (samples, accuracy) of ``curve``, each
    training round recording ``steps`` optimizer steps."""
    mode = "static" if arm == "static" else "active"
    path = parent / f"{arm}-seed{seed}-20260101-000000"
    path.mkdir(parents=True)
    recipe = {"name": f"{arm}-seed{seed}", "seed": seed, "task": TASK, "selector": {"name": "random" if mode == "static" else arm},
              "loop": {"mode": mode, "rounds": rounds, "per_round": per_round}}
    (path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    (path / "manifest.json").write_text(json.dumps({"seed": seed, "recipe": "recipes/demo.yaml"}))
    for t, (samples, accuracy) in enumerate(curve):
        metrics = {"round": t, "samples": samples, "teacher_calls": samples, "teacher_tokens": 10 * samples, "usd": 0.0,
                   "accuracy": accuracy, "seconds": {}, "elapsed": 0.0}
        if t:
            metrics["train"] = {"examples": samples, "steps": steps, "train_seconds": 2.0, **({"tokens": 50 * steps} if tokens else {})}
        (path / f"round-{t:03d}").mkdir()
        (path / f"round-{t:03d}" / "metrics.json").write_text(json.dumps(metrics))
        (path / f"round-{t:03d}" / "COMPLETE").write_text("")
    return path


def test_a_runs_auc_is_the_same_alone_and_beside_others(tmp_path):
    alone = write_run(tmp_path / "a", "loss", 0, [(0, 0.0), (80, 0.4), (160, 0.6)])
    longer = write_run(tmp_path / "b", "random", 0, [(0, 0.0), (100, 0.2), (200, 0.5)])
    by_itself = summarize(find_runs([alone]), 0.5)["arms"]["loss"]["auc"]["mean"]
    beside = summarize(find_runs([alone, longer]), 0.5)["arms"]["loss"]["auc"]["mean"]
    # over the recipe's budget (2 rounds x 100), not the largest sample count in the report (200 here, 160 alone)
    assert by_itself == beside == pytest.approx((80 * 0.2 + 80 * 0.5 + 40 * 0.6) / 200)


def test_report_prints_training_compute_paired_differences_and_warns_of_unequal_steps(tmp_path):
    cmp = tmp_path / "cmp"
    for seed, (loss, rand) in enumerate([(0.7, 0.5), (0.8, 0.6), (0.6, 0.5), (0.9, 0.6)]):
        write_run(cmp, "loss", seed, [(0, 0.0), (100, loss / 2), (200, loss)], steps=100)
        write_run(cmp, "random", seed, [(0, 0.0), (100, rand / 2), (200, rand)], steps=104)
        if seed < 3:  # seed 3 has no static run: unpaired, and said
            write_run(cmp, "static", seed, [(0, 0.0), (200, 0.3)], steps=90)
    result = CliRunner().invoke(build_app(), ["report", str(cmp), "--target", "0.55"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    report = json.loads((cmp / "report.json").read_text())

    assert report["arms"]["loss"]["training"]["steps"]["mean"] == 200  # two training rounds of 100
    assert report["arms"]["loss"]["training"]["tokens"]["mean"] == 2 * 50 * 100
    assert report["arms"]["static"]["training"]["seconds"]["mean"] == 2.0
    loss_vs_random = next(e for e in report["paired"] if (e["arm"], e["baseline"]) == ("loss", "random"))
    assert loss_vs_random["final_accuracy"]["mean"] == pytest.approx(0.2) and loss_vs_random["final_accuracy"]["p"] == pytest.approx(2 / 16)
    assert loss_vs_random["final_accuracy"]["n"] == 4 and loss_vs_random["final_accuracy"]["ci95"][0] < 0.2
    # N(0.55): random reaches it only at seeds 1 and 3; seeds 0 and 2 are left out of that pairing, and said
    assert loss_vs_random["n_to_target"]["seeds"] == [1, 3] and loss_vs_random["n_to_target"]["no_value_baseline"] == [0, 2]
    vs_static = next(e for e in report["paired"] if (e["arm"], e["baseline"]) == ("loss", "static"))
    assert vs_static["final_accuracy"]["only_arm"] == [3] and vs_static["final_accuracy"]["n"] == 3
    assert report["arms"]["loss"]["cost_to_target"]["teacher_tokens"]["n"] == 4

    out = " ".join(result.output.split())  # rich wraps cells and lines
    assert "paired differences" in out and "loss − random" in out and "+20.0 pts" in out and "p=0.12" in out
    assert "seed(s) 3 only in loss, left out of the pairing" in out
    assert "never reached τ: 0, 2 (random)" in out
    # random trains 208 steps, static 90 (one training of 90), loss 200: more than 10% apart
    warning = next(w for w in report["warnings"] if "training steps" in w)
    assert "static 90, loss 200, random 208" in warning and "warning: the arms' total training steps differ" in out


def test_arms_within_ten_percent_of_steps_raise_no_warning_and_unknown_steps_are_said(tmp_path):
    write_run(tmp_path / "c", "loss", 0, [(0, 0.0), (100, 0.5)], steps=100, rounds=1)
    write_run(tmp_path / "c", "random", 0, [(0, 0.0), (100, 0.4)], steps=109, rounds=1)
    assert summarize(find_runs([tmp_path / "c"]), 0.5)["warnings"] == []
    old = tmp_path / "c" / "random-seed0-20260101-000000" / "round-001" / "metrics.json"
    metrics = json.loads(old.read_text())
    del metrics["train"]["steps"]  # a trainer that does not report steps
    old.write_text(json.dumps(metrics))
    report = summarize(find_runs([tmp_path / "c"]), 0.5)
    assert report["arms"]["random"]["training"]["steps"]["n"] == 0
    assert len(report["warnings"]) == 1 and "training compute is unknown for some runs of random" in report["warnings"][0]


def test_plots_draw_static_as_points_with_a_tau_line_title_and_percent_axis(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for seed in (0, 1):
        write_run(tmp_path / "p", "random", seed, [(0, 0.0), (100, 0.3), (200, 0.6)])
        write_run(tmp_path / "p", "static", seed, [(0, 0.0), (200, 0.3)])
    report = summarize(find_runs([tmp_path / "p"]), 0.5)
    kept = []
    monkeypatch.setattr(plt, "close", kept.append)  # keep the figures to look at them
    from loopkit.report import plot

    plot(report, tmp_path)
    ax = kept[0].axes[0]
    handles = {label.split(" (")[0]: h for h, label in zip(*ax.get_legend_handles_labels())}
    assert handles["random"].get_linestyle() == "-"
    assert handles["static"].lines[0].get_linestyle() == "None"  # markers with error bars, no line from 0
    assert list(handles["τ = 50%"].get_ydata()) == [0.5, 0.5]
    assert ax.get_title().startswith("demo: ") and "τ = 50%" in ax.get_title() and ax.yaxis.get_major_formatter()(0.5, 0) == "50%"
    assert ax.get_xlim()[1] == pytest.approx(200 * 1.03)  # the recipe's budget
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("random (n=2)" in t and "final − static: +30.0 pts" in t for t in legend)


def test_trl_sft_records_the_tokens_it_trained_on(tmp_path):
    """Prompt + completion (+ EOS) tokens after truncation to max_length, padding excluded, every epoch counted."""
    from loopkit.inference import token_lengths
    from loopkit.models.tiny import TinyModel
    from loopkit.progress import NullProgress
    from loopkit.trainers.trl_sft import TRLSFTTrainer

    model, tokenizer = TinyModel(TinyModel.Params(hidden_size=32, layers=1, heads=2, intermediate_size=64)).load(0)
    prompts = ["Q: abc\nA: ", "Q: hello there\nA: ", "Q: one two three four\nA: "]
    completions = ["cba", "ereht olleh", "abcdefghij"]
    trainer = TRLSFTTrainer(TRLSFTTrainer.Params(epochs=2, batch_size=2, max_length=30, save_model=False))
    with NullProgress().stage(1, "train") as stage:
        _, metrics = trainer.train(model, tokenizer, prompts, completions, tmp_path, 0, stage)
    lengths = [p + c + 1 for p, c in zip(token_lengths(tokenizer, prompts), token_lengths(tokenizer, completions, special=False))]
    assert max(lengths) > 30 > min(lengths)  # two examples are cut to max_length
    assert metrics["tokens"] == 2 * sum(min(n, 30) for n in lengths)
    assert metrics["steps"] == 4 and metrics["train_seconds"] > 0  # 2 batches per epoch


def test_the_preregistered_decisions_follow_holm_and_the_outcome_rules():
    import importlib.util
    import sys

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("preregistered", ROOT / "benchmarks" / "preregistered.py")
    script = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    auc = lambda mean, high, p: {"n": 8, "mean": mean, "ci95": [mean - 0.01, high], "p": p}  # noqa: E731
    report = {"paired": [{"arm": "loss", "baseline": "static", "auc": auc(0.10, 0.12, 0.0078)},
                         {"arm": "loss", "baseline": "static-matched", "auc": auc(0.005, 0.015, 0.30)},
                         {"arm": "loss", "baseline": "random", "auc": auc(0.03, 0.06, 0.03)},
                         {"arm": "entropy", "baseline": "random", "auc": auc(-0.05, -0.01, 0.0078)}]}
    got = {(r["contrast"], r["outcome"]) for r in script.decisions(report)}
    assert got == {("loss − static", "supported"),  # 0.0078 x 3 < 0.05
                   ("loss − static-matched", "refuted"),  # upper end +1.5 points < +2
                   ("loss − random", "inconclusive"),  # p 0.03 is 0.06 after Holm (second smallest of 3: x 2)
                   ("entropy − random", "reversed"), ("badge − random", "not tested")}
