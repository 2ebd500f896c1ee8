"""The separately installable plugin under plugins/ works end to end once pip-installed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, plugin_env

PLUGIN = ROOT / "plugins" / "loopkit-selector-power"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """pip-install the plugin into a --target dir; return the environment that puts it on the path."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(PLUGIN)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    return plugin_env(target)


def loopkit(env, *args):
    return subprocess.run([sys.executable, "-m", "loopkit.cli", *args], capture_output=True, text=True, env=env, timeout=600)


def test_installed_plugin_shows_in_list_plugins(installed):
    result = loopkit(installed, "list-plugins", "--json")
    assert result.returncode == 0, result.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(result.stdout)}
    power = rows[("selector", "power")]
    assert (power["distribution"], power["version"], power["status"]) == ("loopkit-selector-power", "0.1.0", "ok")


def test_installed_plugin_runs_by_name_in_a_recipe(installed, write_recipe, tmp_path):
    recipe = write_recipe()
    args = ["--set", "selector.name=power", "--set", "selector.params.beta=2", "--set", "loop.rounds=1"]
    assert loopkit(installed, "validate", str(recipe), *args).returncode == 0
    result = loopkit(installed, "run", str(recipe), "-o", str(tmp_path / "runs"), *args)
    assert result.returncode == 0, result.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert "name: power" in (run / "recipe.yaml").read_text()
    assert len((run / "round-001" / "selected.jsonl").read_text().splitlines()) == 6


def test_the_plugin_own_test_suite_passes(installed):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PLUGIN / "tests")],
        capture_output=True, text=True, env=installed, timeout=300, cwd=PLUGIN,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout


def test_without_the_plugin_the_name_is_unknown(write_recipe):
    result = loopkit(os.environ, "validate", str(write_recipe()), "--set", "selector.name=power")
    assert result.returncode == 1 and "unknown selector 'power'" in result.stderr
