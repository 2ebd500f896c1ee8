"""Paired statistics over seeds: how sure is a difference between two arms?

Arms of a comparison share seeds (seed k fixes the pool, the test split and the initial student of
every arm), so arm A is compared with a baseline B seed by seed: the differences
``d_k = A_k - B_k`` over the seeds both have. Reported: their mean, a 95% t interval, and a
two-sided exact sign-flip permutation test.

Why these: with the 3-10 seeds a comparison affords, a bootstrap over seeds has too few distinct
resamples and its percentile interval is too narrow (it ignores the uncertainty of the spread
itself); the t interval is exact for normal differences and accounts for that. The sign-flip
test needs no normality at all: under "no difference" each d_k is as likely to be +|d_k| as
-|d_k|, so the p-value is the share of the 2^n sign patterns whose mean is at least as far from
0 as the one observed. It is exact, and its smallest possible value is 2 / 2^n: with 5 seeds
no difference can reach p < 0.05 (the least is 0.0625); 6 seeds allow 0.031, 8 allow 0.0078.
numpy only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

def binomial_se(accuracy: float, n: int) -> float:
    """The standard error of an accuracy measured on ``n`` test items: sqrt(p(1-p)/n) (the spread the
    choice of test items alone gives, for one evaluation; not the spread over seeds)."""
    return math.sqrt(accuracy * (1 - accuracy) / n) if n else 0.0


LEVEL = 0.95
EXACT_UP_TO = 16  # pairs: 2^16 sign patterns are enumerated; above, a fixed-seed Monte Carlo sample of them
DRAWS = 100_000
METHOD = {
    "difference": "arm minus baseline, per seed, over the seeds both arms have",
    "interval": "95% t interval over seeds: mean ± t(0.975, n-1) · SD / sqrt(n)",
    "test": f"two-sided exact sign-flip permutation test (Monte Carlo with {DRAWS:,} draws above {EXACT_UP_TO} pairs); "
            "the smallest p it can give is 2 / 2^n",
}


def paired(arm: dict[int, float | None], baseline: dict[int, float | None]) -> dict[str, Any]:
    """Arm minus baseline over the seeds both have a value for (seed -> value; None: no value, e.g. τ never reached).

    Returns the mean difference, its 95% interval (None below 2 pairs), the sign-flip p-value
    (None without pairs), the paired ``seeds``, and the seeds left out: ``only_arm`` / ``only_baseline``
    (run by one arm only) and ``no_value_arm`` / ``no_value_baseline`` (run by both, no value in one).
    """
    both = sorted(arm.keys() & baseline.keys())
    seeds = [s for s in both if arm[s] is not None and baseline[s] is not None]
    d = np.array([arm[s] - baseline[s] for s in seeds], dtype=float)
    out: dict[str, Any] = {"n": len(seeds), "seeds": seeds, "mean": None, "ci95": None, "p": None}
    if len(d):
        out["mean"] = float(d.mean())
        out["p"] = sign_flip_p(d)
    if len(d) >= 2:
        half = t_quantile(0.5 + LEVEL / 2, len(d) - 1) * float(d.std(ddof=1)) / math.sqrt(len(d))
        out["ci95"] = [out["mean"] - half, out["mean"] + half]
    left_out = {
        "only_arm": sorted(arm.keys() - baseline.keys()),
        "only_baseline": sorted(baseline.keys() - arm.keys()),
        "no_value_arm": [s for s in both if arm[s] is None],
        "no_value_baseline": [s for s in both if baseline[s] is None],
    }
    out.update({k: v for k, v in left_out.items() if v})
    return out


def sign_flip_p(d: np.ndarray) -> float:
    """Two-sided p-value of the sign-flip test of mean(d) = 0: the share of sign patterns with |sum| >= |observed|."""
    d = np.asarray(d, dtype=float)
    n = len(d)
    observed = abs(d.sum())
    if n <= EXACT_UP_TO:
        patterns = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1) * 2 - 1  # every +/-1 pattern, one per row
        sums = np.abs(patterns @ d)
        total, extra = len(sums), 0
    else:
        rng = np.random.default_rng(0)  # fixed: the same report every time
        sums = np.abs(rng.choice([-1.0, 1.0], size=(DRAWS, n)) @ d)
        total, extra = DRAWS + 1, 1  # the observed pattern counts too (keeps p > 0)
    tolerance = 1e-9 * max(1.0, observed)  # a flipped sum equal to the observed one must count despite rounding
    return float((np.count_nonzero(sums >= observed - tolerance) + extra) / total)


def t_quantile(q: float, df: int) -> float:
    """The q-quantile (q > 0.5) of Student's t with ``df`` degrees of freedom (numpy has none; scipy is not a dependency).

    Bisection on the CDF, 0.5 + the integral of the density from 0 to t (Simpson's rule): ~1e-6 accurate.
    """
    if not 0.5 < q < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 < q < 1 and df >= 1, not q={q}, df={df}")
    scale = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def cdf(t: float) -> float:
        x = np.linspace(0.0, t, 4001)
        f = scale * (1 + x * x / df) ** (-(df + 1) / 2)
        return 0.5 + (t / 4000 / 3) * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())

    lo, hi = 0.0, 1.0
    while cdf(hi) < q:
        lo, hi = hi, 2 * hi
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < q else (lo, mid)
    return (lo + hi) / 2
