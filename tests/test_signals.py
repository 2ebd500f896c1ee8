"""Student signals: batch-independent, and equal to a direct (and autograd) computation on the tiny model."""

import copy

import numpy as np
import pytest
import torch

from loopkit.models.tiny import TinyModel
from loopkit.signals import predict, student_signals, teacher_signals
from loopkit.inference import STATS, Inference
from loopkit.tasks.reasoning_gym import ReasoningGymTask
from loopkit.teachers.reasoning_gym import ReasoningGymTeacher

PROMPTS = [f"Question: what is {i} plus {i * 7 % 13}? {'pad ' * (i % 5)}\nAnswer:" for i in range(32)]
ANSWERS = [str(i + i * 7 % 13) + " because" * (i % 3) for i in range(32)]


@pytest.fixture(scope="module")
def model_and_tokenizer():
    return TinyModel(TinyModel.Params(hidden_size=32, layers=2, heads=2, intermediate_size=64)).load(seed=0)


def direct(model, tokenizer, prompt, answer):
    """Logits and last hidden states of one unpadded sequence at the positions that predict the answer."""
    n_prompt = len(tokenizer(prompt)["input_ids"])
    ids = tokenizer(prompt + answer)["input_ids"] + [tokenizer.eos_token_id]
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=True)
    span = slice(n_prompt - 1, len(ids) - 1)
    return out.logits[0, span], out.hidden_states[-1][0, span], torch.tensor(ids[n_prompt:])


def test_answer_stats_do_not_depend_on_batching(model_and_tokenizer):
    one = Inference(*model_and_tokenizer, batch_size=1).answer_stats(PROMPTS, ANSWERS, STATS)
    many = Inference(*model_and_tokenizer, batch_size=32).answer_stats(PROMPTS, ANSWERS, STATS)
    for a, b in zip(one, many):
        for name in ("nll", *STATS):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-4, atol=1e-5, err_msg=name)


def test_loss_entropy_and_embedding_match_a_direct_computation(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    stats = Inference(model, tokenizer, batch_size=8).answer_stats(PROMPTS[:6], ANSWERS[:6], STATS)
    for prompt, answer, got in zip(PROMPTS, ANSWERS, stats):
        logits, hidden, targets = direct(model, tokenizer, prompt, answer)
        logprobs = torch.log_softmax(logits, -1)
        nll = -logprobs[torch.arange(len(targets)), targets]
        entropy = -(logprobs.exp() * logprobs).sum(-1)
        assert len(got.nll) == len(answer) + 1  # one per character, plus EOS
        np.testing.assert_allclose(got.nll, nll.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got.entropy, entropy.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got.embedding, hidden.mean(0).numpy(), rtol=1e-4, atol=1e-5)


def test_grad_embedding_is_the_output_layer_gradient_by_autograd(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    student = Inference(model, tokenizer, batch_size=8)
    stats = student.answer_stats(PROMPTS[:4], ANSWERS[:4], frozenset({"grad_embedding"}))
    weight = model.get_output_embeddings().weight
    for prompt, answer, got in zip(PROMPTS, ANSWERS, stats):
        _, hidden, targets = direct(model, tokenizer, prompt, answer)
        w = weight.detach().clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(hidden @ w.T, targets)  # the mean token loss at the own answer
        (grad,) = torch.autograd.grad(loss, w)
        assert got.grad_embedding.shape == (weight.shape[0] * weight.shape[1],)
        np.testing.assert_allclose(got.grad_embedding, grad.flatten().numpy(), rtol=1e-4, atol=1e-6)


def test_large_grad_embeddings_are_a_seeded_random_projection_of_the_exact_one(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    vocab, hidden = model.get_output_embeddings().weight.shape
    exact = Inference(model, tokenizer).answer_stats(PROMPTS[:3], ANSWERS[:3], frozenset({"grad_embedding"}))
    small = Inference(model, tokenizer, grad_dim=8 * hidden)
    reduced = small.answer_stats(PROMPTS[:3], ANSWERS[:3], frozenset({"grad_embedding"}))
    again = Inference(model, tokenizer, grad_dim=8 * hidden).answer_stats(PROMPTS[:3], ANSWERS[:3], frozenset({"grad_embedding"}))
    projection = small._projection.numpy()
    assert projection.shape == (vocab, 8)
    for e, r, a in zip(exact, reduced, again):
        expected = projection.T @ e.grad_embedding.reshape(vocab, hidden)
        np.testing.assert_allclose(r.grad_embedding, expected.flatten(), rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(r.grad_embedding, a.grad_embedding)  # the same projection every time


@pytest.fixture(scope="module")
def stopping(model_and_tokenizer):
    """A copy of the model that answers each prompt differently and stops (EOS) after some answers but not others;
    it never emits the other special tokens, which decoding drops (their text could not be scored again)."""
    model, tokenizer = copy.deepcopy(model_and_tokenizer[0]), model_and_tokenizer[1]
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
        head = model.get_output_embeddings().weight
        head[tokenizer.eos_token_id] *= 1.5
        head[[tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id]] = 0
    return model, tokenizer


CHAT = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"


@pytest.mark.parametrize("batch_size,chat,penalty", [(1, False, None), (8, False, None), (8, True, None), (8, False, 3.0)])
def test_the_generation_pass_gives_the_forward_pass_losses_and_entropy(stopping, batch_size, chat, penalty):
    """own_loss / entropy from generate's raw logits equal a forward pass over prompt + answer + EOS: with padding,
    a chat template, answers that stop and answers cut at max_new_tokens, and a logits processor (a repetition
    penalty in the model's generation config) that picks the tokens but must not touch the log-probabilities."""
    model, tokenizer = stopping
    if chat:
        tokenizer = copy.deepcopy(tokenizer)
        tokenizer.chat_template = CHAT
    if penalty:
        model = copy.deepcopy(model)
        model.generation_config.repetition_penalty = penalty
    prompts = PROMPTS if batch_size > 1 else PROMPTS[:10]
    student = Inference(model, tokenizer, batch_size=batch_size, max_new_tokens=8)
    answers, own = student.generate_scored(prompts, entropy=True)
    assert answers == student.generate(prompts)
    assert [len(s.nll) for s in own] == [len(a) + 1 for a in answers]  # one per character, plus EOS
    lengths = [len(a) for a in answers]
    assert min(lengths) < 7 and lengths.count(8) >= 3  # answers that stopped, and answers cut at max_new_tokens
    if penalty:
        assert answers != Inference(*stopping, batch_size=batch_size, max_new_tokens=8).generate(prompts)  # it acted
    forward = student.answer_stats(prompts, answers, frozenset({"entropy"}))
    for got, expected in zip(own, forward):
        np.testing.assert_allclose(got.nll, expected.nll, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got.entropy, expected.entropy, rtol=1e-4, atol=1e-5)


def test_own_loss_signals_come_from_predict_without_a_forward_pass(stopping):
    model, tokenizer = stopping
    task = ReasoningGymTask(ReasoningGymTask.Params(generators=["syllogism"], pool_size=12, test_size=2))
    pool = task.load(seed=0).pool
    student = Inference(model, tokenizer, batch_size=4, max_new_tokens=8)
    calls = []
    hook = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        needs = frozenset({"own_loss", "entropy"})
        answers, own = predict(student, task, pool, needs)
        generating = len(calls)
        signals = student_signals(student, task, pool, answers, needs, own=own)
        assert generating > 0 and len(calls) == generating  # scoring ran the model no more
        reference = student_signals(student, task, pool, answers, needs)  # answers alone: a forward pass
        assert len(calls) > generating
    finally:
        hook.remove()
    assert set(signals) == {"answer", "own_loss", "own_loss_sum", "entropy"}
    for name in ("own_loss", "own_loss_sum", "entropy"):
        np.testing.assert_allclose(signals[name], reference[name], rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def task_and_pool():
    task = ReasoningGymTask(ReasoningGymTask.Params(generators=["syllogism"], pool_size=10, test_size=2))
    return task, task.load(seed=0).pool


def test_pool_signals_only_what_is_asked(model_and_tokenizer, task_and_pool):
    task, pool = task_and_pool
    student = Inference(*model_and_tokenizer, batch_size=4, max_new_tokens=4)
    answers = student.generate([task.prompt(s.question) for s in pool])
    signals = student_signals(student, task, pool, answers, frozenset({"answer", "own_loss", "correct"}))
    assert set(signals) == {"answer", "own_loss", "own_loss_sum", "correct"}
    assert signals["own_loss"].shape == (len(pool),) and signals["correct"].dtype == bool
    gold = student_signals(student, task, pool, None, frozenset({"gold_loss", "question"}))
    assert set(gold) == {"gold_loss", "question"}
    expected = [x.mean() for x in student.token_nll([task.prompt(s.question) for s in pool], [s.answer for s in pool])]
    np.testing.assert_allclose(gold["gold_loss"], expected)
    vectors = student_signals(student, task, pool, answers, frozenset({"entropy", "embedding", "grad_embedding"}))
    assert vectors["embedding"].shape == (len(pool), 32) and vectors["grad_embedding"].shape[0] == len(pool)


def test_teacher_signals_grade_with_the_verifier_and_count_calls(task_and_pool):
    task, pool = task_and_pool
    teacher = ReasoningGymTeacher()
    teacher.bind(task)
    answers = [s.final if i % 2 == 0 else "certainly not this" for i, s in enumerate(pool)]
    signals, calls = teacher_signals(teacher, pool, answers, frozenset({"judge_score", "referee_gap"}), random_seed=0)
    assert calls == len(pool) + 2 * len(pool)  # one grade per seed, the referee asked in both orders
    assert list(signals["judge_score"]) == [10.0 if i % 2 == 0 else 1.0 for i in range(len(pool))]
    assert list(signals["referee_gap"]) == [0.0 if i % 2 == 0 else 9.0 for i in range(len(pool))]
