"""Device and dtype choice, in one place, for every component that runs a model."""

from __future__ import annotations


def best_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def bf16_supported() -> bool:
    """True only where bf16 is fast: on CPUs without native bf16 it is ~17x slower than fp32."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve_dtype(name: str):
    """``auto`` -> bf16 on GPUs that support it, else fp32; or an explicit torch dtype name."""
    import torch

    if name == "auto":
        return torch.bfloat16 if bf16_supported() else torch.float32
    return getattr(torch, name)


def available_memory() -> int | None:
    """Bytes this process could still allocate: the machine's available memory and swap, less where a
    container's memory limit (cgroup v2) or an address-space limit (``ulimit -v``) is lower. None: unknown."""
    import os
    import resource

    def read(path: str) -> str | None:
        try:
            with open(path, encoding="ascii") as f:
                return f.read()
        except (OSError, ValueError):
            return None

    limits = []
    meminfo = read("/proc/meminfo")
    if meminfo:
        fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in meminfo.splitlines() if line.split()[1:]}
        if "MemAvailable" in fields:
            limits.append(fields["MemAvailable"] + fields.get("SwapFree", 0))
    cgroup_max, cgroup_used = read("/sys/fs/cgroup/memory.max"), read("/sys/fs/cgroup/memory.current")
    if cgroup_max and cgroup_used and cgroup_max.strip().isdigit() and cgroup_used.strip().isdigit():
        limits.append(int(cgroup_max) - int(cgroup_used))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    status = read("/proc/self/status")
    if soft != resource.RLIM_INFINITY and status:
        size = next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmSize:")), 0)
        limits.append(soft - size)
    if not limits and hasattr(os, "sysconf"):
        try:
            limits.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            pass
    return max(0, min(limits)) if limits else None
