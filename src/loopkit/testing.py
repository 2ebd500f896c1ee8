"""Helpers for testing loopkit and loopkit plugins.

``registered(kind, name, component)`` makes a component available to recipes for the duration
of a ``with`` block, as if an installed plugin registered it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from loopkit import plugins
from loopkit.hookspecs import hookimpl

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


# -- pytest fixtures (this module is registered as a pytest plugin through the pytest11 entry point) --

TINY_RECIPE = """\
name: plugin-test
seed: 0
task:
  name: reasoning-gym
  params: {generators: {syllogism: {weight: 1}}, pool_size: 16, test_size: 8}
student:
  name: tiny
  params: {hidden_size: 32, layers: 1, heads: 2, intermediate_size: 64}
teacher: {name: reasoning-gym}
selector: {name: random}
trainer:
  name: trl-sft
  params: {epochs: 1, batch_size: 8, learning_rate: 0.003}
loop: {rounds: 1, per_round: 4, max_new_tokens: 4, batch_size: 16}
"""

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
        """``loopkit_run(*overrides)``: run a one-round recipe on the tiny model (offline, seconds) and
        return its ``RunResult``; ``--set``-style overrides pick your component, e.g. ``"selector.name=foo"``."""

        def run(*overrides: str, recipe: str = TINY_RECIPE):
            from loopkit.loop import Loop
            from loopkit.recipe import load_recipe
            from loopkit.rundir import RunDir

            path = tmp_path / "recipe.yaml"
            path.write_text(recipe, encoding="utf-8")
            resolved = load_recipe(path, list(overrides))
            return Loop(resolved).run(RunDir.create(tmp_path / "runs", resolved.recipe.name))

        return run
