"""The model interface: a recipe name that resolves to (model, tokenizer)."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from loopkit.component import Component


class ModelSource(Component):
    """Loads a causal LM and its tokenizer; called again to get a fresh copy of the base model."""

    public_note: str = ""  # how the weights loopkit loads differ from the public model's (model cards say it)

    @abstractmethod
    def load(self, seed: int) -> tuple[Any, Any]:
        """Return ``(model, tokenizer)`` on the best available device, in eval mode."""

    def pretrained_path(self) -> str | None:
        """A directory (or hub id) ``from_pretrained`` and inference engines such as vLLM can load, or
        None for a model that exists only in code (e.g. ``tiny``)."""
        return None

    def public_name(self) -> str | None:
        """The model's id on the Hugging Face hub (e.g. HuggingFaceTB/SmolLM2-135M-Instruct), which model cards
        and exported adapters name as the base; None for a model built in code or one only on this machine."""
        return None

    # What can be known before the model loads, so that a recipe that cannot work fails in
    # `validate` and before a run directory exists. None: unknown until the model loads.
    def tokenizer(self) -> Any | None:
        """The tokenizer alone, where it loads cheaply without the weights."""
        return None

    def context_window(self) -> int | None:
        """The most tokens the model reads at once (its position limit)."""
        return None

    def weight_bytes(self) -> int | None:
        """About how much memory the loaded weights take."""
        return None
