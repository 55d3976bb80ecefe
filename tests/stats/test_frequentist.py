"""Frequentist tests: cross-checks against scipy and statsmodels, golden values, invalid input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest
from statsmodels.stats.proportion import test_proportions_2indep as sm_test_proportions_2indep
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from splitlab.stats.frequentist import means_test, proportions_test, ratio_test, two_sample_test
from splitlab.stats.results import ErrorCode
from splitlab.stats.statistics import MeanStatistic, ProportionStatistic, RatioStatistic

REL = 1e-9


def _ttest_ci(x: np.ndarray, y: np.ndarray, alpha: float, alternative: str) -> tuple[float, float]:
    cm = CompareMeans(DescrStatsW(y), DescrStatsW(x))
    alt = {"two-sided": "two-sided", "greater": "larger", "less": "smaller"}[alternative]
    return cm.tconfint_diff(alpha=alpha, alternative=alt, usevar="unequal")


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_welch_matches_scipy_and_statsmodels(alternative: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.lognormal(1.0, 1.0, 400)
    y = rng.lognormal(1.05, 1.1, 550)
    result = means_test(MeanStatistic.from_values(x), MeanStatistic.from_values(y), alternative=alternative)
    reference = sps.ttest_ind(y, x, equal_var=False, alternative=alternative)
    assert result.test == "welch-t"
    assert result.p_value == pytest.approx(reference.pvalue, rel=REL)
    assert result.statistic == pytest.approx(reference.statistic, rel=REL)
    assert result.df == pytest.approx(reference.df, rel=REL)
    low, high = _ttest_ci(x, y, 0.05, alternative)
    for ours, theirs in zip(result.absolute_ci, (low, high), strict=True):
        assert ours == pytest.approx(theirs, rel=REL) or (math.isinf(ours) and math.isinf(theirs))


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_z_test_matches_statsmodels(alternative: str) -> None:
    rng = np.random.default_rng(7)
    x, y = rng.normal(10, 3, 2000), rng.normal(10.2, 4, 1500)
    result = means_test(MeanStatistic.from_values(x), MeanStatistic.from_values(y), test="z", alternative=alternative)
    cm = CompareMeans(DescrStatsW(y), DescrStatsW(x))
    alt = {"two-sided": "two-sided", "greater": "larger", "less": "smaller"}[alternative]
    stat, p = cm.ztest_ind(usevar="unequal", alternative=alt)
    assert result.p_value == pytest.approx(p, rel=REL)
    assert result.statistic == pytest.approx(stat, rel=REL)
    low, high = cm.zconfint_diff(alpha=0.05, alternative=alt, usevar="unequal")
    assert result.df is None
    finite = [(a, b) for a, b in zip(result.absolute_ci, (low, high), strict=True) if math.isfinite(a)]
    assert finite
    for ours, theirs in finite:
        assert ours == pytest.approx(theirs, rel=REL)


@pytest.mark.parametrize(
    ("alternative", "sm_alt"), [("two-sided", "two-sided"), ("greater", "larger"), ("less", "smaller")]
)
def test_pooled_z_matches_statsmodels(alternative: str, sm_alt: str) -> None:
    result = proportions_test(ProportionStatistic(5000, 600), ProportionStatistic(5200, 690), alternative=alternative)
    stat, p = proportions_ztest([690, 600], [5200, 5000], alternative=sm_alt)
    assert result.p_value == pytest.approx(p, rel=REL)
    assert result.statistic == pytest.approx(stat, rel=REL)
    low, high = confint_proportions_2indep(690, 5200, 600, 5000, method="wald", compare="diff")
    if alternative == "two-sided":
        assert result.absolute_ci == pytest.approx((low, high), rel=REL)


def test_wald_z_matches_statsmodels() -> None:
    result = proportions_test(ProportionStatistic(5000, 600), ProportionStatistic(5200, 690), test="wald-z")
    reference = sm_test_proportions_2indep(690, 5200, 600, 5000, method="wald", compare="diff")
    assert result.p_value == pytest.approx(reference.pvalue, rel=REL)
    assert result.statistic == pytest.approx(reference.statistic, rel=REL)


@pytest.mark.parametrize(
    ("alternative", "sp_alt"), [("two-sided", "two-sided"), ("greater", "greater"), ("less", "less")]
)
def test_fisher_matches_scipy_and_newcombe(alternative: str, sp_alt: str) -> None:
    control, treatment = ProportionStatistic(25, 3), ProportionStatistic(22, 9)
    result = proportions_test(control, treatment, test="fisher-exact", alternative=alternative)
    _, p = sps.fisher_exact([[9, 13], [3, 22]], alternative=sp_alt)
    assert result.p_value == pytest.approx(p, rel=REL)
    if alternative == "two-sided":
        low, high = confint_proportions_2indep(9, 22, 3, 25, method="newcomb", compare="diff")
        assert result.absolute_ci == pytest.approx((low, high), rel=REL)


def test_delta_relative_ci_golden() -> None:
    result = proportions_test(ProportionStatistic(1000, 100), ProportionStatistic(1000, 130))
    # r = 0.3; se^2 = p_t(1-p_t)/n / p_c^2 + p_t^2 p_c(1-p_c)/n / p_c^4, computed by hand.
    se = math.sqrt(0.13 * 0.87 / 1000 / 0.01 + 0.13**2 * 0.09 / 1000 / 0.1**4)
    assert result.relative_effect == pytest.approx(0.3, rel=REL)
    assert result.relative_ci == pytest.approx((0.3 - 1.959963984540054 * se, 0.3 + 1.959963984540054 * se), rel=REL)
    assert result.p_value == pytest.approx(0.035488450466474, rel=1e-9)


def test_log_relative_ci_is_asymmetric_and_positive() -> None:
    result = proportions_test(ProportionStatistic(200, 10), ProportionStatistic(200, 25), relative_ci="log")
    low, high = result.relative_ci
    se = math.sqrt((0.125 * 0.875 / 200) / 0.125**2 + (0.05 * 0.95 / 200) / 0.05**2)
    assert math.log1p(low) == pytest.approx(math.log(2.5) - 1.959963984540054 * se, rel=REL)
    assert math.log1p(high) == pytest.approx(math.log(2.5) + 1.959963984540054 * se, rel=REL)
    assert high - result.relative_effect > result.relative_effect - low


def _ratio_reference(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    """Delta method by linearisation on raw rows (an implementation independent of the moments)."""
    ratio = num.sum() / den.sum()
    linear = (num - ratio * den) / den.mean()
    return ratio, linear.var(ddof=1) / num.size


def test_ratio_delta_method_matches_linearisation() -> None:
    rng = np.random.default_rng(3)
    den_c, den_t = rng.poisson(3, 3000) + 1, rng.poisson(3, 3100) + 1
    num_c, num_t = rng.binomial(den_c, 0.2), rng.binomial(den_t, 0.23)
    result = ratio_test(RatioStatistic.from_values(num_c, den_c), RatioStatistic.from_values(num_t, den_t))
    rc, vc = _ratio_reference(num_c, den_c)
    rt, vt = _ratio_reference(num_t, den_t)
    z = (rt - rc) / math.sqrt(vc + vt)
    assert result.absolute_effect == pytest.approx(rt - rc, rel=REL)
    assert result.statistic == pytest.approx(z, rel=REL)
    assert result.p_value == pytest.approx(2 * sps.norm.sf(abs(z)), rel=REL)


def test_tea_tasting_cross_check_mean_and_ratio() -> None:
    tt = pytest.importorskip("tea_tasting")
    data = tt.make_users_data(rng=42, n_users=4000, return_type="pandas")
    groups = {v: data[data["variant"] == v] for v in (0, 1)}
    mean = tt.Mean("orders").analyze(data, control=0, treatment=1, variant="variant")
    ours = means_test(
        MeanStatistic.from_values(groups[0]["orders"]),
        MeanStatistic.from_values(groups[1]["orders"]),
        relative_ci="log",
    )
    assert ours.p_value == pytest.approx(mean.pvalue, rel=REL)
    assert ours.absolute_ci == pytest.approx((mean.effect_size_ci_lower, mean.effect_size_ci_upper), rel=REL)
    assert ours.relative_ci == pytest.approx((mean.rel_effect_size_ci_lower, mean.rel_effect_size_ci_upper), rel=REL)
    ratio = tt.RatioOfMeans("orders", "sessions").analyze(data, control=0, treatment=1, variant="variant")
    ours_ratio = ratio_test(
        RatioStatistic.from_values(groups[0]["orders"], groups[0]["sessions"]),
        RatioStatistic.from_values(groups[1]["orders"], groups[1]["sessions"]),
        test="delta-welch-t",
        relative_ci="log",
    )
    assert ours_ratio.p_value == pytest.approx(ratio.pvalue, rel=REL)
    assert ours_ratio.absolute_ci == pytest.approx((ratio.effect_size_ci_lower, ratio.effect_size_ci_upper), rel=REL)
    assert ours_ratio.relative_ci == pytest.approx(
        (ratio.rel_effect_size_ci_lower, ratio.rel_effect_size_ci_upper), rel=REL
    )


def test_non_inferiority_margin_absolute_and_relative() -> None:
    rng = np.random.default_rng(11)
    x, y = rng.normal(100, 20, 3000), rng.normal(99.5, 20, 3000)
    control, treatment = MeanStatistic.from_values(x), MeanStatistic.from_values(y)
    result = means_test(control, treatment, alternative="greater", margin=2.0)
    reference = sps.ttest_ind(y + 2.0, x, equal_var=False, alternative="greater")
    assert result.p_value == pytest.approx(reference.pvalue, rel=REL)
    plain = means_test(control, treatment, alternative="greater")
    assert result.p_value < plain.p_value
    relative = means_test(control, treatment, alternative="greater", margin=0.02, relative_margin=True)
    se = math.sqrt(treatment.variance / treatment.n / control.mean**2
                   + treatment.mean**2 * control.variance / control.n / control.mean**4)  # fmt: skip
    assert relative.statistic == pytest.approx((relative.relative_effect + 0.02) / se, rel=REL)


def test_one_sided_interval_has_infinite_end() -> None:
    result = proportions_test(ProportionStatistic(1000, 100), ProportionStatistic(1000, 130), alternative="less")
    assert math.isinf(result.absolute_ci[0])
    assert math.isfinite(result.absolute_ci[1])


def test_pooled_statistics_add_up() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=100), rng.normal(size=50)
    pooled = MeanStatistic.from_values(a) + MeanStatistic.from_values(b)
    assert pooled.variance == pytest.approx(np.var(np.concatenate([a, b]), ddof=1), rel=REL)
    row = {"n": 3, "sum": 6.0, "sum_sq": 14.0}
    assert MeanStatistic.from_row(row) == MeanStatistic.from_values([1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    ("control", "treatment", "code"),
    [
        (ProportionStatistic(0, 0), ProportionStatistic(10, 3), ErrorCode.EMPTY_GROUP),
        (ProportionStatistic(100, 100), ProportionStatistic(100, 100), ErrorCode.ZERO_VARIANCE),
        (ProportionStatistic(100, 0), ProportionStatistic(100, 0), ErrorCode.ZERO_VARIANCE),
        (MeanStatistic(1, 2.0, 4.0), MeanStatistic(5, 10.0, 30.0), ErrorCode.TOO_FEW_UNITS),
        (MeanStatistic(3, 6.0, 12.0), MeanStatistic(3, 9.0, 27.0), ErrorCode.ZERO_VARIANCE),
    ],
)
def test_degenerate_data_returns_error_code(control: object, treatment: object, code: ErrorCode) -> None:
    result = two_sample_test(control, treatment)  # type: ignore[arg-type]
    assert result.error_code == code
    assert result.error_message
    assert math.isnan(result.p_value)
    assert not result.significant


def test_zero_control_mean_keeps_absolute_result() -> None:
    result = means_test(MeanStatistic.from_values([0.0, 0.0, 1.0, -1.0]), MeanStatistic.from_values([1.0, 2.0, 3.0]))
    assert result.error_code == ErrorCode.ZERO_CONTROL_MEAN
    assert math.isfinite(result.p_value)
    assert math.isnan(result.relative_effect)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 1.5}, "alpha == 1.5, must be < 1"),
        ({"alpha": 0.0}, "alpha == 0.0, must be > 0"),
        ({"alternative": "bigger"}, "alternative"),
        ({"margin": -1.0}, "margin == -1.0, must be >= 0"),
        ({"margin": 1.0}, "one-sided"),
        ({"relative_ci": "exact"}, "relative_ci"),
        ({"test": "t"}, "test == 't'"),
    ],
)
def test_invalid_parameters_raise(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        means_test(MeanStatistic(10, 10.0, 20.0), MeanStatistic(10, 12.0, 25.0), **kwargs)  # type: ignore[arg-type]


def test_invalid_counts_and_kinds_raise() -> None:
    with pytest.raises(ValueError, match=r"treatment\.successes"):
        proportions_test(ProportionStatistic(10, 1), ProportionStatistic(10, 11))
    with pytest.raises(ValueError, match="fisher-exact"):
        proportions_test(ProportionStatistic(10, 1), ProportionStatistic(10, 5), test="fisher-exact",
                         alternative="greater", margin=0.1)  # fmt: skip
    with pytest.raises(TypeError, match="same kind"):
        two_sample_test(MeanStatistic(10, 10.0, 20.0), ProportionStatistic(10, 1))
    with pytest.raises(ValueError, match="0 or 1"):
        ProportionStatistic.from_values([0, 1, 2])
