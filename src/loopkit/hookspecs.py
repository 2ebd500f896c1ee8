"""The hooks a loopkit plugin implements. Every hook is called with keyword arguments.

Each ``register_*`` hook receives a ``register(name, component)`` callback; ``component`` is a
class or a lazy ``"module:Class"`` string (imported only when a recipe uses it, so a plugin can
register heavy backends without slowing ``loopkit --help``).
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("loopkit")
hookimpl = pluggy.HookimplMarker("loopkit")

Register = Callable[[str, Any], None]


@hookspec
def register_tasks(register: Register) -> None:
    """Register tasks: seed pool + test split, prompt formatting, answer checking."""


@hookspec
def register_models(register: Register) -> None:
    """Register models: how a student (or a local teacher) name resolves to weights + tokenizer."""


@hookspec
def register_teachers(register: Register) -> None:
    """Register teachers: write a new question like a seed, then answer it."""


@hookspec
def register_selectors(register: Register) -> None:
    """Register selectors: turn student signals into the seeds to expand."""


@hookspec
def register_trainers(register: Register) -> None:
    """Register trainers: fine-tune the student on the synthetic data so far."""


@hookspec
def register_commands(app: Any) -> None:
    """Add sub-commands to the ``loopkit`` Typer app."""
