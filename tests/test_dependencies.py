"""Every module the test suite imports is installed by ``pip install -e ".[test]"``.

A module that is merely present on one machine (``hypothesis`` once was) lets the suite pass there
and fail on a brand-new virtualenv. This test reads every import in ``tests/`` and checks that each
third-party module belongs to a distribution that loopkit's core dependencies or its ``test`` extra
pull in (transitively). Opt-in tiers import their heavy modules through ``pytest.importorskip``,
which this test accepts as optional.
"""

from __future__ import annotations

import ast
import sys
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

TESTS = Path(__file__).resolve().parent


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """Top-level module names ``path`` imports, and those it only imports through ``pytest.importorskip``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    imported, optional = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "importorskip"
              and node.args and isinstance(node.args[0], ast.Constant)):
            optional.add(str(node.args[0].value).split(".")[0])
    return imported, optional


def _closure(root: str, extras: set[str]) -> set[str]:
    """Canonical names of every distribution ``root[extras]`` requires, transitively (markers evaluated)."""
    seen: set[str] = set()
    todo = [(root, frozenset(extras))]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in done:
            continue
        done.add((name, wanted))
        seen.add(canonicalize_name(name))
        try:
            reqs = requires(name) or []
        except PackageNotFoundError:  # a requirement whose marker excludes this platform, or not installed at all
            continue
        for text in reqs:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in {"", *wanted}):
                todo.append((req.name, frozenset(req.extras)))
    return seen


def test_every_module_the_tests_import_is_installed_by_the_test_extra():
    local = {p.stem for p in TESTS.rglob("*.py")} | {"loopkit"}
    imported: dict[str, str] = {}
    optional: set[str] = set()
    for path in sorted(TESTS.rglob("*.py")):
        names, skippable = _imports(path)
        optional |= skippable
        for name in names:
            imported.setdefault(name, path.relative_to(TESTS).as_posix())
    provided = _closure("loopkit", {"test"})
    owners = packages_distributions()
    missing = []
    for name, where in sorted(imported.items()):
        if name in sys.stdlib_module_names or name in local or name in optional:
            continue
        dists = {canonicalize_name(d) for d in owners.get(name, [])}
        if not dists & provided:
            missing.append(f"{name} (imported by tests/{where}; from {sorted(dists) or 'no installed distribution'})")
    assert not missing, "add these to the `test` extra in pyproject.toml (or to the core dependencies): " + "; ".join(missing)


def test_the_check_sees_a_module_outside_the_extras(tmp_path):
    """The check itself: a module no requirement provides is reported, a stdlib one is not."""
    probe = tmp_path / "probe.py"
    probe.write_text("import json\nimport hypothesis\nfrom yaml import safe_load\nwheel = pytest.importorskip('vllm')\n")
    names, optional = _imports(probe)
    assert names == {"json", "hypothesis", "yaml"} and optional == {"vllm"}
    assert "hypothesis" in _closure("loopkit", {"test"}) and "hypothesis" not in _closure("loopkit", set())
