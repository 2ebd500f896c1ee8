"""Plugin discovery: entry points in group ``loopkit``, loaded one at a time through pluggy.

The core registers its own built-in components the same way (``loopkit.builtin``), so
``loopkit list-plugins`` shows where every component comes from.
"""

from __future__ import annotations

import os
from functools import partial
from importlib.metadata import entry_points
from typing import Any

import pluggy

from loopkit import hookspecs
from loopkit.errors import LoopkitError
from loopkit.registry import KINDS, ComponentEntry, PluginFailure, Registry

GROUP = "loopkit"
CORE_DISTRIBUTION = "loopkit"


def _env_list(name: str) -> set[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


class PluginHost:
    """A pluggy manager that remembers which distribution each plugin came from."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.origin: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)
        self.failures: list[PluginFailure] = []

    def add(self, plugin: Any, distribution: str, version: str = "", name: str | None = None) -> str:
        """Register a plugin object (a module or any object with hookimpls); returns its name."""
        plugin_name = self.pm.register(plugin, name=name)
        self.origin[plugin_name] = (distribution, version)
        return plugin_name

    def remove(self, plugin_name: str) -> None:
        self.pm.unregister(name=plugin_name)
        self.origin.pop(plugin_name, None)

    def load_entry_points(self) -> None:
        """Load every ``loopkit`` entry point; one that fails is recorded, never raised.

        ``LOOPKIT_DISABLE_PLUGINS`` (deny) and ``LOOPKIT_LOAD_PLUGINS`` (allow) are comma-separated
        distribution names; the core distribution is always loaded.
        """
        deny = _env_list("LOOPKIT_DISABLE_PLUGINS") or set()
        allow = _env_list("LOOPKIT_LOAD_PLUGINS")
        for ep in sorted(entry_points(group=GROUP), key=lambda e: (e.dist.name if e.dist else "", e.name)):
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else ""
            if dist != CORE_DISTRIBUTION and (dist in deny or (allow is not None and dist not in allow)):
                continue
            if self.pm.has_plugin(f"{dist}:{ep.name}"):
                continue  # the same distribution seen twice on sys.path
            try:
                plugin = ep.load()
                self.add(plugin, dist, version, name=f"{dist}:{ep.name}")
            except Exception as exc:  # a broken plugin must never take the CLI down
                self.failures.append(PluginFailure(dist, version, ep.name, f"{type(exc).__name__}: {exc}"))

    def build_registry(self) -> Registry:
        """Ask every plugin to register its components; attribute each to its distribution."""
        registry = Registry()
        registry.failures.extend(self.failures)
        for kind in KINDS:
            caller = getattr(self.pm.hook, f"register_{kind}s")
            for impl in caller.get_hookimpls():  # in registration order
                distribution, version = self.origin.get(impl.plugin_name, (impl.plugin_name, ""))
                register = partial(self._register, registry, kind, distribution, version)
                try:
                    impl.function(register=register)
                except LoopkitError:
                    raise  # duplicates and bad names are real conflicts the user must resolve
                except Exception as exc:
                    registry.failures.append(
                        PluginFailure(distribution, version, impl.plugin_name, f"{type(exc).__name__}: {exc}")
                    )
        return registry

    @staticmethod
    def _register(registry: Registry, kind: str, distribution: str, version: str, name: str, component: Any) -> None:
        registry.add(ComponentEntry(kind, name, component, distribution, version))


_host: PluginHost | None = None
_registry: Registry | None = None


def plugin_host() -> PluginHost:
    """The process-wide host with all installed plugins loaded (idempotent)."""
    global _host
    if _host is None:
        _host = PluginHost()
        _host.load_entry_points()
    return _host


def registry() -> Registry:
    """The process-wide registry of every installed component (built once)."""
    global _registry
    if _registry is None:
        _registry = plugin_host().build_registry()
    return _registry


def forget_registry() -> None:
    """Rebuild the registry on next use (after plugins were added or removed)."""
    global _registry
    _registry = None


def reset() -> None:
    """Forget the loaded plugins (tests use this after changing the environment)."""
    global _host, _registry
    _host = None
    _registry = None
