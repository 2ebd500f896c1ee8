"""Entry-point discovery against real distributions placed on the path."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import plugin_env


def make_distribution(site: Path, dist: str, module: str, source: str, entry: str = "") -> None:
    """A minimal installed distribution: a module plus a dist-info with a `loopkit` entry point."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[loopkit]\n{entry or module} = {module}\n")


def loopkit(*args, site: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = plugin_env(site, **(env or {})) if site is not None else {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "loopkit.cli", *args], capture_output=True, text=True, env=full_env, timeout=120)


GOOD = """
    from loopkit.hookspecs import hookimpl
    from loopkit.selectors.random import RandomSelector

    class Shuffle(RandomSelector):
        pass

    @hookimpl
    def register_selectors(register):
        register("shuffle", Shuffle)
"""


def test_broken_plugin_is_reported_and_the_cli_keeps_working(tmp_path):
    make_distribution(tmp_path, "loopkit-selector-broken", "loopkit_selector_broken", "raise ImportError('needs libfoo')")
    make_distribution(tmp_path, "loopkit-selector-shuffle", "loopkit_selector_shuffle", GOOD)
    result = loopkit("list-plugins", "--json", site=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(result.stdout)}
    assert rows[("selector", "shuffle")]["distribution"] == "loopkit-selector-shuffle"
    assert rows[("selector", "shuffle")]["version"] == "0.3"
    broken = rows[("plugin", "loopkit_selector_broken")]
    assert broken["status"] == "failed: ImportError: needs libfoo"
    assert rows[("selector", "loss")]["distribution"] == "loopkit"

    table = loopkit("list-plugins", site=tmp_path)
    assert table.returncode == 0 and "needs libfoo" in table.stdout and "shuffle" in table.stdout


def test_disable_and_load_lists_filter_by_distribution(tmp_path):
    make_distribution(tmp_path, "loopkit-selector-shuffle", "loopkit_selector_shuffle", GOOD)
    names = lambda r: {row["name"] for row in json.loads(r.stdout)}
    assert "shuffle" not in names(loopkit("list-plugins", "--json", site=tmp_path, env={"LOOPKIT_DISABLE_PLUGINS": "loopkit-selector-shuffle"}))
    only_core = names(loopkit("list-plugins", "--json", site=tmp_path, env={"LOOPKIT_LOAD_PLUGINS": ""}))
    assert "shuffle" not in only_core and "loss" in only_core  # the core is always loaded
    assert "shuffle" in names(loopkit("list-plugins", "--json", site=tmp_path, env={"LOOPKIT_LOAD_PLUGINS": "loopkit-selector-shuffle"}))


def test_duplicate_component_across_distributions_is_one_clear_error(tmp_path):
    clash = GOOD.replace('"shuffle"', '"loss"')
    make_distribution(tmp_path, "loopkit-selector-clash", "loopkit_selector_clash", clash)
    result = loopkit("list-plugins", site=tmp_path)
    assert result.returncode == 1
    assert "selector 'loss' is registered twice: by loopkit and by loopkit-selector-clash" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_and_list_plugins_do_not_import_heavy_libraries():
    code = textwrap.dedent("""
        import sys
        from typer.testing import CliRunner
        from loopkit.cli import build_app
        for args in (["--help"], ["list-plugins"], ["list-plugins", "--json"], ["run", "--help"]):
            result = CliRunner().invoke(build_app(), args)
            assert result.exit_code == 0, result.output
        heavy = sorted(m for m in ("torch", "transformers", "trl", "peft", "datasets", "reasoning_gym", "litellm") if m in sys.modules)
        print(",".join(heavy))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
