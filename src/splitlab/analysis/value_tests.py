"""Tests a metric asks for by name that need its unit-level values: Mann-Whitney and the bootstrap.

A metric definition's ``test: mann-whitney`` or ``test: bootstrap`` (``splitlab.mean(...,
test="bootstrap")`` in a frame analysis) replaces the kind's test on sufficient statistics by one on
the per-unit values of that metric alone. The record is the same :class:`MetricResult` as every
other comparison: :func:`compare_values` first makes the default comparison of the metric's
statistics (for the Bayesian view, the per-variant standard errors and any sequential monitor),
then replaces its effect by the named test's:

* ``mann-whitney``: the p-value of the Mann-Whitney U test (:func:`splitlab.stats.nonparametric.mann_whitney`,
  the null ``P(T > C) = P(C > T)``), with the probability of superiority ``P(T > C) + P(T = C) / 2``
  and its CI in the record. The effect and CIs stay those of the difference of means (or
  proportions) of the default test: U measures no difference of means, so a CI can exclude 0
  while the rank test does not reject, and the other way round.
* ``bootstrap``: the two-sample BCa bootstrap (:func:`splitlab.stats.nonparametric.bootstrap_effect`,
  :data:`BOOTSTRAP_RESAMPLES` resamples, seed 0, so a readout is reproducible) of the difference of
  means (of the quantile for a ``quantile`` metric), absolute and relative, each with its own
  replicates. The p-value is the normal one of ``effect / se*`` with the bootstrap standard error
  (Efron & Tibshirani 1993, section 12.2), so it can disagree with the BCa CI near the boundary.
  One-sided alternatives take the bound of the two-sided ``1 - 2 alpha`` interval.

References:
    Mann, H. B., Whitney, D. R. (1947). On a test of whether one of two random variables is
    stochastically larger than the other. Ann. Math. Statist. 18, 50-60.
    Efron, B., Tibshirani, R. J. (1993). An Introduction to the Bootstrap. Chapman & Hall,
    section 12.2 (the standard-normal interval and test from the bootstrap standard error) and
    eqs. 14.9-14.15 (BCa).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy.typing as npt
from scipy import special

from splitlab.analysis.comparison import Options, Statistic, compare
from splitlab.analysis.metrics import VALUE_TESTS
from splitlab.analysis.results import MetricResult
from splitlab.stats.nonparametric import BootstrapResult, bootstrap_effect, mann_whitney
from splitlab.stats.results import EffectResult

__all__ = ["BOOTSTRAP_RESAMPLES", "BOOTSTRAP_TEST", "VALUE_TESTS", "compare_values"]

BOOTSTRAP_TEST = "bootstrap-bca"
"""The ``effect.test`` of a bootstrap comparison."""

BOOTSTRAP_RESAMPLES = 2_000
"""Resamples of each bootstrap (absolute and relative): Monte Carlo error of a 95% BCa bound ~2 % of the CI width."""


def compare_values(
    control: npt.ArrayLike,
    treatment: npt.ArrayLike,
    /,
    *,
    test: str,
    statistics: tuple[Statistic, Statistic],
    options: Options,
    higher_is_better: bool = True,
    quantile: float | None = None,
    looks: Any = (),
    **identity: Any,
) -> MetricResult:
    """Compare a treatment with control by a test on their unit-level values.

    Args:
        control, treatment: the per-unit values of the metric in each group (NaN dropped).
        test: ``mann-whitney`` or ``bootstrap`` (:data:`VALUE_TESTS`).
        statistics: the two groups' sufficient statistics, for the default comparison the record
            starts from (see the module docstring).
        options: as in :func:`splitlab.analysis.comparison.compare`; ``options.test`` is ignored.
        higher_is_better, looks, identity: as in :func:`~splitlab.analysis.comparison.compare`.
        quantile: the bootstrap's statistic for a quantile metric; None: the mean.

    Raises:
        ValueError: an unknown ``test``.

    Example:
        >>> from splitlab.stats.statistics import MeanStatistic
        >>> c, t = [1.0, 2.0, 3.0, 4.0, 5.0], [3.0, 4.0, 5.0, 6.0, 7.0]
        >>> r = compare_values(c, t, test="mann-whitney", options=Options(),
        ...                    statistics=(MeanStatistic.from_values(c), MeanStatistic.from_values(t)),
        ...                    metric="m", kind="mean", variant="b", control="a")
        >>> r.effect.test, round(r.effect.p_value, 4), r.probability_of_superiority
        ('mann-whitney', 0.1138, 0.82)
    """
    if test not in VALUE_TESTS:
        msg = f"test == {test!r}, must be one of {', '.join(VALUE_TESTS)}"
        raise ValueError(msg)
    base = compare(
        *statistics,
        options=replace(options, test=None),
        higher_is_better=higher_is_better,
        looks=looks,
        **identity,
    )
    if base.effect.error_code is not None:
        return base
    if test == "mann-whitney":
        rank = mann_whitney(control, treatment, alternative=options.alternative, alpha=options.alpha)
        effect = replace(
            base.effect,
            test="mann-whitney",
            statistic=rank.z_statistic,
            p_value=rank.p_value,
            df=None,
            relative_df=None,
            error_code=rank.error_code,
            error_message=rank.error_message,
        )
        return replace(
            base,
            effect=effect,
            probability_of_superiority=rank.probability_of_superiority,
            probability_of_superiority_ci=rank.probability_of_superiority_ci,
        )
    one_sided = options.alternative != "two-sided"
    settings: dict[str, Any] = {
        "statistic": "mean" if quantile is None else quantile,
        "n_resamples": BOOTSTRAP_RESAMPLES,
        "alpha": 2 * options.alpha if one_sided else options.alpha,
        "seed": 0,
    }
    absolute = bootstrap_effect(control, treatment, relative=False, **settings)
    relative = bootstrap_effect(control, treatment, relative=True, **settings)
    effect = _bootstrap_effect(absolute, relative, options)
    return replace(base, effect=effect, absolute_se=absolute.standard_error, relative_se=relative.standard_error)


def _bound(ci: tuple[float, float], alternative: str) -> tuple[float, float]:
    """A one-sided alternative keeps the bound on its side of a ``1 - 2 alpha`` two-sided interval."""
    if alternative == "greater":
        return (ci[0], math.inf)
    if alternative == "less":
        return (-math.inf, ci[1])
    return ci


def _bootstrap_effect(absolute: BootstrapResult, relative: BootstrapResult, options: Options) -> EffectResult:
    z = absolute.effect / absolute.standard_error if absolute.standard_error > 0 else math.nan
    if options.alternative == "greater":
        p_value = float(special.ndtr(-z))
    elif options.alternative == "less":
        p_value = float(special.ndtr(z))
    else:
        p_value = float(2 * special.ndtr(-abs(z)))
    failed = absolute if absolute.error_code is not None else relative
    return EffectResult(
        test=BOOTSTRAP_TEST,
        alternative=options.alternative,
        alpha=options.alpha,
        control_mean=absolute.control_value,
        treatment_mean=absolute.treatment_value,
        control_n=absolute.control_n,
        treatment_n=absolute.treatment_n,
        absolute_effect=absolute.effect,
        absolute_ci=_bound(absolute.ci, options.alternative),
        relative_effect=relative.effect,
        relative_ci=_bound(relative.ci, options.alternative),
        relative_ci_method="bootstrap",
        statistic=z,
        p_value=p_value,
        error_code=failed.error_code,
        error_message=failed.error_message,
    )
