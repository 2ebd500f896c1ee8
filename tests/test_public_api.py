"""`from loopkit import ...` is all a plugin needs: every public name resolves, lightly, and the example
plugin, the scaffold's templates and the docs' examples import nothing else of loopkit."""

import ast
import inspect
import re
import subprocess
import sys

import pytest

import loopkit
from conftest import ROOT
from loopkit.scaffold import KINDS, new_plugin

PUBLIC = [name for name in loopkit.__all__ if name != "__version__"]


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_resolves(name):
    value = getattr(loopkit, name)
    assert value is not None and name in dir(loopkit)
    if inspect.isclass(value) or inspect.isfunction(value):
        assert value.__name__ == name  # the object itself, not a namesake


def test_a_name_that_is_not_public_is_an_attribute_error():
    with pytest.raises(AttributeError, match="module 'loopkit' has no attribute 'Loop'"):
        loopkit.Loop  # noqa: B018
    with pytest.raises(ImportError):
        from loopkit import call_select  # noqa: F401


def test_each_kind_has_its_base_class():
    assert {"Task", "ModelSource", "Teacher", "Selector", "ScoreSelector", "Trainer", "hookimpl", "Params"} <= set(PUBLIC)


def test_importing_loopkit_is_light_and_the_whole_api_imports_no_torch():
    code = ("import sys, loopkit; light = not {'pydantic', 'numpy'} & set(sys.modules); "
            "[getattr(loopkit, n) for n in loopkit.__all__]; "
            "print(light, sorted(m for m in ('torch', 'transformers', 'trl', 'datasets', 'litellm') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split(None, 1) == ["True", "[]\n"], result.stdout + result.stderr


def _sources(tmp_path):
    """Every file a plugin author copies from: the example plugin, each kind's scaffold, the docs' examples."""
    for package in (ROOT / "plugins").iterdir():
        for part in ("src", "tests"):
            yield from (package / part).rglob("*.py")
    for kind in KINDS:
        yield from new_plugin(kind, f"my-{kind}", tmp_path).rglob("*.py")
    docs = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    for n, code in enumerate(re.findall(r"```python\n(.*?)```", docs, flags=re.DOTALL)):
        path = tmp_path / f"docs-plugins-md-example-{n}.py"
        path.write_text(code, encoding="utf-8")
        yield path


def test_the_example_plugin_templates_and_docs_import_only_the_public_api(tmp_path):
    problems, names = [], 0
    for path in _sources(tmp_path):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for module in modules:
                if module.split(".")[0] == "loopkit" and module != "loopkit":
                    problems.append(f"{path.name}: imports {module}")
            if isinstance(node, ast.ImportFrom) and node.module == "loopkit":
                names += len(node.names)
                problems += [f"{path.name}: {a.name} is not public" for a in node.names if a.name not in PUBLIC]
    assert not problems, problems
    assert names > 20  # the check read real imports


def test_every_select_they_write_has_the_documented_signature(tmp_path):
    documented = list(inspect.signature(loopkit.Selector.select).parameters)
    written = [[a.arg for a in method.args.args] + [a.arg for a in method.args.kwonlyargs]
               for path in _sources(tmp_path) for cls in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
               if isinstance(cls, ast.ClassDef) for method in cls.body
               if isinstance(method, ast.FunctionDef) and method.name == "select"]
    assert written and all(args == documented for args in written), (documented, written)
