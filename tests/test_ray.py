"""`loopkit compare --engine ray` on a local Ray instance: arms as Ray tasks, stopped and resumed
exactly as the local engine's. Opt-in tier: `pip install 'loopkit[ray]'`, then `pytest -m ray`."""

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]
pytest.importorskip("ray")
pytest.importorskip("litellm")

from loopkit.testing_server import ChatServer  # noqa: E402
from test_kill import env, teacher_overrides  # noqa: E402


def _arm_processes(directory) -> list[int]:
    """Live `loopkit run` processes writing into ``directory`` (Ray's workers start them, not compare)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
            state = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"run" in command and str(directory).encode() in command and state != "Z":
            found.append(int(entry))
    return found


def test_ray_runs_every_arm_a_sigterm_cancels_them_cleanly_and_the_same_command_resumes(write_recipe, tmp_path):
    directory = tmp_path / "cmp"
    with ChatServer() as server:
        server.delay = 0.5
        overrides = [a for o in [*teacher_overrides(server), "teacher.params.concurrency=2", "loop.rounds=1"] for a in ("--set", o)]
        command = [sys.executable, "-m", "loopkit.cli", "compare", str(write_recipe()), "--selectors", "random", "--seeds", "2",
                   "--engine", "ray", "--cpus-per-arm", "1", "-d", str(directory), *overrides]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
        deadline = time.monotonic() + 300
        while server.in_flight < 2 or len(_arm_processes(directory)) < 2:  # both arms running, calls in flight
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the arms never had calls in flight"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 143, stdout + stderr
        said = " ".join(stdout.split())
        assert "as Ray tasks on a local Ray instance" in said and "stopped by SIGTERM: 2 arm(s) unfinished" in said, said
        assert "Traceback" not in stdout + stderr and not _arm_processes(directory)
        for log in directory.glob("*.log"):  # each arm stopped as `loopkit run` does on SIGTERM
            assert "continue with: loopkit run --resume" in " ".join(log.read_text().split()), log.read_text()

        server.delay = 0.0
        again = subprocess.run(command, capture_output=True, text=True, env=env(), timeout=300)
        assert again.returncode == 0, again.stdout + again.stderr
        assert again.stdout.count(": done") == 2 and len([p for p in directory.iterdir() if p.is_dir()]) == 2, again.stdout
        assert server.duplicates == 0  # the calls answered before the signal were journaled, not paid again
