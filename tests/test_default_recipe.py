"""The README's claim about the default recipe, as an opt-in test (about 2.5 minutes on 2 cores)."""

import json

import pytest
from typer.testing import CliRunner

from conftest import ROOT
from loopkit.cli import build_app


@pytest.mark.slow
def test_logic_recipe_rises_at_least_15_points(tmp_path):
    result = CliRunner().invoke(build_app(), ["run", str(ROOT / "recipes" / "logic.yaml"), "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (run,) = tmp_path.iterdir()
    rounds = json.loads((run / "summary.json").read_text())["rounds"]
    assert rounds[0]["round"] == 0 and len(rounds) == 5
    assert rounds[-1]["accuracy"] - rounds[0]["accuracy"] >= 0.15
