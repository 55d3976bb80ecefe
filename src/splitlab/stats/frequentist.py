"""Frequentist two-sample tests on sufficient statistics.

Every test is named: proportions (``pooled-z`` default, ``wald-z``, ``fisher-exact``), means
(``welch-t`` default, ``z``) and ratio metrics (``delta-z`` default, ``delta-welch-t``). Each gives
the absolute effect and the relative effect with CIs, a p-value for a two-sided or one-sided
alternative, and an optional non-inferiority margin.

Conventions:
    * The p-value tests the absolute difference (or the relative one when the margin is relative),
      so ``p < alpha`` agrees with the absolute CI excluding the null value.
    * The relative CI uses the delta method by default (Deng et al. 2018, eq. 4), or a CI on
      ``log(t / c)`` mapped back with ``exp(.) - 1`` (``relative_ci="log"``).
    * For the pooled z-test the statistic uses the pooled variance under the null of equal
      proportions, the CI the unpooled (Wald) standard error, as statsmodels does.

References:
    Welch, B. L. (1947). The generalization of Student's problem. Biometrika 34, eq. (8)-(9).
    Agresti, A. (2013). Categorical Data Analysis, 3rd ed., sections 1.4, 3.1 (z-tests, Wald CI).
    Newcombe, R. G. (1998). Interval estimation for the difference between independent
    proportions. Statistics in Medicine 17, method 10.
    Deng, A., Knoblich, U., Lu, J. (2018). Applying the Delta Method in Metric Analytics. KDD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps

from splitlab.stats._validation import check_alternative, check_choice, check_positive, check_probability
from splitlab.stats.results import NAN_INTERVAL, EffectResult, ErrorCode, Interval
from splitlab.stats.statistics import MeanStatistic, MetricStatistic, ProportionStatistic, RatioStatistic

PROPORTION_TESTS = ("pooled-z", "wald-z", "fisher-exact")
MEAN_TESTS = ("welch-t", "z")
RATIO_TESTS = ("delta-z", "delta-welch-t")
RELATIVE_CI_METHODS = ("delta", "log")
_SCIPY_ALTERNATIVES: dict[str, Literal["two-sided", "less", "greater"]] = {
    "two-sided": "two-sided",
    "less": "less",
    "greater": "greater",
}

__all__ = [
    "MEAN_TESTS",
    "PROPORTION_TESTS",
    "RATIO_TESTS",
    "GroupEstimate",
    "compare_estimates",
    "estimate",
    "means_test",
    "proportions_test",
    "ratio_test",
    "two_sample_test",
]


@dataclass(frozen=True, slots=True)
class GroupEstimate:
    """One group's estimate with the variance of that estimate and its degrees of freedom."""

    mean: float
    variance: float
    n: int

    @property
    def df(self) -> float:
        """Degrees of freedom of the group's variance estimate (Welch-Satterthwaite input)."""
        return float(self.n - 1)


def estimate(statistic: MetricStatistic) -> GroupEstimate:
    """The estimate of a statistic and the delta-method variance of that estimate."""
    if isinstance(statistic, ProportionStatistic):
        n = statistic.n
        return GroupEstimate(statistic.mean, statistic.variance / n if n > 0 else math.nan, n)
    lin = statistic.linearize()
    return GroupEstimate(lin.estimate, lin.unit_variance / lin.n if lin.n > 0 else math.nan, lin.n)


def _critical(alpha: float, df: float | None, *, two_sided: bool) -> float:
    q = 1 - alpha / 2 if two_sided else 1 - alpha
    return float(sps.norm.ppf(q) if df is None else sps.t.ppf(q, df))


def _interval(center: float, se: float, crit: float, alternative: str) -> Interval:
    if alternative == "greater":
        return (center - crit * se, math.inf)
    if alternative == "less":
        return (-math.inf, center + crit * se)
    return (center - crit * se, center + crit * se)


def _p_value(statistic: float, df: float | None, alternative: str) -> float:
    # sps.t.sf(x, df), not sps.t(df).sf(x): freezing a distribution costs ~1.6 ms, the call microseconds.
    args = () if df is None else (df,)
    dist = sps.norm if df is None else sps.t
    if alternative == "greater":
        return float(dist.sf(statistic, *args))
    if alternative == "less":
        return float(dist.cdf(statistic, *args))
    return float(min(1.0, 2 * dist.sf(abs(statistic), *args)))


def _null_value(alternative: str, margin: float) -> float:
    """Non-inferiority: H0 is effect <= -margin (greater) or effect >= margin (less)."""
    return -margin if alternative == "greater" else margin if alternative == "less" else 0.0


def _relative(
    control: GroupEstimate, treatment: GroupEstimate, *, method: str, use_t: bool, alpha: float, alternative: str
) -> tuple[float, Interval, float, float | None, float | None, ErrorCode | None]:
    """Relative effect, its CI, the delta-method standard error of ``t / c - 1``, its df, the CI's df.

    Each scale gets its own Welch-Satterthwaite df, from the two variance components of that
    scale (the delta-method terms, or the log-scale terms ``v / mean^2``), as tea-tasting does.
    """
    c, t = control.mean, treatment.mean
    if c == 0:
        return math.nan, NAN_INTERVAL, math.nan, None, None, ErrorCode.ZERO_CONTROL_MEAN
    effect = t / c - 1
    delta_c = GroupEstimate(c, t**2 * control.variance / c**4, control.n)
    delta_t = GroupEstimate(t, treatment.variance / c**2, treatment.n)
    se = math.sqrt(delta_c.variance + delta_t.variance)
    delta_df = _welch_df(delta_c, delta_t) if use_t else None
    if method == "delta":
        crit = _critical(alpha, delta_df, two_sided=alternative == "two-sided")
        return effect, _interval(effect, se, crit, alternative), se, delta_df, delta_df, None
    if c < 0 or t <= 0:
        return effect, NAN_INTERVAL, se, delta_df, None, ErrorCode.NONPOSITIVE_MEAN
    log_c = GroupEstimate(c, control.variance / c**2, control.n)
    log_t = GroupEstimate(t, treatment.variance / t**2, treatment.n)
    df = _welch_df(log_c, log_t) if use_t else None
    crit = _critical(alpha, df, two_sided=alternative == "two-sided")
    log_se = math.sqrt(log_c.variance + log_t.variance)
    low, high = _interval(math.log(t / c), log_se, crit, alternative)
    return effect, (math.expm1(low), math.expm1(high)), se, delta_df, df, None


def _welch_df(control: GroupEstimate, treatment: GroupEstimate) -> float:
    """Welch-Satterthwaite degrees of freedom (Welch 1947, eq. 9)."""
    numerator = (control.variance + treatment.variance) ** 2
    denominator = control.variance**2 / control.df + treatment.variance**2 / treatment.df
    return numerator / denominator if denominator > 0 else math.inf


def _check_common(alpha: float, alternative: str, margin: float, relative_ci: str) -> None:
    check_probability("alpha", alpha)
    check_alternative(alternative)
    check_positive("margin", margin, allow_zero=True)
    check_choice("relative_ci", relative_ci, RELATIVE_CI_METHODS)
    if margin > 0 and alternative == "two-sided":
        msg = "margin > 0 needs a one-sided alternative ('greater' or 'less'), got 'two-sided'"
        raise ValueError(msg)


def compare_estimates(
    control: GroupEstimate,
    treatment: GroupEstimate,
    *,
    test: str,
    use_t: bool,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    margin: float = 0.0,
    relative_margin: bool = False,
    relative_ci: str = "delta",
    null_se: float | None = None,
    cuped: bool = False,
) -> EffectResult:
    """Compare two group estimates with a z- or Welch t-test.

    Args:
        control, treatment: estimates with the variance of each estimate.
        test: the name recorded in the result.
        use_t: Welch t with Welch-Satterthwaite df instead of the normal distribution.
        alpha: level of the CIs, in (0, 1).
        alternative: ``two-sided``, ``greater`` (treatment higher) or ``less``.
        margin: non-inferiority margin (>= 0), absolute unless ``relative_margin``.
        relative_margin: the margin is a share of the control mean; the test then runs on the
            relative effect with its delta-method standard error.
        relative_ci: ``delta`` or ``log``.
        null_se: standard error of the difference under the null, when it differs from the
            unpooled one (pooled z-test); used for the statistic only.
        cuped: recorded in the result.
    """
    _check_common(alpha, alternative, margin, relative_ci)

    def failed(code: ErrorCode, message: str) -> EffectResult:
        return EffectResult(
            test, alternative, alpha, control.mean, treatment.mean, control.n, treatment.n,
            treatment.mean - control.mean, NAN_INTERVAL, math.nan, NAN_INTERVAL, relative_ci,
            math.nan, math.nan, None, margin, relative_margin, cuped, None, None, code, message,
        )  # fmt: skip

    if control.n == 0 or treatment.n == 0:
        return failed(ErrorCode.EMPTY_GROUP, "a group has no units")
    if use_t and (control.n < 2 or treatment.n < 2):
        return failed(ErrorCode.TOO_FEW_UNITS, "a t-test needs at least 2 units per group")
    if math.isnan(control.mean) or math.isnan(treatment.mean):
        return failed(ErrorCode.ZERO_DENOMINATOR, "a ratio's denominator sums to 0 in a group")
    se = math.sqrt(control.variance + treatment.variance)
    if not se > 0:
        return failed(ErrorCode.ZERO_VARIANCE, "both groups have zero variance; no test is possible")

    df = _welch_df(control, treatment) if use_t else None
    two_sided = alternative == "two-sided"
    crit = _critical(alpha, df, two_sided=two_sided)
    effect = treatment.mean - control.mean
    absolute_ci = _interval(effect, se, crit, alternative)
    relative_effect, rel_ci, relative_se, relative_test_df, relative_ci_df, error = _relative(
        control, treatment, method=relative_ci, use_t=use_t, alpha=alpha, alternative=alternative
    )

    null = _null_value(alternative, margin)
    test_df = df
    if relative_margin and margin > 0:
        statistic = (relative_effect - null) / relative_se if relative_se > 0 else math.nan
        test_df = relative_test_df
    else:
        statistic = (effect - null) / (null_se if null_se is not None and margin == 0 else se)
    p_value = _p_value(statistic, test_df, alternative) if not math.isnan(statistic) else math.nan
    message = None if error is None else _ERROR_MESSAGES[error]
    return EffectResult(
        test, alternative, alpha, control.mean, treatment.mean, control.n, treatment.n, effect,
        absolute_ci, relative_effect, rel_ci, relative_ci, statistic, p_value, df, margin,
        relative_margin, cuped, None, None, error, message, relative_ci_df,
    )  # fmt: skip


_ERROR_MESSAGES = {
    ErrorCode.ZERO_CONTROL_MEAN: "the control mean is 0, so the relative effect is undefined",
    ErrorCode.NONPOSITIVE_MEAN: "a log-scale relative CI needs positive means in both groups",
}


def proportions_test(
    control: ProportionStatistic,
    treatment: ProportionStatistic,
    *,
    test: str = "pooled-z",
    alpha: float = 0.05,
    alternative: str = "two-sided",
    margin: float = 0.0,
    relative_margin: bool = False,
    relative_ci: str = "delta",
) -> EffectResult:
    """Two-sample test of proportions.

    ``pooled-z`` (default) uses the pooled variance ``p(1-p)(1/n_c + 1/n_t)`` for the statistic
    (Agresti 2013, eq. 3.1 context; statsmodels ``proportions_ztest``) and the unpooled Wald
    standard error for the CI; with a margin the statistic uses the unpooled error, since the
    pooled one only holds under equality. ``wald-z`` uses the unpooled error throughout.
    ``fisher-exact`` gives Fisher's conditional exact p-value (no margin) and Newcombe's hybrid
    score interval for the difference, which keeps its coverage at small counts.

    Example:
        >>> r = proportions_test(ProportionStatistic(1000, 100), ProportionStatistic(1000, 130))
        >>> round(r.p_value, 4)
        0.0355
    """
    check_choice("test", test, PROPORTION_TESTS)
    for name, stat in (("control", control), ("treatment", treatment)):
        if not 0 <= stat.successes <= stat.n:
            msg = f"{name}.successes == {stat.successes}, must be between 0 and {name}.n == {stat.n}"
            raise ValueError(msg)
    c, t = estimate(control), estimate(treatment)
    if test == "fisher-exact":
        return _fisher(control, treatment, c, t, alpha=alpha, alternative=alternative, margin=margin,
                       relative_margin=relative_margin, relative_ci=relative_ci)  # fmt: skip
    null_se = None
    if test == "pooled-z" and control.n > 0 and treatment.n > 0:
        pooled = (control + treatment).mean
        null_se = math.sqrt(pooled * (1 - pooled) * (1 / control.n + 1 / treatment.n))
        if null_se == 0:
            null_se = None
    return compare_estimates(
        c, t, test=test, use_t=False, alpha=alpha, alternative=alternative, margin=margin,
        relative_margin=relative_margin, relative_ci=relative_ci, null_se=null_se,
    )  # fmt: skip


def _wilson(successes: float, n: int, z: float) -> Interval:
    """Wilson score interval for one proportion (Newcombe 1998, method 3)."""
    p = successes / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (center - half, center + half)


def _fisher(
    control: ProportionStatistic,
    treatment: ProportionStatistic,
    c: GroupEstimate,
    t: GroupEstimate,
    *,
    alpha: float,
    alternative: str,
    margin: float,
    relative_margin: bool,
    relative_ci: str,
) -> EffectResult:
    if margin > 0:
        msg = "margin > 0 is not available with test='fisher-exact'; use 'wald-z'"
        raise ValueError(msg)
    # The Wald comparison supplies the relative effect and the shape of the result; the exact
    # p-value and the Newcombe interval then replace the asymptotic ones.
    base = compare_estimates(c, t, test="fisher-exact", use_t=False, alpha=alpha, alternative=alternative,
                             relative_ci=relative_ci)  # fmt: skip
    if base.error_code in (ErrorCode.EMPTY_GROUP,):
        return base
    table = np.array(
        [
            [round(treatment.successes), round(treatment.n - treatment.successes)],
            [round(control.successes), round(control.n - control.successes)],
        ],
        dtype=np.int64,
    )
    odds_ratio, p_value = sps.fisher_exact(table, alternative=_SCIPY_ALTERNATIVES[alternative])
    z = _critical(alpha, None, two_sided=alternative == "two-sided")
    lt, ut = _wilson(treatment.successes, treatment.n, z)
    lc, uc = _wilson(control.successes, control.n, z)
    pt, pc = treatment.mean, control.mean
    effect = pt - pc
    low = effect - math.sqrt((pt - lt) ** 2 + (uc - pc) ** 2)
    high = effect + math.sqrt((ut - pt) ** 2 + (pc - lc) ** 2)
    absolute_ci = (
        (low, math.inf) if alternative == "greater" else (-math.inf, high) if alternative == "less" else (low, high)
    )
    error_code = base.error_code if base.error_code is not ErrorCode.ZERO_VARIANCE else None
    return EffectResult(
        "fisher-exact", alternative, alpha, pc, pt, control.n, treatment.n, effect, absolute_ci,
        base.relative_effect, base.relative_ci, relative_ci, float(odds_ratio), float(p_value), None,
        0.0, relative_margin, False, None, None, error_code, None if error_code is None else base.error_message,
    )  # fmt: skip


def means_test(
    control: MeanStatistic,
    treatment: MeanStatistic,
    *,
    test: str = "welch-t",
    alpha: float = 0.05,
    alternative: str = "two-sided",
    margin: float = 0.0,
    relative_margin: bool = False,
    relative_ci: str = "delta",
) -> EffectResult:
    """Two-sample test of means: Welch's t (default) or a z-test with unpooled variances.

    Example:
        >>> a = MeanStatistic.from_values([1.0, 2.0, 3.0, 4.0])
        >>> b = MeanStatistic.from_values([2.0, 3.0, 4.0, 6.0])
        >>> round(means_test(a, b).p_value, 4)
        0.2903
    """
    check_choice("test", test, MEAN_TESTS)
    return compare_estimates(
        estimate(control), estimate(treatment), test=test, use_t=test == "welch-t", alpha=alpha,
        alternative=alternative, margin=margin, relative_margin=relative_margin, relative_ci=relative_ci,
    )  # fmt: skip


def ratio_test(
    control: RatioStatistic,
    treatment: RatioStatistic,
    *,
    test: str = "delta-z",
    alpha: float = 0.05,
    alternative: str = "two-sided",
    margin: float = 0.0,
    relative_margin: bool = False,
    relative_ci: str = "delta",
) -> EffectResult:
    """Two-sample test of a ratio of means by the delta method (Deng et al. 2018, eq. 2-3).

    ``Var(N/D) ~= (s_N^2 - 2 R s_ND + R^2 s_D^2) / (n mu_D^2)`` with ``R = mu_N / mu_D``.
    """
    check_choice("test", test, RATIO_TESTS)
    return compare_estimates(
        estimate(control), estimate(treatment), test=test, use_t=test == "delta-welch-t", alpha=alpha,
        alternative=alternative, margin=margin, relative_margin=relative_margin, relative_ci=relative_ci,
    )  # fmt: skip


def two_sample_test(
    control: MetricStatistic,
    treatment: MetricStatistic,
    *,
    test: str | None = None,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    margin: float = 0.0,
    relative_margin: bool = False,
    relative_ci: str = "delta",
) -> EffectResult:
    """Dispatch on the statistic type to the default (or named) test of its family."""
    options = {"alpha": alpha, "alternative": alternative, "margin": margin,
               "relative_margin": relative_margin, "relative_ci": relative_ci}  # fmt: skip
    if isinstance(control, ProportionStatistic) and isinstance(treatment, ProportionStatistic):
        return proportions_test(control, treatment, test=test or "pooled-z", **options)  # type: ignore[arg-type]
    if isinstance(control, RatioStatistic) and isinstance(treatment, RatioStatistic):
        return ratio_test(control, treatment, test=test or "delta-z", **options)  # type: ignore[arg-type]
    if isinstance(control, MeanStatistic) and isinstance(treatment, MeanStatistic):
        return means_test(control, treatment, test=test or "welch-t", **options)  # type: ignore[arg-type]
    kinds = f"{type(control).__name__} and {type(treatment).__name__}"
    msg = f"control and treatment must be statistics of the same kind, got {kinds}"
    raise TypeError(msg)
