"""The consoles and tables loopkit prints with (the only place that builds them).

On a terminal rich fits output to its width. Anywhere else (a log file, ``| tee``, CI, compare's
arm logs) nothing is wrapped or cut: a line is as long as what it says, one event per line, and
a command printed for copy-paste stays one line. rich alone would assume 80 columns there (or
the width of a terminal on stdin), split log lines and cut table cells to ``…``.
"""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.console import Console, ConsoleDimensions
from rich.table import Table

UNLIMITED = 100_000  # columns off a terminal: wider than any line loopkit prints


class _Console(Console):
    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)
        return size if _is_tty(self.file) else ConsoleDimensions(UNLIMITED, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)


def _is_tty(file: Any) -> bool:
    """Whether output really goes to a terminal (rich's own notion follows FORCE_COLOR and friends too)."""
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed file
        return False


def on_terminal(console: Console) -> bool:
    """Whether ``console`` writes to a terminal, where a live display can redraw (else: one line per event)."""
    return _is_tty(console.file)


def make_console(stderr: bool = False, **kwargs: Any) -> Console:
    """A console on stdout (or stderr) that never wraps or truncates off a terminal; ``kwargs`` go to rich."""
    return _Console(stderr=stderr, **kwargs)


def table(*headers: str, title: str | None = None, **kwargs: Any) -> Table:
    """A rich table at least as wide as its title, so a long title (a path) is never wrapped off a terminal."""
    if title is not None:
        kwargs.setdefault("min_width", cell_len(title))
    return Table(*headers, title=title, **kwargs)
