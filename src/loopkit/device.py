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
