"""Budgets in four currencies, judge calls charged, a hard stop before a cap; --dry-run loads no model."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from loopkit.cli import build_app
from loopkit.testing import run_recipe


def test_a_sample_cap_stops_the_run_before_the_round_that_would_pass_it(write_recipe, tmp_path):
    result = CliRunner().invoke(build_app(), ["run", str(write_recipe()), "-o", str(tmp_path / "runs"),
                                              "--set", "budget.samples=10"])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1]  # round 2 would bring samples to 12 > 10
    assert summary["stopped"].startswith("stopped before round 2: budget.samples: the next round would bring it to ~12")
    assert "stopped before round 2" in " ".join(result.output.split())
    assert not (run / "round-002").exists()


def test_judge_calls_count_against_the_call_cap(tmp_path):
    # llm-judge over a pool of 24 seeds costs 24 calls a round on top of 6 generation calls:
    # 30 calls fit in round 1, round 2 would need 30 more.
    result = run_recipe(tmp_path, "selector.name=llm-judge", "budget.teacher_calls=59")
    assert [r["teacher_calls"] for r in result.rows] == [0, 30]
    assert result.stopped.startswith("stopped before round 2: budget.teacher_calls")


def test_the_live_display_shows_the_spend(write_recipe, tmp_path):
    result = CliRunner().invoke(build_app(), ["run", str(write_recipe()), "-o", str(tmp_path / "runs"), "--set", "loop.rounds=1"])
    assert result.exit_code == 0 and "spent 6 teacher calls" in result.output, result.output


def test_dry_run_prints_the_plan_and_loads_no_model(write_recipe, tmp_path):
    code = (
        "import sys; from typer.testing import CliRunner; from loopkit.cli import build_app; "
        f"r = CliRunner().invoke(build_app(), ['run', {str(write_recipe())!r}, '--dry-run', '--set', 'budget.teacher_calls=8']); "
        "print(r.output); print('EXIT', r.exit_code); print('TORCH', 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={"COLUMNS": "200", **__import__("os").environ}).stdout
    assert "EXIT 0" in out and "TORCH False" in out, out
    assert "24 seeds, 12 test" in out and "the budget stops the run before round 2: budget.teacher_calls" in out
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("override, fragment", [
    ("budget.usd=-1", "budget.usd: Input should be greater than or equal to 0"),
    ("budget.tokens=5", "budget.tokens"),
])
def test_bad_budgets_are_one_line(write_recipe, override, fragment):
    result = CliRunner().invoke(build_app(), ["validate", str(write_recipe()), "--set", override])
    assert result.exit_code == 1 and fragment in result.output and len(result.output.strip().splitlines()) == 1, result.output
