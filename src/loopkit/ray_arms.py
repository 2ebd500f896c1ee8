"""``loopkit compare --engine ray``: every arm as a Ray task, on a local Ray instance or a cluster.

The arm is the same ``loopkit run [--resume]`` command the local engine starts, run by a Ray task
that asks for the arm's CPUs and GPUs (Ray sets each task's ``CUDA_VISIBLE_DEVICES``), so run
directories, logs, skipping finished arms and resuming interrupted ones are exactly as with the
local engine. On a cluster the comparison directory must be on storage every node sees, and each
node needs loopkit installed with the recipe's plugins. A stop cancels every task: a running arm
gets SIGTERM from its task (the same clean stop as a preempted run), a queued one never starts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from loopkit import stopping
from loopkit.compare import Arms, _die_with_parent
from loopkit.errors import LoopkitError

FORWARDED = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "COLUMNS", stopping.ARM_ENV)  # the arm's own settings
CANCELLED = 128 + signal.SIGTERM  # what a cancelled arm's state reads as (its run stopped as on a SIGTERM)


def _run_arm(arguments: list[str], log: str, env: dict[str, str]) -> int:
    """The Ray task: run ``python -m loopkit.cli ARGUMENTS`` on this node; a cancel stops it like a preemption."""
    with open(log, "a", encoding="utf-8") as out:
        proc = subprocess.Popen([sys.executable, "-m", "loopkit.cli", *arguments], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **env}, start_new_session=True, preexec_fn=_die_with_parent())
        try:
            while True:  # in short waits: ray.cancel raises KeyboardInterrupt between bytecodes, never inside a syscall
                try:
                    return proc.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    continue
        except KeyboardInterrupt:  # ray.cancel: the arm stops within its grace period and keeps what is complete
            proc.send_signal(signal.SIGTERM)
            return proc.wait()


class RayArms(Arms):
    """The arms as Ray tasks with ``cpus`` and ``gpus`` each: started only while no stop is requested."""

    def __init__(self, address: str | None, cpus: float, gpus: float) -> None:
        super().__init__()
        try:
            import ray
        except ImportError:
            raise LoopkitError("--engine ray needs Ray: pip install 'loopkit[ray]'") from None
        self.ray = ray
        try:  # address None: RAY_ADDRESS if set, else a local instance of this machine's cores and GPUs
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        except ConnectionError as exc:
            raise LoopkitError(f"--address {address}: no Ray cluster answers there ({exc}); start one with "
                               "`ray start --head` or leave --address out for a local instance") from None
        self.where = address or "a local Ray instance"
        self.cpus_per_arm, self.gpus_per_arm = cpus, gpus
        self.threads = str(max(1, int(cpus)))  # each arm's torch threads: the CPUs Ray gave it
        self.task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_run_arm)
        self.refs: dict[str, Any] = {}

    def schedule(self, jobs: int, arms: int) -> tuple[int, str]:
        """Every arm is submitted at once; Ray runs as many as the cluster's resources allow."""
        return arms, f"as Ray tasks on {self.where}, {self.cpus_per_arm:g} CPU and {self.gpus_per_arm:g} GPU each"

    def gpus(self) -> list[str]:
        """None to hand out: Ray gives each task its GPUs (--gpus-per-arm) and sets its CUDA_VISIBLE_DEVICES."""
        return []

    def start(self, name: str, command: list[str], log: Path, env: dict[str, str]) -> Any:
        with self.lock:
            if stopping.requested():
                return None
            arguments = command[3:]  # after `python -m loopkit.cli`: the task runs its node's own Python
            own = {**{k: env[k] for k in FORWARDED if k in env}, "OMP_NUM_THREADS": self.threads, "MKL_NUM_THREADS": self.threads}
            self.refs[name] = self.task.remote(arguments, str(log.absolute()), own)
            return self.refs[name]

    def wait(self, name: str) -> int:
        try:
            return self.ray.get(self.refs[name])
        except self.ray.exceptions.TaskCancelledError:
            return CANCELLED
        finally:
            with self.lock:
                del self.refs[name]

    def forward(self, stop: stopping.Stop) -> None:
        with self.lock:
            for ref in self.refs.values():
                self.ray.cancel(ref)  # KeyboardInterrupt in the task, which passes SIGTERM on to its arm

    def kill(self) -> str:
        with self.lock:
            for ref in self.refs.values():
                self.ray.cancel(ref, force=True)
        return "every arm was cancelled; run the same command again to resume them"

    def close(self) -> None:
        self.ray.shutdown()
