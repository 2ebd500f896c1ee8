"""A small Llama with a character-level tokenizer, built in code: no download, no hub.

The vocabulary is fixed (printable ASCII plus a few specials), so a model built from the same
params and seed is identical on every machine: good for tests, CPU demos and reproducible runs.
"""

from __future__ import annotations

import string
from typing import Literal

from pydantic import Field, model_validator

from loopkit.component import Params
from loopkit.device import best_device
from loopkit.models.base import ModelSource

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
CHARS = [c for c in string.printable if c not in "\x0b\x0c\r"]


def build_char_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIALS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>",
        padding_side="left", model_max_length=4096,
    )


class TinyModel(ModelSource):
    class Params(Params):
        hidden_size: int = Field(128, ge=8, le=4096, description="width of the model (divisible by heads)")
        layers: int = Field(4, ge=1, le=64, description="transformer layers")
        heads: int = Field(4, ge=1, le=64, description="attention heads per layer")
        intermediate_size: int = Field(256, ge=8, description="width of each layer's MLP")
        max_length: int = Field(1024, ge=16, description="longest prompt + answer, in characters")
        # Measured on a 2-core CPU: eager attention trains this small model ~2x faster than sdpa.
        attention: Literal["eager", "sdpa"] = Field("eager", description="attention implementation (transformers' attn_implementation)")

        @model_validator(mode="after")
        def _heads_divide(self) -> "TinyModel.Params":
            if self.hidden_size % self.heads:
                raise ValueError(f"hidden_size {self.hidden_size} is not divisible by heads {self.heads}; "
                                 "choose heads that divide hidden_size")
            return self

    def tokenizer(self):
        return build_char_tokenizer()

    def context_window(self) -> int:
        return self.params.max_length

    def weight_bytes(self) -> int:
        """fp32 LlamaForCausalLM with tied embeddings: embeddings, then per layer attention (q, k, v, o),
        MLP (gate, up, down) and two norms, then the final norm."""
        p = self.params
        h = p.hidden_size
        count = len(SPECIALS + CHARS) * h + p.layers * (4 * h * h + 3 * h * p.intermediate_size + 2 * h) + h
        return 4 * count

    def load(self, seed: int):
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        p = self.params
        tokenizer = build_char_tokenizer()
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=p.hidden_size, num_hidden_layers=p.layers,
            num_attention_heads=p.heads, num_key_value_heads=p.heads, intermediate_size=p.intermediate_size,
            max_position_embeddings=p.max_length, pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
            attn_implementation=p.attention,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = LlamaForCausalLM(config)
        return model.to(best_device()).eval(), tokenizer
