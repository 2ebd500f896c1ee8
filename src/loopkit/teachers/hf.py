"""A teacher that runs a causal LM with transformers, in batches, on the best local device.

The model is any registered model component with its params (``model: {name: hf, params: {path:
...}}``, or ``{name: tiny}`` for tests), loaded on first use. Prompts go through the tokenizer's
chat template when it has one. transformers samples a batch from one random stream, seeded from
its calls' own seeds, so a batch is reproducible and its rows differ; a row's output can depend on
the other rows of its batch.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from loopkit.models.spec import ModelSpec
from loopkit.seeding import derive_seed
from loopkit.teachers.llm import Completion, LLMTeacher, LLMTeacherParams, Messages


class HFTeacher(LLMTeacher):
    backend = "hf"
    max_tokens_field = "max_new_tokens"

    class Params(LLMTeacherParams):
        model: ModelSpec = Field(description="the teacher's model: a model component's name (tiny) or {name: hf, params: {path: ...}}")
        max_new_tokens: int = Field(256, ge=1, le=32768, description="new tokens per call")
        batch_size: int = Field(8, ge=1, description="prompts generated together")

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

    def complete(self, prompts: list[Messages], params: list[dict[str, Any]], done=None) -> list[Completion]:
        import torch

        from loopkit.inference import Inference

        model, tokenizer = self._load()
        # The LLM-teacher protocol sends one user turn per call; Inference renders it (chat template or not).
        inference = Inference(model, tokenizer, self.params.batch_size, params[0]["max_new_tokens"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(*(p["seed"] for p in params)))
            outputs = inference.generate_counted([m[-1]["content"] for m in prompts], params[0], advance=self.answered)
        return [Completion(text, prompt_tokens, new_tokens) for text, prompt_tokens, new_tokens in outputs]
