"""Batched student passes agree with one-at-a-time and with a direct computation."""

import copy

import numpy as np
import pytest
import torch

from loopkit.models.tiny import TinyModel
from loopkit.inference import Inference

PROMPTS = [f"Question: what is {i} plus {i * 7 % 13}? {'pad ' * (i % 5)}\nAnswer:" for i in range(32)]
ANSWERS = [str(i + i * 7 % 13) + " because" * (i % 3) for i in range(32)]


@pytest.fixture(scope="module")
def model_and_tokenizer():
    return TinyModel(TinyModel.Params(hidden_size=32, layers=2, heads=2, intermediate_size=64)).load(seed=0)


def student(mt, batch_size):
    return Inference(*mt, batch_size=batch_size, max_new_tokens=8)


def test_token_nll_does_not_depend_on_batching(model_and_tokenizer):
    one = student(model_and_tokenizer, 1).token_nll(PROMPTS, ANSWERS)
    many = student(model_and_tokenizer, 32).token_nll(PROMPTS, ANSWERS)
    for a, b in zip(one, many):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_token_nll_matches_a_direct_computation(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    nll = student(model_and_tokenizer, 8).token_nll(PROMPTS[:4], ANSWERS[:4])
    for prompt, answer, got in zip(PROMPTS[:4], ANSWERS[:4], nll):
        prompt_ids = tokenizer(prompt)["input_ids"]
        ids = tokenizer(prompt + answer)["input_ids"] + [tokenizer.eos_token_id]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
        logprobs = torch.log_softmax(logits[:-1], -1)
        expected = [-logprobs[j - 1, ids[j]].item() for j in range(len(prompt_ids), len(ids))]
        assert len(got) == len(answer) + 1  # one per character, plus EOS
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def talkative(model_and_tokenizer):
    """A copy of the model with large random weights: the untrained one answers every prompt the same."""
    model, tokenizer = model_and_tokenizer
    model = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
    return model, tokenizer


def test_generation_does_not_depend_on_batching(talkative):
    one = student(talkative, 1).generate(PROMPTS)
    many = student(talkative, 32).generate(PROMPTS)
    assert one == many
    assert len(set(many)) > len(PROMPTS) // 2  # answers that differ by prompt, so the comparison means something


def test_progress_counts_every_item(model_and_tokenizer):
    seen = []
    student(model_and_tokenizer, 5).generate(PROMPTS[:12], seen.append)
    assert sum(seen) == 12 and len(seen) == 3
