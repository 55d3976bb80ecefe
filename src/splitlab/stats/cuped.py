"""CUPED: regression adjustment with a pre-exposure covariate and a pooled theta.

For a metric ``Y`` (a mean, or a ratio of means linearised by the delta method) and its covariate
``X`` measured before exposure, each group's estimate is adjusted as

    Y_adj_g = Y_g - theta * (X_g - X_pooled),    theta = Cov(Y, X) / Var(X)

with ``theta`` and ``X_pooled`` computed on control and treatment pooled, so one theta serves
both groups and the adjustment cannot create an effect. The variance of the adjusted estimate is

    Var(Y_adj_g) = (Var(Y) - 2 theta Cov(Y, X) + theta^2 Var(X)) / n_g

with the variances and covariance of the linearised per-unit values within group ``g``. For a
ratio metric the linearised values are ``(num - R den) / mean(den)`` (delta method), which is
how CUPED extends to ratio metrics.

References:
    Deng, A., Xu, Y., Kohavi, R., Walker, T. (2013). Improving the Sensitivity of Online
    Controlled Experiments by Utilizing Pre-Experiment Data. WSDM. Eq. (3)-(5).
    Deng, A., Knoblich, U., Lu, J. (2018). Applying the Delta Method in Metric Analytics. KDD,
    section 3.3 (CUPED for ratio metrics).
"""

from __future__ import annotations

import math

from splitlab.stats._validation import check_choice
from splitlab.stats.frequentist import MEAN_TESTS, RATIO_TESTS, GroupEstimate, compare_estimates
from splitlab.stats.results import EffectResult
from splitlab.stats.statistics import CovariateStatistic, RatioStatistic

__all__ = ["cuped_estimates", "cuped_test", "pooled_theta"]


def _moments(statistic: CovariateStatistic) -> tuple[float, float, float, float, float]:
    """Metric estimate, covariate estimate, Var(Y), Var(X), Cov(Y, X) of the linearised values."""
    metric, covariate = statistic.metric.linearize(), statistic.covariate.linearize()
    cross = float(metric.gradient @ statistic.cross_covariance() @ covariate.gradient)
    return metric.estimate, covariate.estimate, metric.unit_variance, covariate.unit_variance, cross


def pooled_theta(control: CovariateStatistic, treatment: CovariateStatistic) -> float:
    """The CUPED coefficient ``Cov(Y, X) / Var(X)`` on both groups pooled (0 if Var(X) is 0).

    Example:
        >>> c = CovariateStatistic.from_values([1.0, 2.0, 4.0], [1.0, 2.0, 3.0])
        >>> t = CovariateStatistic.from_values([2.0, 3.0, 5.0], [1.0, 2.0, 3.0])
        >>> round(pooled_theta(c, t), 6)
        1.5
    """
    _, _, _, var_x, cov_xy = _moments(control + treatment)
    return cov_xy / var_x if var_x > 0 and math.isfinite(cov_xy) else 0.0


def _adjusted(statistic: CovariateStatistic, theta: float, pooled_covariate: float) -> GroupEstimate:
    metric, covariate, var_y, var_x, cov_xy = _moments(statistic)
    n = statistic.n
    unit_variance = var_y - 2 * theta * cov_xy + theta * theta * var_x
    return GroupEstimate(
        metric - theta * (covariate - pooled_covariate),
        max(unit_variance, 0.0) / n if n > 0 else math.nan,
        n,
    )


def cuped_estimates(control: CovariateStatistic, treatment: CovariateStatistic) -> tuple[GroupEstimate, GroupEstimate]:
    """Adjusted estimates of both groups with the variances of those estimates (pooled theta)."""
    theta = pooled_theta(control, treatment)
    pooled_covariate = (control + treatment).covariate.linearize().estimate
    return _adjusted(control, theta, pooled_covariate), _adjusted(treatment, theta, pooled_covariate)


def cuped_test(
    control: CovariateStatistic,
    treatment: CovariateStatistic,
    *,
    test: str | None = None,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    margin: float = 0.0,
    relative_margin: bool = False,
    relative_ci: str = "delta",
) -> EffectResult:
    """Two-sample test of a CUPED-adjusted mean or ratio metric.

    Args:
        control, treatment: the metric with its covariate, per group.
        test: ``welch-t`` (default for means and proportions) or ``z``; for ratio metrics
            ``delta-z`` (default) or ``delta-welch-t``.
        alpha, alternative, margin, relative_margin, relative_ci: as in
            :func:`splitlab.stats.frequentist.compare_estimates`.

    The relative effect divides by the adjusted control mean, whose expectation equals the
    unadjusted one because the pooled covariate mean is subtracted.
    """
    is_ratio = isinstance(control.metric, RatioStatistic)
    tests = RATIO_TESTS if is_ratio else MEAN_TESTS
    name = check_choice("test", test or tests[0], tests)
    adjusted_control, adjusted_treatment = cuped_estimates(control, treatment)
    return compare_estimates(
        adjusted_control,
        adjusted_treatment,
        test=name,
        use_t=name in ("welch-t", "delta-welch-t"),
        alpha=alpha,
        alternative=alternative,
        margin=margin,
        relative_margin=relative_margin,
        relative_ci=relative_ci,
        cuped=True,
    )
