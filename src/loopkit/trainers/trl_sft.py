"""Supervised fine-tuning with TRL's SFTTrainer: loss on the completion only, full or LoRA.

CPU-safe by default: bf16 and gradient checkpointing are used only where the hardware has bf16
(on a CPU without it, TRL's defaults made training ~17x slower).

Its training compute lands in each round's metrics.json under ``train``: ``steps`` (optimizer
steps), ``tokens`` (the tokens the model was trained on: prompt + completion after truncation to
max_length, padding excluded, summed over every step, so each epoch counts; only the completion's
part carries loss) and ``train_seconds`` (the training loop's wall time, model loading excluded).

``sft:`` passes any other ``SFTConfig`` field through (``report_to``, ``logging_steps``, ``packing``,
``max_grad_norm``...), checked against SFTConfig's own fields; loopkit's defaults stand unless it overrides
them. The fields loopkit sets itself (``OWNED``) are refused there, saying where they are set.

``processes: N`` (or an ``accelerate_config`` file: FSDP, DeepSpeed) runs the training step under
``accelerate launch`` while the loop stays one process (``trainers/launch.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from loopkit.component import Params, RecipePath
from loopkit.errors import LoopkitError
from loopkit.device import bf16_supported, best_device
from loopkit.progress import Stage
from loopkit.trainers.base import Trainer


def _checkpointing_field(config_class) -> str:
    """transformers 5.x renamed gradient_checkpointing to activation_checkpointing (old name warns)."""
    fields = config_class.__dataclass_fields__
    return "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"


# SFTConfig fields loopkit sets itself: where each is set instead (sft: refuses them).
OWNED = {
    "output_dir": "loopkit trains each round in its run directory (round-NNN/train)",
    "seed": "the recipe's seed decides it",
    "data_seed": "the recipe's seed decides it",
    "num_train_epochs": "set trainer.params.epochs",
    "per_device_train_batch_size": "set trainer.params.batch_size",
    "gradient_accumulation_steps": "set trainer.params.gradient_accumulation_steps",
    "learning_rate": "set trainer.params.learning_rate",
    "weight_decay": "set trainer.params.weight_decay",
    "warmup_steps": "set trainer.params.warmup_steps",
    "lr_scheduler_type": "set trainer.params.lr_scheduler",
    "max_length": "set trainer.params.max_length",
    "bf16": "set trainer.params.bf16",
    "gradient_checkpointing": "set trainer.params.gradient_checkpointing",
    "activation_checkpointing": "set trainer.params.gradient_checkpointing",
    "train_sampling_strategy": "set trainer.params.group_by_length",
    "completion_only_loss": "loopkit trains on the answer only (its data are prompt/completion pairs)",
    "include_num_input_tokens_seen": "loopkit counts the training tokens with it (metrics.json's train.tokens)",
    "disable_tqdm": "loopkit's display shows the training progress",
}


def sft_fields() -> set[str]:
    from trl import SFTConfig

    return {f.name for f in SFTConfig.__dataclass_fields__.values() if f.init}


def check_sft(sft: dict[str, Any]) -> dict[str, Any]:
    """``sft``'s fields are SFTConfig's and not loopkit's own (ValueError naming the field, and the fix)."""
    if not sft:
        return sft
    import difflib

    known = sft_fields()
    for name in sft:
        if name in OWNED:
            raise ValueError(f"{name}: loopkit sets this SFTConfig field itself; {OWNED[name]}")
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}?" if close else "see trl's SFTConfig for its fields"
            raise ValueError(f"{name}: not a field of trl's SFTConfig; {hint}")
    return sft


class LoraParams(Params):
    r: int = Field(16, ge=1, description="rank of the adapter matrices")
    alpha: int = Field(32, ge=1, description="scaling of the adapter (lora_alpha)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapter's input")
    target_modules: list[str] | Literal["all-linear"] = Field("all-linear", description="module names to adapt, or all-linear")


class TRLSFTTrainer(Trainer):
    class Params(Params):
        epochs: float = Field(3.0, gt=0, description="passes over the synthetic data each round")
        learning_rate: float = Field(1e-3, gt=0, description="peak learning rate")
        batch_size: int = Field(32, ge=1, description="examples per step per device")
        gradient_accumulation_steps: int = Field(1, ge=1, description="steps whose gradients add up to one update")
        max_length: int = Field(1024, ge=8, description="longer examples are truncated")
        weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
        warmup_steps: float = Field(0.0, ge=0, description="steps, or a fraction of all steps if < 1")
        lr_scheduler: Literal[
            "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
            "inverse_sqrt", "cosine_with_min_lr", "warmup_stable_decay",
        ] = Field("linear", description="learning-rate schedule (transformers' lr_scheduler_type)")
        group_by_length: bool = Field(True, description="batch similar lengths together: less padding, faster steps")
        bf16: Literal["auto"] | bool = Field("auto", description="train in bfloat16; auto: only where the hardware has it")
        gradient_checkpointing: bool = Field(False, description="recompute activations to save memory (slower)")
        lora: LoraParams | None = Field(None, description="train a LoRA adapter (PEFT) instead of every weight; null: full fine-tuning")
        save_model: bool = Field(True, description="save each round's student (needed to resume and to export)")
        sft: dict[str, Any] = Field(
            default_factory=dict, description="any other field of trl's SFTConfig (report_to, logging_steps, packing, "
                                              "...); loopkit's defaults stand unless given here")

        processes: int = Field(1, ge=1, le=1024, description=(
            "training processes: above 1, each round's training runs under `accelerate launch --num_processes N` "
            "(DDP: one process per GPU; gloo processes on a CPU) while the loop stays one process; batch_size is per process"))
        accelerate_config: RecipePath | None = Field(None, description=(
            "an accelerate config file (from `accelerate config`: FSDP, DeepSpeed, several machines); training runs "
            "under `accelerate launch --config_file` with it; relative to the recipe's folder"))

        @field_validator("sft")
        @classmethod
        def _sft_fields(cls, sft: dict[str, Any]) -> dict[str, Any]:
            return check_sft(sft)

        @field_validator("accelerate_config")
        @classmethod
        def _config_exists(cls, path: str | None) -> str | None:
            if path is not None and not Path(path).is_file():
                raise ValueError(f"no file {path}; write one with `accelerate config` (recipes/accelerate/ has examples)")
            return path

    @property
    def launched(self) -> bool:
        """Whether training runs in processes of its own, under ``accelerate launch``."""
        return self.params.processes > 1 or self.params.accelerate_config is not None

    def check_model(self, model) -> None:
        self._check_sft_values()
        lora = self.params.lora
        if lora is None or lora.target_modules == "all-linear":
            return
        names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        missing = [m for m in lora.target_modules if m not in names]
        if missing:
            linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m).__name__ == "Linear"})
            raise LoopkitError(f"trainer.params.lora.target_modules: {missing} matches no module of the student; "
                               f"use all-linear or some of {linear[:8]}")

    def _check_sft_values(self) -> None:
        """The ``sft:`` values make an SFTConfig, and every ``report_to`` integration's package is here."""
        if not self.params.sft:
            return
        from transformers.integrations import get_reporting_integration_callbacks

        try:
            config = self.config(Path("unused"), 0)
            callbacks = get_reporting_integration_callbacks(config.report_to)
        except (TypeError, ValueError) as exc:
            raise LoopkitError(f"trainer.params.sft: {_first_line(exc)}") from None
        for callback in callbacks:
            try:
                callback()
            except (ImportError, RuntimeError) as exc:
                name = callback.__name__.removesuffix("Callback")
                raise LoopkitError(f"trainer.params.sft.report_to: {name} needs its package, which is not installed here "
                                   f"({_first_line(exc)}); install it, or remove it from report_to") from None

    def config(self, output_dir: Path, seed: int):
        """The SFTConfig of a round: loopkit's (CPU-safe) settings, then ``sft:``'s fields over them."""
        from trl import SFTConfig

        p = self.params
        settings = dict(
            output_dir=str(output_dir),
            num_train_epochs=p.epochs,
            per_device_train_batch_size=p.batch_size,
            gradient_accumulation_steps=p.gradient_accumulation_steps,
            learning_rate=p.learning_rate,
            weight_decay=p.weight_decay,
            warmup_steps=p.warmup_steps,
            lr_scheduler_type=p.lr_scheduler,
            max_length=p.max_length,
            train_sampling_strategy="group_by_length" if p.group_by_length else "random",
            completion_only_loss=True,
            bf16=bf16_supported() if p.bf16 == "auto" else p.bf16,
            **{_checkpointing_field(SFTConfig): p.gradient_checkpointing},
            use_cpu=best_device() == "cpu",
            seed=seed,
            data_seed=seed,
            save_strategy="no",
            report_to="none",
            logging_steps=1,  # the loss of every step: shown live, and kept in metrics.json
            disable_tqdm=True,
            include_num_input_tokens_seen="non_padding",  # the training tokens the report sums
        )
        return SFTConfig(**{**settings, **p.sft})

    def check_lengths(self, prompts: list[int], completions: list[int], what: str = "training example") -> list[str]:
        """TRL keeps the first max_length tokens of prompt + completion: the completion is what gets cut."""
        limit = self.params.max_length
        totals = [p + c for p, c in zip(prompts, completions)]
        if not totals:
            return []
        if min(totals) > limit:
            raise LoopkitError(
                f"trainer.params.max_length: {limit} tokens is shorter than every {what}'s prompt + answer "
                f"(shortest {min(totals):,}, longest {max(totals):,} tokens), so training would cut off every "
                f"answer; raise max_length to at least {max(totals):,}")
        over = sum(t > limit for t in totals)
        if over:
            return [f"trainer.params.max_length: {over} of {len(totals)} {what}s are longer than {limit} tokens "
                    f"(prompt + answer); training cuts their answers off (max_length {max(totals):,} keeps them whole)"]
        return []

    @property
    def adapter_rank(self) -> int | None:
        return None if self.params.lora is None else self.params.lora.r

    def train(self, model, tokenizer, prompts, completions, output_dir: Path, seed: int, stage: Stage):
        from loopkit.inference import token_lengths

        # Teachers can write longer than the seeds: never hand TRL a set with no answer token left.
        self.check_lengths(token_lengths(tokenizer, list(prompts)),
                           [n + 1 for n in token_lengths(tokenizer, list(completions), special=False)])
        if self.launched:
            from loopkit.trainers.launch import train_launched

            return train_launched(self, model, tokenizer, list(prompts), list(completions), output_dir, seed, stage)
        trainer = self.sft_trainer(model, tokenizer, prompts, completions, output_dir, seed, stage)
        result = trainer.train()
        trained = trainer.model.eval()
        if self.params.save_model:
            self.save(trained, tokenizer, output_dir / "model")
        return trained, self.metrics(trainer, result, len(prompts))

    def sft_trainer(self, model, tokenizer, prompts, completions, output_dir: Path, seed: int, stage: Stage):
        """TRL's SFTTrainer for this round, its progress reported to ``stage`` (in this process or a launched one)."""
        import datasets
        from transformers import TrainerCallback
        from transformers.trainer_callback import PrinterCallback
        from trl import SFTTrainer

        datasets.disable_progress_bars()
        p = self.params

        class _Report(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                stage.set_total(state.max_steps)

            def on_step_end(self, args, state, control, **kwargs):
                stage.advance(1)

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs and hasattr(stage, "show"):  # a caller's own Stage may not show values
                    stage.show("loss", logs["loss"])  # positional: a launched process replays it as JSON

        config = self.config(output_dir, seed)
        peft_config = None
        if p.lora is not None and not is_peft_model(model):  # retrain: continue goes on training the adapter it has
            from peft import LoraConfig

            peft_config = LoraConfig(
                r=p.lora.r, lora_alpha=p.lora.alpha, lora_dropout=p.lora.dropout,
                target_modules=p.lora.target_modules, task_type="CAUSAL_LM",
            )
        trainer = SFTTrainer(
            model=model, args=config, processing_class=tokenizer, peft_config=peft_config, callbacks=[_Report()],
            train_dataset=datasets.Dataset.from_dict({"prompt": list(prompts), "completion": list(completions)}),
        )
        trainer.remove_callback(PrinterCallback)  # loss dicts on stdout would break the progress display
        return trainer

    @staticmethod
    def metrics(trainer, result, examples: int) -> dict:
        """The round's ``train`` metrics from a finished SFTTrainer (num_input_tokens_seen is summed over processes)."""
        return {
            "train_loss": result.training_loss,
            "steps": result.global_step,
            "tokens": int(trainer.state.num_input_tokens_seen),
            "examples": examples,
            "train_seconds": result.metrics.get("train_runtime"),
            "samples_per_second": result.metrics.get("train_samples_per_second"),
            "loss_curve": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
        }


def is_peft_model(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
