"""The trainer interface: fine-tune the student on the synthetic data so far."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any

from loopkit.component import Component
from loopkit.progress import Stage


class Trainer(Component):
    @abstractmethod
    def train(self, model: Any, tokenizer: Any, prompts: list[str], completions: list[str],
              output_dir: Path, seed: int, stage: Stage) -> tuple[Any, dict]:
        """Fine-tune ``model`` on (rendered prompt, completion) pairs; return the model and metrics."""

    def save(self, model: Any, tokenizer: Any, directory: Path) -> None:
        """Write the trained student (full weights, or the adapter for LoRA) in HF format."""
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
