"""loopkit compare (arms as parallel processes, resumable) and loopkit report (mean ± SE, AUC, N(τ), plots, fidelity)."""

import itertools
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from loopkit.cli import build_app
from loopkit.report import auc, n_to_reach, spearman, within_group_spearman


def invoke(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


def one_line_error(result, fragment):
    assert result.exit_code == 1, result.output
    line = result.output.strip()
    assert "\n" not in line and fragment in line and "Traceback" not in result.output, line


ROWS = [{"samples": 0, "accuracy": 0.0}, {"samples": 100, "accuracy": 0.4}, {"samples": 200, "accuracy": 0.8}]


def test_curve_metrics_on_known_curves():
    assert n_to_reach(ROWS, 0.6) == pytest.approx(150.0)  # halfway between rounds 1 and 2
    assert n_to_reach(ROWS, 0.9) is None
    assert auc(ROWS, 200) == pytest.approx((100 * 0.2 + 100 * 0.6) / 200)
    assert auc(ROWS[:2], 200) == pytest.approx((100 * 0.2 + 100 * 0.4) / 200)  # the last accuracy holds to the budget
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_fidelity_within_rounds_ignores_differences_between_rounds_and_its_p_matches_the_exact_shuffle():
    rng = np.random.default_rng(0)
    # Round 2's student scores everything higher: pooled, that alone correlates seed and offspring losses.
    rounds = [([1, 2, 3, 4, 5], [3, 1, 4, 5, 2]), ([11, 12, 13, 14, 15], [14, 12, 11, 13, 15])]
    assert spearman(rounds[0][0] + rounds[1][0], rounds[0][1] + rounds[1][1]) == pytest.approx(0.818, abs=1e-3)
    within = within_group_spearman(rounds)
    assert within["rho"] == pytest.approx(0.25) and within["groups"] == 2 and within["pairs"] == 10  # (0.3 + 0.2) / 2
    # its p against every one of the 5! x 5! shuffles within the two rounds
    centred = [np.arange(5.0) - 2 for _ in rounds]
    ranks_y = [np.argsort(np.argsort(y)) - 2.0 for _, y in rounds]
    observed = sum(x @ y for x, y in zip(centred, ranks_y))
    sums = [centred[0] @ ranks_y[0][list(a)] + centred[1] @ ranks_y[1][list(b)]
            for a in itertools.permutations(range(5)) for b in itertools.permutations(range(5))]
    exact = np.mean(np.abs(sums) >= abs(observed) - 1e-9)
    assert within["p"] == pytest.approx(exact, abs=0.015)
    # beyond 1,000 pairs, the normal approximation to the same shuffles
    x = rng.normal(size=(12, 100))
    big = within_group_spearman([(a, a + 4 * rng.normal(size=100)) for a in x])
    assert big["pairs"] == 1200 and 0.1 < big["rho"] < 0.4 and big["p"] < 0.01
    assert within_group_spearman([([1, 2, 3, 4], [2, 4, 6, 8])] * 3)["rho"] == pytest.approx(1.0)
    assert within_group_spearman([([1, 2, 3, 4], [2, 4, 6, 8])] * 3)["p"] < 0.01
    assert within_group_spearman([([1, 2], [1, 2]), ([1, 1, 1], [1, 2, 3])]) is None  # too small, or no variation
    unrelated = within_group_spearman([(rng.normal(size=50), rng.normal(size=50)) for _ in range(20)])
    assert abs(unrelated["rho"]) < 0.1 and unrelated["p"] > 0.05


def test_compare_runs_every_arm_then_a_rerun_skips_them_and_report_summarises(write_recipe, tmp_path):
    recipe = write_recipe()
    cmp = tmp_path / "cmp"
    args = ["compare", recipe, "--selectors", "loss,random", "--seeds", "2", "--static", "--jobs", "2", "-d", cmp,
            "--set", "loop.rounds=1", "--set", "loop.score_offspring=true"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    arms = sorted(p.name.rsplit("-", 2)[0] for p in cmp.iterdir() if p.is_dir())
    assert arms == ["loss-seed3", "loss-seed4", "random-seed3", "random-seed4", "static-matched-seed3", "static-matched-seed4",
                    "static-seed3", "static-seed4"]  # --static: both baselines
    report = json.loads((cmp / "report.json").read_text())
    assert set(report["arms"]) == {"loss", "random", "static", "static-matched"}
    assert set(report["baselines"]) == {"static", "static-matched"} and "static-matched: static's data" in result.output
    for arm in report["arms"].values():
        assert arm["seeds"] == [3, 4] and arm["final_accuracy"]["n"] == 2 and arm["teacher_calls"]["mean"] == 6
        assert arm["training"]["steps"]["n"] == 2 and arm["training"]["tokens"]["mean"] > 0
        assert arm["final_train_loss"]["n"] == 2 and arm["final_train_loss"]["mean"] > 0
    pairs = {(e["arm"], e["baseline"]): e for e in report["paired"]}
    assert set(pairs) == {("loss", "random"), ("loss", "static"), ("random", "static"), ("loss", "static-matched"),
                          ("random", "static-matched"), ("static-matched", "static")}
    assert pairs[("loss", "random")]["final_accuracy"]["seeds"] == [3, 4]
    assert "paired differences" in result.output and report["budget"] == 6
    fidelity = report["fidelity"]
    assert fidelity["available"] and fidelity["pairs"] == fidelity["kept_pairs"] + sum(
        json.loads(line)["question"] is not None for p in cmp.glob("*/round-001/dropped.jsonl") for line in p.read_text().splitlines())
    assert {"within_round_spearman", "within_round_subtask_spearman"} <= set(fidelity) and "fidelity (Spearman" in result.output
    assert (cmp / "accuracy_vs_samples.png").stat().st_size > 1000 and (cmp / "accuracy_vs_teacher_calls.png").exists()

    again = invoke(*args)  # resumable: every finished arm is skipped
    assert again.exit_code == 0 and again.output.count("done (skipped)") == 8, again.output

    static_runs = sorted(p for p in cmp.glob("static-seed*") if p.is_dir())
    static_only = invoke("report", *static_runs, "--out", tmp_path / "rep", "--target", "0.0")
    assert static_only.exit_code == 0, static_only.output
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["arms"]["static"]["n_to_target"]["reached"] == 2


def test_compare_with_an_unknown_selector_fails_before_any_arm_starts(write_recipe, tmp_path):
    one_line_error(invoke("compare", write_recipe(), "--selectors", "loss,los", "-d", tmp_path / "cmp"),
                   "unknown selector 'los'")
    assert not (tmp_path / "cmp").exists()


def test_report_without_runs_or_across_tasks_is_one_line(write_recipe, tmp_path):
    (tmp_path / "empty").mkdir()
    one_line_error(invoke("report", tmp_path / "empty"), "no loopkit runs in")
    for name, pool in (("a", 24), ("b", 30)):
        run = tmp_path / "runs" / name
        run.mkdir(parents=True)
        (run / "recipe.yaml").write_text(
            f"seed: 0\ntask: {{name: reasoning-gym, params: {{pool_size: {pool}}}}}\nloop: {{mode: active}}\nselector: {{name: loss}}\n")
        (run / "summary.json").write_text(json.dumps({"rounds": [{"round": 0, "samples": 0, "accuracy": 0.0, "teacher_calls": 0}]}))
    one_line_error(invoke("report", tmp_path / "runs"), "these runs are of different tasks")


def test_each_job_slot_gets_one_gpu_round_robin():
    from loopkit.compare import device_slots, visible_gpus

    assert device_slots(["0", "1", "2", "3"], 2) == ["0", "1"]
    assert device_slots(["0", "1"], 5) == ["0", "1", "0", "1", "0"]  # more jobs than GPUs: shared evenly
    assert device_slots([], 3) == [None, None, None]  # no GPU: nothing is assigned
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 5,GPU-7f3a"}) == ["2", "5", "GPU-7f3a"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == [] and visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []


def test_running_arms_never_share_a_gpu_slot(tmp_path):
    """Four arms, two jobs, GPUs 3 and 5: each arm process sees one CUDA_VISIBLE_DEVICES, no two at once the same."""
    import sys
    import threading
    import time

    from loopkit.compare import Arm, Arms, run_arms
    from loopkit.recipe import load_recipe
    from loopkit.testing import TINY_RECIPE

    class Probes(Arms):
        """Arm processes that only report their device and how long they held it (not a loopkit run)."""

        def start(self, name, command, log, env):
            probe = "import os, sys, time; t = time.time(); time.sleep(0.5); print(os.environ['CUDA_VISIBLE_DEVICES'], t, time.time())"
            return super().start(name, [sys.executable, "-c", probe], log, env)

    (tmp_path / "recipe.yaml").write_text(TINY_RECIPE, encoding="utf-8")
    resolved = load_recipe(tmp_path / "recipe.yaml")
    arms = [Arm(f"arm{i}", "random", i) for i in range(4)]
    said, lock = [], threading.Lock()

    def on_change(arm, state):
        with lock:
            said.append(state)

    states = run_arms(tmp_path / "recipe.yaml", resolved, arms, tmp_path / "cmp", 2, [], on_change, Probes(), gpus=["3", "5"])
    assert set(states.values()) == {"done"}
    spans = [(d, float(a), float(b)) for d, a, b in ((tmp_path / "cmp" / f"{arm.name}.log").read_text().split() for arm in arms)]
    assert {d for d, _, _ in spans} == {"3", "5"}
    for i, (d, a, b) in enumerate(spans):
        assert not any(d == e and a < y and x < b for e, x, y in spans[i + 1 :])  # never two arms on one GPU at once
    assert sorted(s for s in said if s.startswith("running")) == sorted(f"running on GPU {d}" for d, _, _ in spans)


def test_compare_shows_what_each_arm_does_and_its_final_state(write_recipe, tmp_path):
    """Off a terminal: a line as each arm starts, enters a round (read from its run directory) and ends; a damaged
    arm is shown failed, and no arm is left shown running."""
    cmp = tmp_path / "cmp"
    damaged = cmp / "random-seed3-20260101-000000"  # an earlier random arm that cannot be resumed
    damaged.mkdir(parents=True)
    (damaged / "recipe.yaml").write_text("name: random-seed3\n")
    result = invoke("compare", write_recipe(), "--selectors", "loss,random", "--seeds", "1", "-d", cmp, "--set", "loop.rounds=1")
    lines = result.output.splitlines()
    assert result.exit_code == 1 and "1 arm(s) failed (random-seed3)" in result.output, result.output
    loss = [line for line in lines if line.startswith("loss-seed3: ")]
    assert loss[0] == "loss-seed3: running" and loss[-1] == "loss-seed3: done", loss
    assert any(line.startswith("loss-seed3: round 1 of 1: ") for line in loss), loss  # the stage it was in
    assert lines.count("random-seed3: resuming") == 1
    random = [line for line in lines if line.startswith("random-seed3: ")]
    assert random[-1] == "random-seed3: failed (exit 1; see random-seed3.log)", random  # nothing said after its end
    assert not [line for line in lines if line.startswith("arms")], result.output  # no bar drawn into a log
