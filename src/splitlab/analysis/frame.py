"""``splitlab.analyze``: a whole A/B analysis of a unit-level pandas or polars frame."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from splitlab.analysis.aggregate import Groups, MetricData, column, groups, look_codes, metric_statistics, resolve_kind
from splitlab.analysis.comparison import Options, compare, corrected
from splitlab.analysis.metrics import VALUE_TESTS, Covariate, MetricSpec, parse_metrics
from splitlab.analysis.results import AnalysisResult, MetricResult
from splitlab.analysis.value_tests import compare_values
from splitlab.stats._validation import check_alternative, check_choice, check_positive, check_probability
from splitlab.stats.sequential.monitor import METHODS
from splitlab.stats.srm import srm_test

CORRECTIONS = ("holm", "bonferroni", "hochberg", "benjamini-hochberg", "benjamini-yekutieli", "none")


def analyze(
    data: Any,
    *,
    metrics: Mapping[str, MetricSpec | str | tuple[str, str]] | list[MetricSpec],
    variant: str = "variant",
    control: Any = None,
    covariates: Mapping[str, Covariate] | None = None,
    tests: Mapping[str, str] | None = None,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    relative_ci: str = "delta",
    weights: Mapping[str, float] | None = None,
    srm_threshold: float = 0.001,
    correction: str = "holm",
    sequential: str | None = None,
    planned_n: float | None = None,
    time_column: str | None = None,
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
        tests: ``{metric name: test}``, the metric's named test (as ``splitlab.mean(..., test=...)``),
            e.g. ``mann-whitney`` or ``bootstrap`` on the unit-level values.
        alpha: significance level, in (0, 1).
        alternative: ``two-sided``, ``greater`` or ``less``.
        relative_ci: ``delta`` (default) or ``log``.
        weights: configured traffic shares per variant label for the SRM check (default equal).
        srm_threshold: SRM is flagged when its p-value is below this (default 0.001).
        correction: multiple-testing correction across the treatments of each metric when there
            are three or more variants: ``holm`` (default), ``bonferroni``, ``hochberg``,
            ``benjamini-hochberg``, ``benjamini-yekutieli`` or ``none``.
        sequential: also monitor each comparison sequentially: ``msprt`` (always-valid p-value
            and confidence sequence), ``gst-obf`` or ``gst-pocock`` (group-sequential; stage-wise
            p-value once stopped, repeated CI). See :func:`splitlab.stats.sequential.monitor.monitor`.
        planned_n: units in all variants together at the planned end; required with ``sequential``.
        time_column: a column ordering the units in time (e.g. the day of first exposure); each
            distinct value is one look, cumulatively. Without it the data are a single look.

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
    if sequential is not None:
        check_choice("sequential", sequential, METHODS)
        if planned_n is None:
            msg = "planned_n is required with sequential: the units planned in all variants together"
            raise ValueError(msg)
        check_positive("planned_n", planned_n)
    specs = [resolve_kind(spec, data) for spec in parse_metrics(metrics, covariates, tests)]
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
    looks = None if time_column is None or sequential is None else look_codes(data, time_column)
    # Each comparison sees two of the k variants, so its planned size is that share of planned_n
    # (equal weights assumed; pass the per-comparison figure through the Python API otherwise).
    per_comparison = None if planned_n is None else float(planned_n) * 2 / len(labels)
    results: list[MetricResult] = []
    for spec in specs:
        options = Options(
            test=spec.test,
            alpha=alpha,
            alternative=alternative,
            relative_ci=relative_ci,
            sequential=sequential,
            planned_n=per_comparison,
        )
        # Values that are not finite, or whose squares overflow, give sums that are not: the
        # comparison reports them as NON_FINITE, so numpy's overflow warnings say nothing more.
        with np.errstate(over="ignore", invalid="ignore"):
            metric_data = metric_statistics(spec, data, grouping, looks=looks)
            values = _variant_values(spec, data, grouping) if spec.test in VALUE_TESTS else None
            per_metric = _compare_metric(spec, metric_data, labels, control_label, treatments, options, values)
        results.extend(corrected(per_metric, method=correction, alpha=alpha))
    return AnalysisResult(
        control=control_label,
        variants=ordered,
        srm=srm,
        metrics=tuple(results),
        alpha=alpha,
        correction=correction,
        unlabelled_rows=grouping.unlabelled,
    )


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


def _variant_values(spec: MetricSpec, data: Any, grouping: Groups) -> list[np.ndarray]:
    """The metric's per-unit values of each variant, for a test on unit-level values (NaN kept, the test drops it)."""
    values = np.asarray(column(data, str(spec.column)), dtype=np.float64)
    return [values[grouping.codes == g] for g in range(len(grouping.labels))]


def _compare_metric(
    spec: MetricSpec,
    metric_data: MetricData,
    labels: tuple[str, ...],
    control_label: str,
    treatments: list[str],
    options: Options,
    values: list[np.ndarray] | None = None,
) -> list[MetricResult]:
    index = {label: i for i, label in enumerate(labels)}
    c = index[control_label]
    out = []
    for label in treatments:
        t = index[label]
        common: dict[str, Any] = {
            "options": options,
            "higher_is_better": spec.higher_is_better,
            "looks": [(look[c], look[t]) for look in metric_data.by_look],
            "metric": spec.name,
            "kind": spec.kind,
            "variant": label,
            "control": control_label,
            "excluded_units": (metric_data.excluded[c], metric_data.excluded[t]),
        }
        if values is None:
            out.append(compare(metric_data.statistics[c], metric_data.statistics[t], **common))
        else:
            statistics = (metric_data.statistics[c], metric_data.statistics[t])
            out.append(compare_values(values[c], values[t], test=str(spec.test), statistics=statistics, **common))
    return out
