"""The student model at inference: batched greedy answers and per-token losses.

Every pass is batched: prompts are sorted by length so batches carry little padding, padded on
the left, and given explicit position ids, so a result does not depend on the batch it was in.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

Advance = Callable[[int], None]


def _noop(n: int) -> None:
    pass


class Student:
    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 64, max_new_tokens: int = 32) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self._chat = getattr(tokenizer, "chat_template", None) is not None

    def render(self, prompt: str) -> str:
        """The exact text the model sees: the chat template for chat models, else the prompt itself."""
        if self._chat:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        return prompt

    def _encode(self, text: str) -> list[int]:
        # A chat template already contains the special tokens it wants.
        return self.tokenizer(text, add_special_tokens=not self._chat)["input_ids"]

    def _batches(self, lengths: Sequence[int]):
        order = np.argsort(-np.asarray(lengths), kind="stable")
        for start in range(0, len(order), self.batch_size):
            yield order[start : start + self.batch_size]

    def _left_pad(self, rows: list[list[int]]):
        import torch

        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
        device = self.model.device
        return ids.to(device), mask.to(device)

    def generate(self, prompts: Sequence[str], advance: Advance = _noop) -> list[str]:
        """Greedy answers to rendered prompts, in input order."""
        import torch

        encoded = [self._encode(self.render(p)) for p in prompts]
        answers: list[str] = [""] * len(prompts)
        with torch.inference_mode():
            for batch in self._batches([len(e) for e in encoded]):
                ids, mask = self._left_pad([encoded[i] for i in batch])
                out = self.model.generate(
                    input_ids=ids, attention_mask=mask, max_new_tokens=self.max_new_tokens, do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id,
                )
                texts = self.tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
                for i, text in zip(batch, texts):
                    answers[i] = text
                advance(len(batch))
        return answers

    def token_nll(self, prompts: Sequence[str], completions: Sequence[str], advance: Advance = _noop) -> list[np.ndarray]:
        """Per-token negative log-likelihood of each completion (then EOS) after its prompt."""
        import torch

        eos = self.tokenizer.eos_token_id
        rows, n_completion = [], []
        for prompt, completion in zip(prompts, completions):
            rendered = self.render(prompt)
            prompt_ids = self._encode(rendered)
            full = self._encode(rendered + completion) + [eos]
            rows.append(full)
            n_completion.append(max(len(full) - len(prompt_ids), 1))
        result: list[np.ndarray] = [np.empty(0)] * len(rows)
        with torch.inference_mode():
            for batch in self._batches([len(r) for r in rows]):
                ids, mask = self._left_pad([rows[i] for i in batch])
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                keep = max(n_completion[i] for i in batch) + 1
                logits = self.model(
                    input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep
                ).logits.float()
                # logits[:, j] predicts token ids[:, width - keep + j + 1]
                logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
                targets = ids[:, ids.shape[1] - keep + 1 :]
                nll = -logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
                for row, i in enumerate(batch):
                    result[i] = nll[row, keep - 1 - n_completion[i] :].cpu().numpy()
                advance(len(batch))
        return result
