"""The trainer interface: fine-tune the student on the synthetic data so far."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, Callable

from loopkit.component import Component
from loopkit.errors import LoopkitError
from loopkit.progress import Stage


class Trainer(Component):
    @abstractmethod
    def train(self, model: Any, tokenizer: Any, prompts: list[str], completions: list[str],
              output_dir: Path, seed: int, stage: Stage) -> tuple[Any, dict]:
        """Fine-tune ``model`` on (rendered prompt, completion) pairs; return the model and metrics.

        The metrics land in the round's metrics.json under ``train``. ``loopkit report`` sums three of
        them into each run's training compute, and compares arms' steps: ``steps`` (optimizer steps),
        ``tokens`` (tokens trained on) and ``train_seconds``; a trainer that leaves one out has it unknown.
        """

    def check_model(self, model: Any) -> None:
        """Raise LoopkitError if this trainer's params cannot train ``model`` (before any round runs)."""
        self.check(model)  # the name this had before: a trainer that overrides ``check`` is still asked

    def check(self, model: Any) -> None:
        """The old name of ``check_model``; override that."""

    def check_lengths(self, prompts: list[int], completions: list[int], what: str = "training example") -> list[str]:
        """Raise LoopkitError if no example of these token lengths can be trained on (e.g. a length limit
        that cuts off every completion); return warnings for some that cannot. Called on the seeds before
        round 0 (``what="seed"``), as the synthetic data will be like them."""
        return []

    @property
    def adapter_rank(self) -> int | None:
        """The rank of the LoRA adapters this trainer trains, or None if it trains every weight (an engine that
        serves the student, ``loop.engine: vllm``, must be made ready for adapters of that rank)."""
        return None

    def save(self, model: Any, tokenizer: Any, directory: Path) -> None:
        """Write the trained student (full weights, or the adapter for LoRA) in HF format."""
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)

    def load(self, directory: Path, base: Callable[[], Any]) -> Any:
        """The student ``save`` wrote (for resuming a run): ``base()`` with the saved weights or adapter.

        The weights go into a fresh ``base()`` rather than through ``from_pretrained``, so the model
        is built exactly as the run built it (e.g. its attention implementation, which the saved
        config does not keep): a resumed run computes what an uninterrupted one would.
        """
        directory = Path(directory)
        model = base()
        if (directory / "adapter_config.json").exists():
            from peft import PeftModel

            return PeftModel.from_pretrained(model, str(directory), is_trainable=True).eval()
        from safetensors.torch import load_file

        device = str(next(model.parameters()).device)
        state: dict[str, Any] = {}
        for shard in sorted(directory.glob("*.safetensors")):
            state.update(load_file(shard, device=device))
        missing, unexpected = model.load_state_dict(state, strict=False)
        loaded = {model.get_parameter(k).data_ptr() for k in state if k not in unexpected}
        untied = [k for k in missing if model.get_parameter(k).data_ptr() not in loaded] if missing else []
        if not state or unexpected or untied:
            raise LoopkitError(f"{directory} does not hold this student's weights "
                               f"({'no safetensors' if not state else (unexpected or untied)[0]}); start a new run")
        return model.eval()
