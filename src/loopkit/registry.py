"""The collection of components, with loud name resolution."""

from __future__ import annotations

import difflib
import importlib
import re
from dataclasses import dataclass
from typing import Any

from loopkit.errors import DuplicateComponentError, PluginLoadError, UnknownComponentError

KINDS = ("task", "model", "teacher", "selector", "trainer")
_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class ComponentEntry:
    kind: str
    name: str
    target: Any  # a class, or a lazy "module:Class" string
    distribution: str
    version: str

    def load(self) -> type:
        """The component class (imports a lazy target's module on first use)."""
        if not isinstance(self.target, str):
            return self.target
        module_name, _, attr = self.target.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise PluginLoadError(
                f"{self.kind} '{self.name}' from {self.distribution} could not be imported "
                f"({type(exc).__name__}: {exc}); reinstall {self.distribution} or install its extras"
            ) from exc


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded; reported by list-plugins, never fatal."""

    distribution: str
    version: str
    entry_point: str
    error: str


class Registry:
    """Every registered component by kind and name, plus the plugins that failed to load."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], ComponentEntry] = {}
        self.failures: list[PluginFailure] = []

    def add(self, entry: ComponentEntry) -> None:
        if entry.kind not in KINDS:
            raise ValueError(f"unknown component kind {entry.kind!r}")
        if not _NAME.match(entry.name):
            raise PluginLoadError(
                f"{entry.distribution} registers {entry.kind} {entry.name!r}: "
                "component names must be lowercase kebab-case, like 'gold-loss'"
            )
        key = (entry.kind, entry.name)
        if key in self._entries:
            first = self._entries[key]
            raise DuplicateComponentError(
                f"{entry.kind} '{entry.name}' is registered twice: by {first.distribution} and by "
                f"{entry.distribution}; uninstall one or disable it with LOOPKIT_DISABLE_PLUGINS"
            )
        self._entries[key] = entry

    def entries(self, kind: str | None = None) -> list[ComponentEntry]:
        return sorted(
            (e for e in self._entries.values() if kind is None or e.kind == kind),
            key=lambda e: (KINDS.index(e.kind), e.name),
        )

    def names(self, kind: str) -> list[str]:
        return [e.name for e in self.entries(kind)]

    def get(self, kind: str, name: str) -> ComponentEntry:
        try:
            return self._entries[(kind, name)]
        except KeyError:
            raise UnknownComponentError(self._unknown_message(kind, name)) from None

    def load(self, kind: str, name: str) -> type:
        return self.get(kind, name).load()

    def _unknown_message(self, kind: str, name: str) -> str:
        available = self.names(kind)
        message = f"unknown {kind} '{name}'."
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
        if close:
            message += " Did you mean: " + ", ".join(f"'{c}'" for c in close) + "?"
        message += " Available: " + (", ".join(available) or "none") + "."
        if any(f.error for f in self.failures):
            message += " Some plugins failed to load: see `loopkit list-plugins`."
        return message
