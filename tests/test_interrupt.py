"""Ctrl-C, SIGTERM and SIGHUP during a run: calls in flight are journaled within the grace period,
completed rounds stay on disk, the CLI says so and exits 128 + the signal's number."""

import os
import signal
import subprocess
import sys
import time

import pytest


def _default_signals():
    """A shell that starts CI in the background makes children ignore SIGINT (nohup: SIGHUP); these tests need them back."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def test_ctrl_c_keeps_completed_rounds_and_exits_130(write_recipe, tmp_path):
    out = tmp_path / "runs"
    recipe = write_recipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopkit.cli", "run", str(recipe), "-o", str(out), "--set", "loop.rounds=50"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"},
        preexec_fn=_default_signals,
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


def _start_run(recipe, out, server, extra=(), options=()):
    from test_kill import env, teacher_overrides

    overrides = [a for o in [*teacher_overrides(server), "teacher.params.concurrency=3", *extra] for a in ("--set", o)]
    return subprocess.Popen([sys.executable, "-m", "loopkit.cli", "run", str(recipe), "-o", str(out), *overrides, *options],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), preexec_fn=_default_signals)


def _wait_for(condition, proc, what, timeout=240):
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


# stopping.py installs one handler for the three signals; Ctrl-C and a closed terminal (SIGHUP) have
# their own tests in this file, so their ~30 s cases here are in the slow tier (-m slow).
@pytest.mark.parametrize("sig", [pytest.param(signal.SIGINT, marks=pytest.mark.slow), signal.SIGTERM,
                                 pytest.param(signal.SIGHUP, marks=pytest.mark.slow)],
                         ids=lambda s: signal.Signals(s).name)
def test_a_signal_during_teacher_calls_journals_the_calls_in_flight_and_resume_pays_for_none_again(write_recipe, tmp_path, sig):
    """Ctrl-C, a scheduler's SIGTERM and a closed terminal's SIGHUP all stop the same way."""
    pytest.importorskip("litellm")
    from loopkit.journal import FILENAME, Journal
    from loopkit.testing_server import ChatServer

    out = tmp_path / "runs"
    name = signal.Signals(sig).name
    with ChatServer() as server:
        server.delay = 0.4  # calls are in flight when the signal comes
        proc = _start_run(write_recipe(), out, server, ["loop.rounds=1", "selector.name=random"])
        _wait_for(lambda: server.in_flight >= 2, proc, "no teacher call was ever in flight")
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 128 + sig, stdout + stderr
        said = " ".join(stdout.split())
        assert "Traceback" not in stderr and f"Interrupted ({name})" in stderr
        assert f"stopped by {name}: rounds 0-0 are complete" in said and "continue with: loopkit run --resume" in said
        (run,) = out.iterdir()
        assert not (run / "round-001").exists() and not list(run.rglob("*.tmp"))  # no half-made round
        journal = Journal(run / FILENAME)
        answered = sum(server.answered.values())
        assert 2 <= answered < 12 and journal.count(errors=False) == answered  # every answered call was kept
        assert f"journal: {answered} answered calls" in said

        server.delay = 0.0
        resumed = subprocess.run([sys.executable, "-m", "loopkit.cli", "run", "--resume", str(run)],
                                 capture_output=True, text=True, env=_start_env())
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert server.duplicates == 0
        assert (run / "round-001" / "COMPLETE").exists()


def test_a_closed_terminal_stops_the_run_with_129_and_keeps_every_answered_call(write_recipe, tmp_path):
    """The terminal is gone (its pty closed) before SIGHUP: nothing can be printed, the stop still completes."""
    pytest.importorskip("litellm")
    import threading

    from loopkit.journal import FILENAME, Journal
    from loopkit.testing_server import ChatServer
    from test_kill import env, teacher_overrides

    out = tmp_path / "runs"
    terminal, tty = os.openpty()
    with ChatServer() as server:
        server.delay = 0.4
        overrides = [a for o in [*teacher_overrides(server), "teacher.params.concurrency=3", "loop.rounds=1",
                                 "selector.name=random"] for a in ("--set", o)]
        proc = subprocess.Popen([sys.executable, "-m", "loopkit.cli", "run", str(write_recipe()), "-o", str(out), *overrides],
                                stdin=tty, stdout=tty, stderr=tty, env=env(), start_new_session=True, preexec_fn=_default_signals)
        os.close(tty)
        threading.Thread(target=_drain, args=(terminal,), daemon=True).start()
        _wait_for(lambda: server.in_flight >= 2, proc, "no teacher call was ever in flight")
        os.close(terminal)  # writes to the terminal now fail
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=120) == 129
        answered = sum(server.answered.values())
    (run,) = out.iterdir()
    assert answered >= 2 and Journal(run / FILENAME).count(errors=False) == answered
    assert not (run / "round-001").exists() and not list(run.rglob("*.tmp"))


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass


def test_the_grace_period_bounds_the_wait_for_calls_in_flight(write_recipe, tmp_path):
    pytest.importorskip("litellm")
    from loopkit.testing_server import ChatServer

    out = tmp_path / "runs"
    with ChatServer() as server:
        server.delay = 10.0  # far slower than the grace period
        proc = _start_run(write_recipe(), out, server, ["loop.rounds=1", "selector.name=random"], ["--grace", "1"])
        _wait_for(lambda: server.in_flight >= 1, proc, "no teacher call was ever in flight")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 143 and time.monotonic() - started < 7, stdout + stderr  # not the 10 s reply
    said = " ".join(stdout.split())
    assert "the grace period (1.0s) ended with 3 teacher call(s) still in flight; they were abandoned" in said, said
    assert "Traceback" not in stderr and "continue with: loopkit run --resume" in said
    (run,) = out.iterdir()
    assert not (run / "round-001").exists() and not list(run.rglob("*.tmp"))


def test_a_signal_before_the_run_directory_exists_exits_with_its_code_and_writes_nothing(write_recipe, tmp_path):
    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "loopkit.cli", "run", str(write_recipe()), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"},
                            preexec_fn=_default_signals)
    _wait_for(lambda: _catches(proc.pid, signal.SIGHUP), proc, "the run never handled SIGHUP", timeout=60)
    proc.send_signal(signal.SIGHUP)  # while the recipe, data and student load
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 129 and "Interrupted (SIGHUP)." in stderr and "Traceback" not in stderr, stdout + stderr
    assert not out.exists() or not any(out.iterdir())


def _catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (Linux: SigCgt in /proc/PID/status)."""
    status = open(f"/proc/{pid}/status").read()
    caught = int(status.split("SigCgt:")[1].split()[0], 16)
    return bool(caught >> (sig - 1) & 1)


def _start_env():
    from test_kill import env

    return env()


def test_a_second_signal_exits_at_once_and_leaves_nothing_half_made(write_recipe, tmp_path):
    pytest.importorskip("litellm")
    from loopkit.testing_server import ChatServer

    out = tmp_path / "runs"
    with ChatServer() as server:
        server.delay = 5.0  # the first signal would wait this long for the calls in flight
        proc = _start_run(write_recipe(), out, server, ["loop.rounds=1", "selector.name=random"])
        _wait_for(lambda: server.in_flight >= 1, proc, "no teacher call was ever in flight")
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)  # any of the three
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130 and time.monotonic() - started < 4, stdout + stderr  # not the 5 s wait
    assert "stopped at once by a second signal" in stderr and "continue with: loopkit run --resume" in stderr
    (run,) = out.iterdir()
    assert (run / "round-000" / "COMPLETE").exists() and not (run / "round-001").exists()
    assert not list(run.rglob("*.tmp"))


def test_a_stop_while_a_resume_restores_reports_every_complete_round_and_a_header_only_run_resumes(tmp_path):
    """The report reads what is kept from disk when the stop came before the loop had restored it; a run
    stopped before round 0 completed (recipe.yaml and manifest.json only) can be resumed from the start."""
    import json

    from rich.console import Console

    from loopkit.rundir import RunDir
    from loopkit.runner import report_stop, resumable

    run_dir = RunDir(tmp_path / "run")
    for round in (0, 1):
        row = {"round": round, "samples": 6 * round, "teacher_calls": 12 * round, "accuracy": 0.5, "seconds": {"train": 1.0}}
        run_dir.write_text(f"round-{round:03d}/metrics.json", json.dumps(row))
        run_dir.mark_complete(round)
    console = Console(record=True, width=200)
    report_stop(console, run_dir)
    said = console.export_text()
    assert "rounds 0-1 are complete" in said and "12 teacher calls in complete rounds" in said, said

    header_only = tmp_path / "stopped-in-round-0"
    header_only.mkdir()
    (header_only / "recipe.yaml").write_text("name: x\n")
    (header_only / "manifest.json").write_text("{}\n")
    assert resumable(header_only, None) == header_only / "recipe.yaml"
