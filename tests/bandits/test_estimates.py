"""Estimates after adaptive allocation: formulas against unit-level and regression references; bias by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats as sps

from splitlab.bandits import (
    BernoulliThompson,
    ProductionSettings,
    decide_weights,
    ipw_estimates,
    naive_estimates,
    period_weighted_estimates,
)
from splitlab.bandits.estimates import effective_statistics, ipw_arrays, period_weighted, within_period
from splitlab.stats.results import ErrorCode
from splitlab.stats.statistics import MeanStatistic


def units(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unit-level data: period, arm, reward, and the allocation weights of each period."""
    rng = np.random.default_rng(seed)
    weights = np.array([[0.4, 0.3, 0.3], [0.2, 0.5, 0.3], [0.1, 0.8, 0.1], [0.05, 0.9, 0.05]])
    periods, arms, rewards = [], [], []
    for p, w in enumerate(weights):
        a = rng.choice(3, size=120, p=w)
        periods.append(np.full(120, p))
        arms.append(a)
        rewards.append(rng.normal(1.0 + 0.3 * p + 0.1 * a, 1.0))
    return np.concatenate(periods), np.concatenate(arms), np.concatenate(rewards), weights


def cells(periods: np.ndarray, arms: np.ndarray, rewards: np.ndarray) -> list[list[MeanStatistic]]:
    return [
        [MeanStatistic.from_values(rewards[(periods == p) & (arms == a)]) for a in range(3)]
        for p in range(int(periods.max()) + 1)
    ]


def test_period_weighted_estimate_by_hand() -> None:
    periods, arms, rewards, _ = units()
    result = period_weighted_estimates(cells(periods, arms, rewards), alpha=0.1)
    share = np.bincount(periods) / periods.size
    for a in range(3):
        means = np.array([rewards[(periods == p) & (arms == a)].mean() for p in range(4)])
        counts = np.array([((periods == p) & (arms == a)).sum() for p in range(4)])
        within = sum(((rewards[(periods == p) & (arms == a)] - means[p]) ** 2).sum() for p in range(4))
        variance = within / (counts.sum() - 4) * (share**2 / counts).sum()
        assert result[a].mean == pytest.approx(float(share @ means), rel=1e-12)
        assert result[a].standard_error == pytest.approx(math.sqrt(variance), rel=1e-12)
        z = sps.norm.ppf(0.95)
        assert result[a].ci == pytest.approx(
            (result[a].mean - z * math.sqrt(variance), result[a].mean + z * math.sqrt(variance))
        )
        assert result[a].effective_n == pytest.approx(1 / (share**2 / counts).sum(), rel=1e-12)
        assert (result[a].estimator, result[a].n, result[a].alpha) == ("period-weighted", counts.sum(), 0.1)


def test_ipw_estimate_equals_the_unit_level_horvitz_thompson() -> None:
    periods, arms, rewards, weights = units(1)
    result = ipw_estimates(cells(periods, arms, rewards), weights.tolist())
    for a in range(3):
        terms = np.where(arms == a, rewards / weights[periods, a], 0.0)
        assert result[a].mean == pytest.approx(terms.mean(), rel=1e-12)
        assert result[a].standard_error == pytest.approx(terms.std(ddof=1) / math.sqrt(terms.size), rel=1e-9)


def test_ipw_leaves_out_periods_without_a_chance() -> None:
    periods, arms, rewards, weights = units(2)
    stats = cells(periods, arms, rewards)
    stats.append([MeanStatistic(0, 0.0, 0.0), MeanStatistic(200, 400.0, 900.0), MeanStatistic(0, 0.0, 0.0)])
    stopped = [*weights.tolist(), [0.0, 1.0, 0.0]]
    with_stop = ipw_estimates(stats, stopped)
    without = ipw_estimates(stats[:-1], weights.tolist())
    assert with_stop[0].mean == pytest.approx(without[0].mean, rel=1e-12)
    assert with_stop[1].mean != pytest.approx(without[1].mean, rel=1e-3)


def test_naive_estimate_is_the_pooled_mean() -> None:
    periods, arms, rewards, _ = units(3)
    result = naive_estimates(cells(periods, arms, rewards))
    for a in range(3):
        x = rewards[arms == a]
        assert result[a].mean == pytest.approx(x.mean(), rel=1e-12)
        assert result[a].standard_error == pytest.approx(x.std(ddof=1) / math.sqrt(x.size), rel=1e-9)


def test_within_period_statistics_equal_the_two_way_least_squares_fit() -> None:
    periods, arms, rewards, _ = units(4)
    stats = np.array([[[s.n, s.sum, s.sum_sq] for s in row] for row in cells(periods, arms, rewards)])
    n, sums = stats[..., 0], stats[..., 1]
    design = np.column_stack([np.eye(4)[periods], np.eye(3)[arms][:, 1:]])  # period levels, arm effects vs arm 0
    fit = sm.OLS(rewards, design).fit()
    share = np.bincount(periods) / periods.size
    mean, effective_n = within_period(n, sums)
    for a in range(3):
        contrast = np.concatenate([share, np.eye(3)[a][1:]])
        assert mean[a] == pytest.approx(float(contrast @ fit.params), rel=1e-9)
        variance_factor = float(contrast @ fit.normalized_cov_params @ contrast)
        assert effective_n[a] == pytest.approx(1 / variance_factor, rel=1e-9)


def test_one_period_statistics_are_the_plain_sums() -> None:
    n = np.array([[30.0, 50.0, 20.0]])
    sums = np.array([[12.0, 30.0, 5.0]])
    sums_sq = sums.copy()
    for method in ("within-period", "period-weighted", "pooled"):
        eff_n, eff_sum, eff_sq = effective_statistics(n, sums, sums_sq, method)
        np.testing.assert_allclose(eff_n, n[0], rtol=1e-12)
        np.testing.assert_allclose(eff_sum, sums[0], rtol=1e-12)
        np.testing.assert_allclose(eff_sq, sums_sq[0], rtol=1e-12)
    with pytest.raises(ValueError, match="method == 'median', must be one of"):
        effective_statistics(n, sums, sums_sq, "median")


def test_degenerate_arms_get_error_codes() -> None:
    stats = [[MeanStatistic(0, 0.0, 0.0), MeanStatistic(1, 1.0, 1.0), MeanStatistic(5, 2.0, 2.0)]]
    empty, single, fine = period_weighted_estimates(stats)
    assert (empty.error_code, math.isnan(empty.mean)) == (ErrorCode.EMPTY_GROUP, True)
    assert (single.error_code, single.mean, math.isnan(single.standard_error)) == (ErrorCode.TOO_FEW_UNITS, 1.0, True)
    assert fine.error_code is None
    assert fine.to_dict()["ci"] == list(fine.ci)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: period_weighted_estimates([]), "periods is empty"),
        (lambda: period_weighted_estimates([[MeanStatistic(1, 1, 1)], []]), r"periods\[1\] has 0 arms"),
        (lambda: period_weighted_estimates([[MeanStatistic(1, 1, 1)]], alpha=1.5), "alpha == 1.5"),
        (lambda: ipw_estimates([[MeanStatistic(1, 1, 1)] * 2], [[0.5]]), r"weights has shape \(1, 1\)"),
        (lambda: ipw_estimates([[MeanStatistic(1, 1, 1)] * 2], [[1.0, 0.0]]), r"weights\[0\]\[1\] == 0 but arm 1"),
        (lambda: ipw_estimates([[MeanStatistic(1, 1, 1)] * 2], [[1.5, -0.5]]), "weights must be probabilities"),
    ],
)
def test_bad_input_is_refused(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]


# ------------------------------------------------------------------------------------------
# Bias by simulation (vectorised over replications)


def adaptive_experiment(replications: int, seed: int) -> tuple[np.ndarray, ...]:
    """Batched Thompson sampling on stationary Bernoulli arms (0.45, 0.5): per-period statistics and weights."""
    periods, batch, means = 15, 100, np.array([0.45, 0.5])
    rng = np.random.default_rng(seed)
    policy, settings = BernoulliThompson(2), ProductionSettings(floor=0.1, draws=100)
    stats = np.zeros((3, replications, periods, 2))
    weights = np.zeros((replications, periods, 2))
    current = np.full((replications, 2), 0.5)
    for p in range(periods):
        weights[:, p] = current
        arms = (rng.random((replications, batch)) >= current[:, :1]).astype(int)
        rewards = (rng.random((replications, batch)) < means[arms]).astype(float)
        hits = arms[..., None] == np.arange(2)
        stats[0, :, p] = hits.sum(axis=1)
        stats[1, :, p] = stats[2, :, p] = (hits * rewards[..., None]).sum(axis=1)
        current = decide_weights(policy, *stats[:, :, : p + 1], settings, rng)[0]
    return stats[0], stats[1], stats[2], weights, means


def test_ipw_and_period_weighted_estimates_are_unbiased_where_naive_means_are_not() -> None:
    replications = 2000
    n, sums, sums_sq, weights, means = adaptive_experiment(replications, seed=12)
    assert (n > 0).all()  # the 10 % floor keeps every arm in every period
    estimates = {
        "naive": sums.sum(axis=1) / n.sum(axis=1),
        "period-weighted": period_weighted(n, sums, sums_sq)[0],
        "ipw": ipw_arrays(n, sums, sums_sq, weights)[0],
    }
    z = {}
    for name, values in estimates.items():
        bias = values.mean(axis=0) - means
        z[name] = bias / (values.std(axis=0, ddof=1) / math.sqrt(replications))
    assert abs(z["period-weighted"]).max() < 4
    assert abs(z["ipw"]).max() < 4
    assert z["naive"][0] < -6  # the worse arm looks worse still: adaptive sampling's negative bias
    # The record-level functions agree with the vectorised ones on a replication.
    stats = [[MeanStatistic(int(n[0, p, a]), sums[0, p, a], sums_sq[0, p, a]) for a in range(2)] for p in range(15)]
    assert [e.mean for e in ipw_estimates(stats, weights[0].tolist())] == pytest.approx(estimates["ipw"][0].tolist())


def test_period_weighting_removes_simpsons_paradox() -> None:
    """Conversion rises over time while traffic shifts to arm 1, which is worse in every period."""
    replications, batch = 2000, 200
    rng = np.random.default_rng(3)
    base = np.linspace(0.10, 0.40, 6)
    shares = np.linspace(0.1, 0.9, 6)
    truth = np.column_stack([base, base - 0.03])  # per period and arm
    n, sums = np.zeros((replications, 6, 2)), np.zeros((replications, 6, 2))
    for p in range(6):
        arms = (rng.random((replications, batch)) < shares[p]).astype(int)
        rewards = rng.random((replications, batch)) < truth[p, arms]
        for a in range(2):
            n[:, p, a] = (arms == a).sum(axis=1)
            sums[:, p, a] = ((arms == a) & rewards).sum(axis=1)
    weights = np.broadcast_to(np.column_stack([1 - shares, shares]), n.shape)
    target = truth.mean(axis=0)  # equal traffic per period
    naive = sums.sum(axis=1) / n.sum(axis=1)
    weighted = period_weighted(n, sums, sums)[0]
    ipw = ipw_arrays(n, sums, sums, weights)[0]
    assert (naive[:, 1] > naive[:, 0]).mean() > 0.99  # pooled means rank the worse arm first
    for values in (weighted, ipw):
        se = values.std(axis=0, ddof=1) / math.sqrt(replications)
        assert np.all(np.abs(values.mean(axis=0) - target) < 4 * se)
        difference = values[:, 0] - values[:, 1]
        assert difference.mean() == pytest.approx(0.03, abs=4 * difference.std(ddof=1) / math.sqrt(replications))
