"""Runs that grow: `loopkit run --resume RUN --set loop.rounds=N` (or a raised budget) extends a finished run
without changing what it did, and pays for no teacher call twice; a change that would make its rounds invalid
is refused in one line naming the fields."""

import json
import os

import pytest
from typer.testing import CliRunner

from loopkit.cli import build_app

litellm = pytest.importorskip("litellm")

from loopkit.testing_server import ChatServer  # noqa: E402

KEY_ENV = "LOOPKIT_TEST_GROW_KEY"


def invoke(*args):
    return CliRunner().invoke(build_app(), [*map(str, args)], env={KEY_ENV: "sk-grow-test", "COLUMNS": "200",
                                                                   "LITELLM_LOCAL_MODEL_COST_MAP": "True"})


def files(run):
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def readme_numbers():
    import importlib.util
    import sys

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("readme_numbers", ROOT / "benchmarks" / "readme_numbers.py")
    script = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


@pytest.fixture
def server():
    with ChatServer() as server:
        yield server


def test_a_finished_run_grows_from_one_round_to_two_keeping_round_one_and_paying_for_no_call_twice(
        write_recipe, tmp_path, server):
    teacher = ("teacher.params={model: openai/grow-test, api_key_env: " + KEY_ENV
               + f", timeout: 60, backoff: 0.01, api_base: '{server.url}'}}")
    first = invoke("run", write_recipe(), "-o", tmp_path / "runs", "--set", "loop.rounds=1",
                   "--set", "teacher.name=litellm", "--set", teacher, "--set", "budget.teacher_calls=12")
    assert first.exit_code == 0, first.output
    (run,) = (tmp_path / "runs").iterdir()
    before, calls = files(run), server.requests
    assert calls == 12 and (run / "round-001" / "COMPLETE").exists()

    again = invoke("run", "--resume", run)  # nothing to grow: said so, and nothing changes
    assert again.exit_code == 0, again.output
    assert "is already complete (rounds 0-1)" in again.output and "loop.rounds (raised" in again.output
    assert server.requests == calls and not (run / "round-002").exists()

    grown = invoke("run", "--resume", run, "--set", "loop.rounds=2", "--set", "budget.teacher_calls=24")
    assert grown.exit_code == 0, grown.output
    assert "growing" in grown.output and "loop.rounds 1 -> 2" in grown.output
    after = files(run)
    kept = {name: data for name, data in before.items() if name.startswith(("round-000/", "round-001/"))}
    assert kept and all(after[name] == data for name, data in kept.items())  # byte for byte
    assert (run / "round-002" / "COMPLETE").exists()
    assert server.requests == calls + 12 and server.duplicates == 0  # round 2's calls only
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["grown"][-1]["changes"] == {"budget.teacher_calls": [12, 24], "loop.rounds": [1, 2]}
    assert manifest["grown"][-1]["overrides"] == ["loop.rounds=2", "budget.teacher_calls=24"]
    assert manifest["grown"][-1]["command"] == f"loopkit run --resume {run} --set loop.rounds=2 --set budget.teacher_calls=24"
    assert manifest["command"].startswith("loopkit run ") and "loop.rounds=1" in manifest["overrides"]
    assert "rounds: 2" in (run / "recipe.yaml").read_text()
    summary = json.loads((run / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2]
    reported = invoke("report", run, "--out", tmp_path / "report")  # the grown run reads like any other
    assert reported.exit_code == 0, reported.output
    arm = json.loads((tmp_path / "report" / "report.json").read_text())["arms"]["loss"]
    final = json.loads((run / "round-002" / "metrics.json").read_text())["train"]["train_loss"]
    assert arm["final_train_loss"]["mean"] == pytest.approx(final) and arm["curve"]
    table = readme_numbers().from_run(run)  # the README's table, generated from this run
    assert [(r[0], r[1], r[2]) for r in table.rows] == [(r["round"], r["samples"], r["teacher_calls"]) for r in summary["rounds"]]
    assert set(table.subtasks) == {"syllogism", "family_relationships"} and sum(table.subtasks.values()) == 12
    unreadable = [p for p in run.rglob("*") if p.is_file() and not p.stat().st_mode & 0o044]
    assert os.umask(os.umask(0o022)) & 0o044 or not unreadable  # under a umask that lets a teammate read

    refused = invoke("run", "--resume", run, "--set", "loop.rounds=3", "--set", "loop.per_round=3",
                     "--set", "seed=4")
    assert refused.exit_code == 1
    assert refused.output.startswith(f"Error: --resume {run}: the run was made by a different recipe "
                                     "(loop.per_round, seed differ); a resume may change only loop.rounds")
    assert len(refused.output.strip().splitlines()) == 1
    assert files(run) == after and server.requests == calls + 12


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from loopkit.testing import TINY_RECIPE

    tmp = tmp_path_factory.mktemp("finished")
    (tmp / "recipe.yaml").write_text(TINY_RECIPE)
    result = invoke("run", tmp / "recipe.yaml", "-o", tmp / "runs", "--set", "budget.samples=12")
    assert result.exit_code == 0, result.output
    (run,) = (tmp / "runs").iterdir()
    return run


def test_a_run_made_before_a_recipe_field_existed_resumes_and_grows(finished, tmp_path):
    import shutil

    import yaml

    from loopkit.rundir import RunDir

    run = tmp_path / finished.name
    shutil.copytree(finished, run)
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    del recipe["loop"]["engine"], recipe["loop"]["vllm"]  # as the loopkit before them wrote it
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["recipe_fingerprint"] = RunDir(run).recipe_fingerprint()
    (run / "manifest.json").write_text(json.dumps(manifest))
    result = invoke("run", "--resume", run, "--set", "budget.samples=null", "--set", "loop.rounds=3")
    assert result.exit_code == 0, result.output
    assert RunDir(run).last_round() == 3


@pytest.mark.parametrize("change, field", [(["loop.rounds=1"], "loop.rounds differs"),
                                           (["budget.samples=6"], "budget.samples differs"),
                                           (["budget.samples=null", "trainer.params.epochs=2"], "trainer.params.epochs differs"),
                                           (["loop.mode=static", "loop.rounds=3"], "loop.mode, loop.rounds differ")])
def test_a_resume_refuses_fewer_rounds_a_lower_cap_other_fields_and_more_rounds_of_a_static_run(finished, change, field):
    before = files(finished)
    result = invoke("run", "--resume", finished, *[a for c in change for a in ("--set", c)])
    assert result.exit_code == 1
    assert f"the run was made by a different recipe ({field}); a resume may change only" in result.output
    assert files(finished) == before
