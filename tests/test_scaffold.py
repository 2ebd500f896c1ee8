"""loopkit plugin new: every kind's generated package installs, registers by name, and its own tests pass."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import plugin_env
from loopkit.cli import build_app
from loopkit.scaffold import KINDS


@pytest.mark.model
def test_every_kind_scaffolds_installs_and_passes_its_generated_tests(tmp_path):
    for kind in KINDS:
        result = CliRunner().invoke(build_app(), ["plugin", "new", "--kind", kind, "--name", f"my-{kind}", "--dir", str(tmp_path)])
        assert result.exit_code == 0, result.output
    packages = sorted(tmp_path.glob("loopkit-*"))
    assert [p.name for p in packages] == sorted(f"loopkit-{k}-my-{k}" for k in KINDS)
    assert (tmp_path / "loopkit-selector-my-selector" / "pyproject.toml").read_text().count('my-selector = "loopkit_selector_my_selector"') == 1
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), *map(str, packages)], check=True, capture_output=True, text=True, timeout=300)
    env = plugin_env(site)
    listed = subprocess.run([sys.executable, "-m", "loopkit.cli", "list-plugins", "--json"], capture_output=True, text=True, env=env)
    for kind in KINDS:
        assert f'"name": "my-{kind}"' in listed.stdout, listed.stdout
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *[str(p / "tests") for p in packages]],
                           capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert f"{2 * len(KINDS)} passed" in tests.stdout


@pytest.mark.parametrize("args, fragment", [
    (["--kind", "selectr", "--name", "foo"], "--kind selectr: not a component kind; choose one of selector, task"),
    (["--kind", "selector", "--name", "Foo_Bar"], "--name Foo_Bar: use lowercase letters"),
])
def test_bad_scaffold_arguments_are_one_line(tmp_path, args, fragment):
    result = CliRunner().invoke(build_app(), ["plugin", "new", *args, "--dir", str(tmp_path)])
    assert result.exit_code == 1 and fragment in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not list(tmp_path.iterdir())


def test_an_existing_directory_is_not_overwritten(tmp_path):
    (tmp_path / "loopkit-selector-foo").mkdir()
    result = CliRunner().invoke(build_app(), ["plugin", "new", "--kind", "selector", "--name", "foo", "--dir", str(tmp_path)])
    assert result.exit_code == 1 and "already exists" in result.output
