import numpy as np
import pytest

from loopkit_selector_power import PowerSelector


def select(losses, m, beta=1.0, seed=0):
    selector = PowerSelector(PowerSelector.Params(beta=beta))
    return selector.select({"own_loss": np.asarray(losses)}, len(losses), m, np.random.default_rng(seed))


def test_returns_m_distinct_indices():
    picked = select(np.linspace(0.1, 3, 50), 20)
    assert len(picked) == 20 and len(set(picked)) == 20
    assert all(0 <= i < 50 for i in picked)


def test_high_loss_seeds_are_picked_far_more_often():
    losses = np.array([0.01] * 90 + [5.0] * 10)
    hits = np.zeros(100)
    for seed in range(200):
        hits[select(losses, 10, beta=1.0, seed=seed)] += 1
    # p(high) per draw is 500x p(low): the 10 high-loss seeds dominate, but not exclusively.
    assert hits[90:].mean() > 20 * hits[:90].mean()


def test_beta_zero_is_uniform():
    losses = np.array([0.01] * 50 + [5.0] * 50)
    hits = np.zeros(100)
    for seed in range(400):
        hits[select(losses, 10, beta=0.0, seed=seed)] += 1
    assert hits[50:].sum() == pytest.approx(hits[:50].sum(), rel=0.15)


def test_large_beta_is_top_m():
    losses = np.random.default_rng(1).random(30)
    assert set(select(losses, 5, beta=1e6)) == set(np.argsort(-losses)[:5])


def test_same_seed_same_batch():
    losses = np.random.default_rng(2).random(40)
    assert select(losses, 8, seed=7) == select(losses, 8, seed=7)


def test_negative_beta_is_rejected():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        PowerSelector.Params(beta=-1)
