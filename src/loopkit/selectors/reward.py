"""Lowest reward first: a sequence-classification reward model scores question + student answer.

The reward-model criterion of Kessler et al. (2025), in the style of reward-guided data selection
(e.g. RAFT, Dong et al., 2023, arXiv 2304.06767): low reward marks a seed the student handles badly.
``model`` is any Hugging Face ``AutoModelForSequenceClassification`` with one output (a local
directory or a hub id); the first logit is the reward. The pair is rendered with the reward
model's chat template (user: question, assistant: answer) if it has one, else encoded as a text
pair. Batches are right-padded, so the reward of an answer does not depend on its batch.
The reward model is loaded on first use and kept for later rounds.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from pydantic import Field, field_validator

from loopkit.component import Params
from loopkit.selectors.base import Selector, Signals, top_m


class RewardSelector(Selector):
    needs = frozenset({"question", "answer"})

    class Params(Params):
        model: str = Field(min_length=1, description="reward model: local directory or hub id")

        @field_validator("model")
        @classmethod
        def _loadable(cls, path: str) -> str:
            from loopkit.models.hf import check_model_path

            return check_model_path(path)
        batch_size: int = Field(32, ge=1)
        max_length: int = Field(1024, ge=8, description="longest question + answer, in reward-model tokens")

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self._loaded: tuple[Any, Any] | None = None

    def rewards(self, questions: Sequence[str], answers: Sequence[str]) -> np.ndarray:
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

    def select(self, signals: Signals, pool_size: int, m: int, rng: np.random.Generator,
               history: Sequence[int] = ()) -> list[int]:
        reward = self.rewards(signals["question"], signals["answer"])
        return top_m(-reward, m, rng, type(self).__name__, "reward")

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
