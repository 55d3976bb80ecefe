"""Post-stratified estimates: per-stratum comparisons weighted by the strata's shares of all units.

With ``analysis.post_stratify: true`` a stored experiment's additive metrics are estimated within
each stratum of the spec's ``stratify_by`` attributes (the combination of their levels) and
combined with the strata's shares ``W_h = N_h / N`` of all analysed units, both variants together:

    m_g = sum_h W_h m_gh,    Var(m_g) = sum_h W_h^2 Var(m_gh)

for each group ``g``, and the effect is ``m_t - m_c`` with a z-test; a stratum's ratio, proportion
or CUPED-adjusted mean keeps its own estimate and variance
(:func:`splitlab.analysis.comparison.estimates`). Post-stratification after
complete randomisation is nearly as precise as blocking: the estimator is unbiased conditional on
the strata's counts and its variance is the blocked one up to an ``O(1 / n^2)`` term (Miratrix,
Sekhon & Yu 2013, theorem 1.1 and section 3). A stratum in which a variant has no unit is left out
and the other shares renormalised. Quantile metrics (not additive), metrics that name a test on
unit-level values, and experiments with allocation phases keep their own comparison.

References:
    Miratrix, L. W., Sekhon, J. S., Yu, B. (2013). Adjusting treatment effect estimates by
    post-stratification in randomized experiments. J. R. Statist. Soc. B 75(2), 369-396.
    Kish, L. (1965). Survey Sampling, sections 3.3 and 11.7 (a stratified mean and its variance).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from splitlab.analysis.comparison import Options, Statistic, estimates
from splitlab.analysis.results import MetricResult
from splitlab.analysis.sql import ExperimentAggregates
from splitlab.stats.bayesian import gaussian
from splitlab.stats.frequentist import GroupEstimate, compare_estimates
from splitlab.stats.statistics import CovariateStatistic

__all__ = ["POST_STRATIFIED_TEST", "compare_strata", "post_stratified", "strata"]

POST_STRATIFIED_TEST = "post-stratified-z"
"""The ``effect.test`` of a post-stratified comparison."""

Strata = Sequence[tuple[Statistic, Statistic, int]]
"""``(control, treatment, units)`` per stratum; ``units`` the stratum's units in every variant."""


def strata(
    aggregates: ExperimentAggregates, metric: str, control: str, treatment: str, attributes: Sequence[str]
) -> list[tuple[Statistic, Statistic, int]]:
    """``(control, treatment, units)`` of ``metric`` per stratum of ``attributes`` (cells summed over other segments).

    Raises:
        KeyError: an attribute that is not a segment of the aggregates.
    """
    index = [aggregates.segments.index(name) for name in attributes]
    statistics: dict[tuple[Any, str], Any] = {}
    units: dict[Any, int] = {}
    for key, cell in aggregates.cells.items():
        if key.segment is None or key.day is not None or key.phase is not None:
            continue
        stratum = tuple(key.segment[i] for i in index)
        units[stratum] = units.get(stratum, 0) + aggregates.cell_units.get(key, 0)
        if key.variant in (control, treatment) and metric in cell:
            slot = (stratum, key.variant)
            statistics[slot] = cell[metric] if slot not in statistics else statistics[slot] + cell[metric]
    return [
        (statistics[stratum, control], statistics[stratum, treatment], units[stratum])
        for stratum in sorted(units, key=str)
        if (stratum, control) in statistics and (stratum, treatment) in statistics
    ]


def compare_strata(
    parts: Strata, /, *, options: Options, higher_is_better: bool = True, **identity: Any
) -> MetricResult:
    """Compare a treatment with control post-stratified (see the module docstring).

    Example:
        >>> from splitlab.stats.statistics import ProportionStatistic as P
        >>> parts = [(P(100, 10), P(100, 12), 200), (P(300, 90), P(300, 99), 600)]
        >>> r = compare_strata(parts, options=Options(), metric="c", kind="binary", variant="b", control="a")
        >>> r.effect.test, round(r.effect.absolute_effect, 4)
        ('post-stratified-z', 0.0275)
    """
    est_c, est_t = post_stratified(parts)
    effect = compare_estimates(
        est_c,
        est_t,
        test=POST_STRATIFIED_TEST,
        use_t=False,
        alpha=options.alpha,
        alternative=options.alternative,
        relative_ci=options.relative_ci,
        cuped=any(isinstance(c, CovariateStatistic) for c, _, _ in parts),
    )
    bayes = gaussian(est_c, est_t, relative=False, alpha=options.alpha, higher_is_better=higher_is_better)
    c, t = est_c.mean, est_t.mean
    # The delta-method error of t / c - 1 (Deng, Knoblich & Lu 2018, eq. 4), as every comparison reports it.
    relative_se = math.sqrt(t * t * est_c.variance / c**4 + est_t.variance / (c * c)) if c else math.nan
    return MetricResult(
        **identity,
        higher_is_better=higher_is_better,
        effect=effect,
        chance_to_win=bayes.chance_to_win,
        expected_loss=bayes.expected_loss_treatment,
        std_errors=(math.sqrt(max(est_c.variance, 0.0)), math.sqrt(max(est_t.variance, 0.0))),
        absolute_se=math.sqrt(est_c.variance + est_t.variance),
        relative_se=relative_se,
    )


def post_stratified(parts: Strata) -> tuple[GroupEstimate, GroupEstimate]:
    """Each group's post-stratified estimate ``sum_h W_h m_gh`` and its variance ``sum_h W_h^2 Var(m_gh)``.

    ``W_h = N_h / N`` over the strata in which both groups have units (the others are left out and
    the shares renormalised). Miratrix, Sekhon & Yu (2013), eq. 3 and the conditional variance of
    section 3; Kish (1965), section 3.3.
    """
    kept = [(pair, units) for c, t, units in parts if (pair := estimates(c, t))[0].n > 0 and pair[1].n > 0]
    if not kept:
        return GroupEstimate(math.nan, math.nan, 0), GroupEstimate(math.nan, math.nan, 0)
    total = sum(units for _, units in kept)
    weighted = [(units / total, pair) for pair, units in kept]
    return tuple(  # type: ignore[return-value]
        GroupEstimate(
            math.fsum(w * pair[g].mean for w, pair in weighted),
            math.fsum(w * w * pair[g].variance for w, pair in weighted),
            sum(pair[g].n for _, pair in weighted),
        )
        for g in (0, 1)
    )
