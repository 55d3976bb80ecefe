"""CUPED: cross-checks against tea-tasting and a direct computation, calibration, degenerate data."""

from __future__ import annotations

import numpy as np
import pytest

from splitlab.stats.cuped import cuped_test, pooled_theta
from splitlab.stats.frequentist import means_test
from splitlab.stats.statistics import CovariateStatistic, MeanStatistic

REL = 1e-9


@pytest.fixture(scope="module")
def users() -> object:
    tt = pytest.importorskip("tea_tasting")
    return tt.make_users_data(rng=7, n_users=6000, covariates=True, return_type="pandas")


def _groups(data: object) -> dict[int, object]:
    return {v: data[data["variant"] == v] for v in (0, 1)}  # type: ignore[index]


def test_mean_cuped_matches_tea_tasting(users: object) -> None:
    import tea_tasting as tt

    reference = tt.Mean("orders", "orders_covariate").analyze(users, control=0, treatment=1, variant="variant")
    groups = _groups(users)
    stats = [CovariateStatistic.from_values(g["orders"], g["orders_covariate"]) for g in groups.values()]  # type: ignore[index]
    ours = cuped_test(stats[0], stats[1], relative_ci="log")
    assert ours.cuped
    assert ours.control_mean == pytest.approx(reference.control, rel=REL)
    assert ours.treatment_mean == pytest.approx(reference.treatment, rel=REL)
    assert ours.p_value == pytest.approx(reference.pvalue, rel=REL)
    assert ours.absolute_ci == pytest.approx((reference.effect_size_ci_lower, reference.effect_size_ci_upper), rel=REL)
    assert ours.relative_ci == pytest.approx(
        (reference.rel_effect_size_ci_lower, reference.rel_effect_size_ci_upper), rel=REL
    )


def test_ratio_cuped_matches_tea_tasting(users: object) -> None:
    import tea_tasting as tt

    metric = tt.RatioOfMeans("revenue", "sessions", "revenue_covariate", "sessions_covariate")
    reference = metric.analyze(users, control=0, treatment=1, variant="variant")
    stats = [
        CovariateStatistic.from_values((g["revenue"], g["sessions"]), (g["revenue_covariate"], g["sessions_covariate"]))  # type: ignore[index]
        for g in _groups(users).values()
    ]
    ours = cuped_test(stats[0], stats[1], test="delta-welch-t", relative_ci="log")
    assert ours.control_mean == pytest.approx(reference.control, rel=REL)
    assert ours.p_value == pytest.approx(reference.pvalue, rel=REL)
    assert ours.absolute_ci == pytest.approx((reference.effect_size_ci_lower, reference.effect_size_ci_upper), rel=REL)


def test_theta_is_the_pooled_ols_slope() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(10, 2, 1000)
    y = 3 + 0.8 * x + rng.normal(0, 1, 1000)
    control = CovariateStatistic.from_values(y[:500], x[:500])
    treatment = CovariateStatistic.from_values(y[500:] + 0.2, x[500:])
    slope = np.polyfit(x, np.concatenate([y[:500], y[500:] + 0.2]), 1)[0]
    assert pooled_theta(control, treatment) == pytest.approx(slope, rel=REL)


def test_cuped_reduces_variance_by_rho_squared() -> None:
    rng = np.random.default_rng(2)
    n = 20_000
    x = rng.normal(0, 1, 2 * n)
    y = 0.9 * x + rng.normal(0, np.sqrt(1 - 0.81), 2 * n)
    plain = means_test(MeanStatistic.from_values(y[:n]), MeanStatistic.from_values(y[n:]))
    adjusted = cuped_test(CovariateStatistic.from_values(y[:n], x[:n]), CovariateStatistic.from_values(y[n:], x[n:]))
    width_ratio = (adjusted.absolute_ci[1] - adjusted.absolute_ci[0]) / (plain.absolute_ci[1] - plain.absolute_ci[0])
    assert width_ratio == pytest.approx(np.sqrt(1 - 0.81), rel=0.03)


def test_aa_false_positive_rate_and_coverage() -> None:
    """A/A with a strong covariate: rejection rate at alpha within 3 binomial SE (seeded)."""
    rng = np.random.default_rng(20261122)
    reps, n, alpha = 2000, 400, 0.05
    rejections = 0
    covered = 0
    for _ in range(reps):
        x = rng.gamma(2.0, 5.0, 2 * n)
        y = 0.7 * x + rng.gamma(2.0, 2.0, 2 * n)
        y[n:] += 1.0
        result = cuped_test(CovariateStatistic.from_values(y[:n], x[:n]), CovariateStatistic.from_values(y[n:], x[n:]))
        low, high = result.absolute_ci
        covered += low <= 1.0 <= high
        shifted = cuped_test(
            CovariateStatistic.from_values(y[:n], x[:n]), CovariateStatistic.from_values(y[n:] - 1.0, x[n:])
        )
        rejections += shifted.p_value < alpha
    se = np.sqrt(alpha * (1 - alpha) / reps)
    assert abs(rejections / reps - alpha) < 3 * se
    assert abs(covered / reps - (1 - alpha)) < 3 * se


def test_constant_covariate_falls_back_to_unadjusted() -> None:
    y = np.arange(20, dtype=float)
    control = CovariateStatistic.from_values(y[:10], np.ones(10))
    treatment = CovariateStatistic.from_values(y[10:], np.ones(10))
    assert pooled_theta(control, treatment) == 0.0
    plain = means_test(MeanStatistic.from_values(y[:10]), MeanStatistic.from_values(y[10:]))
    assert cuped_test(control, treatment).p_value == pytest.approx(plain.p_value, rel=REL)


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match=r"metric\.n"):
        CovariateStatistic(MeanStatistic(3, 1.0, 1.0), MeanStatistic(4, 1.0, 1.0), ((1.0,),))
    with pytest.raises(ValueError, match="cross must have shape"):
        CovariateStatistic(MeanStatistic(3, 1.0, 1.0), MeanStatistic(3, 1.0, 1.0), ((1.0, 2.0),))
    stat = CovariateStatistic.from_values([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    with pytest.raises(ValueError, match="test == 'delta-z'"):
        cuped_test(stat, stat, test="delta-z")
