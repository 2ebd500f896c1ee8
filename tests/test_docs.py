"""The docs stay honest: every hook and every recipe field is documented, and the examples run."""

import inspect
import re

import pytest

from conftest import ROOT
from loopkit import hookspecs
from loopkit.plugins import registry
from loopkit.recipe import BudgetSpec, LoopSpec, Recipe

PLUGINS = (ROOT / "docs" / "plugins.md").read_text()
RECIPE = (ROOT / "docs" / "recipe.md").read_text()
HOOKS = [f for name, f in vars(hookspecs).items() if name.startswith("register_") and callable(f)]


def test_every_hook_has_a_section_titled_with_its_exact_signature():
    headings = set(re.findall(r"^## `(.+)`$", PLUGINS, flags=re.MULTILINE))
    for hook in HOOKS:
        signature = str(inspect.signature(hook)).replace("'", "")
        assert f"{hook.__name__}{signature}" in headings, f"docs/plugins.md has no '## `{hook.__name__}{signature}`'"


def _section_code(hook_name):
    section = PLUGINS.split(f"## `{hook_name}", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, flags=re.DOTALL).group(1)


@pytest.mark.parametrize("hook", [h.__name__ for h in HOOKS])
def test_each_example_registers_through_its_hook(hook):
    namespace: dict = {}
    exec(compile(_section_code(hook), f"docs/plugins.md:{hook}", "exec"), namespace)
    impl = namespace[hook]
    if hook == "register_commands":
        import typer

        app = typer.Typer()
        impl(app=app)
        assert [c.name for c in app.registered_commands] == ["hello"]
        return
    names = []
    impl(register=lambda name, component: names.append((name, component)))
    ((name, component),) = names
    assert component.Params()  # a component with valid defaults


EXAMPLES = [("task", "capitals", "CapitalsTask"), ("model", "local", "LocalModel"), ("teacher", "echo", "EchoTeacher"),
            ("selector", "low-loss", "LowLossSelector"), ("trainer", "plain", "PlainTrainer")]


@pytest.mark.model
def test_the_examples_run_together_in_a_loop(loopkit_component, loopkit_run, tmp_path):
    import json

    from loopkit.models.tiny import TinyModel

    for kind, name, cls in EXAMPLES:
        namespace: dict = {}
        exec(compile(_section_code(f"register_{kind}s"), f"docs/plugins.md:{kind}", "exec"), namespace)
        loopkit_component(kind, name, namespace[cls])
    model, tokenizer = TinyModel(TinyModel.Params(hidden_size=32, layers=1, heads=2, intermediate_size=64)).load(0)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    result = loopkit_run("task={name: capitals}", "student={name: local, params: {path: '%s'}}" % (tmp_path / "model"),
                         "teacher.name=echo", "selector.name=low-loss", "trainer={name: plain}", "loop.rounds=1", "loop.per_round=2")
    assert [r["round"] for r in result.rows] == [0, 1]
    rd = result.run_dir.path / "round-001"
    read = lambda name: [json.loads(line) for line in (rd / name).read_text().splitlines()]  # noqa: E731
    assert [r["question"] for r in read("eval.jsonl")] == ["What is the capital of Japan?"]  # the task's test split
    losses = sorted((r["own_loss"], r["index"]) for r in read("pool_signals.jsonl"))
    assert {r["index"] for r in read("selected.jsonl")} == {i for _, i in losses[:2]}  # the two lowest losses
    assert [s["question"][:7] for s in read("synthetic.jsonl")] == ["Again: "] * 2  # the echo teacher's
    metrics = json.loads((rd / "metrics.json").read_text())
    assert metrics["train"] == {"examples": 2, "steps": 2} and result.run_dir.model_dir(1)  # the plain trainer's


def test_every_recipe_field_and_builtin_param_is_in_the_reference():
    expected = [f"`{name}`" for name in Recipe.model_fields]
    expected += [f"`loop.{name}`" for name in LoopSpec.model_fields]
    expected += [f"`budget.{name}`" for name in BudgetSpec.model_fields]
    reg = registry()
    for entry in reg.entries():
        if entry.distribution != "loopkit":
            continue
        params = reg.load(entry.kind, entry.name).Params
        expected += [f"`{entry.name}.params.{n}`" for n, f in params.model_fields.items() if not f.exclude]
    missing = [e for e in expected if e not in RECIPE]
    assert not missing, f"undocumented in docs/recipe.md (run python docs/make_recipe_reference.py): {missing}"


def test_every_field_in_the_reference_has_a_meaning_and_a_type_a_recipe_writer_reads():
    rows = [line for line in RECIPE.splitlines() if line.startswith("| `")]
    assert len(rows) > 100
    for row in rows:
        field, kind, _, meaning = [cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:5]]
        assert meaning, f"docs/recipe.md: {field} has no meaning (give its Field a description)"
        assert not re.search(r"<class|loopkit\.|Annotated|Validator|Spec\b|Params\b", kind), f"{field}: type {kind}"


def test_the_readme_default_run_table_is_the_one_benchmarks_readme_numbers_writes():
    """The numbers are generated (python benchmarks/readme_numbers.py [RUN_DIR]), never typed: the section must
    be exactly what the script renders for the numbers it shows, round rows in order from round 0."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("readme_numbers", ROOT / "benchmarks" / "readme_numbers.py")
    script = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = script  # its dataclass looks its module up
    spec.loader.exec_module(script)
    shown = script.section((ROOT / "README.md").read_text())
    table = script.parse(shown)
    assert script.render(table) == shown
    assert [r[0] for r in table.rows] == list(range(len(table.rows))) and table.rows[0][1:3] == (0, 0)
    assert table.subtasks and all(len(r[4]) == len(table.subtasks) for r in table.rows)
