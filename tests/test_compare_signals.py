"""Signals to `loopkit compare`: forwarded to every arm, which stops cleanly; no arm outlives compare."""

import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("litellm")

from loopkit.testing_server import ChatServer  # noqa: E402
from test_kill import env, teacher_overrides  # noqa: E402


def _arms(parent: int) -> list[int]:
    """The live (not zombie) child processes of ``parent``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if int(ppid) == parent and state != "Z":
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _compare(recipe, directory, server):
    overrides = [a for o in [*teacher_overrides(server), "teacher.params.concurrency=2", "loop.rounds=1"] for a in ("--set", o)]
    return [sys.executable, "-m", "loopkit.cli", "compare", str(recipe), "--selectors", "random", "--seeds", "2",
            "--jobs", "2", "-d", str(directory), *overrides]


def _start_and_wait_for_calls(command, server, calls=2):
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    deadline = time.monotonic() + 240
    while server.in_flight < calls or len(_arms(proc.pid)) < 2:  # both arms started, teacher calls in flight
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the arms never had calls in flight"
        time.sleep(0.02)
    return proc, _arms(proc.pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_to_compare_stops_every_arm_cleanly_and_the_same_command_resumes_them(write_recipe, tmp_path):
    directory = tmp_path / "cmp"
    with ChatServer() as server:
        server.delay = 0.5
        command = _compare(write_recipe(), directory, server)
        proc, arms = _start_and_wait_for_calls(command, server)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 143, stdout + stderr
        assert not any(_alive(pid) for pid in arms)
        assert "Traceback" not in stdout + stderr
        said = " ".join(stdout.split())
        assert "stopped by SIGTERM: 2 arm(s) unfinished" in said and "continue with the same command" in said
        for log in directory.glob("*.log"):  # each arm stopped as `loopkit run` does on SIGTERM
            assert "continue with: loopkit run --resume" in " ".join(log.read_text().split()), log.read_text()
        assert not list(directory.rglob("*.tmp")) and not [r for r in directory.glob("*/round-*") if not (r / "COMPLETE").exists()]

        server.delay = 0.0
        again = subprocess.run(command, capture_output=True, text=True, env=env(), timeout=300)
        assert again.returncode == 0, again.stdout + again.stderr
        assert again.stdout.count(": done") == 2, again.stdout
        assert server.duplicates == 0  # the calls answered before the signal were journaled, not paid again


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_sigkill_to_compare_leaves_no_arm_running_or_spending(write_recipe, tmp_path):
    with ChatServer() as server:
        server.delay = 2.0  # without the parent-death signal the arms would go on sending calls for half a minute
        # Both arms' calls at the server (concurrency 2 each): none is on its way when compare dies.
        proc, arms = _start_and_wait_for_calls(_compare(write_recipe(), tmp_path / "cmp", server), server, calls=4)
        with server.lock:
            proc.kill()
            sent = server.requests + server.in_flight
        proc.communicate(timeout=60)
        deadline = time.monotonic() + 60  # each arm lets its calls in flight finish, then exits
        while any(_alive(pid) for pid in arms):
            assert time.monotonic() < deadline, "an arm kept running after compare was killed"
            time.sleep(0.1)
        assert server.requests + server.in_flight == sent  # no new call after compare died
