"""Ctrl-C during a run: completed rounds stay on disk, the CLI says so and exits 130."""

import os
import signal
import subprocess
import sys
import time


def _sigint_default():
    """A shell that starts CI in the background makes children ignore SIGINT; Ctrl-C tests need it back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_keeps_completed_rounds_and_exits_130(write_recipe, tmp_path):
    out = tmp_path / "runs"
    recipe = write_recipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopkit.cli", "run", str(recipe), "-o", str(out), "--set", "loop.rounds=50"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"},
        preexec_fn=_sigint_default,
    )
    deadline = time.monotonic() + 240
    while not list(out.glob("*/round-001/COMPLETE")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "round 1 never completed"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr
    assert "are complete and kept in" in stdout
    (run,) = out.iterdir()
    assert (run / "round-000" / "COMPLETE").exists() and (run / "round-001" / "COMPLETE").exists()
    assert not list(run.rglob("*.tmp"))


def _start_run(recipe, out, server, extra=()):
    from test_kill import KEY_ENV, env, teacher_overrides

    overrides = [a for o in [*teacher_overrides(server), "teacher.params.concurrency=3", *extra] for a in ("--set", o)]
    return subprocess.Popen([sys.executable, "-m", "loopkit.cli", "run", str(recipe), "-o", str(out), *overrides],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), preexec_fn=_sigint_default)


def _wait_for(condition, proc, what, timeout=240):
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_ctrl_c_during_teacher_calls_journals_the_calls_in_flight_and_resume_pays_for_none_again(write_recipe, tmp_path):
    import pytest

    pytest.importorskip("litellm")
    from loopkit.journal import FILENAME, Journal
    from loopkit.testing_server import ChatServer

    out = tmp_path / "runs"
    with ChatServer() as server:
        server.delay = 0.4  # calls are in flight when Ctrl-C comes
        proc = _start_run(write_recipe(), out, server)
        _wait_for(lambda: server.in_flight >= 2, proc, "no teacher call was ever in flight")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 130, stdout + stderr
        assert "Traceback" not in stderr and "continue with: loopkit run --resume" in stdout
        (run,) = out.iterdir()
        journal = Journal(run / FILENAME)
        answered = sum(server.answered.values())
        assert 2 <= answered < 12 and journal.count(errors=False) == answered  # every answered call was kept
        assert f"journal: {answered} answered calls" in " ".join(stdout.split())

        server.delay = 0.0
        resumed = subprocess.run([sys.executable, "-m", "loopkit.cli", "run", "--resume", str(run)],
                                 capture_output=True, text=True, env=_start_env())
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert server.duplicates == 0
        assert (run / "round-002" / "COMPLETE").exists()


def _start_env():
    from test_kill import env

    return env()


def test_a_second_ctrl_c_exits_at_once_and_leaves_nothing_corrupt(write_recipe, tmp_path):
    import pytest

    pytest.importorskip("litellm")
    from loopkit.testing_server import ChatServer

    out = tmp_path / "runs"
    with ChatServer() as server:
        server.delay = 5.0  # the first Ctrl-C would wait this long for the calls in flight
        proc = _start_run(write_recipe(), out, server)
        _wait_for(lambda: server.in_flight >= 1, proc, "no teacher call was ever in flight")
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130 and time.monotonic() - started < 4, stdout + stderr  # not the 5 s wait
    (run,) = out.iterdir()
    assert (run / "round-000" / "COMPLETE").exists() and not (run / "round-001" / "COMPLETE").exists()
    assert not list(run.rglob("*.tmp"))
