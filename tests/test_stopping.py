"""The stop mechanism in-process (real signals to this process): what the first signal does, and where it waits."""

import os
import signal
import subprocess
import sys
import time

import pytest

from loopkit import stopping


def _default_signals():
    """A signal this process inherited as ignored (a `nohup` CI job ignores SIGHUP) stays ignored by design:
    these tests need each one handled."""
    for s in stopping.SIGNALS:
        signal.signal(s, signal.SIG_DFL)


@pytest.fixture(autouse=True)
def _forget_the_stop():
    inherited = {s: signal.getsignal(s) for s in stopping.SIGNALS}
    _default_signals()
    yield
    stopping.reset()  # the next test starts with no stop requested
    for s, handler in inherited.items():
        signal.signal(s, handler)


def test_the_first_signal_raises_keyboard_interrupt_with_its_exit_code():
    with pytest.raises(KeyboardInterrupt):
        with stopping.handling(grace=3):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10**7):  # the handler runs between bytecodes
                pass
    stop = stopping.requested()
    assert stop.name == "SIGTERM" and stop.exit_code == 143 and 0 < stop.deadline - time.monotonic() <= 3


def test_a_deferred_block_finishes_before_the_stop_is_raised():
    finished, told = [], []
    with pytest.raises(KeyboardInterrupt):
        with stopping.handling(grace=3):
            with stopping.deferred(on_stop=lambda: told.append(True)):
                os.kill(os.getpid(), signal.SIGHUP)
                for _ in range(10**5):
                    pass
                finished.append(True)
    assert finished == [True] and told == [True] and stopping.exit_code() == 129


def test_handlers_are_restored_and_an_inherited_ignore_is_kept():
    before = signal.getsignal(signal.SIGTERM)
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # nohup: a closed terminal must not stop the run
    try:
        with stopping.handling():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not before
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        signal.signal(signal.SIGHUP, previous)


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf")])
def test_a_grace_period_must_be_finite_and_not_negative(value):
    with pytest.raises(ValueError, match="finite number of seconds"):
        stopping.grace_seconds(value)


@pytest.mark.parametrize("arm", [False, True], ids=["run", "compare-arm"])
def test_a_second_signal_exits_at_once_except_in_an_arm_whose_parent_forwards_signals(arm):
    """A run exits at once (129 here) on a second signal; an arm of compare, which may get one stop twice (from a
    scheduler that signals every process, and from compare), ignores the repeat."""
    script = """
import os, signal, sys, time
from loopkit import stopping
with stopping.handling(grace=30):
    stopping.on_exit_now(lambda: "tidied")
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    except KeyboardInterrupt:
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(0.5)
        print("still stopping", stopping.exit_code())
"""
    env = {**os.environ, stopping.ARM_ENV: "1" if arm else ""}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60,
                          preexec_fn=_default_signals)
    if arm:
        assert done.returncode == 0 and "still stopping 143" in done.stdout, done.stdout + done.stderr
    else:
        assert done.returncode == 129 and "stopped at once by a second signal" in done.stderr, done.stdout + done.stderr
        assert "tidied" in done.stderr and "still stopping" not in done.stdout


def test_a_stop_whose_keyboard_interrupt_a_finalizer_swallowed_is_raised_at_the_next_check():
    class Finalized:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10**5):  # the handler runs here: Python prints its KeyboardInterrupt and ignores it
                pass

    with stopping.handling(grace=3):
        Finalized()  # dropped at once: its __del__ runs
        assert stopping.requested() is not None  # the stop was requested, and nothing was raised
        with pytest.raises(KeyboardInterrupt):
            stopping.check()  # the loop calls this at each stage: the stop happens there
