"""The reward model behind the ``reward`` signal: a sequence-classification model that scores question + answer.

The student side computes signals, selectors only rank them: a selector that needs ``reward`` names
its reward model through ``Selector.signal_params`` (with these ``RewardModelParams``), and the loop
loads it on first use and keeps it for later rounds.

``model`` is any Hugging Face ``AutoModelForSequenceClassification`` with one output (a local
directory or a hub id); the first logit is the reward. The pair is rendered with the reward
model's chat template (user: question, assistant: answer) if it has one, else encoded as a text
pair. Batches are right-padded, so the reward of an answer does not depend on its batch.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from pydantic import Field, field_validator

from loopkit.component import LocalOrHub, Params


class RewardModelParams(Params):
    model: LocalOrHub = Field(min_length=1, description="reward model: local directory or hub id")

    @field_validator("model")
    @classmethod
    def _loadable(cls, path: str) -> str:
        from loopkit.models.hf import check_model_path

        return check_model_path(path)
    batch_size: int = Field(32, ge=1, description="question + answer pairs scored together")
    max_length: int = Field(1024, ge=8, description="longest question + answer, in reward-model tokens")


class RewardModel:
    def __init__(self, params: RewardModelParams) -> None:
        self.params = params
        self._loaded: tuple[Any, Any] | None = None

    def scores(self, questions: Sequence[str], answers: Sequence[str]) -> np.ndarray:
        """The reward model's score of each (question, answer)."""
        import torch

        model, tokenizer = self._load()
        out = np.empty(len(questions))
        with torch.inference_mode():
            for start in range(0, len(questions), self.params.batch_size):
                batch = slice(start, start + self.params.batch_size)
                encoded = self._encode(tokenizer, list(questions[batch]), list(answers[batch])).to(model.device)
                out[batch] = model(**encoded).logits[:, 0].float().cpu().numpy()
        return out

    def _encode(self, tokenizer: Any, questions: list[str], answers: list[str]) -> Any:
        options = dict(padding=True, truncation=True, max_length=self.params.max_length, return_tensors="pt")
        if getattr(tokenizer, "chat_template", None):
            texts = [
                tokenizer.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": a}], tokenize=False)
                for q, a in zip(questions, answers)
            ]
            return tokenizer(texts, add_special_tokens=False, **options)
        return tokenizer(questions, answers, **options)

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            from loopkit.device import best_device

            tokenizer = AutoTokenizer.from_pretrained(self.params.model)
            tokenizer.padding_side = "right"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = AutoModelForSequenceClassification.from_pretrained(self.params.model)
            model.config.pad_token_id = tokenizer.pad_token_id
            self._loaded = (model.to(best_device()).eval(), tokenizer)
        return self._loaded
