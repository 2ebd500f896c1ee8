"""A teacher that runs a causal LM with transformers, in batches, on the best local device.

The model is any registered model component with its params (``model: {name: hf, params: {path:
...}}``, or ``{name: tiny}`` for tests), loaded on first use. Prompts go through the tokenizer's
chat template when it has one. Sampling is seeded per batch, so a batch is reproducible; a row's
output can depend on the other rows of its batch.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loopkit.errors import LoopkitError
from loopkit.teachers.llm import Completion, LLMTeacher, LLMTeacherParams, Messages


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="a registered model component, e.g. hf or tiny")
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _resolves(self) -> "ModelSpec":
        from loopkit.plugins import registry
        from loopkit.recipe import format_validation_error

        try:
            cls = registry().load("model", self.name)
        except LoopkitError as exc:
            raise ValueError(str(exc)) from None
        try:
            cls.Params.model_validate(self.params)
        except ValidationError as exc:
            raise ValueError(format_validation_error("model", "params", exc).removeprefix("model: ")) from None
        return self


class HFTeacher(LLMTeacher):
    backend = "hf"

    class Params(LLMTeacherParams):
        model: ModelSpec
        temperature: float = Field(0.7, ge=0, description="0 decodes greedily")
        top_p: float = Field(1.0, gt=0, le=1)
        max_new_tokens: int = Field(256, ge=1, le=32768)
        batch_size: int = Field(8, ge=1)
        seed: int | None = Field(None, description="sampling seed; default: derived from the run seed and round")

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self._loaded: tuple[Any, Any] | None = None

    @property
    def model_id(self) -> str:
        return json.dumps(self.params.model.model_dump(mode="json"), sort_keys=True)

    def sampling(self, seed: int) -> dict[str, Any]:
        p = self.params
        return {"temperature": p.temperature, "top_p": p.top_p, "max_new_tokens": p.max_new_tokens,
                "seed": p.seed if p.seed is not None else seed}

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from loopkit.plugins import registry

            spec = self.params.model
            cls = registry().load("model", spec.name)
            # The weights must not depend on the run seed: the model is part of every journal key.
            model, tokenizer = cls(cls.Params.model_validate(spec.params)).load(0)
            tokenizer.padding_side = "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            self._loaded = model, tokenizer
        return self._loaded

    def complete(self, prompts: list[Messages], params: dict[str, Any]) -> list[Completion]:
        import torch

        model, tokenizer = self._load()
        chat = getattr(tokenizer, "chat_template", None) is not None
        if chat:
            texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in prompts]
        else:
            texts = ["\n\n".join(turn["content"] for turn in m) + "\n" for m in prompts]
        sample = params["temperature"] > 0
        options = {"temperature": params["temperature"], "top_p": params["top_p"]} if sample else {}
        out: list[Completion] = []
        with torch.inference_mode(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(params["seed"])
            for start in range(0, len(texts), self.params.batch_size):
                # A chat template already contains the special tokens it wants.
                batch = tokenizer(texts[start : start + self.params.batch_size], return_tensors="pt", padding=True,
                                  add_special_tokens=not chat).to(model.device)
                generated = model.generate(
                    **batch, do_sample=sample, max_new_tokens=params["max_new_tokens"],
                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **options,
                )
                new = generated[:, batch["input_ids"].shape[1] :]
                for row, text in zip(range(len(new)), tokenizer.batch_decode(new, skip_special_tokens=True)):
                    out.append(Completion(text, int(batch["attention_mask"][row].sum()), _length(new[row], tokenizer.eos_token_id)))
        return out


def _length(tokens: Any, eos: int | None) -> int:
    """Generated tokens up to and including the first EOS (the rest is padding)."""
    ids = tokens.tolist()
    return ids.index(eos) + 1 if eos in ids else len(ids)
