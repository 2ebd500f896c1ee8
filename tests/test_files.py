"""Files and paths as the file system gives them: too large, not regular, unreadable, oddly named.

The bad-input corpus (tests/bad_inputs/) holds the cases a fixed file can show; these need a file
made at test time (sparse giants, a 50 MB question, permission bits, symlink loops, names that
are not UTF-8) or a real process (a strict console, an address-space limit, a user without root's
override of file permissions).
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loopkit.cli import build_app
from loopkit.errors import DataError, LoopkitError, RecipeError
from loopkit.recipe import load_recipe
from loopkit.testing import TINY_RECIPE


def _cli(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(build_app(), list(args))
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, [line for line in result.output.splitlines() if line.strip()]


def _loopkit(*args: str, cwd: Path, env: dict | None = None, preexec=None) -> subprocess.CompletedProcess:
    def limit():  # a runaway input must not take the machine down
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
        if preexec:
            preexec()

    return subprocess.run([sys.executable, "-m", "loopkit.cli", *args], cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "300", **(env or {})},
                          timeout=120, preexec_fn=limit)


def _one_error(proc: subprocess.CompletedProcess, expect: str) -> None:
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("Error: "), (proc.returncode, lines)
    assert expect in lines[0], lines[0]
    assert "bug in loopkit" not in lines[0]


def test_a_recipe_larger_than_the_limit_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(3 << 20)  # sparse: 3 MiB of size, no disk
    with pytest.raises(RecipeError, match=r"big.yaml: 3.0 MiB is larger than the 1 MiB loopkit reads for a recipe"):
        load_recipe(big)


def test_a_jsonl_file_larger_than_the_limit_is_refused_before_it_is_read(write_recipe, tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    with open(seeds, "wb") as f:
        f.truncate(300 << 20)
    from loopkit.tasks.jsonl import JsonlTask

    with pytest.raises(DataError, match=r"seeds.jsonl: 300.0 MiB is larger than the 256 MiB"):
        JsonlTask(JsonlTask.Params(seed_file=str(seeds))).load(0)


def test_a_symlink_loop_is_one_error(tmp_path):
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    with pytest.raises(RecipeError, match="too many levels of symbolic links"):
        load_recipe(loop)
    base = tmp_path / "base.yaml"
    base.write_text("include: loop.yaml\nname: x\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="too many levels of symbolic links"):
        load_recipe(base)


def test_includes_nest_at_most_50_deep(tmp_path):
    """Each include is a Python call: a chain of hundreds would exhaust the stack (RecursionError)."""
    for i in range(300):
        (tmp_path / f"r{i}.yaml").write_text(f"include: r{i + 1}.yaml\n", encoding="utf-8")
    (tmp_path / "r300.yaml").write_text("name: x\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="r0.yaml: more than 50 nested includes"):
        load_recipe(tmp_path / "r0.yaml")


def test_yaml_merge_keys_work_and_explicit_keys_win():
    """`<<: *defaults` is plain YAML: the duplicate-key check must not break it."""
    from loopkit.recipe import parse_yaml

    parsed = parse_yaml("defaults: &d {rounds: 5, per_round: 4}\nloop:\n  <<: *d\n  rounds: 2\n", "recipe.yaml")
    assert parsed["loop"] == {"rounds": 2, "per_round": 4}


def test_a_seed_file_with_a_bom_crlf_lines_and_unicode_line_separators_loads(tmp_path):
    from loopkit.tasks.jsonl import JsonlTask

    rows = [{"question": f"Line\u2028separated {i}\u0085?", "answer": f"#### {i}"} for i in range(10)]
    text = "\ufeff" + "".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows)
    (tmp_path / "seeds.jsonl").write_bytes(text.encode("utf-8"))
    task = JsonlTask(JsonlTask.Params(seed_file=str(tmp_path / "seeds.jsonl"), checker="numeric", test_size=2))
    data = task.load(0)
    questions = sorted(s.question for s in data.pool + data.test)
    assert questions == sorted(r["question"] for r in rows)


def test_a_50mb_question_is_one_error_in_validate_and_run(tmp_path):
    """It used to reach the Rust tokenizer, which aborted the process (SIGABRT) when its memory ran out."""
    seeds = tmp_path / "seeds.jsonl"
    with open(seeds, "w", encoding="utf-8") as f:
        for i in range(20):
            f.write(json.dumps({"question": f"What is {i} + 1?", "answer": f"#### {i + 1}"}) + "\n")
        f.write(json.dumps({"question": "Why? " * 10_000_000, "answer": "#### 1"}) + "\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        TINY_RECIPE.split("task:")[0]
        + "task:\n  name: jsonl\n  params: {seed_file: seeds.jsonl, checker: numeric, test_size: 0.3}\n"
        + "student:" + TINY_RECIPE.split("student:")[1].replace("teacher:\n  name: reasoning-gym", "teacher:\n  name: hf\n  params: {model: {name: tiny}}"),
        encoding="utf-8")
    for command in ("validate", "run"):
        proc = _loopkit(command, str(recipe), *(["-o", "runs"] if command == "run" else []), cwd=tmp_path)
        _one_error(proc, "seeds.jsonl:21: the question is 50,000,000 characters; loopkit takes at most 100,000")
    assert not (tmp_path / "runs").exists()


def test_names_that_are_not_utf8_print_on_a_strict_console(tmp_path):
    """A file name with byte 0xff is a str with a lone surrogate in Python: a strict stdout cannot encode it."""
    name = os.fsdecode(b"recipe-\xff.yaml")
    (tmp_path / name).write_text(TINY_RECIPE, encoding="utf-8")
    strict = {"PYTHONIOENCODING": "utf-8:strict"}
    proc = _loopkit("validate", name, cwd=tmp_path, env=strict)
    assert proc.returncode == 0 and proc.stdout.startswith("OK recipe-\\xff.yaml"), proc.stdout + proc.stderr
    _one_error(_loopkit("validate", os.fsdecode(b"missing-\xff.yaml"), cwd=tmp_path, env=strict),
               "missing-\\xff.yaml: recipe file not found")


def _without_root_override() -> None:
    """In the child: root loses CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH, so permission bits apply to it too."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_permission_denied_is_one_line_naming_the_path(tmp_path):
    recipe, base = tmp_path / "recipe.yaml", tmp_path / "base.yaml"
    recipe.write_text(TINY_RECIPE, encoding="utf-8")
    base.write_text(TINY_RECIPE, encoding="utf-8")
    (tmp_path / "child.yaml").write_text("include: base.yaml\nseed: 4\n", encoding="utf-8")
    locked = tmp_path / "locked"
    locked.mkdir()
    base.chmod(0o000)
    locked.chmod(0o555)
    try:
        _one_error(_loopkit("validate", "base.yaml", cwd=tmp_path, preexec=_without_root_override), "is not readable")
        _one_error(_loopkit("validate", "child.yaml", cwd=tmp_path, preexec=_without_root_override),
                   "base.yaml: permission denied")
        _one_error(_loopkit("run", "recipe.yaml", "-o", "locked/runs", cwd=tmp_path, preexec=_without_root_override),
                   "cannot create a run directory in locked/runs: permission denied")
        # An OSError no check foresaw (here: the scaffold writing its files) is one line too, not "a bug in loopkit".
        _one_error(_loopkit("plugin", "new", "--kind", "selector", "--name", "x", "--dir", "locked", cwd=tmp_path,
                            preexec=_without_root_override), "permission denied")
    finally:
        locked.chmod(0o755)
        base.chmod(0o644)
    assert list(locked.iterdir()) == []


def test_available_memory_honours_an_address_space_limit():
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
            "from loopkit.device import available_memory; print(available_memory())")
    limited = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    from loopkit.device import available_memory

    assert 0 < limited < 3 << 30 and limited < available_memory()


def test_the_tiny_models_weight_estimate_is_its_real_size():
    from loopkit.models.tiny import TinyModel

    source = TinyModel(TinyModel.Params(hidden_size=48, layers=3, heads=4, intermediate_size=80))
    model, _ = source.load(0)
    assert source.weight_bytes() == 4 * sum(p.numel() for p in model.parameters())


def test_the_trainer_refuses_examples_whose_answers_max_length_cuts_off_entirely(tmp_path):
    """Before round 0 the seeds are checked; teachers can write longer questions, so train() checks again
    instead of letting TRL fail on a set with no answer token left."""
    from loopkit.models.tiny import TinyModel
    from loopkit.progress import NullProgress
    from loopkit.trainers.trl_sft import TRLSFTTrainer

    trainer = TRLSFTTrainer(TRLSFTTrainer.Params(max_length=40))
    assert trainer.check_lengths([10, 20], [5, 5]) == []
    assert "1 of 2 seeds are longer than 40 tokens" in trainer.check_lengths([10, 50], [5, 5], "seed")[0]
    model, tokenizer = TinyModel(TinyModel.Params(hidden_size=16, layers=1, heads=2, intermediate_size=16)).load(0)
    with NullProgress().stage(1, "train") as stage, pytest.raises(LoopkitError, match="max_length: 40 tokens is shorter"):
        trainer.train(model, tokenizer, ["Question: " + "x" * 60 + "\nAnswer:"] * 3, ["yes"] * 3, tmp_path, 0, stage)
