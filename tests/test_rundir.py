"""The run directory under real conditions: one process per run (an OS lock that dies with its
holder), readers beside a running writer, holes in the rounds, damaged files, and a full disk."""

import errno
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loopkit.cli import build_app
from loopkit.errors import RunDirError, RunInUseError
from loopkit.rundir import RunDir
from loopkit.testing import TINY_RECIPE

KEY_ENV = "LOOPKIT_TEST_RUNDIR_KEY"
ROW = {"samples": 0, "teacher_calls": 0, "accuracy": 0.0, "seconds": {}, "elapsed": 0.0}


def env():
    return {**os.environ, KEY_ENV: "sk-rundir-test", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "COLUMNS": "200"}


def loopkit(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "loopkit.cli", *map(str, args)], capture_output=True, text=True,
                          env=env(), timeout=300, **kwargs)


def lines(result):
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


def snapshot(root):
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def fake_run(path, rounds=1, recipe="seed: 0\ntask: {name: reasoning-gym}\nloop: {mode: active}\nselector: {name: loss}\n"):
    """A run directory by hand: recipe.yaml and complete rounds 0..rounds-1 (their metrics.json)."""
    path.mkdir(parents=True)
    (path / "recipe.yaml").write_text(recipe)
    for k in range(rounds):
        (path / f"round-{k:03d}").mkdir()
        (path / f"round-{k:03d}" / "metrics.json").write_text(json.dumps({"round": k, **ROW}))
        (path / f"round-{k:03d}" / "COMPLETE").write_text("")
    return RunDir(path)


# -- one process per run directory --------------------------------------------------------------------


def test_the_lock_names_its_holder_refuses_a_second_process_and_dies_with_its_holder(tmp_path):
    run = fake_run(tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from loopkit.rundir import RunDir; RunDir(sys.argv[1]).lock(); "
         "print('locked', flush=True); time.sleep(600)", str(run.path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        held_by = f"in use by loopkit process {holder.pid} on {socket.gethostname()}"
        with pytest.raises(RunInUseError, match=held_by):
            run.lock()
        with pytest.raises(RunInUseError, match=held_by):
            run.check_free()
        assert held_by.removeprefix("in use by ") in run.holder()
    finally:
        holder.kill()  # SIGKILL: no chance to clean up; the kernel releases the lock
        holder.wait()
    assert run.holder() is None
    assert run.lock() is True and run.lock() is False  # taken; and this process holds it already
    run.unlock()


def _overrides(server):
    teacher = ("teacher.params={model: openai/rundir-test, api_key_env: " + KEY_ENV
               + f", timeout: 120, backoff: 0.01, concurrency: 3, api_base: '{server.url}'}}")
    return ["--set", "teacher.name=litellm", "--set", teacher]


def _popen(*args):
    return subprocess.Popen([sys.executable, "-m", "loopkit.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env())


def _wait_until(condition, proc, what):
    deadline = time.monotonic() + 240
    while not condition():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_two_resumes_of_one_run_the_second_stops_at_once_and_readers_work_beside_the_first(write_recipe, tmp_path):
    """A resubmitted job: the second `--resume` exits 1 naming the first's pid and pays for nothing; report,
    export and compare read the run in progress; a writer killed with -9 leaves no stale lock."""
    pytest.importorskip("litellm")
    from loopkit.compare import Arm, arm_state
    from loopkit.testing_server import ChatServer

    out = tmp_path / "runs"
    with ChatServer() as server:
        server.allow(12)  # round 1's 6 questions and 6 answers; round 2's calls are held
        killed = _popen("run", write_recipe(), "-o", out, *_overrides(server))
        try:
            _wait_until(lambda: list(out.glob("*/round-001/COMPLETE")) and server.held >= 1, killed, "no round 2 call")
        finally:
            killed.kill()  # SIGKILL mid-round: no chance to clean up
            killed.wait()
        (run,) = out.iterdir()
        assert RunDir(run).holder() is None  # the kernel released its lock: nothing stale

        server.allow(0, drop_held=True)  # the killed run's held calls are never answered; the resume's are held
        first = _popen("run", "--resume", run)
        try:
            _wait_until(lambda: server.held >= 1, first, "the resume never reached round 2's teacher calls")
            before, requests = snapshot(run), server.requests

            second = loopkit("run", "--resume", run)
            assert second.returncode == 1, second.stdout + second.stderr
            assert len(lines(second)) == 1, lines(second)
            assert f"Error: {run} is in use by loopkit process {first.pid} on {socket.gethostname()}" in lines(second)[0]
            assert snapshot(run) == before and server.requests == requests  # it changed nothing and called nothing

            report = CliRunner().invoke(build_app(), ["report", str(run), "--out", str(tmp_path / "report")])
            assert report.exit_code == 0, report.output
            assert len(json.loads((tmp_path / "report" / "report.json").read_text())["arms"]["loss"]["curve"]) == 2
            export = CliRunner().invoke(build_app(), ["export", str(run), "--to", str(tmp_path / "export")])
            assert export.exit_code == 0 and "round 1 student" in export.output, export.output
            assert arm_state(out, Arm("tiny-test", "loss", 3), 2) == ("running", run)
            assert snapshot(run) == before

            server.allow(None)
            assert first.wait(timeout=240) == 0, first.communicate()[0]
        finally:
            first.kill()
            first.wait()
        assert server.duplicates == 0
    summary = json.loads((run / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2] and RunDir(run).last_round() == 2


# -- holes in the rounds, damaged files -------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["marker", "directory"])
def test_a_hole_in_the_rounds_is_refused_and_no_complete_round_is_ever_discarded(tmp_path, damage):
    run = fake_run(tmp_path / "run", rounds=3)
    if damage == "marker":
        (run.round_path(1) / "COMPLETE").unlink()
    else:
        for f in run.round_path(1).iterdir():
            f.unlink()
        run.round_path(1).rmdir()
    what = "has no COMPLETE marker" if damage == "marker" else "is missing"
    with pytest.raises(RunDirError, match=f"round-001 {what} but later rounds are complete \\(round-002\\); restore round-001"):
        run.rows()
    run.lock()
    run.discard_rounds_after(run.complete_rounds())  # what an interrupted run does on its way out
    assert run.is_complete(2) and run.round_path(1).exists() == (damage == "marker")
    (run.round_path(3)).mkdir()  # a half-made round after the last complete one is discarded
    run.discard_rounds_after(run.complete_rounds())
    assert not run.round_path(3).exists() and run.is_complete(2)
    run.unlock()
    (run.round_path(3)).mkdir()  # only the process holding the run removes anything
    run.discard_rounds_after(run.complete_rounds())
    assert run.round_path(3).exists()


def test_report_over_several_runs_names_the_damaged_one(tmp_path):
    fake_run(tmp_path / "cmp" / "loss-seed0-1", rounds=2)
    bad = fake_run(tmp_path / "cmp" / "loss-seed1-1", rounds=2)
    (bad.round_path(1) / "metrics.json").write_text('{"round": 1, "sam')
    result = CliRunner().invoke(build_app(), ["report", str(tmp_path / "cmp")])
    assert result.exit_code == 1
    assert result.output.strip().startswith(f"Error: {bad.round_path(1) / 'metrics.json'} is not valid JSON"), result.output
    assert "\n" not in result.output.strip() and "delete round-001" in result.output


def test_the_recipe_fingerprint_ignores_layout_refuses_edits_and_is_optional(tmp_path):
    run = fake_run(tmp_path / "run")
    (run.path / "manifest.json").write_text(json.dumps({"recipe_fingerprint": run.recipe_fingerprint()}))
    (run.path / "recipe.yaml").write_text("# a comment\n" + (run.path / "recipe.yaml").read_text().replace(": ", ":   "))
    assert run.recipe()["seed"] == 0  # comments and layout are not edits
    (run.path / "recipe.yaml").write_text((run.path / "recipe.yaml").read_text().replace("seed:   0", "seed: 1"))
    with pytest.raises(RunDirError, match="recipe.yaml was changed after the run started"):
        run.recipe()
    (run.path / "manifest.json").write_text('{"seed": 1}')  # a run made before fingerprints: nothing to check
    assert run.recipe()["seed"] == 1


# -- a full disk -------------------------------------------------------------------------------------------


def _consistent(run):
    """summary.json agrees with the COMPLETE rounds; no temp file, no half-made round."""
    rounds = [r["round"] for r in json.loads((run / "summary.json").read_text())["rounds"]]
    assert rounds == list(range(RunDir(run).last_round() + 1))
    assert not list(run.rglob("*.tmp"))
    assert all((d / "COMPLETE").exists() for d in run.glob("round-*"))
    return rounds


def _file_size_limit(limit):
    def limit_writes():  # a file may not grow past `limit` bytes: writes fail with EFBIG (SIGXFSZ ignored)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_writes


def test_a_refused_write_mid_run_keeps_the_run_consistent_says_so_in_one_line_and_resume_finishes_it(write_recipe, tmp_path):
    """A real refused write: the round-1 student (55 kB) cannot be saved under a 20 kB file-size limit."""
    out = tmp_path / "runs"
    failed = loopkit("run", write_recipe(), "-o", out, "--set", "loop.rounds=1", preexec_fn=_file_size_limit(20_000))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    (run,) = out.iterdir()
    error = lines(failed)[-1]
    assert error.startswith(f"Error: cannot write {run / 'round-001'}") and "File too large" in error, error
    assert error.endswith(f"then loopkit run --resume {run}") and "Traceback" not in failed.stderr
    assert _consistent(run) == [0]

    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["recipe_fingerprint"]  # as an older loopkit wrote it: resuming must still work
    (run / "manifest.json").write_text(json.dumps(manifest))
    resumed = CliRunner().invoke(build_app(), ["run", "--resume", str(run)])
    assert resumed.exit_code == 0, resumed.output
    assert _consistent(run) == [0, 1]


@pytest.mark.parametrize("target", ["summary.json", "round-001/COMPLETE"])  # the last two writes of a round
def test_a_full_disk_at_the_end_of_a_round_leaves_summary_and_rounds_in_agreement(write_recipe, tmp_path, monkeypatch, target):
    """summary.json is written before the round's COMPLETE marker: whichever of the two fails, the half-made
    round is discarded and summary.json lists the complete rounds."""
    from loopkit.loop import Loop
    from loopkit.recipe import load_recipe

    summaries = []
    fsync = os.fsync

    def full_disk(fd):  # the disk fills up as a file's temp copy is flushed, before its rename
        temp = Path(os.readlink(f"/proc/self/fd/{fd}"))  # .<name>.<random>.tmp beside <name>
        if temp.parent.is_relative_to(run.path):
            written = str(temp.parent.relative_to(run.path) / temp.name[1:].rsplit(".", 2)[0])
            summaries.append(written) if written == "summary.json" else None
            if written == target and (target != "summary.json" or len(summaries) == 2):  # round 1's summary: the 2nd
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return fsync(fd)

    resolved = load_recipe(write_recipe(TINY_RECIPE.replace("rounds: 2", "rounds: 1")))
    run = RunDir.create(tmp_path / "runs", "full")
    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(RunDirError) as failed:
        Loop(resolved).run(run)
    assert str(failed.value) == (f"cannot write {run.path / target}: No space left on device; free space, "
                                 f"then loopkit run --resume {run.path}")
    assert _consistent(run.path) == [0]

    monkeypatch.setattr(os, "fsync", fsync)  # space freed
    Loop(resolved).run(run, resume=True)
    assert _consistent(run.path) == [0, 1]


def test_refused_writes_are_recognised_whoever_reports_them(tmp_path):
    import sqlite3

    run = RunDir(tmp_path)
    efbig = RuntimeError("Error while serializing: I/O error: File too large (os error 27)")  # safetensors (Rust)
    assert "cannot write" in str(run.write_error(efbig, "again", tmp_path / "round-001"))
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorname = "SQLITE_FULL"
    assert str(run.write_error(full, "again")).startswith(f"cannot write {tmp_path / 'teacher-journal.sqlite'}")
    readonly = OSError(errno.EROFS, "Read-only file system", str(tmp_path / "x"))
    assert f"make {tmp_path} writable, then again" in str(run.write_error(readonly, "again"))
    elsewhere = PermissionError(errno.EACCES, "Permission denied", "/etc/shadow")  # not the run's file
    assert run.write_error(elsewhere, "again") is None
    assert run.write_error(ValueError("no"), "again") is None


def test_a_run_whose_header_cannot_be_written_leaves_no_directory(tmp_path, monkeypatch):
    """The disk fills up as recipe.yaml is flushed: one line, and no empty run directory left behind."""
    def full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(RunDirError, match=r"^cannot write .*/recipe\.yaml: No space left on device; free space, then run again$"):
        RunDir.start(tmp_path / "runs", "full", "name: full\n", {"seed": 0})
    assert list((tmp_path / "runs").iterdir()) == []


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_run_files_are_written_with_the_mode_the_umask_gives_like_any_other_tool(tmp_path, mask):
    old = os.umask(mask)
    try:
        written = RunDir(tmp_path).write_json("round-000/metrics.json", {})
    finally:
        os.umask(old)
    assert written.stat().st_mode & 0o777 == 0o666 & ~mask
