"""Power analysis: cross-checks against statsmodels, golden values, round trips, calibration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower, TTestIndPower, normal_sample_size_one_tail
from statsmodels.stats.proportion import power_proportions_2indep, samplesize_proportions_2indep_onetail

from splitlab.stats.power import (
    DEFAULT_DAILY_TRAFFIC,
    SampleSizePlan,
    comparison_alpha,
    duration_days,
    minimum_detectable_effect,
    plan_sample_size,
    power_at,
    sample_size_means,
    sample_size_proportions,
    sample_size_ratio,
)
from splitlab.stats.results import ErrorCode
from splitlab.stats.statistics import RatioStatistic

REL = 1e-9
SM_ALTERNATIVE = {"two-sided": "two-sided", "greater": "larger", "less": "smaller"}


def _signed(effect: float, alternative: str) -> float:
    return -effect if alternative == "less" else effect


def _sm_size_proportions(p0: float, d: float, *, power: float, ratio: float, alpha: float, alternative: str) -> float:
    """statsmodels' first sample is the treatment (prop1 = prop2 + diff) and nobs2 = ratio * nobs1."""
    n_treatment = samplesize_proportions_2indep_onetail(
        _signed(d, alternative), p0, power, ratio=1 / ratio, alpha=alpha, alternative=SM_ALTERNATIVE[alternative]
    )
    return float(n_treatment) / ratio


def _sm_power_proportions(p0: float, d: float, n_control: float, *, ratio: float, alpha: float, alternative: str):
    return float(
        power_proportions_2indep(
            _signed(d, alternative),
            p0,
            ratio * n_control,
            ratio=1 / ratio,
            alpha=alpha,
            alternative=SM_ALTERNATIVE[alternative],
        ).power
    )


# Grid: baselines x relative MDEs x ratios x alternatives (combinations leaving (0, 1) dropped).
PROPORTION_GRID = [
    (p0, mde, ratio, alternative)
    for p0, mde, ratio, alternative in itertools.product(
        (0.01, 0.05, 0.15, 0.5, 0.8), (0.02, 0.1, 0.3), (0.5, 1.0, 2.5), ("two-sided", "greater", "less")
    )
    if 0 < p0 * (1 + _signed(mde, alternative)) < 1
]


# --------------------------------------------------------------------------- golden values


def test_golden_proportions_9257():
    plan = sample_size_proportions(0.15, 0.10)
    # statsmodels samplesize_proportions_2indep_onetail(0.015, 0.15, 0.8) == 9256.574622435477
    assert plan.per_variant_exact == pytest.approx(9256.574622435477, rel=1e-12)
    assert plan.per_variant == 9257
    assert plan.treatment_per_variant == 9257
    assert plan.total == 18514
    assert plan.absolute_mde == pytest.approx(0.015, rel=1e-15)
    assert plan.test == "pooled-z"
    assert plan.durations == ((100, 186), (500, 38), (1_000, 19), (5_000, 4), (10_000, 2))


def test_golden_means_and_t():
    assert sample_size_means(0.1, 1.0).per_variant_exact == pytest.approx(1569.7759468698182, rel=1e-12)
    assert sample_size_means(0.1, 1.0, use_t=True).per_variant_exact == pytest.approx(1570.733043014299, rel=1e-10)


# --------------------------------------------------------------------------- proportions vs statsmodels


@pytest.mark.parametrize(("p0", "mde", "ratio", "alternative"), PROPORTION_GRID)
def test_proportion_size_matches_statsmodels(p0, mde, ratio, alternative):
    for alpha, power in ((0.05, 0.8), (0.01, 0.9)):
        plan = sample_size_proportions(p0, mde, ratio=ratio, alternative=alternative, alpha=alpha, power=power)
        expected = _sm_size_proportions(p0, p0 * mde, power=power, ratio=ratio, alpha=alpha, alternative=alternative)
        assert plan.per_variant_exact == pytest.approx(expected, rel=REL)
        assert plan.per_variant == math.ceil(expected)
        assert plan.treatment_per_variant == math.ceil(ratio * plan.per_variant_exact)
        assert plan.total == plan.per_variant + plan.treatment_per_variant


def test_proportion_absolute_mde_matches_statsmodels():
    plan = sample_size_proportions(0.2, 0.03, relative=False, ratio=1.5)
    expected = _sm_size_proportions(0.2, 0.03, power=0.8, ratio=1.5, alpha=0.05, alternative="two-sided")
    assert plan.per_variant_exact == pytest.approx(expected, rel=REL)
    assert not plan.relative
    assert plan.absolute_mde == 0.03


@pytest.mark.parametrize(("p0", "mde", "ratio", "alternative"), PROPORTION_GRID)
def test_proportion_power_matches_statsmodels(p0, mde, ratio, alternative):
    for n_control in (50.0, 1234.5, 40_000.0):
        got = power_at(n_control, mde, baseline=p0, ratio=ratio, alternative=alternative, alpha=0.05)
        expected = _sm_power_proportions(p0, p0 * mde, n_control, ratio=ratio, alpha=0.05, alternative=alternative)
        assert got == pytest.approx(expected, rel=REL)


@pytest.mark.parametrize(("p0", "mde", "ratio", "alternative"), PROPORTION_GRID)
def test_proportion_round_trips(p0, mde, ratio, alternative):
    kwargs = {"ratio": ratio, "alternative": alternative}
    n = sample_size_proportions(p0, mde, **kwargs).per_variant_exact
    assert minimum_detectable_effect(n, baseline=p0, **kwargs) == pytest.approx(mde, rel=REL)
    achieved = power_at(n, mde, baseline=p0, **kwargs)
    if alternative == "two-sided":
        # The size uses the near tail only; the exact power adds the far tail, P(Z < -z_{alpha/2} ...).
        far = power_proportions_2indep(p0 * mde, p0, ratio * n, ratio=1 / ratio, alpha=0.025, alternative="smaller")
        far = float(far.power)
        assert achieved == pytest.approx(0.8 + far, abs=1e-12)
        assert 0 <= far < 1e-3
    else:
        assert achieved == pytest.approx(0.8, rel=REL)


def test_proportion_mde_absolute_and_one_sided_statsmodels_power():
    n = 5_000.0
    d = minimum_detectable_effect(n, baseline=0.3, relative=False, alternative="greater", ratio=2.0)
    assert power_proportions_2indep(d, 0.3, 2 * n, ratio=0.5, alternative="larger").power == pytest.approx(0.8, rel=REL)
    relative = minimum_detectable_effect(n, baseline=0.3, alternative="greater", ratio=2.0)
    assert relative == pytest.approx(d / 0.3, rel=REL)


def test_proportion_mde_not_attainable_is_nan():
    assert math.isnan(minimum_detectable_effect(3, baseline=0.5))


# --------------------------------------------------------------------------- means vs statsmodels

MEAN_GRID = list(itertools.product((0.05, 0.3, 1.2), (0.5, 1.0, 3.0), ("two-sided", "greater", "less")))


@pytest.mark.parametrize(("effect_size", "ratio", "alternative"), MEAN_GRID)
def test_mean_z_size_and_power_match_statsmodels(effect_size, ratio, alternative):
    std = 2.5
    d = effect_size * std
    plan = sample_size_means(d, std, ratio=ratio, alternative=alternative, power=0.9, alpha=0.01)
    alpha_tail = 0.005 if alternative == "two-sided" else 0.01
    expected = normal_sample_size_one_tail(d, 0.9, alpha_tail, std_null=std * math.sqrt(1 + 1 / ratio))
    assert plan.per_variant_exact == pytest.approx(expected, rel=REL)
    assert plan.test == "z"
    for n in (10.0, 777.0, plan.per_variant_exact):
        got = power_at(n, d, metric="mean", std=std, ratio=ratio, alternative=alternative, alpha=0.01)
        sm = NormalIndPower().power(
            _signed(effect_size, alternative), n, 0.01, ratio=ratio, alternative=SM_ALTERNATIVE[alternative]
        )
        assert got == pytest.approx(sm, rel=REL)
    mde = minimum_detectable_effect(
        plan.per_variant_exact, metric="mean", std=std, ratio=ratio, alternative=alternative, power=0.9, alpha=0.01
    )
    assert mde == pytest.approx(d, rel=REL)


@pytest.mark.parametrize(("effect_size", "ratio", "alternative"), MEAN_GRID)
def test_mean_t_size_and_power_match_statsmodels(effect_size, ratio, alternative):
    std = 0.7
    d = effect_size * std
    plan = sample_size_means(d, std, ratio=ratio, alternative=alternative, use_t=True)
    n = plan.per_variant_exact
    sm_alternative = SM_ALTERNATIVE[alternative]
    signed = _signed(effect_size, alternative)
    # The root itself: statsmodels' t power at our n is the target power.
    assert TTestIndPower().power(signed, n, 0.05, ratio=ratio, alternative=sm_alternative) == pytest.approx(
        0.8, abs=1e-11
    )
    # statsmodels' own solver stops at a looser tolerance (~1e-7 relative at small n).
    sm_n = TTestIndPower().solve_power(signed, None, 0.05, 0.8, ratio=ratio, alternative=sm_alternative)
    if not math.isnan(sm_n):
        assert n == pytest.approx(sm_n, rel=1e-6)
    assert plan.test == "t"
    for n_eval in (5.0, 321.0):
        got = power_at(n_eval, d, metric="mean", std=std, ratio=ratio, alternative=alternative, use_t=True)
        expected = TTestIndPower().power(signed, n_eval, 0.05, ratio=ratio, alternative=sm_alternative)
        if math.isnan(expected):
            # scipy's nctdtr fails far in the tail (statsmodels gives NaN); our reflection does not.
            expected = NormalIndPower().power(signed, n_eval, 0.05, ratio=ratio, alternative=sm_alternative)
            assert expected > 1 - 1e-12
        assert got == pytest.approx(expected, rel=REL)
    mde = minimum_detectable_effect(n, metric="mean", std=std, ratio=ratio, alternative=alternative, use_t=True)
    assert mde == pytest.approx(d, rel=REL)
    assert power_at(n, d, metric="mean", std=std, ratio=ratio, alternative=alternative, use_t=True) == pytest.approx(
        0.8, abs=1e-11
    )


def test_mean_relative_mde_uses_baseline():
    plan = sample_size_means(0.05, 4.0, baseline_mean=-20.0, relative=True)
    assert plan.absolute_mde == pytest.approx(1.0, rel=1e-15)
    assert plan.per_variant_exact == pytest.approx(sample_size_means(1.0, 4.0).per_variant_exact, rel=1e-15)
    mde = minimum_detectable_effect(plan.per_variant_exact, metric="mean", std=4.0, baseline=-20.0, relative=True)
    assert mde == pytest.approx(0.05, rel=REL)


def test_t_below_one_degree_of_freedom_is_nan():
    assert math.isnan(power_at(1.2, 1.0, metric="mean", std=1.0, use_t=True))
    assert math.isnan(minimum_detectable_effect(1.2, metric="mean", std=1.0, use_t=True))
    assert not math.isnan(power_at(1.2, 1.0, metric="mean", std=1.0))


def test_t_size_for_huge_effect_is_the_one_df_floor():
    # With d / sigma = 50 even one degree of freedom has the power; the size is that floor.
    plan = sample_size_means(50.0, 1.0, use_t=True)
    assert plan.per_variant_exact == pytest.approx(1.5, rel=1e-15)
    assert plan.per_variant == 2


# --------------------------------------------------------------------------- ratio metrics


def _ratio_data(seed: int = 7, n: int = 2_000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sessions = rng.poisson(3.0, n) + 1.0
    clicks = rng.binomial(sessions.astype(int), 0.2).astype(float) + rng.normal(0, 0.1, n)
    return clicks, sessions


def test_ratio_unit_std_is_delta_method_linearisation():
    clicks, sessions = _ratio_data()
    statistic = RatioStatistic.from_values(clicks, sessions)
    ratio_estimate = clicks.sum() / sessions.sum()
    linearised = (clicks - ratio_estimate * sessions) / sessions.mean()
    expected_std = float(np.std(linearised, ddof=1))

    plan = sample_size_ratio(0.05, statistic=statistic, relative=True)
    assert plan.std == pytest.approx(expected_std, rel=REL)
    assert plan.baseline == pytest.approx(ratio_estimate, rel=1e-15)
    assert plan.test == "delta-z"
    expected = normal_sample_size_one_tail(0.05 * ratio_estimate, 0.8, 0.025, std_null=expected_std * math.sqrt(2))
    assert plan.per_variant_exact == pytest.approx(expected, rel=REL)
    direct = sample_size_ratio(0.05, unit_std=expected_std, baseline_ratio=ratio_estimate, relative=True)
    assert direct.per_variant_exact == pytest.approx(plan.per_variant_exact, rel=REL)
    generic = plan_sample_size("ratio", 0.05, statistic=statistic, relative=True)
    assert generic == plan
    n = plan.per_variant_exact
    assert minimum_detectable_effect(n, metric="ratio", statistic=statistic, relative=True) == pytest.approx(
        0.05, rel=REL
    )
    achieved = power_at(n, 0.05, metric="ratio", statistic=statistic, relative=True, alternative="greater", alpha=0.025)
    assert achieved == pytest.approx(0.8, rel=REL)


def test_ratio_t_option():
    plan = sample_size_ratio(0.02, unit_std=0.3, use_t=True)
    assert plan.test == "delta-t"
    assert plan.per_variant_exact == pytest.approx(
        sample_size_means(0.02, 0.3, use_t=True).per_variant_exact, rel=1e-15
    )


@pytest.mark.parametrize(
    ("statistic", "code"),
    [
        (RatioStatistic.from_values([], []), ErrorCode.EMPTY_GROUP),
        (RatioStatistic.from_values([1.0], [2.0]), ErrorCode.TOO_FEW_UNITS),
        (RatioStatistic.from_values([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]), ErrorCode.ZERO_DENOMINATOR),
        (RatioStatistic.from_values([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]), ErrorCode.ZERO_VARIANCE),
    ],
)
def test_ratio_degenerate_history_gives_error_code(statistic, code):
    plan = sample_size_ratio(0.1, statistic=statistic, relative=True)
    assert plan.error_code is code
    assert plan.error_message
    assert plan.per_variant == 0
    assert plan.total == 0
    assert math.isnan(plan.per_variant_exact)
    assert plan.durations == ()
    assert plan.to_dict()["error_code"] == str(code)
    assert math.isnan(minimum_detectable_effect(100, metric="ratio", statistic=statistic))
    assert math.isnan(power_at(100, 0.1, metric="ratio", statistic=statistic))


def test_ratio_zero_ratio_relative_is_error_code():
    statistic = RatioStatistic.from_values([0.0, 0.0, 0.0], [1.0, 2.0, 3.0])
    assert sample_size_ratio(0.1, statistic=statistic, relative=True).error_code is ErrorCode.ZERO_VARIANCE
    statistic = RatioStatistic.from_values([1.0, -1.0, 0.0], [1.0, 2.0, 3.0])
    assert sample_size_ratio(0.1, statistic=statistic, relative=True).error_code is ErrorCode.ZERO_CONTROL_MEAN
    assert sample_size_ratio(0.1, statistic=statistic).error_code is None


# --------------------------------------------------------------------------- k variants, CUPED, durations


def test_bonferroni_k_variants():
    plan = sample_size_proportions(0.15, 0.10, variants=4, ratio=2.0)
    assert plan.comparison_alpha == pytest.approx(0.05 / 3, rel=1e-15)
    expected = _sm_size_proportions(0.15, 0.015, power=0.8, ratio=2.0, alpha=0.05 / 3, alternative="two-sided")
    assert plan.per_variant_exact == pytest.approx(expected, rel=REL)
    assert plan.treatment_per_variant == math.ceil(2 * expected)
    assert plan.total == plan.per_variant + 3 * plan.treatment_per_variant
    assert plan.total_exact == pytest.approx(expected * (1 + 3 * 2.0), rel=1e-15)

    uncorrected = sample_size_proportions(0.15, 0.10, variants=4, correction="none")
    assert uncorrected.per_variant == 9257
    assert uncorrected.total == 4 * 9257
    assert uncorrected.comparison_alpha == 0.05
    assert comparison_alpha(0.05, variants=2) == 0.05
    assert comparison_alpha(0.1, variants=5, correction="none") == 0.1

    mean_plan = sample_size_means(0.1, 1.0, variants=3)
    assert mean_plan.per_variant_exact == pytest.approx(sample_size_means(0.1, 1.0, alpha=0.025).per_variant_exact)
    assert power_at(mean_plan.per_variant_exact, 0.1, metric="mean", std=1.0, variants=3) == pytest.approx(
        NormalIndPower().power(0.1, mean_plan.per_variant_exact, 0.025), rel=REL
    )


@pytest.mark.parametrize("reduction", [0.0, 0.3, 0.75])
def test_cuped_scaling(reduction):
    factor = 1 - reduction
    base = sample_size_proportions(0.1, 0.05)
    reduced = sample_size_proportions(0.1, 0.05, variance_reduction=reduction)
    assert reduced.per_variant_exact == pytest.approx(factor * base.per_variant_exact, rel=1e-12)
    assert reduced.variance_reduction == reduction

    means = sample_size_means(0.2, 3.0, ratio=1.7, variance_reduction=reduction)
    assert means.per_variant_exact == pytest.approx(
        factor * sample_size_means(0.2, 3.0, ratio=1.7).per_variant_exact, rel=1e-12
    )
    # Power with CUPED at n equals power without it at n / (1 - rho^2); the MDE shrinks by sqrt(1 - rho^2).
    got = power_at(500, 0.2, baseline=0.3, variance_reduction=reduction)
    assert got == pytest.approx(power_at(500 / factor, 0.2, baseline=0.3), rel=1e-12)
    mde = minimum_detectable_effect(500, metric="mean", std=3.0, variance_reduction=reduction)
    assert mde == pytest.approx(math.sqrt(factor) * minimum_detectable_effect(500, metric="mean", std=3.0), rel=1e-12)
    # The t-test: only the variance shrinks, the degrees of freedom follow n.
    t_plan = sample_size_means(0.2, 3.0, use_t=True, variance_reduction=reduction)
    es = 0.2 / (3.0 * math.sqrt(factor))
    assert TTestIndPower().power(es, t_plan.per_variant_exact, 0.05) == pytest.approx(0.8, abs=1e-11)


def test_duration_days():
    assert duration_days(18_514, 1_000) == 19
    assert duration_days(18_000, 1_000) == 18
    assert duration_days(0, 10) == 0
    assert duration_days(10, 2.5) == 4


def test_plan_durations_and_to_dict():
    plan = plan_sample_size("proportion", 0.10, baseline=0.15, daily_traffic=(750, 2_000.5))
    assert isinstance(plan, SampleSizePlan)
    assert plan.durations == ((750, math.ceil(18_514 / 750)), (2_000.5, math.ceil(18_514 / 2_000.5)))
    data = plan.to_dict()
    assert data["per_variant"] == 9257
    assert data["total"] == 18514
    assert data["durations"] == [{"daily_traffic": 750, "days": 25}, {"daily_traffic": 2_000.5, "days": 10}]
    assert {"per_variant_exact", "variants", "alpha", "power", "mde", "relative", "baseline"} <= data.keys()
    assert data["error_code"] is None
    assert plan == sample_size_proportions(0.15, 0.10, daily_traffic=(750, 2_000.5))
    assert [row[0] for row in sample_size_proportions(0.15, 0.1).durations] == list(DEFAULT_DAILY_TRAFFIC)
    means = plan_sample_size("mean", 0.05, std=2.0, baseline=10.0, relative=True)
    assert means.per_variant_exact == sample_size_means(0.5, 2.0).per_variant_exact
    assert means.baseline == 10.0
    assert means.std == 2.0


# --------------------------------------------------------------------------- invalid inputs


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: sample_size_proportions(0.0, 0.1), "baseline_rate == 0.0, must be > 0"),
        (lambda: sample_size_proportions(1.0, 0.1), "baseline_rate == 1.0, must be < 1"),
        (lambda: sample_size_proportions(0.1, 0.0), "mde == 0.0, must be > 0"),
        (lambda: sample_size_proportions(0.1, -0.1), "mde == -0.1, must be > 0"),
        (lambda: sample_size_proportions(0.6, 1.0), r"mde == 1.0 moves the baseline rate 0.6 to 1.2"),
        (lambda: sample_size_proportions(0.15, 0.2, relative=False, alternative="less"), "mde == 0.2 moves"),
        (lambda: sample_size_proportions(0.1, 0.1, alpha=0.0), "alpha == 0.0, must be > 0"),
        (lambda: sample_size_proportions(0.1, 0.1, alpha=1.5), "alpha == 1.5, must be < 1"),
        (lambda: sample_size_proportions(0.1, 0.1, power=1.0), "power == 1.0, must be < 1"),
        (lambda: sample_size_proportions(0.1, 0.1, power=0.02), r"power == 0.02, must be > alpha / 2 == 0.025"),
        (lambda: sample_size_means(1, 1, power=0.04, alternative="less"), r"power == 0.04, must be > alpha == 0.05"),
        (lambda: sample_size_proportions(0.1, 0.1, ratio=0), "ratio == 0, must be > 0"),
        (lambda: sample_size_proportions(0.1, 0.1, variants=1), "variants == 1, must be an integer >= 2"),
        (lambda: sample_size_proportions(0.1, 0.1, variants=2.5), "variants == 2.5"),
        (lambda: sample_size_proportions(0.1, 0.1, correction="holm"), "correction == 'holm'"),
        (lambda: sample_size_proportions(0.1, 0.1, variance_reduction=1.0), "variance_reduction == 1.0, must be < 1"),
        (lambda: sample_size_proportions(0.1, 0.1, variance_reduction=-0.1), "variance_reduction == -0.1"),
        (lambda: sample_size_proportions(0.1, 0.1, alternative="both"), "alternative == 'both'"),
        (lambda: sample_size_proportions(0.1, 0.1, daily_traffic=[100, 0]), "daily_traffic == 0, must be > 0"),
        (lambda: sample_size_means(0.1, 0.0), "std == 0.0, must be > 0"),
        (lambda: sample_size_means(0.1, 1.0, relative=True), "baseline_mean == None"),
        (lambda: sample_size_means(0.1, 1.0, baseline_mean=0.0, relative=True), "baseline_mean == 0.0"),
        (lambda: sample_size_ratio(0.1), "unit_std == None"),
        (lambda: sample_size_ratio(0.1, unit_std=-1.0), "unit_std == -1.0, must be > 0"),
        (
            lambda: sample_size_ratio(0.1, unit_std=1.0, statistic=RatioStatistic.from_values([1, 2], [1, 1])),
            "statistic and unit_std, not both",
        ),
        (lambda: plan_sample_size("count", 0.1), "metric == 'count'"),
        (lambda: plan_sample_size("proportion", 0.1), "baseline == None"),
        (lambda: plan_sample_size("proportion", 0.1, baseline=0.1, use_t=True), "use_t"),
        (lambda: plan_sample_size("mean", 0.1), "std == None"),
        (lambda: power_at(0, 0.1, baseline=0.1), "n_per_variant == 0, must be > 0"),
        (lambda: power_at(100, 0.0, baseline=0.1), "effect == 0.0, must be > 0"),
        (lambda: power_at(100, 9.0, baseline=0.2), "effect == 9.0 moves"),
        (lambda: minimum_detectable_effect(-5, baseline=0.1), "n_per_variant == -5"),
        (lambda: minimum_detectable_effect(100, baseline=0.1, power=0.01), "power == 0.01"),
        (lambda: duration_days(100, 0), "daily_traffic == 0, must be > 0"),
        (lambda: duration_days(-1, 10), "total_units == -1, must be >= 0"),
        (lambda: comparison_alpha(0.05, variants=0), "variants == 0"),
    ],
)
def test_invalid_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- calibration


def _pooled_z_reject(control: np.ndarray, treatment: np.ndarray, n_c: int, n_t: int, alpha: float) -> np.ndarray:
    p_c, p_t = control / n_c, treatment / n_t
    pooled = (control + treatment) / (n_c + n_t)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    return np.abs(p_t - p_c) / se > sps.norm.isf(alpha / 2)


def _within(rate: float, target: float, reps: int) -> bool:
    return abs(rate - target) <= 3 * math.sqrt(target * (1 - target) / reps)


@pytest.mark.slow
def test_calibration_power_and_false_positive_rate():
    reps = 20_000
    rng = np.random.default_rng(20_240_611)
    plan = sample_size_proportions(0.10, 0.20)
    n = plan.per_variant
    assert 3_000 < n < 5_000
    target = power_at(n, 0.20, baseline=0.10)
    control = rng.binomial(n, 0.10, size=reps)
    treatment = rng.binomial(n, 0.12, size=reps)
    rejected = _pooled_z_reject(control, treatment, n, n, 0.05)
    assert _within(float(rejected.mean()), target, reps)

    null_treatment = rng.binomial(n, 0.10, size=reps)
    false_positive = _pooled_z_reject(control, null_treatment, n, n, 0.05)
    assert _within(float(false_positive.mean()), 0.05, reps)


@pytest.mark.slow
def test_calibration_three_variants_unequal_ratio():
    # Two treatments with 1.5x control's units each, Bonferroni alpha / 2 per comparison.
    reps = 20_000
    rng = np.random.default_rng(99)
    plan = sample_size_proportions(0.10, 0.20, variants=3, ratio=1.5)
    n_c, n_t = plan.per_variant, plan.treatment_per_variant
    target = power_at(n_c, 0.20, baseline=0.10, variants=3, ratio=n_t / n_c)
    control = rng.binomial(n_c, 0.10, size=reps)
    treatment = rng.binomial(n_t, 0.12, size=reps)
    rejected = _pooled_z_reject(control, treatment, n_c, n_t, plan.comparison_alpha)
    assert _within(float(rejected.mean()), target, reps)

    # Family-wise error under the null: Bonferroni keeps it at or below alpha.
    nulls = rng.binomial(n_t, 0.10, size=(2, reps))
    any_rejected = _pooled_z_reject(control, nulls[0], n_c, n_t, 0.025) | _pooled_z_reject(
        control, nulls[1], n_c, n_t, 0.025
    )
    assert float(any_rejected.mean()) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)
