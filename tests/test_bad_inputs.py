"""The bad-input corpus (tests/bad_inputs/): every case through the real CLI, one clean line each.

Each case in ``bad_inputs/cases.yaml`` must end with exit code 1 and exactly one non-empty output
line, ``Error: ...``, containing the case's ``expect`` fragment, with no traceback, and must leave
nothing half-made behind: no run directory under the output directory, no ``*.tmp`` file or
round without ``COMPLETE`` in any run directory, and the corpus itself untouched. Cases marked
``known_bad`` describe what the CLI does today instead; they xfail with that description (and
show as XPASS once fixed: then drop their ``known_bad``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from loopkit.cli import build_app

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
BASE = CORPUS / "_tiny.yaml"
INDEX = CORPUS / "cases.yaml"
CASES = yaml.safe_load(INDEX.read_text(encoding="utf-8"))["cases"]
FIELDS = {"file", "command", "args", "argv", "env", "expect", "forbid", "absent", "subprocess", "timeout", "known_bad",
          "run_files"}
COMMANDS = {"validate", "run", "export", "report", "compare"}


def _params():
    for case in sorted(CASES, key=lambda c: c["file"]):
        marks = []
        if case.get("known_bad"):
            marks.append(pytest.mark.xfail(reason=f"known bad: {case['known_bad']}", strict=False))
        yield pytest.param(case, id=case["file"], marks=marks)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and mtime (to prove a case changed nothing there)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def _make_run_dir(parent: Path) -> Path:
    """A minimal run directory of _tiny.yaml: recipe.yaml exactly as ``loopkit run`` writes it, and a complete round 0."""
    from loopkit.recipe import load_recipe

    resolved = load_recipe(BASE)
    run_dir = parent / "bad-inputs-20260101-000000"
    (run_dir / "round-000").mkdir(parents=True)
    header = f"# resolved from {resolved.source}\n"
    (run_dir / "recipe.yaml").write_text(header + yaml.safe_dump(resolved.resolved_dict(), sort_keys=False), encoding="utf-8")
    (run_dir / "round-000" / "metrics.json").write_text(
        '{"round": 0, "samples": 0, "teacher_calls": 0, "accuracy": 0.0, "seconds": {}, "elapsed": 0.0}\n', encoding="utf-8")
    (run_dir / "round-000" / "COMPLETE").write_text("2026-01-01T00:00:00+0000\n", encoding="utf-8")
    return run_dir


def _damage(run_dir: Path, files: dict[str, str | None]) -> None:
    """A case's ``run_files``: write each file (text) into the run directory, or remove it (null)."""
    for relative, text in files.items():
        path = run_dir / relative
        if text is None:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode("latin-1"))  # \xNN escapes in the YAML are bytes (a binary file's header)


def _argv(case: dict, values: dict[str, str]) -> list[str]:
    args = case["argv"] if "argv" in case else ["{file}", *case.get("args", [])]
    # {name} placeholders only: a YAML value in an argument keeps its own braces ("loop={rounds: 2}")
    args = [re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), str(a)) for a in args]
    if case["command"] == "run" and not {"-o", "--output", "--resume"} & set(args):
        args += ["-o", values["out"]]
    return [case["command"], *args]


def _limit_memory() -> None:  # in the child of a subprocess case: a runaway input must not take the machine down
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


class Outcome:
    def __init__(self, exit_code: int, stdout: str, stderr: str, exception: BaseException | None = None) -> None:
        self.exit_code, self.stdout, self.stderr, self.exception = exit_code, stdout, stderr, exception

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _invoke(case: dict, argv: list[str], tmp: Path) -> Outcome:
    env = case.get("env") or {}
    if not case.get("subprocess"):
        result = CliRunner().invoke(build_app(), argv, env=env)
        exception = None if isinstance(result.exception, SystemExit) else result.exception
        return Outcome(result.exit_code, result.stdout, result.stderr, exception)
    child_env = {**os.environ, "COLUMNS": "200"}
    for key, value in env.items():
        if value is None:
            child_env.pop(key, None)
        else:
            child_env[key] = str(value)
    timeout = case.get("timeout", 10)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "loopkit.cli", *argv], cwd=tmp, env=child_env, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=timeout, preexec_fn=_limit_memory if sys.platform.startswith("linux") else None,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`loopkit {' '.join(argv)}` did not finish within {timeout} s")
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def _half_made(root: Path) -> list[str]:
    """Temp files and rounds without COMPLETE in every run directory under ``root``."""
    problems = [f"temp file {p}" for p in root.rglob("*.tmp")]
    for round_dir in root.rglob("round-*"):
        if round_dir.is_dir() and re.fullmatch(r"round-\d+", round_dir.name) and not (round_dir / "COMPLETE").exists():
            problems.append(f"round without COMPLETE: {round_dir}")
    return problems


@pytest.mark.parametrize("case", _params())
def test_bad_input(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative default (output_dir: runs) lands in the temporary directory
    path = CORPUS / case["file"]
    assert path.exists() != bool(case.get("absent")), f"{path}: exists={path.exists()}, absent={case.get('absent')}"
    out = tmp_path / "runs"
    values = {"file": str(path), "tmp": str(tmp_path), "out": str(out), "corpus": str(CORPUS)}
    argv_template = " ".join(map(str, case.get("argv", case.get("args", []))))
    if "{fifo}" in argv_template:  # a named pipe nobody writes to: reading it would block forever
        os.mkfifo(tmp_path / "fifo")
        values["fifo"] = str(tmp_path / "fifo")
    run_dir = _make_run_dir(tmp_path / "existing") if "{run_dir}" in argv_template else None
    if run_dir is not None:
        values["run_dir"] = str(run_dir)
        _damage(run_dir, case.get("run_files") or {})
    argv = _argv(case, values)
    corpus_before = _snapshot(CORPUS)
    run_dir_before = _snapshot(run_dir) if run_dir is not None else None
    half_made_before = _half_made(tmp_path)  # what a case's run_files made on purpose

    result = _invoke(case, argv, tmp_path)

    shown = f"`loopkit {' '.join(argv)}` (exit {result.exit_code}):\n{result.output}"
    assert result.exception is None, f"{shown}\nuncaught {type(result.exception).__name__}: {result.exception}"
    assert "Traceback" not in result.output, shown
    assert result.exit_code == 1, shown
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, shown
    assert lines[0].startswith("Error: "), shown
    assert case["expect"] in lines[0], f"expected {case['expect']!r} in {lines[0]!r}"
    for secret in case.get("forbid", []):
        assert secret not in result.output, f"{secret!r} shown: {shown}"

    assert not out.exists() or not any(out.iterdir()), f"{shown}\nleft behind: {sorted(out.rglob('*'))}"
    assert not (tmp_path / "export").exists(), f"{shown}\nleft a half export"
    assert _half_made(tmp_path) == half_made_before, shown
    assert _snapshot(CORPUS) == corpus_before, f"{shown}\nthe case changed tests/bad_inputs/"
    if run_dir is not None:
        assert _snapshot(run_dir) == run_dir_before, f"{shown}\nthe case changed the run directory it was given"


def test_the_index_is_well_formed():
    """At least 32 cases, each with known fields; every file in the corpus is a case (or the base)."""
    assert len(CASES) >= 32
    files = [c["file"] for c in CASES]
    assert len(files) == len(set(files)), "a case is listed twice"
    for case in CASES:
        assert set(case) <= FIELDS, f"{case['file']}: unknown fields {set(case) - FIELDS}"
        assert case["command"] in COMMANDS, case
        assert isinstance(case["expect"], str) and case["expect"], case
        assert re.fullmatch(r"\d{2,3}-[a-z0-9-]+(\.[a-z0-9]+)?", case["file"]), f"{case['file']}: name it NN-short-name[.ext]"
    on_disk = {p.name for p in CORPUS.iterdir() if not p.name.startswith("_")} - {INDEX.name}  # _*: bases
    assert on_disk == {c["file"] for c in CASES if not c.get("absent")}


@pytest.mark.parametrize("argv", [[str(BASE)], [str(CORPUS / "_jsonl.yaml"), "--set", f"task.params.seed_file={CORPUS / '_seeds.jsonl'}"]],
                         ids=["tiny", "jsonl"])
def test_the_base_recipe_is_valid(argv):
    """The failures come from the cases, not from the bases they build on."""
    result = CliRunner().invoke(build_app(), ["validate", *argv])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK ")
