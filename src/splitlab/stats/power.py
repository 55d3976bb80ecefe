"""Power analysis for two-sample A/B tests: sample size, minimum detectable effect, power.

An experiment has ``variants`` arms: one control and ``variants - 1`` treatments, each treatment
with ``ratio`` times the control's units. Every treatment is compared with control at the
per-comparison level ``alpha / (variants - 1)`` (Bonferroni, the default) or ``alpha``
(``correction="none"``). Sizes are per arm: ``per_variant`` is the control's size, each treatment
gets ``ratio`` times that, and the experiment needs ``control + (variants - 1) * ratio * control``.

Metrics and the test each plan is made for:
    * ``"proportion"``: the pooled z-test (``pooled-z``). Its statistic uses the pooled proportion
      under the null and the unpooled variance under the alternative, so the sample size is
      ``n_c = (z_a * s0 + z_b * s1)^2 / d^2`` with, per control unit,
      ``s0^2 = pbar (1 - pbar) (1 + 1/r)``, ``pbar = (p0 + r p1) / (1 + r)`` and
      ``s1^2 = p0 (1 - p0) + p1 (1 - p1) / r``, where ``p0`` is the baseline (control) rate,
      ``p1 = p0 +- d`` the treatment rate and ``r = ratio``. This is exactly statsmodels'
      ``samplesize_proportions_2indep_onetail`` (its ``prop2`` is the baseline).
    * ``"mean"``: the two-sample z-test, ``n_c = (z_a + z_b)^2 sigma^2 (1 + 1/r) / d^2``; or, with
      ``use_t=True``, the equal-variance t-test, solving the noncentral-t power equation for
      ``n_c`` (statsmodels ``TTestIndPower``).
    * ``"ratio"``: a ratio of means (clicks per session) is a mean of its delta-method
      linearisation, so it plans as a mean with ``sigma^2`` the per-unit variance ``g' S g`` of
      the linearised metric (``delta-z``, or ``delta-t`` with ``use_t=True``).

Here ``z_a`` is the upper ``alpha_tail`` quantile of the standard normal (``alpha_tail`` is the
per-comparison level, halved for a two-sided test) and ``z_b`` the ``power`` quantile.

Conventions:
    * Effects are magnitudes (``mde > 0``, ``effect > 0``) in the direction of the alternative: an
      increase for ``"two-sided"`` and ``"greater"``, a decrease for ``"less"``. A relative effect
      is a share of the baseline, ``d = mde * |baseline|``.
    * The z sample size and minimum detectable effect use the near tail only (the standard
      closed form; for a two-sided test the far tail adds at most ``Phi(-2 z_a)`` of power, about
      1e-6 at the defaults). :func:`power_at` gives the exact power with both tails, so
      ``power_at(sample size) == power + far tail``. The t-based solutions use both tails.
    * ``variance_reduction`` is the expected CUPED reduction ``rho^2`` of the variance of the
      mean (``rho``: correlation of the metric with its pre-period covariate): every variance is
      multiplied by ``1 - variance_reduction``, so a z-based size scales by the same factor.

References:
    Fleiss, J. L., Tytun, A., Ury, H. K. (1980). A simple approximation for calculating sample
    sizes for comparing independent proportions. Biometrics 36, 343-346, eq. (1) without the
    continuity correction (pooled variance under H0, unpooled under H1, allocation ratio r).
    Chow, S.-C., Shao, J., Wang, H. (2008). Sample Size Calculations in Clinical Research, 2nd ed.,
    section 3.2.1 (two-sample z-test for means, unequal allocation).
    Cohen, J. (1988). Statistical Power Analysis for the Behavioral Sciences, 2nd ed., ch. 2
    (power of the two-sample t-test by the noncentral t distribution).
    Deng, A., Xu, Y., Kohavi, R., Walker, T. (2013). Improving the Sensitivity of Online
    Controlled Experiments by Utilizing Pre-Experiment Data (CUPED). WSDM, section 3.1:
    ``Var(Y_cv) = Var(Y) (1 - rho^2)``.
    Deng, A., Knoblich, U., Lu, J. (2018). Applying the Delta Method in Metric Analytics. KDD,
    eq. (2)-(4).
    Dunn, O. J. (1961). Multiple comparisons among means. JASA 56, 52-64 (Bonferroni).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from scipy import optimize, special
from scipy import stats as sps

from splitlab.stats._validation import check_alternative, check_choice, check_positive, check_probability
from splitlab.stats.results import ErrorCode
from splitlab.stats.statistics import RatioStatistic

METRICS = ("proportion", "mean", "ratio")
CORRECTIONS = ("bonferroni", "none")
DEFAULT_DAILY_TRAFFIC: tuple[int, ...] = (100, 500, 1_000, 5_000, 10_000)

__all__ = [
    "CORRECTIONS",
    "DEFAULT_DAILY_TRAFFIC",
    "METRICS",
    "SampleSizePlan",
    "comparison_alpha",
    "duration_days",
    "minimum_detectable_effect",
    "plan_sample_size",
    "power_at",
    "sample_size_means",
    "sample_size_proportions",
    "sample_size_ratio",
]

# Root finding to near machine precision: plans round trip (mde -> n -> mde) to ~1e-12.
_XTOL = 1e-14
_RTOL = 4 * sys.float_info.epsilon


@dataclass(frozen=True, slots=True)
class SampleSizePlan:
    """The units an A/B(/n) test needs, and how long it runs at given daily traffic.

    Attributes:
        metric: ``"proportion"``, ``"mean"`` or ``"ratio"``.
        test: the test planned for: ``"pooled-z"``, ``"z"``, ``"t"``, ``"delta-z"`` or ``"delta-t"``.
        per_variant: control units, ``ceil(per_variant_exact)``.
        per_variant_exact: control units before rounding.
        treatment_per_variant: units of each treatment, ``ceil(ratio * per_variant_exact)``.
        total: ``per_variant + (variants - 1) * treatment_per_variant``.
        total_exact: ``per_variant_exact * (1 + (variants - 1) * ratio)``.
        variants: arms, control included.
        ratio: units of each treatment per control unit.
        alpha: family-wise significance level.
        comparison_alpha: level of each treatment-vs-control test after the correction.
        correction: ``"bonferroni"`` or ``"none"``.
        power: power of each comparison at the minimum detectable effect.
        alternative: ``"two-sided"``, ``"greater"`` or ``"less"``.
        mde: the minimum detectable effect as given.
        relative: whether ``mde`` is a share of the baseline.
        absolute_mde: the effect on the metric's scale, ``mde * |baseline|`` when relative.
        baseline: control rate, mean or ratio (``None`` when not given).
        std: per-unit standard deviation used (``None`` for proportions), before variance reduction.
        variance_reduction: expected CUPED variance reduction ``rho^2``.
        durations: ``(daily_traffic, days)`` rows: days to reach ``total`` at that many units a day.
        error_code, error_message: set when historical data cannot give a plan; sizes are then 0.
    """

    metric: str
    test: str
    per_variant: int
    per_variant_exact: float
    treatment_per_variant: int
    total: int
    total_exact: float
    variants: int
    ratio: float
    alpha: float
    comparison_alpha: float
    correction: str
    power: float
    alternative: str
    mde: float
    relative: bool
    absolute_mde: float
    baseline: float | None
    std: float | None
    variance_reduction: float
    durations: tuple[tuple[float, int], ...]
    error_code: ErrorCode | None = None
    error_message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary; ``durations`` become ``[{"daily_traffic": ..., "days": ...}]``."""
        return {
            "metric": self.metric,
            "test": self.test,
            "per_variant": self.per_variant,
            "per_variant_exact": self.per_variant_exact,
            "treatment_per_variant": self.treatment_per_variant,
            "total": self.total,
            "total_exact": self.total_exact,
            "variants": self.variants,
            "ratio": self.ratio,
            "alpha": self.alpha,
            "comparison_alpha": self.comparison_alpha,
            "correction": self.correction,
            "power": self.power,
            "alternative": self.alternative,
            "mde": self.mde,
            "relative": self.relative,
            "absolute_mde": self.absolute_mde,
            "baseline": self.baseline,
            "std": self.std,
            "variance_reduction": self.variance_reduction,
            "durations": [{"daily_traffic": traffic, "days": days} for traffic, days in self.durations],
            "error_code": None if self.error_code is None else str(self.error_code),
            "error_message": self.error_message,
        }


# --------------------------------------------------------------------------- validation


def _check_variants(variants: int) -> int:
    if isinstance(variants, bool) or not isinstance(variants, int) or variants < 2:
        msg = f"variants == {variants!r}, must be an integer >= 2"
        raise ValueError(msg)
    return variants


def _check_finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"{name} == {value!r}, must be a finite number"
        raise ValueError(msg)
    return float(value)


def comparison_alpha(alpha: float, *, variants: int = 2, correction: str = "bonferroni") -> float:
    """Level of each treatment-vs-control test: ``alpha / (variants - 1)`` under Bonferroni.

    Example:
        >>> comparison_alpha(0.05, variants=3)
        0.025

    References:
        Dunn, O. J. (1961). Multiple comparisons among means. JASA 56, 52-64.
    """
    check_probability("alpha", alpha)
    _check_variants(variants)
    check_choice("correction", correction, CORRECTIONS)
    return alpha / (variants - 1) if correction == "bonferroni" else float(alpha)


@dataclass(frozen=True, slots=True)
class _Design:
    """A validated design: what the test looks like, whatever is being solved for.

    ``baseline_rate`` is set for proportions; ``std`` (per unit, before variance reduction) for
    means and ratios.
    """

    baseline_rate: float | None
    std: float
    ratio: float
    alpha: float
    alternative: str
    variance_factor: float
    use_t: bool

    @property
    def alpha_tail(self) -> float:
        return self.alpha / 2 if self.alternative == "two-sided" else self.alpha

    @property
    def sign(self) -> float:
        return -1.0 if self.alternative == "less" else 1.0

    def max_effect(self) -> float:
        """Largest effect magnitude that keeps the treatment rate inside [0, 1]."""
        if self.baseline_rate is None:
            return math.inf
        return self.baseline_rate if self.alternative == "less" else 1.0 - self.baseline_rate

    def stds(self, effect: float) -> tuple[float, float]:
        """Std of the difference in means times sqrt(n_control), under the null and the alternative."""
        r, factor = self.ratio, self.variance_factor
        if self.baseline_rate is None:
            s = self.std * math.sqrt((1 + 1 / r) * factor)
            return s, s
        p0 = self.baseline_rate
        p1 = p0 + self.sign * effect
        pooled = (p0 + r * p1) / (1 + r)
        null = math.sqrt(pooled * (1 - pooled) * (1 + 1 / r) * factor)
        alt = math.sqrt((p0 * (1 - p0) + p1 * (1 - p1) / r) * factor)
        return null, alt


def _design(
    metric: _Metric,
    *,
    alpha: float,
    power: float | None,
    ratio: float,
    alternative: str,
    variants: int,
    correction: str,
    variance_reduction: float,
    use_t: bool,
) -> _Design:
    level = comparison_alpha(alpha, variants=variants, correction=correction)
    check_alternative(alternative)
    check_positive("ratio", ratio)
    check_probability("variance_reduction", variance_reduction, open_low=False)
    if power is not None:
        check_probability("power", power)
        bound, label = (alpha / 2, "alpha / 2") if alternative == "two-sided" else (alpha, "alpha")
        if power <= bound:
            msg = f"power == {power}, must be > {label} == {bound} for a {alternative} test"
            raise ValueError(msg)
    baseline_rate = metric.baseline if metric.name == "proportion" else None
    std = 1.0 if metric.std is None else metric.std
    return _Design(baseline_rate, std, float(ratio), level, alternative, 1.0 - variance_reduction, use_t)


def _check_treatment_rate(name: str, value: float, baseline_rate: float, effect: float, alternative: str) -> None:
    direction, treatment = (
        ("decrease", baseline_rate - effect) if alternative == "less" else ("increase", baseline_rate + effect)
    )
    if not 0 < treatment < 1:
        msg = (
            f"{name} == {value} moves the baseline rate {baseline_rate} to {treatment} (a {alternative} test "
            f"plans for an {direction}); the treatment rate must stay inside (0, 1)"
        )
        raise ValueError(msg)


# --------------------------------------------------------------------------- core formulas


def _z(design: _Design, power: float) -> tuple[float, float]:
    return float(sps.norm.isf(design.alpha_tail)), float(-sps.norm.isf(power))


def _n_z(design: _Design, effect: float, power: float) -> float:
    """Near-tail closed form (statsmodels ``normal_sample_size_one_tail``)."""
    z_alpha, z_power = _z(design, power)
    null, alt = design.stds(effect)
    return (max(z_alpha * null + z_power * alt, 0.0) / effect) ** 2


def _t_power(design: _Design, n_control: float, effect: float) -> float:
    """Power of the equal-variance t-test by the noncentral t (statsmodels ``TTestIndPower.power``)."""
    r = design.ratio
    df = n_control * (1 + r) - 2
    noncentrality = design.sign * effect / (design.std * math.sqrt(design.variance_factor))
    noncentrality *= math.sqrt(1.0 / (1.0 / n_control + 1.0 / (r * n_control)))
    power = 0.0
    if design.alternative in ("two-sided", "greater"):
        power = 1 - _nct_cdf(float(sps.t.isf(design.alpha_tail, df)), df, noncentrality)
    if design.alternative in ("two-sided", "less"):
        power += _nct_cdf(float(sps.t.ppf(design.alpha_tail, df)), df, noncentrality)
    return power


def _nct_cdf(x: float, df: float, noncentrality: float) -> float:
    """Noncentral t CDF; the reflection ``1 - F(-x; df, -nc)`` where the direct series fails far in a tail."""
    value = float(special.nctdtr(df, noncentrality, x))
    if math.isnan(value):
        value = float(sps.nct.sf(-x, df, -noncentrality))
    return value


def _z_power(design: _Design, n_control: float, effect: float) -> float:
    """Power of the z-test with both tails (statsmodels ``normal_power_het``)."""
    null, alt = design.stds(effect)
    z_alpha = float(sps.norm.isf(design.alpha_tail))
    shift = design.sign * effect * math.sqrt(n_control) / alt
    power = 0.0
    if design.alternative in ("two-sided", "greater"):
        power = float(sps.norm.sf(z_alpha * null / alt - shift))
    if design.alternative in ("two-sided", "less"):
        power += float(sps.norm.cdf(-z_alpha * null / alt - shift))
    return power


def _power(design: _Design, n_control: float, effect: float) -> float:
    return _t_power(design, n_control, effect) if design.use_t else _z_power(design, n_control, effect)


def _expanding_root(func: Callable[[float], float], low: float, high: float) -> float:
    """Root of an increasing ``func`` above ``low``: double ``high`` until the sign changes."""
    for _ in range(200):
        if func(high) >= 0:
            return float(optimize.brentq(func, low, high, xtol=_XTOL, rtol=_RTOL))
        low, high = high, 2 * high
    return math.nan


def _min_t_size(ratio: float) -> float:
    """Control units at which the t-test has one degree of freedom, ``n (1 + r) - 2 = 1``."""
    return 3 / (1 + ratio)


def _sample_size(design: _Design, effect: float, power: float) -> float:
    n_z = _n_z(design, effect, power)
    if not design.use_t:
        return n_z
    # Search from df = 1 (the noncentral t is unreliable below); if even that n has the power, n is that floor.
    low = _min_t_size(design.ratio)
    if _t_power(design, low, effect) >= power:
        return low
    return _expanding_root(lambda n: _t_power(design, n, effect) - power, low, max(2 * n_z, 2 * low))


def _mde(design: _Design, n_control: float, power: float) -> float:
    """Absolute effect magnitude detectable with ``power`` (NaN when none inside the rate's range)."""
    z_alpha, z_power = _z(design, power)
    if design.use_t:
        if n_control < _min_t_size(design.ratio):
            return math.nan
        guess = (z_alpha + z_power) * design.stds(0.0)[0] / math.sqrt(n_control)
        return _expanding_root(lambda d: _t_power(design, n_control, d) - power, 0.0, 2 * guess)
    if design.baseline_rate is None:
        return (z_alpha + z_power) * design.stds(0.0)[0] / math.sqrt(n_control)

    def gap(effect: float) -> float:
        null, alt = design.stds(effect)
        return effect * math.sqrt(n_control) - (z_alpha * null + z_power * alt)

    high = design.max_effect()
    if gap(high) < 0:
        return math.nan
    return float(optimize.brentq(gap, 0.0, high, xtol=_XTOL, rtol=_RTOL))


# --------------------------------------------------------------------------- metric inputs


@dataclass(frozen=True, slots=True)
class _Metric:
    """A metric's planning inputs: baseline and per-unit std, or why the data cannot give them."""

    name: str
    test: str
    baseline: float | None
    std: float | None
    relative: bool
    error_code: ErrorCode | None = None
    error_message: str | None = None

    def absolute(self, effect: float) -> float:
        if self.relative and self.baseline is not None:
            return effect * abs(self.baseline)
        return effect


def _proportion_metric(baseline_rate: float, relative: bool, name: str = "baseline_rate") -> _Metric:
    check_probability(name, baseline_rate)
    return _Metric("proportion", "pooled-z", float(baseline_rate), None, relative)


def _mean_metric(
    std: float, baseline_mean: float | None, relative: bool, use_t: bool, names: tuple[str, str]
) -> _Metric:
    check_positive(names[0], std)
    if baseline_mean is not None:
        _check_finite(names[1], baseline_mean)
    if relative and (baseline_mean is None or baseline_mean == 0):
        msg = f"{names[1]} == {baseline_mean!r}, must be a nonzero number when relative=True"
        raise ValueError(msg)
    return _Metric("mean", "t" if use_t else "z", baseline_mean, float(std), relative)


def _ratio_metric(
    statistic: RatioStatistic | None,
    baseline_ratio: float | None,
    unit_std: float | None,
    relative: bool,
    use_t: bool,
    names: tuple[str, str],
) -> _Metric:
    test = "delta-t" if use_t else "delta-z"
    if statistic is not None and unit_std is not None:
        msg = f"give one of statistic and {names[0]}, not both"
        raise ValueError(msg)
    if statistic is None:
        if unit_std is None:
            msg = f"{names[0]} == None and statistic == None: give one of them"
            raise ValueError(msg)
        base = _mean_metric(unit_std, baseline_ratio, relative, use_t, names)
        return _Metric("ratio", test, base.baseline, base.std, relative)
    if not isinstance(statistic, RatioStatistic):
        msg = f"statistic must be a RatioStatistic, got {type(statistic).__name__}"
        raise TypeError(msg)
    if baseline_ratio is not None:
        _check_finite(names[1], baseline_ratio)
    baseline = statistic.mean if baseline_ratio is None else float(baseline_ratio)
    if relative and baseline_ratio == 0:
        msg = f"{names[1]} == 0, must be a nonzero number when relative=True"
        raise ValueError(msg)
    error = _statistic_error(statistic, baseline if relative else None)
    if error is not None:
        code, message = error
        return _Metric("ratio", test, baseline, math.nan, relative, code, message)
    return _Metric("ratio", test, baseline, math.sqrt(statistic.linearize().unit_variance), relative)


def _statistic_error(statistic: RatioStatistic, relative_baseline: float | None) -> tuple[ErrorCode, str] | None:
    """Why historical data cannot give a per-unit std (degenerate data is a result, not a raise)."""
    if statistic.n == 0:
        return ErrorCode.EMPTY_GROUP, "statistic has no units"
    if statistic.n < 2:
        return ErrorCode.TOO_FEW_UNITS, f"statistic has {statistic.n} unit; the variance needs at least 2"
    if statistic.denominator.sum == 0:
        return ErrorCode.ZERO_DENOMINATOR, "statistic's denominator sums to 0"
    variance = statistic.linearize().unit_variance
    if not variance > 0:
        return ErrorCode.ZERO_VARIANCE, f"statistic's linearised per-unit variance is {variance}"
    if relative_baseline is not None and relative_baseline == 0:
        return ErrorCode.ZERO_CONTROL_MEAN, "statistic's ratio is 0, so a relative effect is undefined"
    return None


def _metric(
    metric: str,
    *,
    baseline: float | None,
    std: float | None,
    statistic: RatioStatistic | None,
    relative: bool | None,
    use_t: bool,
) -> _Metric:
    """Resolve the inputs of the generic functions (``plan_sample_size``, ``power_at``, ...)."""
    check_choice("metric", metric, METRICS)
    is_relative = (metric == "proportion") if relative is None else relative
    if metric == "proportion":
        if std is not None or statistic is not None or use_t:
            msg = "std, statistic and use_t do not apply to metric 'proportion'"
            raise ValueError(msg)
        if baseline is None:
            msg = "baseline == None, must be the control rate in (0, 1) for metric 'proportion'"
            raise ValueError(msg)
        return _proportion_metric(baseline, is_relative, "baseline")
    if metric == "mean":
        if statistic is not None:
            msg = "statistic applies to metric 'ratio' only; give std (and baseline) for metric 'mean'"
            raise ValueError(msg)
        if std is None:
            msg = "std == None, must be the per-unit standard deviation (> 0) for metric 'mean'"
            raise ValueError(msg)
        return _mean_metric(std, baseline, is_relative, use_t, ("std", "baseline"))
    return _ratio_metric(statistic, baseline, std, is_relative, use_t, ("std", "baseline"))


# --------------------------------------------------------------------------- public API


def duration_days(total_units: float, daily_traffic: float) -> int:
    """Days to enrol ``total_units`` at ``daily_traffic`` units a day, rounded up.

    Example:
        >>> duration_days(18_514, 1_000)
        19
    """
    check_positive("total_units", total_units, allow_zero=True)
    check_positive("daily_traffic", daily_traffic)
    return math.ceil(total_units / daily_traffic)


def _plan(
    metric: _Metric,
    *,
    mde: float,
    alpha: float,
    power: float,
    ratio: float,
    alternative: str,
    variants: int,
    correction: str,
    variance_reduction: float,
    use_t: bool,
    daily_traffic: Sequence[float],
) -> SampleSizePlan:
    check_positive("mde", mde)
    traffic = tuple(daily_traffic)
    for value in traffic:
        check_positive("daily_traffic", value)
    design = _design(
        metric,
        alpha=alpha,
        power=power,
        ratio=ratio,
        alternative=alternative,
        variants=variants,
        correction=correction,
        variance_reduction=variance_reduction,
        use_t=use_t,
    )
    effect = metric.absolute(mde)
    if design.baseline_rate is not None:
        _check_treatment_rate("mde", mde, design.baseline_rate, effect, alternative)
    common: dict[str, Any] = {
        "metric": metric.name,
        "test": metric.test,
        "variants": variants,
        "ratio": float(ratio),
        "alpha": float(alpha),
        "comparison_alpha": design.alpha,
        "correction": correction,
        "power": float(power),
        "alternative": alternative,
        "mde": float(mde),
        "relative": metric.relative,
        "absolute_mde": effect,
        "baseline": metric.baseline,
        "std": metric.std,
        "variance_reduction": float(variance_reduction),
    }
    if metric.error_code is not None:
        return SampleSizePlan(
            per_variant=0,
            per_variant_exact=math.nan,
            treatment_per_variant=0,
            total=0,
            total_exact=math.nan,
            durations=(),
            error_code=metric.error_code,
            error_message=metric.error_message,
            **common,
        )
    exact = _sample_size(design, effect, power)
    per_variant = math.ceil(exact)
    treatment = math.ceil(ratio * exact)
    total = per_variant + (variants - 1) * treatment
    return SampleSizePlan(
        per_variant=per_variant,
        per_variant_exact=exact,
        treatment_per_variant=treatment,
        total=total,
        total_exact=exact * (1 + (variants - 1) * ratio),
        durations=tuple((value, duration_days(total, value)) for value in traffic),
        **common,
    )


def sample_size_proportions(
    baseline_rate: float,
    mde: float,
    *,
    relative: bool = True,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: str = "two-sided",
    variants: int = 2,
    correction: str = "bonferroni",
    variance_reduction: float = 0.0,
    daily_traffic: Sequence[float] = DEFAULT_DAILY_TRAFFIC,
) -> SampleSizePlan:
    """Units per arm for a pooled z-test of two proportions.

    ``n_c = (z_a sqrt(pbar (1 - pbar) (1 + 1/r)) + z_b sqrt(p0 (1 - p0) + p1 (1 - p1) / r))^2 / d^2``,
    scaled by ``1 - variance_reduction``; identical to statsmodels
    ``samplesize_proportions_2indep_onetail(diff=p1 - p0, prop2=p0, ratio=1/r) / r`` (statsmodels'
    first sample is the treatment).

    Args:
        baseline_rate: the control's conversion rate ``p0``, in (0, 1).
        mde: minimum detectable effect, > 0: a share of ``baseline_rate`` when ``relative`` (default),
            else in rate points. The treatment rate ``p1 = p0 +- d`` must stay inside (0, 1).
        relative: whether ``mde`` is relative to the baseline.
        alpha: family-wise significance level.
        power: power of each comparison at the MDE; > alpha / 2 (two-sided) or > alpha (one-sided).
        ratio: units of each treatment per control unit.
        alternative: ``"two-sided"`` (plans for an increase), ``"greater"`` or ``"less"`` (a decrease).
        variants: arms, control included.
        correction: ``"bonferroni"`` (alpha / (variants - 1) per comparison) or ``"none"``.
        variance_reduction: expected CUPED variance reduction ``rho^2``, in [0, 1).
        daily_traffic: units entering the experiment per day, for the ``durations`` rows.

    Returns:
        The plan; ``per_variant`` is the control's size.

    Example:
        >>> sample_size_proportions(0.15, 0.10).per_variant
        9257

    References:
        Fleiss, Tytun, Ury (1980), Biometrics 36, eq. (1) without continuity correction.
        Deng, Xu, Kohavi, Walker (2013), WSDM, section 3.1 (CUPED).
    """
    return _plan(
        _proportion_metric(baseline_rate, relative),
        mde=mde,
        alpha=alpha,
        power=power,
        ratio=ratio,
        alternative=alternative,
        variants=variants,
        correction=correction,
        variance_reduction=variance_reduction,
        use_t=False,
        daily_traffic=daily_traffic,
    )


def sample_size_means(
    mde: float,
    std: float,
    *,
    baseline_mean: float | None = None,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: str = "two-sided",
    variants: int = 2,
    correction: str = "bonferroni",
    variance_reduction: float = 0.0,
    use_t: bool = False,
    daily_traffic: Sequence[float] = DEFAULT_DAILY_TRAFFIC,
) -> SampleSizePlan:
    """Units per arm for a two-sample test of means.

    z-test (default): ``n_c = (z_a + z_b)^2 sigma^2 (1 - variance_reduction) (1 + 1/r) / d^2``.
    With ``use_t=True``: the smallest real ``n_c`` at which the equal-variance t-test with
    ``df = n_c (1 + r) - 2`` reaches ``power`` by the noncentral t (both tails), as statsmodels
    ``TTestIndPower.solve_power(effect_size=d / (sigma sqrt(1 - variance_reduction)), ratio=r)``.

    Args:
        mde: minimum detectable effect, > 0: in the metric's units, or a share of
            ``|baseline_mean|`` when ``relative``.
        std: per-unit standard deviation ``sigma`` of the metric (assumed equal in all arms).
        baseline_mean: the control's mean; required when ``relative``.
        relative: whether ``mde`` is relative to ``baseline_mean``.
        alpha: family-wise significance level.
        power: power of each comparison at the MDE; > alpha / 2 (two-sided) or > alpha (one-sided).
        ratio: units of each treatment per control unit.
        alternative: ``"two-sided"`` (plans for an increase), ``"greater"`` or ``"less"`` (a decrease).
        variants: arms, control included.
        correction: ``"bonferroni"`` (alpha / (variants - 1) per comparison) or ``"none"``.
        variance_reduction: expected CUPED variance reduction ``rho^2``, in [0, 1).
        use_t: plan for the (equal-variance) t-test instead of the z-test.
        daily_traffic: units entering the experiment per day, for the ``durations`` rows.

    Example:
        >>> sample_size_means(0.1, 1.0).per_variant
        1570

    References:
        Chow, Shao, Wang (2008), section 3.2.1; Cohen (1988), ch. 2 (noncentral t).
    """
    return _plan(
        _mean_metric(std, baseline_mean, relative, use_t, ("std", "baseline_mean")),
        mde=mde,
        alpha=alpha,
        power=power,
        ratio=ratio,
        alternative=alternative,
        variants=variants,
        correction=correction,
        variance_reduction=variance_reduction,
        use_t=use_t,
        daily_traffic=daily_traffic,
    )


def sample_size_ratio(
    mde: float,
    *,
    statistic: RatioStatistic | None = None,
    baseline_ratio: float | None = None,
    unit_std: float | None = None,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: str = "two-sided",
    variants: int = 2,
    correction: str = "bonferroni",
    variance_reduction: float = 0.0,
    use_t: bool = False,
    daily_traffic: Sequence[float] = DEFAULT_DAILY_TRAFFIC,
) -> SampleSizePlan:
    """Units per arm for a ratio metric (sum of numerators / sum of denominators).

    By the delta method the ratio estimate varies like a mean of the linearised per-unit values
    ``(x_i - R y_i) / mean(y)``, whose variance is ``g' S g`` with ``g = (1/mean(y), -mean(x)/mean(y)^2)``
    and ``S`` the covariance of (numerator, denominator). The plan is that of
    :func:`sample_size_means` with ``std = sqrt(g' S g)``.

    Args:
        mde: minimum detectable effect, > 0 (a share of the baseline ratio when ``relative``).
        statistic: historical data of the metric; gives ``unit_std`` and, unless given, ``baseline_ratio``.
        baseline_ratio: the control's ratio; required for a relative MDE without ``statistic``.
        unit_std: the per-unit std of the linearised metric, instead of ``statistic``.
        relative: whether ``mde`` is relative to the baseline ratio.
        alpha: family-wise significance level.
        power: power of each comparison at the MDE; > alpha / 2 (two-sided) or > alpha (one-sided).
        ratio: units of each treatment per control unit.
        alternative: ``"two-sided"`` (plans for an increase), ``"greater"`` or ``"less"`` (a decrease).
        variants: arms, control included.
        correction: ``"bonferroni"`` (alpha / (variants - 1) per comparison) or ``"none"``.
        variance_reduction: expected CUPED variance reduction ``rho^2``, in [0, 1).
        use_t: plan for the (equal-variance) t-test instead of the z-test.
        daily_traffic: units entering the experiment per day, for the ``durations`` rows.

    Returns:
        The plan; if ``statistic`` is degenerate (fewer than 2 units, a zero denominator, zero
        variance) the plan carries an ``error_code`` and sizes of 0.

    References:
        Deng, Knoblich, Lu (2018), KDD, eq. (2)-(4).
    """
    return _plan(
        _ratio_metric(statistic, baseline_ratio, unit_std, relative, use_t, ("unit_std", "baseline_ratio")),
        mde=mde,
        alpha=alpha,
        power=power,
        ratio=ratio,
        alternative=alternative,
        variants=variants,
        correction=correction,
        variance_reduction=variance_reduction,
        use_t=use_t,
        daily_traffic=daily_traffic,
    )


def plan_sample_size(
    metric: str,
    mde: float,
    *,
    baseline: float | None = None,
    std: float | None = None,
    statistic: RatioStatistic | None = None,
    relative: bool | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: str = "two-sided",
    variants: int = 2,
    correction: str = "bonferroni",
    variance_reduction: float = 0.0,
    use_t: bool = False,
    daily_traffic: Sequence[float] = DEFAULT_DAILY_TRAFFIC,
) -> SampleSizePlan:
    """Sample size plan for any metric type (the entry point of ``splitlab sample-size``).

    Args:
        metric: ``"proportion"`` (needs ``baseline``), ``"mean"`` (needs ``std``; ``baseline``
            when relative) or ``"ratio"`` (needs ``statistic`` or ``std``).
        mde: minimum detectable effect, > 0.
        baseline: control rate, mean or ratio.
        std: per-unit standard deviation (mean; linearised ratio).
        statistic: historical :class:`RatioStatistic` for a ratio metric.
        relative: whether ``mde`` is relative; ``None`` means True for proportions, False otherwise.
        alpha: family-wise significance level.
        power: power of each comparison at the MDE; > alpha / 2 (two-sided) or > alpha (one-sided).
        ratio: units of each treatment per control unit.
        alternative: ``"two-sided"`` (plans for an increase), ``"greater"`` or ``"less"`` (a decrease).
        variants: arms, control included.
        correction: ``"bonferroni"`` (alpha / (variants - 1) per comparison) or ``"none"``.
        variance_reduction: expected CUPED variance reduction ``rho^2``, in [0, 1).
        use_t: plan for the (equal-variance) t-test instead of the z-test.
        daily_traffic: units entering the experiment per day, for the ``durations`` rows.

    Example:
        >>> plan = plan_sample_size("proportion", 0.10, baseline=0.15, daily_traffic=[1_000])
        >>> plan.to_dict()["durations"]
        [{'daily_traffic': 1000, 'days': 19}]
    """
    return _plan(
        _metric(metric, baseline=baseline, std=std, statistic=statistic, relative=relative, use_t=use_t),
        mde=mde,
        alpha=alpha,
        power=power,
        ratio=ratio,
        alternative=alternative,
        variants=variants,
        correction=correction,
        variance_reduction=variance_reduction,
        use_t=use_t,
        daily_traffic=daily_traffic,
    )


def minimum_detectable_effect(
    n_per_variant: float,
    *,
    metric: str = "proportion",
    baseline: float | None = None,
    std: float | None = None,
    statistic: RatioStatistic | None = None,
    relative: bool | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: str = "two-sided",
    variants: int = 2,
    correction: str = "bonferroni",
    variance_reduction: float = 0.0,
    use_t: bool = False,
) -> float:
    """The smallest effect each comparison detects with ``power`` given ``n_per_variant`` control units.

    The inverse of the sample size: the z-test MDE solves the same near-tail equation
    (closed form ``(z_a + z_b) sigma sqrt((1 - variance_reduction)(1 + 1/r) / n_c)`` for means; a
    root in ``d`` of ``d sqrt(n_c) = z_a s0(d) + z_b s1(d)`` for proportions); with ``use_t`` it
    solves the noncentral-t power equation in ``d``.

    Args:
        n_per_variant: control units (> 0); each treatment has ``ratio`` times as many.
        metric: ``"proportion"`` (needs ``baseline``), ``"mean"`` (needs ``std``; ``baseline``
            when relative) or ``"ratio"`` (needs ``statistic`` or ``std``).
        baseline: control rate, mean or ratio.
        std: per-unit standard deviation (mean; linearised ratio).
        statistic: historical :class:`RatioStatistic` for a ratio metric.
        relative: whether to return the MDE relative to ``|baseline|``; ``None`` means True for
            proportions, False otherwise.
        alpha: family-wise significance level.
        power: power of each comparison at the MDE; > alpha / 2 (two-sided) or > alpha (one-sided).
        ratio: units of each treatment per control unit.
        alternative: ``"two-sided"`` (an increase), ``"greater"`` or ``"less"`` (a decrease).
        variants: arms, control included.
        correction: ``"bonferroni"`` (alpha / (variants - 1) per comparison) or ``"none"``.
        variance_reduction: expected CUPED variance reduction ``rho^2``, in [0, 1).
        use_t: solve for the (equal-variance) t-test instead of the z-test.

    Returns:
        The effect magnitude, relative to ``|baseline|`` when ``relative``; NaN when no effect
        that keeps a proportion inside (0, 1) is detectable, when ``n_per_variant`` leaves the
        t-test less than one degree of freedom, or when ``statistic`` is degenerate.

    Example:
        >>> round(minimum_detectable_effect(9_257, baseline=0.15), 4)
        0.1
    """
    check_positive("n_per_variant", n_per_variant)
    resolved = _metric(metric, baseline=baseline, std=std, statistic=statistic, relative=relative, use_t=use_t)
    design = _design(
        resolved,
        alpha=alpha,
        power=power,
        ratio=ratio,
        alternative=alternative,
        variants=variants,
        correction=correction,
        variance_reduction=variance_reduction,
        use_t=use_t,
    )
    if resolved.error_code is not None:
        return math.nan
    effect = _mde(design, float(n_per_variant), power)
    if resolved.relative and resolved.baseline is not None:
        return effect / abs(resolved.baseline)
    return effect


def power_at(
    n_per_variant: float,
    effect: float,
    *,
    metric: str = "proportion",
    baseline: float | None = None,
    std: float | None = None,
    statistic: RatioStatistic | None = None,
    relative: bool | None = None,
    alpha: float = 0.05,
    ratio: float = 1.0,
    alternative: str = "two-sided",
    variants: int = 2,
    correction: str = "bonferroni",
    variance_reduction: float = 0.0,
    use_t: bool = False,
) -> float:
    """Power of each treatment-vs-control test with ``n_per_variant`` control units at ``effect``.

    Exact for the normal approximation, both tails of a two-sided test counted:
    ``Phi((d sqrt(n_c) - z_a s0) / s1) + Phi((-d sqrt(n_c) - z_a s0) / s1)`` (statsmodels
    ``normal_power_het``, ``power_proportions_2indep``, ``NormalIndPower.power``); with ``use_t``
    the noncentral-t power of the equal-variance t-test (``TTestIndPower.power``).

    Args:
        n_per_variant: control units (> 0); each treatment has ``ratio`` times as many.
        effect: effect magnitude (> 0) in the direction of the alternative (an increase for
            ``"two-sided"``), relative to ``|baseline|`` when ``relative``.
        metric: ``"proportion"``, ``"mean"`` or ``"ratio"``.
        baseline: control rate, mean or ratio.
        std: per-unit standard deviation (mean; linearised ratio).
        statistic: historical :class:`RatioStatistic` for a ratio metric.
        relative: whether ``effect`` is relative; ``None`` means True for proportions, False otherwise.
        alpha: family-wise significance level.
        ratio: units of each treatment per control unit.
        alternative: ``"two-sided"`` (at an increase), ``"greater"`` or ``"less"`` (a decrease).
        variants: arms, control included.
        correction: ``"bonferroni"`` (alpha / (variants - 1) per comparison) or ``"none"``.
        variance_reduction: expected CUPED variance reduction ``rho^2``, in [0, 1).
        use_t: plan for the (equal-variance) t-test instead of the z-test.

    Returns:
        The power; NaN when ``n_per_variant`` leaves the t-test less than one degree of freedom or when
        ``statistic`` is degenerate.

    Example:
        >>> round(power_at(9_257, 0.10, baseline=0.15), 4)
        0.8
    """
    check_positive("n_per_variant", n_per_variant)
    check_positive("effect", effect)
    resolved = _metric(metric, baseline=baseline, std=std, statistic=statistic, relative=relative, use_t=use_t)
    design = _design(
        resolved,
        alpha=alpha,
        power=None,
        ratio=ratio,
        alternative=alternative,
        variants=variants,
        correction=correction,
        variance_reduction=variance_reduction,
        use_t=use_t,
    )
    absolute = resolved.absolute(effect)
    if design.baseline_rate is not None:
        _check_treatment_rate("effect", effect, design.baseline_rate, absolute, alternative)
    if resolved.error_code is not None or (use_t and n_per_variant < _min_t_size(ratio)):
        return math.nan
    return _power(design, float(n_per_variant), absolute)
