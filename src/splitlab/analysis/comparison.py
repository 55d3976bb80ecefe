"""The one comparison core: a metric's per-variant sufficient statistics -> a :class:`MetricResult`.

Both analysis paths call it: ``splitlab.analyze`` on a unit-level frame
(:mod:`splitlab.analysis.frame`) and the stored-experiment pipeline
(:mod:`splitlab.analysis.experiment`). What the statistics are decides the method, here only:

* a :class:`QuantileStatistic` (order statistics from SQL): the z-test of two quantiles;
* a :class:`CovariateStatistic`: CUPED with a pooled theta (:func:`splitlab.stats.cuped.cuped_test`);
* anything else: the named (or default) test of its kind (:func:`splitlab.stats.frequentist.two_sample_test`).

The Bayesian view is Beta-Binomial for proportions and Gaussian on the (CUPED-adjusted)
estimates otherwise; the sequential monitor replays the cumulative looks when asked; and
:func:`corrected` applies a multiple-testing correction across one family of comparisons.

An experiment whose weights changed while it ran (allocation phases) is compared by
:func:`compare_phases`: each group's estimate within each phase, combined with the phases'
shares of all units (:func:`period_weighted`), so a ramp plus a time trend cannot bias it.

References:
    Deng, A., Knoblich, U., Lu, J. (2018). Applying the Delta Method in Metric Analytics. KDD,
    eq. 4 (standard error of the relative effect ``t / c - 1``).
    Deng, A., Xu, Y., Kohavi, R., Walker, T. (2013). Improving the Sensitivity of Online
    Controlled Experiments by Utilizing Pre-Experiment Data (CUPED). WSDM.
    Kish, L. (1965). Survey Sampling, sections 3.3 and 11.7 (a stratified mean ``sum_h W_h ybar_h``
    and its variance ``sum_h W_h^2 var(ybar_h)``; here the strata are the allocation phases).
    Smyth, G. K. (2004). Linear models and empirical Bayes methods for assessing differential
    expression in microarray experiments. SAGMB 3(1), section 4 (the moderated variance of a
    small group, borrowed by :func:`period_weighted` from its phase).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from splitlab.analysis.results import MetricResult
from splitlab.analysis.sql.quantile import QuantileStatistic
from splitlab.stats.bayesian import beta_binomial, gaussian
from splitlab.stats.cuped import cuped_estimates, cuped_test
from splitlab.stats.frequentist import GroupEstimate, compare_estimates, estimate, two_sample_test
from splitlab.stats.multiplicity import adjust_results
from splitlab.stats.results import EffectResult, ErrorCode
from splitlab.stats.sequential.monitor import Group, monitor
from splitlab.stats.statistics import CovariateStatistic, MetricStatistic, ProportionStatistic, is_finite

__all__ = [
    "PHASED_TEST",
    "PRIOR_DF",
    "Options",
    "Statistic",
    "compare",
    "compare_phases",
    "corrected",
    "effect_of",
    "estimates",
    "period_weighted",
]


Statistic = MetricStatistic | CovariateStatistic | QuantileStatistic

PHASED_TEST = "period-weighted-z"
"""The test name of a comparison combined over allocation phases (a z-test on the combined estimates)."""

Phases = Sequence[tuple[Statistic, Statistic, int]]
"""``(control, treatment, units)`` per allocation phase; ``units`` the phase's units in every variant."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """How every comparison of one analysis is made (checked by the caller, at the edge).

    Attributes:
        test: the named test, or None for the default of the statistics' kind.
        alpha: level of the CIs, the test and the Bayesian interval.
        alternative: ``two-sided``, ``greater`` or ``less``.
        relative_ci: ``delta`` or ``log``.
        sequential: ``msprt``, ``gst-obf`` or ``gst-pocock`` to monitor the looks; None not to.
        planned_n: units in both compared groups together at the planned end (sequential only).
    """

    test: str | None = None
    alpha: float = 0.05
    alternative: str = "two-sided"
    relative_ci: str = "delta"
    sequential: str | None = None
    planned_n: float | None = None


def estimates(control: Statistic, treatment: Statistic) -> tuple[GroupEstimate, GroupEstimate]:
    """Each group's estimate and the variance of that estimate (CUPED-adjusted with a covariate)."""
    if isinstance(control, QuantileStatistic) and isinstance(treatment, QuantileStatistic):
        return control.group_estimate(), treatment.group_estimate()
    if isinstance(control, CovariateStatistic) and isinstance(treatment, CovariateStatistic):
        return cuped_estimates(control, treatment)
    return estimate(control), estimate(treatment)  # type: ignore[arg-type]


def effect_of(control: Statistic, treatment: Statistic, *, options: Options) -> EffectResult:
    """The frequentist comparison alone (the cumulative lift by day needs nothing else)."""
    kwargs: dict[str, Any] = {
        "alpha": options.alpha,
        "alternative": options.alternative,
        "relative_ci": options.relative_ci,
    }
    if isinstance(control, QuantileStatistic) and isinstance(treatment, QuantileStatistic):
        quantile = f"quantile-{control.quantile:g}"
        return compare_estimates(
            control.group_estimate(), treatment.group_estimate(), test=quantile, use_t=False, **kwargs
        )
    if isinstance(control, CovariateStatistic) and isinstance(treatment, CovariateStatistic):
        return cuped_test(control, treatment, test=options.test, **kwargs)
    return two_sample_test(control, treatment, test=options.test, **kwargs)  # type: ignore[arg-type]


def _monitored(control: Statistic, treatment: Statistic) -> tuple[Group, Group]:
    """What the sequential monitor compares: CUPED-adjusted estimates, or the statistics themselves."""
    if isinstance(control, CovariateStatistic) and isinstance(treatment, CovariateStatistic):
        return cuped_estimates(control, treatment)
    return control, treatment  # type: ignore[return-value]


def _relative_se(control: GroupEstimate, treatment: GroupEstimate) -> float:
    """``sqrt(t^2 var_c / c^4 + var_t / c^2)``, the delta-method error of ``t / c - 1`` (Deng et al. 2018, eq. 4)."""
    c, t = control.mean, treatment.mean
    if c == 0 or not math.isfinite(c):
        return math.nan
    # Products, not powers: a float power that overflows raises, a product gives inf.
    ratio, squared = t / c, c * c
    return math.sqrt(ratio * ratio * control.variance / squared + treatment.variance / squared)


def compare(
    control: Statistic,
    treatment: Statistic,
    /,
    *,
    options: Options,
    higher_is_better: bool = True,
    looks: Sequence[tuple[Statistic, Statistic]] = (),
    **identity: Any,
) -> MetricResult:
    """Compare a treatment with control: test, standard errors, Bayesian view, sequential monitor.

    Args:
        control, treatment: the two groups' sufficient statistics (of one kind).
        options: the test and its settings.
        higher_is_better: the metric's direction (chance to win, expected loss, monitor decisions).
        looks: cumulative ``(control, treatment)`` statistics per look, in time order, for the
            sequential monitor (used only with ``options.sequential`` and ``options.planned_n``).
        identity: the record's other fields: ``metric``, ``kind``, ``variant``, ``control`` and any
            of ``role``, ``max_degradation``, ``segment``, ``excluded_units``.

    Example:
        >>> from splitlab.stats.statistics import ProportionStatistic as P
        >>> r = compare(P(1000, 100), P(1000, 130), options=Options(), metric="conversion", kind="binary",
        ...             variant="b", control="a")
        >>> r.effect.test, round(r.absolute_se, 5), round(r.chance_to_win, 3)
        ('pooled-z', 0.01425, 0.982)
    """
    if not (is_finite(control) and is_finite(treatment)):
        return _non_finite(control, treatment, options, higher_is_better, identity)
    try:
        effect = effect_of(control, treatment, options=options)
        est_c, est_t = estimates(control, treatment)
        if isinstance(control, ProportionStatistic) and isinstance(treatment, ProportionStatistic):
            bayes = beta_binomial(control, treatment, alpha=options.alpha, higher_is_better=higher_is_better)
        else:
            bayes = gaussian(est_c, est_t, relative=False, alpha=options.alpha, higher_is_better=higher_is_better)
        monitored = [] if isinstance(control, QuantileStatistic) else [_monitored(c, t) for c, t in looks]
        return _result(effect, est_c, est_t, bayes, monitored, options, higher_is_better, identity)
    except OverflowError:  # finite sums whose products overflow (values near 1e100 and more)
        return _non_finite(control, treatment, options, higher_is_better, identity)


def _non_finite(
    control: Statistic, treatment: Statistic, options: Options, higher_is_better: bool, identity: dict[str, Any]
) -> MetricResult:
    """The result of groups whose numbers are not finite: no estimate, ``ErrorCode.NON_FINITE``."""
    est_c = GroupEstimate(math.nan, math.nan, _units(control))
    est_t = GroupEstimate(math.nan, math.nan, _units(treatment))
    failed = compare_estimates(
        est_c,
        est_t,
        test=options.test or "none",
        use_t=False,
        alpha=options.alpha,
        alternative=options.alternative,
        relative_ci=options.relative_ci,
    )
    effect = replace(
        failed,
        error_code=ErrorCode.NON_FINITE,
        error_message="a group's values are not all finite numbers with finite squares (inf, NaN, 1e308 ...)",
    )
    bayes = gaussian(est_c, est_t, relative=False, alpha=options.alpha, higher_is_better=higher_is_better)
    return _result(effect, est_c, est_t, bayes, [], options, higher_is_better, identity)


def period_weighted(phases: Phases) -> tuple[GroupEstimate, GroupEstimate]:
    """Each group's estimate combined over allocation phases with the phases' shares of all units.

    ``m = sum_p W_p m_p`` and ``Var(m) = sum_p W_p^2 s~_p^2 / n_p`` with ``W_p = N_p / N`` (``N_p``
    the phase's units in every variant): the period weighting of
    :func:`splitlab.bandits.estimates.period_weighted_estimates` (docs/bandits.md), applied to any
    group estimate (CUPED-adjusted within the phase, a ratio's delta-method estimate ...). Within a
    phase the weights were fixed, so each ``m_p`` is unbiased for that phase's population and the
    weights do not depend on the variant: a time trend cannot leak into the comparison (Simpson's
    paradox), as it does into the pooled mean when the weights changed. Phases in which either
    group has no unit are left out and the other shares renormalised. With one phase this is
    :func:`estimates`.

    The unit variance of a group in a phase is moderated toward the phase's pooled within-group
    variance ``s_0^2`` (both groups' squared deviations from their own means over their degrees of
    freedom): ``s~^2 = (d s^2 + d_0 s_0^2) / (d + d_0)`` with ``d = n - 1`` and ``d_0 =``
    :data:`PRIOR_DF`. A group with hundreds of units in the phase keeps its own variance, so a
    drifting rate (``p (1 - p)`` changing from phase to phase) or unequal variances between large
    groups are respected; a group with a handful of units (a bandit arm at its floor) borrows from
    the other group of the same phase, whose level is the same up to the effect, instead of its own
    noisy (0 for a proportion of 0 or 1, undefined for one unit) variance. Pooling an arm's variance
    across phases instead mixes the drifting levels and misses in both directions (coverage 0.975
    on the ramp of ``tests/analysis/test_phase_calibration.py``, 0.906 on its bandit windows). A phase
    where no group has two units takes the variance pooled over all phases and groups.

    References:
        Kish, L. (1965). Survey Sampling, sections 3.3 and 11.7 (stratified mean and its variance).
        Smyth, G. K. (2004). Linear models and empirical Bayes methods for assessing differential
        expression in microarray experiments. Statistical Applications in Genetics and Molecular
        Biology 3(1), article 3, section 4 (the moderated variance ``(d_0 s_0^2 + d s^2) / (d_0 + d)``).
    """
    kept = [(c, t, units) for c, t, units in phases if _units(c) > 0 and _units(t) > 0]
    if not kept:
        return GroupEstimate(math.nan, math.nan, 0), GroupEstimate(math.nan, math.nan, 0)
    if len(kept) == 1:
        return estimates(kept[0][0], kept[0][1])
    total = sum(units for _, _, units in kept)
    parts = [(units / total, estimates(_unbiased(c), _unbiased(t))) for c, t, units in kept]
    squares = [tuple(_squares(e) for e in pair) for _, pair in parts]
    overall = _pooled([s for pair in squares for s in pair])
    control: list[tuple[float, GroupEstimate]] = []
    treatment: list[tuple[float, GroupEstimate]] = []
    for (share, (est_c, est_t)), pair in zip(parts, squares, strict=True):
        prior = _pooled(pair)
        prior = overall if math.isnan(prior) else prior
        control.append((share, _moderated(est_c, pair[0], prior)))
        treatment.append((share, _moderated(est_t, pair[1], prior)))
    return _weighted(control), _weighted(treatment)


PRIOR_DF = 2.0
"""Degrees of freedom ``d_0`` the phase's pooled variance counts for in a group's moderated variance
(:func:`period_weighted`). Chosen by the calibration in ``tests/analysis/test_phase_calibration.py``:
0 (each group's own variance) undercovers small bandit windows; 2 to 5 cover them, and 2 is closest to
nominal when the two groups' variances differ."""


def _unbiased(statistic: Statistic) -> Statistic:
    """A proportion as a mean, whose unit variance has ``n - 1`` degrees of freedom (``p (1 - p)`` has n)."""
    return statistic.as_mean() if isinstance(statistic, ProportionStatistic) else statistic


def _squares(estimate: GroupEstimate) -> tuple[float, float]:
    """``(sum of squared deviations, degrees of freedom)`` behind a group estimate's variance."""
    df = estimate.n - 1
    if df <= 0 or not math.isfinite(estimate.variance):
        return 0.0, 0.0
    return estimate.variance * estimate.n * df, float(df)


def _pooled(squares: Sequence[tuple[float, float]]) -> float:
    df = sum(d for _, d in squares)
    return math.fsum(s for s, _ in squares) / df if df > 0 else math.nan


def _moderated(estimate: GroupEstimate, squares: tuple[float, float], prior: float) -> GroupEstimate:
    deviations, df = squares
    unit_variance = (deviations + PRIOR_DF * prior) / (df + PRIOR_DF)
    return GroupEstimate(estimate.mean, unit_variance / estimate.n, estimate.n)


def compare_phases(
    phases: Phases,
    /,
    *,
    options: Options,
    higher_is_better: bool = True,
    looks: Sequence[Phases] = (),
    **identity: Any,
) -> MetricResult:
    """Compare a treatment with control across allocation phases (:func:`period_weighted`).

    The combined estimates are compared by a z-test (:data:`PHASED_TEST`), the Bayesian view is
    Gaussian on them, and the sequential monitor replays ``looks`` (each the phases' cumulative
    statistics at one look) combined the same way. Arguments as in :func:`compare`.

    Example:
        >>> from splitlab.stats.statistics import ProportionStatistic as P
        >>> ramp = [(P(100, 10), P(900, 99), 1000), (P(500, 150), P(500, 165), 1000)]
        >>> r = compare_phases(ramp, options=Options(), metric="conversion", kind="binary", variant="b", control="a")
        >>> r.effect.test, round(r.effect.absolute_effect, 4)
        ('period-weighted-z', 0.02)
    """
    est_c, est_t = period_weighted(phases)
    effect = compare_estimates(
        est_c,
        est_t,
        test=PHASED_TEST,
        use_t=False,
        alpha=options.alpha,
        alternative=options.alternative,
        relative_ci=options.relative_ci,
        cuped=any(isinstance(c, CovariateStatistic) for c, _, _ in phases),
    )
    bayes = gaussian(est_c, est_t, relative=False, alpha=options.alpha, higher_is_better=higher_is_better)
    monitored = [period_weighted(look) for look in looks]
    return _result(effect, est_c, est_t, bayes, [m for m in monitored if m[0].n], options, higher_is_better, identity)


def _units(statistic: Statistic) -> int:
    part = statistic.metric if isinstance(statistic, CovariateStatistic) else statistic
    return int(part.n)


def _weighted(parts: Sequence[tuple[float, GroupEstimate]]) -> GroupEstimate:
    mean = math.fsum(w * e.mean for w, e in parts)
    variance = math.fsum(w * w * e.variance for w, e in parts)
    return GroupEstimate(mean, variance, sum(e.n for _, e in parts))


def _result(
    effect: EffectResult,
    est_c: GroupEstimate,
    est_t: GroupEstimate,
    bayes: Any,
    looks: Sequence[tuple[Group, Group]],
    options: Options,
    higher_is_better: bool,
    identity: dict[str, Any],
) -> MetricResult:
    sequential = None
    if options.sequential and options.planned_n and looks:
        sequential = monitor(
            looks,
            method=options.sequential,
            planned_n=options.planned_n,
            alpha=options.alpha,
            alternative=options.alternative,
            higher_is_better=higher_is_better,
        )
    return MetricResult(
        **identity,
        higher_is_better=higher_is_better,
        effect=effect,
        chance_to_win=bayes.chance_to_win,
        expected_loss=bayes.expected_loss_treatment,
        sequential=sequential,
        std_errors=(math.sqrt(max(est_c.variance, 0.0)), math.sqrt(max(est_t.variance, 0.0))),
        absolute_se=math.sqrt(est_c.variance + est_t.variance),
        relative_se=_relative_se(est_c, est_t),
    )


def corrected(results: Sequence[MetricResult], *, method: str, alpha: float) -> list[MetricResult]:
    """One family's results with p-values and CIs corrected across it (nothing to do for fewer than 2)."""
    if len(results) < 2 or method == "none":
        return list(results)
    adjusted = adjust_results([r.effect for r in results], method=method, alpha=alpha)
    return [replace(r, effect=e) for r, e in zip(results, adjusted, strict=True)]
