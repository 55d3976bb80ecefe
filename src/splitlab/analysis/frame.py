"""``splitlab.analyze``: a whole A/B analysis of a unit-level pandas or polars frame."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from splitlab.analysis.aggregate import MetricData, groups, metric_statistics, resolve_kind
from splitlab.analysis.metrics import Covariate, MetricSpec, parse_metrics
from splitlab.analysis.results import AnalysisResult, MetricResult
from splitlab.stats._validation import check_alternative, check_choice, check_probability
from splitlab.stats.bayesian import beta_binomial, gaussian
from splitlab.stats.cuped import cuped_estimates, cuped_test
from splitlab.stats.frequentist import estimate, two_sample_test
from splitlab.stats.multiplicity import adjust_results
from splitlab.stats.results import EffectResult
from splitlab.stats.srm import srm_test
from splitlab.stats.statistics import CovariateStatistic, ProportionStatistic

CORRECTIONS = ("holm", "bonferroni", "hochberg", "benjamini-hochberg", "benjamini-yekutieli", "none")


def analyze(
    data: Any,
    *,
    metrics: Mapping[str, MetricSpec | str | tuple[str, str]] | list[MetricSpec],
    variant: str = "variant",
    control: Any = None,
    covariates: Mapping[str, Covariate] | None = None,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    relative_ci: str = "delta",
    weights: Mapping[str, float] | None = None,
    srm_threshold: float = 0.001,
    correction: str = "holm",
) -> AnalysisResult:
    """Analyse an experiment from unit-level rows (one row per unit).

    Args:
        data: a pandas or polars frame (or a mapping of equal-length columns).
        metrics: ``{name: definition}``; a definition is a column (kind inferred: 0/1 values make
            a proportion, anything else a mean), ``"col:proportion"``, ``"col:mean"``,
            ``"num/den"`` or ``("num", "den")`` for a ratio, or a :class:`MetricSpec` from
            :func:`splitlab.proportion`, :func:`splitlab.mean`, :func:`splitlab.ratio`.
        variant: the column holding each unit's variant.
        control: the control's label (compared as a string); default: the first label in sorted order
            (numeric labels by value).
        covariates: ``{metric name: pre-exposure column}`` (or a ``(num, den)`` pair) for CUPED.
        alpha: significance level, in (0, 1).
        alternative: ``two-sided``, ``greater`` or ``less``.
        relative_ci: ``delta`` (default) or ``log``.
        weights: configured traffic shares per variant label for the SRM check (default equal).
        srm_threshold: SRM is flagged when its p-value is below this (default 0.001).
        correction: multiple-testing correction across the treatments of each metric when there
            are three or more variants: ``holm`` (default), ``bonferroni``, ``hochberg``,
            ``benjamini-hochberg``, ``benjamini-yekutieli`` or ``none``.

    Returns:
        An :class:`AnalysisResult`; ``print`` it for a table, or use ``to_frame()`` / ``to_json()``.

    Example:
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"variant": ["a", "b"] * 50, "converted": [0, 1, 1, 0] * 25})
        >>> result = analyze(frame, metrics={"conversion": "converted"}, control="a")
        >>> result.metrics[0].effect.test, result.srm.flag
        ('pooled-z', False)
    """
    check_probability("alpha", alpha)
    check_alternative(alternative)
    check_choice("relative_ci", relative_ci, ("delta", "log"))
    check_choice("correction", correction, CORRECTIONS)
    specs = [resolve_kind(spec, data) for spec in parse_metrics(metrics, covariates)]
    grouping = groups(data, variant)
    labels = grouping.labels
    if len(labels) < 2:
        msg = f"column {variant!r} has {len(labels)} variant label(s) {list(labels)}; an experiment needs at least 2"
        raise ValueError(msg)
    control_label = min(labels, key=_natural) if control is None else str(control)
    if control_label not in labels:
        msg = f"control == {control!r} is not a label of column {variant!r}; labels are {list(labels)}"
        raise ValueError(msg)
    treatments = sorted((label for label in labels if label != control_label), key=_natural)
    ordered = (control_label, *treatments)
    counts = dict(zip(labels, grouping.counts, strict=True))
    srm = srm_test({label: counts[label] for label in ordered}, _weights(weights, ordered), threshold=srm_threshold)
    options = {"alpha": alpha, "alternative": alternative, "relative_ci": relative_ci}
    results: list[MetricResult] = []
    for spec in specs:
        per_metric = _compare_metric(spec, metric_statistics(spec, data, grouping), labels, control_label,
                                     treatments, options)  # fmt: skip
        if len(treatments) > 1 and correction != "none":
            adjusted = adjust_results([m.effect for m in per_metric], method=correction, alpha=alpha)
            per_metric = [_with_effect(m, e) for m, e in zip(per_metric, adjusted, strict=True)]
        results.extend(per_metric)
    return AnalysisResult(control_label, ordered, srm, tuple(results), alpha, correction, grouping.unlabelled)


def _natural(label: str) -> tuple[int, float, str]:
    """Sort numeric labels by value ("2" before "10"), then text labels alphabetically."""
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)


def _weights(weights: Mapping[str, float] | None, labels: tuple[str, ...]) -> dict[str, float] | None:
    if weights is None:
        return None
    given = {str(k): float(v) for k, v in weights.items()}
    if set(given) != set(labels):
        msg = f"weights must name every variant label {sorted(labels)}, got {sorted(given)}"
        raise ValueError(msg)
    return {label: given[label] for label in labels}


def _with_effect(result: MetricResult, effect: EffectResult) -> MetricResult:
    return MetricResult(result.metric, result.kind, result.variant, result.control, effect, result.chance_to_win,
                        result.expected_loss, result.excluded_units, result.higher_is_better)  # fmt: skip


def _compare_metric(
    spec: MetricSpec,
    metric_data: MetricData,
    labels: tuple[str, ...],
    control_label: str,
    treatments: list[str],
    options: dict[str, Any],
) -> list[MetricResult]:
    index = {label: i for i, label in enumerate(labels)}
    control = metric_data.statistics[index[control_label]]
    out = []
    for label in treatments:
        treatment = metric_data.statistics[index[label]]
        if isinstance(control, CovariateStatistic) and isinstance(treatment, CovariateStatistic):
            effect = cuped_test(control, treatment, test=spec.test, **options)
            est_c, est_t = cuped_estimates(control, treatment)
            bayes = gaussian(est_c, est_t, relative=False, alpha=options["alpha"],
                             higher_is_better=spec.higher_is_better)  # fmt: skip
        else:
            effect = two_sample_test(control, treatment, test=spec.test, **options)  # type: ignore[arg-type]
            if isinstance(control, ProportionStatistic) and isinstance(treatment, ProportionStatistic):
                bayes = beta_binomial(control, treatment, alpha=options["alpha"],
                                      higher_is_better=spec.higher_is_better)  # fmt: skip
            else:
                bayes = gaussian(estimate(control), estimate(treatment), relative=False,  # type: ignore[arg-type]
                                 alpha=options["alpha"], higher_is_better=spec.higher_is_better)  # fmt: skip
        excluded = (metric_data.excluded[index[control_label]], metric_data.excluded[index[label]])
        out.append(MetricResult(spec.name, spec.kind, label, control_label, effect, bayes.chance_to_win,
                                bayes.expected_loss_treatment, excluded, spec.higher_is_better))  # fmt: skip
    return out
