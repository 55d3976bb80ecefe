"""``splitlab.analyze``: a whole A/B analysis of unit-level rows: a frame, an Arrow table, a lazy or SQL table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from splitlab.analysis.aggregate import MetricData, natural_order
from splitlab.analysis.backends import frame_source
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
        data: one row per unit, in memory (a pandas or polars DataFrame, a pyarrow Table, a
            mapping of equal-length columns) or in an engine (a polars LazyFrame, an Ibis table of
            any backend, a DuckDB relation). An engine input is aggregated in its engine, by one
            group-by on the variant computing counts, sums, sums of squares and cross-products;
            only those come to Python (:mod:`splitlab.analysis.backends`). A test on unit-level
            values (``mann-whitney``, ``bootstrap``) reads that metric's column and the variant's.
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
    source = frame_source(data)
    # Values that are not finite, or whose squares overflow, give sums that are not: the
    # comparison reports them as NON_FINITE, so numpy's overflow warnings say nothing more.
    with np.errstate(over="ignore", invalid="ignore"):
        aggregation = source.aggregate(
            parse_metrics(metrics, covariates, tests),
            variant=variant,
            time_column=None if sequential is None else time_column,
        )
    labels = aggregation.labels
    if len(labels) < 2:
        msg = f"column {variant!r} has {len(labels)} variant label(s) {list(labels)}; an experiment needs at least 2"
        raise ValueError(msg)
    control_label = min(labels, key=natural_order) if control is None else str(control)
    if control_label not in labels:
        msg = f"control == {control!r} is not a label of column {variant!r}; labels are {list(labels)}"
        raise ValueError(msg)
    treatments = sorted((label for label in labels if label != control_label), key=natural_order)
    ordered = (control_label, *treatments)
    counts = dict(zip(labels, aggregation.counts, strict=True))
    srm = srm_test({label: counts[label] for label in ordered}, _weights(weights, ordered), threshold=srm_threshold)
    # Each comparison sees two of the k variants, so its planned size is that share of planned_n
    # (equal weights assumed; pass the per-comparison figure through the Python API otherwise).
    per_comparison = None if planned_n is None else float(planned_n) * 2 / len(labels)
    results: list[MetricResult] = []
    for spec, metric_data in zip(aggregation.specs, aggregation.metrics, strict=True):
        options = Options(
            test=spec.test,
            alpha=alpha,
            alternative=alternative,
            relative_ci=relative_ci,
            sequential=sequential,
            planned_n=per_comparison,
        )
        values = source.unit_values(spec, variant=variant, labels=labels) if spec.test in VALUE_TESTS else None
        with np.errstate(over="ignore", invalid="ignore"):
            per_metric = _compare_metric(spec, metric_data, labels, control_label, treatments, options, values)
        results.extend(corrected(per_metric, method=correction, alpha=alpha))
    return AnalysisResult(
        control=control_label,
        variants=ordered,
        srm=srm,
        metrics=tuple(results),
        alpha=alpha,
        correction=correction,
        unlabelled_rows=aggregation.unlabelled,
    )


def _weights(weights: Mapping[str, float] | None, labels: tuple[str, ...]) -> dict[str, float] | None:
    if weights is None:
        return None
    given = {str(k): float(v) for k, v in weights.items()}
    if set(given) != set(labels):
        msg = f"weights must name every variant label {sorted(labels)}, got {sorted(given)}"
        raise ValueError(msg)
    return {label: given[label] for label in labels}


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
