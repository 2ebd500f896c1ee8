"""Versions and hardware, for run manifests and ``loopkit env``."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "reasoning-gym", "vllm", "litellm")


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def describe(registry=None, with_device: bool = True) -> dict:
    """loopkit, plugin and library versions, Python, platform and (optionally) the device."""
    from loopkit import __version__

    info: dict = {
        "loopkit": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": {name: v for name in LIBRARIES if (v := package_version(name))},
    }
    if registry is not None:
        info["plugins"] = sorted({f"{e.distribution}=={e.version}" for e in registry.entries()})
    if with_device:
        import torch

        from loopkit.device import best_device

        device = best_device()
        info["device"] = device
        if device == "cuda":
            info["gpu"] = torch.cuda.get_device_name(0)
        info["threads"] = torch.get_num_threads()
    return info
