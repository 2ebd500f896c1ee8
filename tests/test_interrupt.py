"""Ctrl-C during a run: completed rounds stay on disk, the CLI says so and exits 130."""

import os
import signal
import subprocess
import sys
import time


def test_ctrl_c_keeps_completed_rounds_and_exits_130(write_recipe, tmp_path):
    out = tmp_path / "runs"
    recipe = write_recipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopkit.cli", "run", str(recipe), "-o", str(out), "--set", "loop.rounds=50"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"},
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
