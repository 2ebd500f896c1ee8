"""How the loop reports progress without printing: the CLI plugs a rich display in here."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Protocol

if TYPE_CHECKING:
    from loopkit.records import RoundRow


class Stage(Protocol):
    def advance(self, n: int = 1) -> None: ...
    def set_total(self, total: int) -> None: ...
    def show(self, name: str, value: float) -> None: ...  # e.g. ("loss", 1.23): a metric's latest value, shown live


class Progress(Protocol):
    def plan(self, first: int, last: int) -> None: ...  # this process runs rounds ``first`` to ``last``
    def stage(self, round_no: int, name: str, total: int | None = None) -> "contextmanager[Stage]": ...
    def spent(self, teacher_calls: int, usd: float) -> None: ...  # the run's spend so far
    def round_done(self, row: "RoundRow") -> None: ...
    def note(self, message: str) -> None: ...


class _NullStage:
    def advance(self, n: int = 1) -> None:
        pass

    def set_total(self, total: int) -> None:
        pass

    def show(self, name: str, value: float) -> None:
        pass


class NullProgress:
    """Reports nothing (the default for library use and tests); a display derives from it and shows what it wants."""

    def plan(self, first: int, last: int) -> None:
        pass

    def spent(self, teacher_calls: int, usd: float) -> None:
        pass

    @contextmanager
    def stage(self, round_no: int, name: str, total: int | None = None) -> Iterator[Stage]:
        yield _NullStage()

    def round_done(self, row: "RoundRow") -> None:
        pass

    def note(self, message: str) -> None:
        pass
