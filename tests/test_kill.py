"""kill -9 at every stage of a round, then `loopkit run --resume`: the result equals an uninterrupted
run's, and the teacher backend (a real HTTP server, litellm the client) never answers a call twice."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from loopkit.testing import run_recipe

litellm = pytest.importorskip("litellm")

from loopkit.testing_server import ChatServer  # noqa: E402

KEY_ENV = "LOOPKIT_TEST_KILL_KEY"
ROUNDS = ("round-000", "round-001", "round-002")
TIMING = ("seconds", "elapsed")


def teacher_overrides(server):
    return ["teacher.name=litellm", "teacher.params={model: openai/kill-test, api_key_env: " + KEY_ENV
            + f", timeout: 5, backoff: 0.01, api_base: '{server.url}'}}"]


def env():
    return {**os.environ, KEY_ENV: "sk-kill-test", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "COLUMNS": "200"}


def outcome(run):
    """What must not depend on an interruption: every round's rows (timings aside) and data."""
    rows = [{k: v for k, v in r.items() if k not in TIMING} for r in json.loads((run / "summary.json").read_text())["rounds"]]
    files = {f"{r}/{name}": (run / r / name).read_text() for r in ROUNDS
             for name in ("eval.jsonl", "selected.jsonl", "synthetic.jsonl", "pool_signals.jsonl") if (run / r / name).exists()}
    return rows, files


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("baseline")
    os.environ[KEY_ENV] = "sk-kill-test"
    try:
        with ChatServer() as server:
            result = run_recipe(tmp, *teacher_overrides(server))
            assert server.duplicates == 0
    finally:
        del os.environ[KEY_ENV]
    return outcome(result.run_dir.path)


# generate (teacher calls in flight) and train (a half-written student) are the default tier's; the
# other points cost ~30 s each and guard the same mechanism (the round is made again): -m slow.
SLOW = pytest.mark.slow


@pytest.mark.parametrize("point", [pytest.param("predict", marks=SLOW), "generate", "train",
                                   pytest.param("evaluate", marks=SLOW), pytest.param("artifact", marks=SLOW)])
def test_kill_9_then_resume_equals_an_uninterrupted_run_with_no_call_paid_twice(uninterrupted, write_recipe, tmp_path, point):
    recipe = write_recipe()
    out = tmp_path / "runs"
    with ChatServer() as server:
        overrides = [a for o in teacher_overrides(server) for a in ("--set", o)]
        killed = subprocess.run([sys.executable, str(ROOT / "tests" / "kill_harness.py"), str(recipe), str(out), point, *overrides],
                                capture_output=True, text=True, env=env(), timeout=300)
        assert killed.returncode == -9, killed.stdout + killed.stderr
        (run,) = out.iterdir()
        assert (run / "round-001" / "COMPLETE").exists() and not (run / "round-002" / "COMPLETE").exists()
        before = server.requests

        resumed = subprocess.run([sys.executable, "-m", "loopkit.cli", "run", "--resume", str(run)],
                                 capture_output=True, text=True, env=env(), timeout=300)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert f"resuming {run} after round 1" in resumed.stdout
        assert server.duplicates == 0  # counted at the backend: no call was paid for twice
        if point == "generate":  # round 2's questions were answered before the kill: only its answers are sent
            assert server.requests - before == 6
    assert outcome(run) == uninterrupted
    assert not list(run.rglob("*.tmp"))
    assert all((run / r / "COMPLETE").exists() for r in ROUNDS)
