"""Helpers for testing loopkit and loopkit plugins.

``registered(kind, name, component)`` makes a component available to recipes for the duration
of a ``with`` block, as if an installed plugin registered it. ``run_recipe`` runs a recipe (by
default ``TINY_RECIPE``) through the loop; the pytest fixtures ``loopkit_component`` and
``loopkit_run`` wrap the two for one test.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from loopkit import plugins
from loopkit.hookspecs import hookimpl

if TYPE_CHECKING:
    from loopkit.loop import RunResult

TEST_DISTRIBUTION = "loopkit-testing"


class _OneComponent:
    def __init__(self, kind: str, name: str, component: Any) -> None:
        self.kind, self.name, self.component = kind, name, component

    def _register(self, kind: str, register) -> None:
        if kind == self.kind:
            register(self.name, self.component)

    @hookimpl
    def register_tasks(self, register):
        self._register("task", register)

    @hookimpl
    def register_models(self, register):
        self._register("model", register)

    @hookimpl
    def register_teachers(self, register):
        self._register("teacher", register)

    @hookimpl
    def register_selectors(self, register):
        self._register("selector", register)

    @hookimpl
    def register_trainers(self, register):
        self._register("trainer", register)


@contextmanager
def registered(kind: str, name: str, component: Any, distribution: str = TEST_DISTRIBUTION) -> Iterator[None]:
    """Register one component in the process-wide plugin host while the block runs."""
    host = plugins.plugin_host()
    plugin = _OneComponent(kind, name, component)
    plugin_name = host.add(plugin, distribution, "0")
    plugins.forget_registry()
    try:
        yield
    finally:
        host.remove(plugin_name)
        plugins.forget_registry()


# A recipe small enough to run two rounds in seconds on a CPU, offline: loopkit's own tests and the
# ``loopkit_run`` fixture use it. Tests rely on its numbers (24 seeds, 12 test items, 6 per round).
TINY_RECIPE = """\
name: tiny-test
seed: 3
task:
  name: reasoning-gym
  params:
    generators: {syllogism: {weight: 1}, family_relationships: {weight: 1}}
    pool_size: 24
    test_size: 12
student:
  name: tiny
  params: {hidden_size: 32, layers: 1, heads: 2, intermediate_size: 64}
teacher:
  name: reasoning-gym
selector:
  name: loss
trainer:
  name: trl-sft
  params: {epochs: 1, batch_size: 8, learning_rate: 0.003}
loop:
  rounds: 2
  per_round: 6
  max_new_tokens: 6
  batch_size: 16
"""


def run_recipe(directory: str | Path, *overrides: str, recipe: str | Path = TINY_RECIPE) -> RunResult:
    """Run a recipe through the loop (no CLI) into ``directory/runs`` and return its ``RunResult``.

    ``recipe`` is the text of a recipe (written to ``directory/recipe.yaml``) or the path of a file;
    ``overrides`` are ``--set``-style, e.g. ``"selector.name=foo"``.
    """
    from loopkit.loop import Loop
    from loopkit.recipe import load_recipe
    from loopkit.rundir import RunDir

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(recipe, str):
        path = directory / "recipe.yaml"
        path.write_text(recipe, encoding="utf-8")
        recipe = path
    resolved = load_recipe(recipe, list(overrides))
    return Loop(resolved).run(RunDir.create(directory / "runs", resolved.recipe.name))


# -- pytest fixtures (this module is registered as a pytest plugin through the pytest11 entry point) --

try:
    import pytest
except ImportError:  # loopkit.testing is usable without pytest; only the fixtures need it
    pytest = None

if pytest is not None:

    @pytest.fixture
    def loopkit_component():
        """``loopkit_component(kind, name, cls)``: register a component for the rest of the test."""
        from contextlib import ExitStack

        with ExitStack() as stack:
            yield lambda kind, name, component: stack.enter_context(registered(kind, name, component))

    @pytest.fixture
    def loopkit_run(tmp_path):
        """``loopkit_run(*overrides, recipe=TINY_RECIPE)``: run the tiny two-round recipe on the tiny model
        (offline, seconds) and return its ``RunResult``; ``--set``-style overrides pick your component,
        e.g. ``"selector.name=foo"``."""
        return lambda *overrides, recipe=TINY_RECIPE: run_recipe(tmp_path, *overrides, recipe=recipe)
