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
