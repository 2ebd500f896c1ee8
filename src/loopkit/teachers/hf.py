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

    @property
    def key(self) -> str:
        """What identifies the model in journal keys: its name and every param."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    def build(self) -> Any:
        """The model component this spec names, with its params."""
        from loopkit.plugins import registry

        cls = registry().load("model", self.name)
        return cls(cls.Params.model_validate(self.params))


class HFTeacher(LLMTeacher):
    backend = "hf"
    max_tokens_field = "max_new_tokens"

    class Params(LLMTeacherParams):
        model: ModelSpec
        max_new_tokens: int = Field(256, ge=1, le=32768)
        batch_size: int = Field(8, ge=1)

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self._loaded: tuple[Any, Any] | None = None

    @property
    def model_id(self) -> str:
        return self.params.model.key

    def local_models(self) -> list[Any]:
        return [self.params.model.build()]

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            # The weights must not depend on the run seed: the model is part of every journal key.
            model, tokenizer = self.params.model.build().load(0)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            self._loaded = model, tokenizer
        return self._loaded

    def complete(self, prompts: list[Messages], params: dict[str, Any], done=None) -> list[Completion]:
        import torch

        from loopkit.student import Student

        model, tokenizer = self._load()
        # The LLM-teacher protocol sends one user turn per call; Student renders it (chat template or not).
        student = Student(model, tokenizer, self.params.batch_size, params["max_new_tokens"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(params["seed"])
            outputs = student.generate_counted([m[-1]["content"] for m in prompts], params)
        return [Completion(text, prompt_tokens, new_tokens) for text, prompt_tokens, new_tokens in outputs]
