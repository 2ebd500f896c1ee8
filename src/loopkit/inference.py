"""A causal LM at inference (the student's, or a local teacher's): batched answers, per-token losses and
answer statistics.

Every pass is batched: prompts are sorted by length so batches carry little padding, padded on
the left, and given explicit position ids, so a result does not depend on the batch it was in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

Advance = Callable[[int], None]

STATS = frozenset({"entropy", "embedding", "grad_embedding"})  # what answer_stats computes beside the NLL
_HIDDEN = frozenset({"embedding", "grad_embedding"})  # the ones that need the last hidden states


@dataclass(frozen=True)
class AnswerStats:
    """One completion under the student: per-token NLL and entropy, pooled embeddings (if asked)."""

    nll: np.ndarray  # (answer tokens + EOS,)
    entropy: np.ndarray | None = None  # (answer tokens + EOS,)
    embedding: np.ndarray | None = None  # (hidden,)
    grad_embedding: np.ndarray | None = None  # (vocab or its projection × hidden,)


def has_chat_template(tokenizer: Any) -> bool:
    return getattr(tokenizer, "chat_template", None) is not None


def _noop(n: int) -> None:
    pass


class Inference:
    """Batched passes over one loaded ``(model, tokenizer)``."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 64, max_new_tokens: int = 32,
                 grad_dim: int = 2**15, chat: bool | None = None) -> None:
        """``chat``: whether prompts go through the tokenizer's chat template (None: if it has one)."""
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self._chat = has_chat_template(tokenizer) if chat is None else chat
        self.grad_dim = grad_dim  # largest gradient embedding kept exact; see answer_stats
        self._projection = None

    @property
    def chat(self) -> bool:
        """Whether prompts go through the chat template."""
        return self._chat

    def render(self, prompt: str) -> str:
        """The exact text the model sees: the chat template for chat models, else the prompt itself."""
        if self._chat:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        return prompt

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of many texts in one (fast, batched) tokenizer call."""
        if not texts:
            return []
        # A chat template already contains the special tokens it wants.
        return self.tokenizer(list(texts), add_special_tokens=not self._chat)["input_ids"]

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
        return [text for text, _, _ in self.generate_counted(prompts, advance=advance)]

    def generate_counted(self, prompts: Sequence[str], sampling: dict[str, float] | None = None,
                         advance: Advance = _noop) -> list[tuple[str, int, int]]:
        """``(answer, prompt tokens, answer tokens up to EOS)`` per prompt, in input order.

        Greedy unless ``sampling`` gives a ``temperature`` > 0 (and optionally ``top_p``); the
        caller seeds torch for reproducible sampling.
        """
        import torch

        options = {"do_sample": False}
        if sampling and sampling.get("temperature", 0) > 0:
            options = {"do_sample": True, "temperature": sampling["temperature"], "top_p": sampling.get("top_p", 1.0)}
        eos = self.tokenizer.eos_token_id
        encoded = self._encode([self.render(p) for p in prompts])
        results: list[tuple[str, int, int]] = [("", 0, 0)] * len(prompts)
        with torch.inference_mode():
            for batch in self._batches([len(e) for e in encoded]):
                ids, mask = self._left_pad([encoded[i] for i in batch])
                out = self.model.generate(
                    input_ids=ids, attention_mask=mask, max_new_tokens=self.max_new_tokens,
                    pad_token_id=self.tokenizer.pad_token_id, eos_token_id=eos, **options,
                )
                new = out[:, ids.shape[1] :]
                texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
                for row, (i, text) in enumerate(zip(batch, texts)):
                    tokens = new[row].tolist()
                    results[i] = (text, len(encoded[i]), tokens.index(eos) + 1 if eos in tokens else len(tokens))
                advance(len(batch))
        return results

    def token_nll(self, prompts: Sequence[str], completions: Sequence[str], advance: Advance = _noop) -> list[np.ndarray]:
        """Per-token negative log-likelihood of each completion (then EOS) after its prompt."""
        return [s.nll for s in self.answer_stats(prompts, completions, frozenset(), advance)]

    def answer_stats(self, prompts: Sequence[str], completions: Sequence[str], want: frozenset[str] = frozenset(),
                     advance: Advance = _noop) -> list[AnswerStats]:
        """Per-token NLL of each completion (then EOS) after its prompt, plus whatever of ``STATS`` is wanted.

        One forward pass per batch gives all of them. The answer's positions are the ones whose
        logits predict its tokens: the prompt's last token through the answer's last (EOS is the
        final target). ``entropy`` is per token at those positions; ``embedding`` is the mean over
        them of the output layer's input (the last hidden state, after the final norm); and
        ``grad_embedding`` is BADGE's gradient embedding: the gradient of the mean token loss at
        the answer's own tokens (the student's greedy prediction) w.r.t. the output layer,
        ``mean_t (p_t - onehot(y_t)) ⊗ h_t``, flattened (vocab-major). When vocab × hidden exceeds
        ``grad_dim`` the vocabulary axis is first reduced by a fixed Gaussian random projection
        (seed 0, ``grad_dim // hidden`` columns, scaled by 1/sqrt(k)), which keeps inner products
        between embeddings in expectation; below that size the embedding is exact.
        """
        import torch

        unknown = set(want) - STATS
        if unknown:
            raise ValueError(f"unknown answer statistics {sorted(unknown)}; choose from {sorted(STATS)}")
        eos = self.tokenizer.eos_token_id
        rendered = [self.render(p) for p in prompts]
        prompt_ids = self._encode(rendered)
        rows = [ids + [eos] for ids in self._encode([r + c for r, c in zip(rendered, completions)])]
        n_completion = [max(len(full) - len(p), 1) for full, p in zip(rows, prompt_ids)]
        result: list[AnswerStats] = [AnswerStats(np.empty(0))] * len(rows)
        head = self.model.get_output_embeddings()
        captured: list[Any] = []
        hook = head.register_forward_pre_hook(lambda module, args: captured.append(args[0])) if want & _HIDDEN else None
        try:
            with torch.inference_mode():
                for batch in self._batches([len(r) for r in rows]):
                    ids, mask = self._left_pad([rows[i] for i in batch])
                    positions = (mask.cumsum(-1) - 1).clamp(min=0)
                    keep = max(n_completion[i] for i in batch) + 1
                    captured.clear()
                    logits = self.model(
                        input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep
                    ).logits.float()
                    # logits[:, j] predicts token ids[:, width - keep + j + 1]
                    logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
                    targets = ids[:, ids.shape[1] - keep + 1 :]
                    nll = -logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
                    span = torch.arange(keep - 1, device=ids.device)
                    n = torch.tensor([n_completion[i] for i in batch], device=ids.device)
                    answer = (span[None, :] >= keep - 1 - n[:, None]).float()  # (batch, keep - 1)
                    stats: dict[str, Any] = {}
                    if "entropy" in want:
                        stats["entropy"] = -(logprobs.exp() * logprobs).sum(-1)
                    if want & _HIDDEN:
                        hidden = captured[-1][:, -keep:-1].float() * answer[..., None]
                        if "embedding" in want:
                            stats["embedding"] = hidden.sum(1) / n[:, None]
                        if "grad_embedding" in want:
                            residual = logprobs.exp() - torch.nn.functional.one_hot(targets, logits.shape[-1]).float()
                            residual = self._reduce_vocab(residual, hidden.shape[-1])
                            grad = torch.einsum("bkv,bkh->bvh", residual, hidden) / n[:, None, None]
                            stats["grad_embedding"] = grad.flatten(1)
                    for row, i in enumerate(batch):
                        tail = slice(keep - 1 - n_completion[i], None)
                        result[i] = AnswerStats(
                            nll[row, tail].cpu().numpy(),
                            **{k: (v[row, tail] if k == "entropy" else v[row]).cpu().numpy() for k, v in stats.items()},
                        )
                    advance(len(batch))
        finally:
            if hook is not None:
                hook.remove()
        return result

    def _reduce_vocab(self, residual: Any, hidden_size: int) -> Any:
        """``residual`` (…, vocab) as is, or randomly projected to ``grad_dim // hidden_size`` columns."""
        import torch

        vocab = residual.shape[-1]
        if vocab * hidden_size <= self.grad_dim:
            return residual
        k = max(1, self.grad_dim // hidden_size)
        if self._projection is None or self._projection.shape != (vocab, k):
            generator = torch.Generator().manual_seed(0)
            self._projection = (torch.randn(vocab, k, generator=generator) / k**0.5).to(residual.device)
        return residual @ self._projection


def token_lengths(tokenizer: Any, texts: list[str], special: bool = True) -> list[int]:
    """Token counts of ``texts``, a few at a time (one call on thousands of long texts can exhaust memory)."""
    add = special and getattr(tokenizer, "chat_template", None) is None
    lengths: list[int] = []
    for start in range(0, len(texts), 256):
        lengths += [len(ids) for ids in tokenizer(texts[start : start + 256], add_special_tokens=add)["input_ids"]]
    return lengths
