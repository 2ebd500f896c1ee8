"""``loopkit compare``: every arm (selector x seed, plus the two static baselines at the same budget) as
its own run directory under one comparison directory, in parallel processes, resumable.

An arm is ``loopkit run RECIPE --set name=<arm> --set seed=<k> --set selector.name=<s>`` (the static
baselines: ``loop.mode=static`` and ``loop.mode=static-matched``, random seeds drawn up front; the
second trains through the active arms' rounds, so it matches their training steps) run as a
subprocess whose output goes to ``<arm>.log``. Run
again on the same directory, a finished arm is skipped and an interrupted one resumed (through
``run --resume``, so its paid teacher calls are reused). Each job gets ``cores / jobs`` threads and,
where GPUs are visible, one of them (``CUDA_VISIBLE_DEVICES``, round robin over the job slots: with
more jobs than GPUs, jobs share them evenly).

Signals: ``Arms.forward`` sends a SIGINT/SIGTERM/SIGHUP compare receives to every running arm
(each in its own session, so a terminal's Ctrl-C reaches it once, through compare) and no new
arm starts; each arm then stops cleanly within its grace period, and ignores the same stop
arriving again (a scheduler may signal every process of a job). ``Arms.kill`` (compare's second
signal) ends them at once. On Linux an arm also gets SIGTERM from the kernel when compare dies,
even by SIGKILL (``PR_SET_PDEATHSIG``); elsewhere an arm outlives a SIGKILLed compare.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from loopkit import stopping
from loopkit.errors import LoopkitError
from loopkit.prepare import STATIC_MODES, plan_rounds
from loopkit.recipe import ResolvedRecipe
from loopkit.rundir import RunDir


@dataclass(frozen=True)
class Arm:
    name: str  # also its run directory's name prefix and its recipe name
    selector: str  # the static baselines: their mode ("static", "static-matched")
    seed: int
    overrides: list[str] = field(default_factory=list)
    mode: str = "active"  # loop.mode


def plan_arms(resolved: ResolvedRecipe, selectors: list[str], seeds: int, static: bool) -> list[Arm]:
    """Every arm of the comparison; unknown selectors fail here, before any arm starts."""
    from loopkit.plugins import registry

    for name in selectors:
        registry().load("selector", name)  # raises a one-line "unknown selector" error with suggestions
    if seeds < 1:
        raise LoopkitError("--seeds must be at least 1")
    base = resolved.recipe.seed
    arms = []
    for k in range(seeds):
        seed = base + k
        for name in selectors:
            arms.append(Arm(f"{name}-seed{seed}", name, seed, [f"selector.name={name}", "loop.mode=active"]))
        if static:  # the arm is named after its mode, as report.arm_name names it
            arms += [Arm(f"{mode}-seed{seed}", mode, seed, ["selector.name=random", f"loop.mode={mode}"], mode)
                     for mode in STATIC_MODES]
    return arms


def _latest_run(directory: Path, arm: Arm) -> RunDir | None:
    """The arm's newest run directory (names end in their start time), or None before its first."""
    runs = sorted(p for p in directory.glob(f"{arm.name}-*") if p.is_dir() and RunDir(p).has_recipe())
    return RunDir(runs[-1]) if runs else None


def arm_state(directory: Path, arm: Arm, last_round: int) -> tuple[str, Path | None]:
    """("done" | "partial" | "new" | "running", its run directory); "running": another process holds the run."""
    run = _latest_run(directory, arm)
    if run is None:
        return "new", None
    if run.holder() is not None:
        return "running", run.path
    summary = run.summary() or {}  # only for a budget stop; the rounds themselves say how far the run got
    if summary.get("stopped") or run.complete_rounds() >= last_round:
        return "done", run.path
    return "partial", run.path


def arm_status(directory: Path, arm: Arm) -> str | None:
    """What a running arm does now, from its run directory: e.g. "round 2 of 3: train"; None before it wrote that."""
    run = _latest_run(directory, arm)
    status = run.status() if run is not None else None
    if status is None:
        return None
    return f"round {status['round']} of {status['last']}: {status['stage']}"


class Arms:
    """The arm processes running now: started only while no stop is requested, and forwarded every stop."""

    def __init__(self) -> None:
        self.running: dict[str, subprocess.Popen] = {}
        self.lock = threading.RLock()  # re-entrant: a second signal's handler may interrupt the first's

    def start(self, name: str, command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen | None:
        """The arm's process (its output appended to ``log``), or None when a stop was requested: no new arm starts."""
        with self.lock:
            if stopping.requested():
                return None
            with open(log, "a", encoding="utf-8") as out:
                # Its own session: a terminal's Ctrl-C or SIGHUP reaches the arm once, forwarded by compare.
                self.running[name] = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                                      start_new_session=True, preexec_fn=_die_with_parent())
            return self.running[name]

    def wait(self, name: str) -> int:
        code = self.running[name].wait()
        with self.lock:
            del self.running[name]
        return code

    def forward(self, stop: stopping.Stop) -> None:
        with self.lock:
            for proc in self.running.values():
                proc.send_signal(stop.signum)

    def kill(self) -> str:
        with self.lock:
            for proc in self.running.values():
                proc.kill()
            for proc in self.running.values():
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        return "every arm was killed; run the same command again to resume them"

    def schedule(self, jobs: int, arms: int) -> tuple[int, str]:
        """How many arms to have started at once, and how the engine runs them, in words."""
        return jobs, f"{jobs} at a time"

    def gpus(self) -> list[str]:
        """The GPUs to give the job slots one each (``run_arms``): every visible one."""
        return visible_gpus()

    def close(self) -> None:
        """Release what the engine holds once every arm has ended (the local engine holds nothing)."""


def visible_gpus(environ: dict[str, str] | None = None) -> list[str]:
    """The GPUs arms may use: ``CUDA_VISIBLE_DEVICES``'s list where it is set, else every GPU ``nvidia-smi`` lists
    (none where it is missing or fails). Never imports torch: compare itself stays light."""
    environ = os.environ if environ is None else environ
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        devices = [d.strip() for d in listed.split(",") if d.strip()]
        return [] if devices[:1] == ["-1"] else devices  # "-1" (or empty): CUDA hides every GPU
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def device_slots(gpus: list[str], jobs: int) -> list[str | None]:
    """The device of each of the ``jobs`` slots: the GPUs round robin (None for every slot without GPUs)."""
    return [gpus[k % len(gpus)] if gpus else None for k in range(jobs)]


def run_arms(recipe_path: Path, resolved: ResolvedRecipe, arms: list[Arm], directory: Path, jobs: int,
             extra_overrides: list[str], on_change: Callable[[Arm, str], None], processes: Arms | None = None,
             grace: float = stopping.GRACE_SECONDS, on_status: Callable[[Arm, str], None] | None = None,
             poll: float = 1.0, gpus: list[str] | None = None) -> dict[str, str]:
    """Run every unfinished arm (at most ``jobs`` at once, each on its slot's GPU); returns each arm's final state.

    ``on_change(arm, state)`` hears each arm's start and end; ``on_status(arm, status)`` what a running arm
    does (``arm_status``) as it changes, read from its run directory every ``poll`` seconds, and never after
    the arm's end was reported. ``gpus``: the devices to spread the arms over (default: ``visible_gpus()``).
    """
    processes = processes or Arms()
    watched: dict[str, Arm] = {}  # the running arms whose status is reported
    reporting = threading.Lock()  # an arm's status and its end are reported in order
    loop = resolved.recipe.loop
    lasts = {mode: plan_rounds(loop.model_copy(update={"mode": mode}), frozenset()).last for mode in ("active", *STATIC_MODES)}
    directory.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           stopping.ARM_ENV: "1"}
    slots: queue.SimpleQueue[str | None] = queue.SimpleQueue()  # a running arm holds its slot's device
    for device in device_slots(visible_gpus() if gpus is None else gpus, jobs):
        slots.put(device)

    def one(arm: Arm) -> str:
        device = slots.get()
        try:
            return start(arm, device)
        finally:
            slots.put(device)

    def start(arm: Arm, device: str | None) -> str:
        state, run = arm_state(directory, arm, lasts[arm.mode])
        if state == "done":
            on_change(arm, "done (skipped)")
            return "done"
        if state == "running":  # another process runs it (an earlier compare still going): never a second one
            result = f"failed ({run} is in use by {RunDir(run).holder() or 'another process'}; run compare again once it ends)"
            on_change(arm, result)
            return result
        sets = [*extra_overrides, *arm.overrides, f"name={arm.name}", f"seed={arm.seed}"]
        command = [sys.executable, "-m", "loopkit.cli", "run", str(recipe_path), "-o", str(directory)]
        if state == "partial":
            command += ["--resume", str(run)]
        command += ["--grace", str(grace)]
        for s in sets:
            command += ["--set", s]
        arm_env = env if device is None else {**env, "CUDA_VISIBLE_DEVICES": device}
        if processes.start(arm.name, command, directory / f"{arm.name}.log", arm_env) is None:
            on_change(arm, "not started")
            return "not started"
        on_change(arm, ("resuming" if state == "partial" else "running") + ("" if device is None else f" on GPU {device}"))
        with reporting:
            watched[arm.name] = arm
        code = processes.wait(arm.name)
        if code == 0:
            result = "done"
        elif stopping.requested():
            result = f"interrupted (exit {code}; see {arm.name}.log)"
        else:
            result = f"failed (exit {code}; see {arm.name}.log)"
        with reporting:
            del watched[arm.name]
            on_change(arm, result)
        return result

    def watch(finished: threading.Event) -> None:
        shown: dict[str, str] = {}
        while not finished.wait(poll):
            with reporting:
                running = list(watched.values())
            for arm in running:
                status = arm_status(directory, arm)
                with reporting:
                    if status is not None and status != shown.get(arm.name) and arm.name in watched:
                        shown[arm.name] = status
                        on_status(arm, status)

    finished = threading.Event()
    watcher = threading.Thread(target=watch, args=(finished,), daemon=True) if on_status else None
    if watcher:
        watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            return dict(zip((a.name for a in arms), pool.map(one, arms)))
    finally:
        finished.set()
        if watcher:
            watcher.join()


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec function that makes the kernel send SIGTERM to the child when this process dies (Linux only).

    Strictly, when the thread that started the child ends: compare's worker threads outlive their arms.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)  # loaded here: the child only calls it
    parent = os.getpid()

    def preexec() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # an inherited SIG_IGN would make the parent-death signal a no-op
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(128 + signal.SIGTERM)

    return preexec


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
