"""Every built-in selector on hand-built signals with known answers, plus properties and loop wiring."""

import json
import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from loopkit.errors import PluginLoadError, RecipeError
from loopkit.recipe import load_recipe
from loopkit.selectors.badge import BadgeSelector
from loopkit.selectors.base import Selector, top_m
from loopkit.selectors.entropy import EntropySelector
from loopkit.selectors.gold_loss import GoldLossSelector
from loopkit.selectors.incorrect import IncorrectSelector
from loopkit.selectors.kcenter import KCenterSelector
from loopkit.selectors.lion import LionSelector
from loopkit.selectors.llm_judge import LLMJudgeSelector
from loopkit.selectors.loss import LossSelector
from loopkit.selectors.reward import RewardSelector
from loopkit.signals import named_reward_model, teacher_signals
from loopkit.tasks.reasoning_gym import ReasoningGymTask
from loopkit.teachers.reasoning_gym import ReasoningGymTeacher
from loopkit.testing import registered, run_recipe


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize(
    "selector, signal",
    [(LossSelector(), "own_loss"), (GoldLossSelector(), "gold_loss"), (EntropySelector(), "entropy")],
)
def test_score_selectors_take_the_highest(selector, signal):
    values = np.array([0.1, 2.0, 0.5, 3.0, 1.0])
    assert selector.needs == {signal}
    assert selector.select({signal: values}, 5, 2, rng()).indices == (3, 1)


def test_llm_judge_takes_the_lowest_grades():
    grades = np.array([10, 3, 7, 1, 10, 3])
    picked = LLMJudgeSelector().select({"judge_score": grades, "answer": [""] * 6}, 6, 3, rng())
    assert picked[0] == 3 and set(picked[1:]) == {1, 5}


def test_incorrect_takes_wrong_answers_then_fills_by_own_loss():
    correct = np.array([True, False, True, True, False, True])
    loss = np.array([0.9, 0.1, 0.2, 0.7, 0.05, 0.3])
    picked = IncorrectSelector().select({"correct": correct, "own_loss": loss}, 6, 4, rng())
    assert set(picked[:2]) == {1, 4} and picked.indices[2:] == (0, 3)
    # more wrong seeds than m: only wrong ones, whatever their loss
    for seed in range(5):
        assert set(IncorrectSelector().select({"correct": ~correct, "own_loss": loss}, 6, 3, rng(seed))) <= {0, 2, 3, 5}


def test_badge_starts_at_the_largest_gradient_then_spreads_out():
    # three copies of the largest embedding: after one of them, only the far point has any weight
    vectors = np.array([[10.0, 0.0], [10.0, 0.0], [0.0, 3.0], [10.0, 0.0]])
    for seed in range(5):
        picked = BadgeSelector().select({"grad_embedding": vectors}, 4, 2, rng(seed))
        assert picked[0] in {0, 1, 3} and picked[1] == 2
    assert sorted(BadgeSelector().select({"grad_embedding": vectors}, 4, 4, rng())) == [0, 1, 2, 3]


def test_kcenter_is_greedy_farthest_first_and_avoids_history():
    points = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    selector = KCenterSelector()
    assert selector.select({"embedding": points}, 5, 3, rng()).indices == (4, 0, 2)  # 11 is farthest from the mean 4.8
    assert selector.select({"embedding": points}, 5, 1, rng(), history=[0, 4]).indices == (2,)
    assert selector.select({"embedding": points}, 5, 2, rng(), history=[4]).indices == (0, 2)


def test_lion_mixes_hard_and_easy_and_flags_easy_seeds_rarer():
    gap = np.array([9.0, 0.0, 9.0, 0.0, 9.0, 0.5, 9.0, 0.0])  # hard: 0 2 4 6 (gap >= 1)
    picked = LionSelector().select({"referee_gap": gap, "answer": [""] * 8}, 8, 4, rng())
    assert set(picked[:2]) <= {0, 2, 4, 6} and set(picked[2:]) <= {1, 3, 5, 7}
    assert picked.variants == {i: "rarer" for i in picked[2:]}
    only_hard = LionSelector(LionSelector.Params(hard_fraction=1.0)).select({"referee_gap": gap}, 8, 6, rng())
    assert set(only_hard[:4]) == {0, 2, 4, 6} and len(set(only_hard)) == 6  # easy seeds fill the shortfall
    lenient = LionSelector(LionSelector.Params(threshold=0.5, hard_fraction=1.0)).select({"referee_gap": gap}, 8, 5, rng())
    assert set(lenient) == {0, 2, 4, 5, 6} and lenient.variants == {}


def test_llm_judge_and_lion_on_the_reasoning_gym_teacher():
    task = ReasoningGymTask(ReasoningGymTask.Params(generators=["family_relationships"], pool_size=12, test_size=2))
    pool = task.load(seed=1).pool
    teacher = ReasoningGymTeacher()
    teacher.bind(task)
    wrong = {1, 4, 7}
    answers = ["nobody" if i in wrong else s.final for i, s in enumerate(pool)]
    signals, calls = teacher_signals(teacher, pool, answers, LLMJudgeSelector.needs | LionSelector.needs, random_seed=0)
    assert calls == 3 * len(pool)
    assert set(LLMJudgeSelector().select(signals, len(pool), 3, rng())) == wrong
    picked = LionSelector(LionSelector.Params(hard_fraction=0.5)).select(signals, len(pool), 6, rng())
    assert set(picked[:3]) == wrong and set(picked.variants) == set(picked[3:])


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory):
    """A tiny LlamaForSequenceClassification with the char tokenizer, saved like any hub reward model."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from loopkit.models.tiny import build_char_tokenizer

    tokenizer = build_char_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
        intermediate_size=32, num_labels=1, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config).eval()
    path = tmp_path_factory.mktemp("reward-model")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, model, tokenizer


@pytest.mark.model
def test_reward_takes_the_lowest_rewards_of_question_and_answer(reward_model):
    import torch

    path, model, tokenizer = reward_model
    questions = [f"Is {i} even?" for i in range(10)]
    answers = ["yes" * (i % 3) or "no" for i in range(10)]
    expected = []
    for q, a in zip(questions, answers):  # one at a time, no padding
        with torch.no_grad():
            expected.append(model(**tokenizer(q, a, return_tensors="pt")).logits[0, 0].item())
    selector = RewardSelector(RewardSelector.Params(model=str(path), batch_size=4))
    rewards = named_reward_model(selector, selector.needs).scores(questions, answers)  # the student side computes the signal
    np.testing.assert_allclose(rewards, expected, rtol=1e-4, atol=1e-5)
    picked = selector.select({"reward": rewards}, 10, 3, rng())
    assert list(picked) == [int(i) for i in np.argsort(expected)[:3]]


def test_reward_without_a_model_fails_at_validation(write_recipe):
    with pytest.raises(ValidationError):
        RewardSelector.Params()
    path = write_recipe()
    with pytest.raises(RecipeError, match="selector.params.model: required field is missing"):
        load_recipe(path, ["selector.name=reward"])


def test_selectors_the_teacher_cannot_serve_fail_at_validation(write_recipe):
    from loopkit.teachers.base import Teacher

    class RefereeOnly(ReasoningGymTeacher):
        judge = Teacher.judge  # like an LLM teacher without a grading prompt

    with registered("teacher", "referee-only", RefereeOnly):
        with pytest.raises(RecipeError, match="needs the teacher to judge answers"):
            load_recipe(write_recipe(), ["teacher.name=referee-only", "selector.name=llm-judge"])
        load_recipe(write_recipe(), ["teacher.name=referee-only", "selector.name=lion"])


def test_unknown_signals_fail_at_validation(write_recipe):
    class Odd(Selector):
        needs = frozenset({"own_loss", "vibes"})

        def select(self, signals, pool_size, m, rng, history=()):
            return list(range(m))

    with registered("selector", "odd", Odd):
        with pytest.raises(RecipeError, match=r"needs unknown signals \['vibes'\]"):
            load_recipe(write_recipe(), ["selector.name=odd"])


def test_non_finite_scores_rank_last_with_one_warning(caplog):
    loss = np.array([0.5, np.nan, 2.0, np.inf, 1.0])
    with caplog.at_level(logging.WARNING):
        picked = LossSelector().select({"own_loss": loss}, 5, 4, rng())
    assert picked.indices[:3] == (2, 4, 0) and picked[3] in {1, 3}
    (record,) = caplog.records
    assert "LossSelector" in record.getMessage() and "own_loss" in record.getMessage()
    vectors = np.array([[0.0, 1.0], [np.nan, 0.0], [5.0, 5.0]])
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert KCenterSelector().select({"embedding": vectors}, 3, 3, rng())[2] == 1
        assert BadgeSelector().select({"grad_embedding": vectors}, 3, 3, rng())[2] == 1
    assert len(caplog.records) == 2 and all("embedding" in r.getMessage() for r in caplog.records)


def test_a_selector_without_the_documented_signature_fails_when_it_is_defined():
    with pytest.raises(PluginLoadError, match="must take .* history"):
        class Old(Selector):  # written before ``history`` existed
            def select(self, signals, pool_size, m, rng):
                return list(range(m))

    class New(Selector):
        def select(self, signals, pool_size, m, rng, history=()):
            return list(history)[:m]

    assert New().select({}, 5, 2, rng(), history=[3, 4]) == [3, 4]


scores = st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32) | st.integers(0, 3).map(float), min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(scores=scores, data=st.data())
def test_top_m_takes_m_distinct_seeds_none_better_left_out(scores, data):
    m = data.draw(st.integers(1, len(scores)))
    values = np.array(scores)
    picked = top_m(values, m, rng(data.draw(st.integers(0, 2**32 - 1))), "test")
    assert len(picked) == m == len(set(picked)) and all(0 <= i < len(values) for i in picked)
    ranked = np.where(np.isfinite(values), values, -np.inf)
    left_out = np.delete(ranked, picked)
    assert not len(left_out) or ranked[picked].min() >= left_out.max()


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 30), dim=st.integers(1, 4), data=st.data())
def test_diverse_selectors_take_m_distinct_seeds(n, dim, data):
    m = data.draw(st.integers(1, n))
    vectors = np.array(data.draw(st.lists(st.floats(-5, 5), min_size=n * dim, max_size=n * dim))).reshape(n, dim)
    history = data.draw(st.lists(st.integers(0, n - 1), max_size=5))
    for selector, signal in ((BadgeSelector(), "grad_embedding"), (KCenterSelector(), "embedding")):
        picked = selector.select({signal: vectors}, n, m, rng(), history=history)
        assert len(picked) == m == len(set(picked)) and all(0 <= i < n for i in picked)


def run_one_round(tmp_path, selector):
    return run_recipe(tmp_path, "loop.rounds=1", f"selector.name={selector}").run_dir.path / "round-001"


@pytest.mark.model
@pytest.mark.parametrize("selector, signal", [("badge", "grad_embedding"), ("kcenter", "embedding")])
def test_one_round_of_the_tiny_recipe(tmp_path, selector, signal):
    rd = run_one_round(tmp_path, selector)
    selected = [json.loads(line) for line in (rd / "selected.jsonl").read_text().splitlines()]
    assert len({s["index"] for s in selected}) == 6
    signals = [json.loads(line) for line in (rd / "pool_signals.jsonl").read_text().splitlines()]
    assert len(signals) == 24 and signal not in signals[0]  # vectors are not written out
    metrics = json.loads((rd / "metrics.json").read_text())
    assert {"predict", "score", "select"} <= set(metrics["seconds"]) and metrics["selector_teacher_calls"] == 0


@pytest.mark.model
def test_lion_in_the_loop_charges_referee_calls_and_records_variants(tmp_path):
    rd = run_one_round(tmp_path, "lion")
    metrics = json.loads((rd / "metrics.json").read_text())
    assert metrics["selector_teacher_calls"] == 2 * 24 and metrics["teacher_calls"] == 2 * 24 + 6
    selected = [json.loads(line) for line in (rd / "selected.jsonl").read_text().splitlines()]
    gaps = {json.loads(line)["index"]: json.loads(line)["referee_gap"] for line in (rd / "pool_signals.jsonl").read_text().splitlines()}
    assert all(s.get("variant") == ("rarer" if gaps[s["index"]] < 1 else None) for s in selected)


@pytest.mark.model
def test_the_loop_passes_earlier_picks_as_history(tmp_path):
    seen = []

    class Recorder(Selector):
        def select(self, signals, pool_size, m, rng, history=()):
            seen.append(list(history))
            return list(range(len(seen) * m - m, len(seen) * m))

    with registered("selector", "recorder", Recorder):
        run_recipe(tmp_path, "selector.name=recorder", "loop.rounds=2", "loop.per_round=3")
    assert seen == [[], [0, 1, 2]]
