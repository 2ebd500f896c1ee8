"""Stopping on a signal: whether a stop was requested, by which signal, and its grace deadline.

SIGINT (Ctrl-C), SIGTERM (a scheduler preempting: Slurm, Kubernetes) and SIGHUP (a closed
terminal) all mean the same: send no new teacher call, let the calls in flight finish and be
journaled until the grace period ends, keep what is complete, say how to resume, and exit with
128 + the signal's number (130, 143, 129).

``handling()`` installs the handlers for a command. By default the first signal raises
KeyboardInterrupt in the main thread, so every stage (loading, predicting, generating, training,
writing) stops the way Ctrl-C always stopped it; inside a ``deferred()`` block (an answer on its
way into the journal, a round being marked complete) the block finishes first. A second signal
exits at once after a quick tidy, and a watchdog ends a process still alive ``SLACK`` seconds
after the grace period, whatever it is doing. A signal the process inherited as ignored (``nohup``
ignores SIGHUP) stays ignored.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

GRACE_SECONDS = 20.0  # what a preemption typically leaves before SIGKILL (Kubernetes 30 s, Slurm KillWait 30 s)
GRACE_ENV = "LOOPKIT_GRACE_SECONDS"
ARM_ENV = "LOOPKIT_COMPARE_ARM"  # set by `loopkit compare` for its arms: their parent forwards signals
SLACK = 5.0  # seconds after the grace period before the watchdog ends a process that has not stopped
SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@dataclass
class Stop:
    signum: int
    deadline: float  # time.monotonic() at which calls still in flight are abandoned
    abandoned: int = 0  # teacher calls still in flight at the deadline: a resume may send (and pay for) them again

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@dataclass
class _Section:
    on_stop: Callable[[], None] | None
    stopped: bool = False


@dataclass
class _State:
    grace: float = GRACE_SECONDS
    stop: Stop | None = None
    sections: list[_Section] = field(default_factory=list)  # the deferred() blocks the main thread is in
    on_stop: Callable[[Stop], None] | None = None  # None: raise KeyboardInterrupt
    tidy: Callable[[], str] | None = None  # before an immediate exit: make the disk consistent, return a hint
    watchdog: threading.Timer | None = None


_state = _State()


def reset() -> None:
    """Forget an earlier stop and cancel its watchdog (a new command starts)."""
    global _state
    if _state.watchdog is not None:
        _state.watchdog.cancel()
    _state = _State()


def requested() -> Stop | None:
    """The stop requested in this process (None: none)."""
    return _state.stop


def exit_code() -> int:
    """128 + the stopping signal's number; 130 for a KeyboardInterrupt no handled signal caused."""
    return _state.stop.exit_code if _state.stop else 128 + signal.SIGINT


def name() -> str:
    return _state.stop.name if _state.stop else "SIGINT"


def grace() -> float:
    """The grace period in seconds."""
    return _state.grace


def deadline() -> float:
    """When calls still in flight are abandoned (``time.monotonic()``): the stop's grace deadline, or,
    for a KeyboardInterrupt no handler saw (library use), the grace period from now."""
    return _state.stop.deadline if _state.stop else time.monotonic() + _state.grace


def abandon(calls: int) -> None:
    """Record teacher calls still in flight when the grace period ended."""
    if _state.stop is not None:
        _state.stop.abandoned += calls


def grace_seconds(value: float | None) -> float:
    """The grace period ``value`` (``--grace`` or $LOOPKIT_GRACE_SECONDS; None: 20 s), checked."""
    if value is None:
        value = GRACE_SECONDS
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"must be a finite number of seconds >= 0, not {value}")
    return float(value)


def is_arm() -> bool:
    return os.environ.get(ARM_ENV, "") not in ("", "0")


@contextmanager
def handling(grace: float = GRACE_SECONDS, on_stop: Callable[[Stop], None] | None = None,
             watchdog: float = SLACK) -> Iterator[None]:
    """Handle SIGINT, SIGTERM and SIGHUP in this block (main thread only; elsewhere a no-op).

    ``on_stop(stop)`` replaces the default reaction to the first signal (raise KeyboardInterrupt).
    The watchdog ends the process ``watchdog`` seconds after the grace period (its exit included).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reset()
    _state.grace, _state.on_stop = grace, on_stop
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s, handler in previous.items():
        if handler is not signal.SIG_IGN:  # an ignored signal stays ignored (nohup, background jobs)
            signal.signal(s, _handler(grace + watchdog))
    try:
        yield
    finally:  # the watchdog of a stop keeps running: it bounds the exit too (reset() cancels it)
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def on_exit_now(tidy: Callable[[], str] | None) -> None:
    """What an immediate exit (a second signal) runs first: it makes the disk consistent and returns a hint to print."""
    _state.tidy = tidy


@contextmanager
def deferred(on_stop: Callable[[], None] | None = None) -> Iterator[None]:
    """Let this block finish before a stop interrupts the main thread.

    A stop requested inside it calls ``on_stop`` (from the signal handler: set a flag, nothing
    more) and is raised as KeyboardInterrupt when the outermost such block ends.
    """
    section = _Section(on_stop)
    _state.sections.append(section)
    try:
        yield
    finally:
        _state.sections.remove(section)
    if section.stopped and not _state.sections:
        raise KeyboardInterrupt


def check() -> None:
    """Raise KeyboardInterrupt if a stop was requested and nothing acts on it: the handler's KeyboardInterrupt is
    lost when it lands while Python runs a finalizer (a ``__del__``: "Exception ignored in ..."), so a long job
    calls this at safe points (each stage of a round) and stops there at the latest."""
    if _state.stop is not None and _state.on_stop is None and not _state.sections:
        raise KeyboardInterrupt


def _handler(watchdog_after: float) -> Callable:
    def handle(signum: int, frame) -> None:
        state = _state
        if state.stop is not None:
            if is_arm():  # the same stop can reach an arm twice: from a scheduler that signals every process, and from compare
                return
            _exit_now(signum, "stopped at once by a second signal, abandoning any teacher calls in flight")
        state.stop = Stop(signum, time.monotonic() + state.grace)
        state.watchdog = threading.Timer(watchdog_after, _exit_now, (signum, f"still running {watchdog_after:g} s after the signal; exiting at once", False))
        state.watchdog.daemon = True
        state.watchdog.start()
        if state.on_stop is not None:
            state.on_stop(state.stop)
        elif state.sections:
            for section in state.sections:
                section.stopped = True
                if section.on_stop is not None:
                    section.on_stop()
        else:
            raise KeyboardInterrupt

    return handle


def _exit_now(signum: int, why: str, tidy: bool = True) -> None:
    """Exit with 128 + ``signum`` now. Tidying runs only in the main thread (the signal handler), never beside its writes."""
    hint = ""
    if tidy and _state.tidy is not None:
        try:
            hint = _state.tidy()
        except Exception:  # exiting anyway: what was not tidied, the next resume tidies
            pass
    message = f"\nloopkit: {why} ({signal.Signals(signum).name}){'; ' + hint if hint else ''}\n"
    try:
        if os.isatty(sys.stdout.fileno()):
            os.write(sys.stdout.fileno(), b"\x1b[?25h")  # the progress display hid the cursor
        os.write(sys.stderr.fileno(), message.encode("utf-8", "replace"))
    except (OSError, ValueError):
        pass
    os._exit(128 + signum)
