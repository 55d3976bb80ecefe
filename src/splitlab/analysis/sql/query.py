# ruff: noqa: S608 - this module builds SQL: every value is an escaped literal (sql_string, sql_float,
# integers) and every name a quoted identifier (quote_identifier, quote_table).
"""Metric definitions -> the one SQL query that aggregates an experiment.

The query is a chain of CTEs, read once from top to bottom:

``units``
    the first exposure of every unit of the experiment (its variant, time in microseconds,
    segment levels and exposure day) and whether it was seen in more than one variant;
``unit_values``
    one pass over the events: the unit's events joined to its first exposure, grouped by unit,
    with one ``FILTER``-ed aggregate per distinct (event, aggregate, window), so five metrics on
    the same event cost one scan;
``unit_raw``
    per-unit metric values (and CUPED covariates) for every unit exposed to one variant only,
    units without events included (0, or no value for ``mean``);
``cap_*``
    percentile capping thresholds, from ranks over the pooled per-unit values;
``unit_metrics``
    the capped values;

and a final ``UNION ALL`` of the sufficient statistics per variant (× segment levels × allocation
phase × exposure day), the count of multiple-exposure units per variant, and the order statistics around each
quantile metric's quantile. docs/aggregation.md defines every per-unit value.

References:
    Hyndman, R. J., Fan, Y. (1996). Sample quantiles in statistical packages. The American
    Statistician 50(4), definition 7: the percentile capping thresholds
    ``Q(p) = y_(k) + (h - k) (y_(k+1) - y_(k))``, ``h = (N - 1) p``, ``k = floor(h)``.
    Deng, A., Xu, Y., Kohavi, R., Walker, T. (2013). Improving the Sensitivity of Online
    Controlled Experiments by Utilizing Pre-Experiment Data. WSDM: the pre-exposure covariate.
    Deng, A., Knoblich, U., Lu, J. (2018). Applying the Delta Method in Metric Analytics. KDD,
    eq. 3: the cross-products a ratio metric's variance needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from splitlab.analysis.sql._dialect import (
    DAY_US,
    Dialect,
    quote_identifier,
    quote_table,
    sql_float,
    sql_string,
)
from splitlab.analysis.sql.quantile import BAND_MARGIN, SE_Z
from splitlab.analysis.sql.source import Source
from splitlab.specs.model import Capping, EventAggregate, MetricDefinition

__all__ = ["GRAINS", "AggregationQuery", "MetricColumns", "build_query", "window_micros"]

_DOUBLE = "DOUBLE PRECISION"
_ZERO = f"CAST(0 AS {_DOUBLE})"
_ONE = f"CAST(1 AS {_DOUBLE})"

GRAINS = ("cell", "multiple", "quantile", "quantile_segment")
"""The ``grain`` column of the result: statistics, multiple-exposure counts, quantile order statistics."""

_Window = tuple[int, int | None]


def window_micros(days: float) -> int:
    """A window in days as whole microseconds (the resolution of every engine's time type)."""
    return round(days * DAY_US)


@dataclass(frozen=True, slots=True)
class MetricColumns:
    """Where one metric's aggregates are in the result rows.

    Attributes:
        name: the metric's name.
        kind: the metric's kind.
        prefix: the prefix of its aggregate columns (``m0_``), or its index in ``q_metric`` for quantiles.
        components: 2 for ratio metrics (numerator, denominator), else 1.
        covariate: whether CUPED covariate aggregates are present.
        quantile: the quantile level of a ``quantile`` metric.
    """

    name: str
    kind: str
    prefix: str
    components: int
    covariate: bool
    quantile: float | None


@dataclass(frozen=True, slots=True)
class AggregationQuery:
    """The SQL text and how to read its rows.

    Attributes:
        sql: the statement, with every value inlined as a literal (it can be run as is).
        segments: the segment names, in the order of the ``s0, s1, ...`` columns.
        by_day: whether cells are split by exposure day (the ``day`` column).
        metrics: the metrics, in the order of their column prefixes.
        phased: whether cells are split by allocation phase (the ``phase`` column).
    """

    sql: str
    segments: tuple[str, ...]
    by_day: bool
    metrics: tuple[MetricColumns, ...]
    phased: bool = False


class _Measures:
    """Distinct per-unit event aggregates: (kind, event, window) -> column of ``unit_values``."""

    def __init__(self) -> None:
        self.columns: dict[tuple[str, str, int, int | None], str] = {}

    def add(self, kind: str, event: str, window: _Window) -> str:
        key = (kind, event, *window)
        return "v." + self.columns.setdefault(key, f"e{len(self.columns)}")

    def bounds(self) -> _Window:
        """The smallest window holding every measure's window: what the event join must keep."""
        ends = [end for _, _, _, end in self.columns]
        start = min(start for _, _, start, _ in self.columns)
        return start, (None if any(end is None for end in ends) else max(end for end in ends if end is not None))


def _offset(base: str, offset: int) -> str:
    if offset == 0:
        return base
    return f"{base} {'+' if offset > 0 else '-'} {abs(offset)}"


def _in_window(event: str, window: _Window) -> str:
    start, end = window
    condition = f"e.name = {sql_string(event)} AND e.ts_us >= {_offset('u.x_us', start)}"
    if end is not None:
        condition += f" AND e.ts_us < {_offset('u.x_us', end)}"
    return condition


def _measure_sql(kind: str, event: str, window: _Window) -> str:
    aggregate = {"count": "COUNT(*)", "sum": "SUM(e.value)", "values": "COUNT(e.value)"}[kind]
    return f"{aggregate} FILTER (WHERE {_in_window(event, window)})"


def _side(measures: _Measures, side: EventAggregate, window: _Window) -> str:
    if side.aggregation == "sum":
        return f"COALESCE({measures.add('sum', side.event, window)}, {_ZERO})"
    return f"CAST(COALESCE({measures.add('count', side.event, window)}, 0) AS {_DOUBLE})"


def _components(metric: MetricDefinition, measures: _Measures, window: _Window, post: _Window) -> list[str]:
    """Per-unit value(s) of ``metric`` over ``window`` (``post``: the metric's own window, for ``mean`` covariates)."""
    if metric.kind == "ratio":
        assert metric.numerator is not None  # noqa: S101 - model-validated
        assert metric.denominator is not None  # noqa: S101 - model-validated
        return [_side(measures, metric.numerator, window), _side(measures, metric.denominator, window)]
    assert metric.event is not None  # noqa: S101 - model-validated
    event = metric.event
    if metric.kind == "binary":
        return [f"(CASE WHEN {measures.add('count', event, window)} > 0 THEN {_ONE} ELSE {_ZERO} END)"]
    if metric.kind == "count":
        return [f"CAST(COALESCE({measures.add('count', event, window)}, 0) AS {_DOUBLE})"]
    if metric.kind in ("sum", "quantile"):
        return [f"COALESCE({measures.add('sum', event, window)}, {_ZERO})"]
    total, values = measures.add("sum", event, window), measures.add("values", event, window)
    if window == post:  # mean: units without a value have none
        return [f"(CASE WHEN {values} > 0 THEN {total} / {values} END)"]
    # The covariate of a mean: the pre-period mean, 0 without pre-period values, for units with a metric value.
    has_value = measures.add("values", event, post)
    return [f"(CASE WHEN {has_value} > 0 THEN COALESCE({total} / NULLIF({values}, 0), {_ZERO}) END)"]


def _uses_values(metric: MetricDefinition) -> bool:
    if metric.kind == "ratio":
        assert metric.numerator is not None  # noqa: S101 - model-validated
        assert metric.denominator is not None  # noqa: S101 - model-validated
        return "sum" in (metric.numerator.aggregation, metric.denominator.aggregation)
    return metric.kind in ("sum", "mean", "quantile")


def _lerp_at(h: str) -> str:
    """The linear interpolation of numpy between the order statistic at ``rn`` and the next one."""
    t = f"({h} - (rn - 1))"
    a, b = "x", "COALESCE(x_next, x)"
    return f"(CASE WHEN {t} >= 0.5 THEN {b} - ({b} - {a}) * (1 - {t}) ELSE {a} + ({b} - {a}) * {t} END)"


def _cap_cte(name: str, column: str, capping: Capping) -> str:
    """Percentile thresholds (numpy's linear definition) of ``column`` over all units with a value."""
    picks = []
    index_columns = []
    for bound_name in ("lower", "upper"):
        share = getattr(capping, bound_name)
        if share is None:
            continue
        h = f"h_{bound_name}"
        index_columns.append(f"CAST(COUNT(*) OVER () - 1 AS {_DOUBLE}) * {sql_float(share)} AS {h}")
        picks.append(f"MAX(CASE WHEN rn - 1 <= {h} AND {h} < rn THEN {_lerp_at(h)} END) AS {bound_name}")
    return (
        f"{name} AS MATERIALIZED (\n  SELECT {', '.join(picks)}\n  FROM (\n"
        f"    SELECT x, LEAD(x) OVER (ORDER BY x) AS x_next, ROW_NUMBER() OVER (ORDER BY x) AS rn,\n"
        f"      {', '.join(index_columns)}\n"
        f"    FROM (SELECT {column} AS x FROM unit_raw WHERE {column} IS NOT NULL) capped_values\n"
        f"  ) ranked\n)"
    )


def _clamp(column: str, capping: Capping, cap_cte: str | None) -> str:
    lower = upper = None
    if cap_cte is not None:
        lower = f"{cap_cte}.lower" if capping.lower is not None else None
        upper = f"{cap_cte}.upper" if capping.upper is not None else None
    else:
        lower = sql_float(capping.lower) if capping.lower is not None else None
        upper = sql_float(capping.upper) if capping.upper is not None else None
    cases = []
    if upper is not None:
        cases.append(f"WHEN {column} > {upper} THEN {upper}")
    if lower is not None:
        cases.append(f"WHEN {column} < {lower} THEN {lower}")
    return f"(CASE {' '.join(cases)} ELSE {column} END)"


def _quantile_band(quantile: float) -> str:
    """``|k - (n-1) q| <= (n-1) z sqrt(q (1-q) / n) + margin`` for rank ``k = rn - 1``, without a square root."""
    gap = f"(ABS(CAST(rn - 1 AS {_DOUBLE}) - CAST(n - 1 AS {_DOUBLE}) * {sql_float(quantile)}) - {BAND_MARGIN})"
    squared_width = (
        f"CAST(n - 1 AS {_DOUBLE}) * CAST(n - 1 AS {_DOUBLE}) * {sql_float(SE_Z**2 * quantile * (1 - quantile))}"
    )
    return f"({gap} <= 0 OR {gap} * {gap} * CAST(n AS {_DOUBLE}) <= {squared_width})"


def _cell_aggregates(columns: MetricColumns, index: int) -> list[str]:
    p = columns.prefix
    m = [f"m{index}_{k}" for k in range(columns.components)]
    c = [f"c{index}_{k}" for k in range(columns.components)]
    if columns.kind == "binary":
        out = [f"COUNT(*) AS {p}n", f"SUM({m[0]}) AS {p}sum"]
    elif columns.kind == "ratio":
        out = [
            f"COUNT(*) AS {p}n",
            f"SUM({m[0]}) AS {p}num_sum",
            f"SUM({m[0]} * {m[0]}) AS {p}num_sum_sq",
            f"SUM({m[1]}) AS {p}den_sum",
            f"SUM({m[1]} * {m[1]}) AS {p}den_sum_sq",
            f"SUM({m[0]} * {m[1]}) AS {p}num_den_sum",
        ]
    else:
        count = f"COUNT({m[0]})" if columns.kind == "mean" else "COUNT(*)"
        out = [f"{count} AS {p}n", f"SUM({m[0]}) AS {p}sum", f"SUM({m[0]} * {m[0]}) AS {p}sum_sq"]
    if not columns.covariate:
        return out
    if columns.components == 2:
        out += [
            f"SUM({c[0]}) AS {p}cov_num_sum",
            f"SUM({c[0]} * {c[0]}) AS {p}cov_num_sum_sq",
            f"SUM({c[1]}) AS {p}cov_den_sum",
            f"SUM({c[1]} * {c[1]}) AS {p}cov_den_sum_sq",
            f"SUM({c[0]} * {c[1]}) AS {p}cov_num_den_sum",
        ]
    else:
        out += [f"SUM({c[0]}) AS {p}cov_sum", f"SUM({c[0]} * {c[0]}) AS {p}cov_sum_sq"]
    out += [f"SUM({mi} * {cj}) AS {p}cross_{a}_{b}" for a, mi in enumerate(m) for b, cj in enumerate(c)]
    return out


def _phase_case(starts_us: Sequence[int]) -> str:
    """The allocation phase of a unit from its first exposure time: the last phase started by then."""
    cases = " ".join(
        f"WHEN v.x_us >= {int(start)} THEN {number}" for number, start in reversed(list(enumerate(starts_us, 2)))
    )
    return f"(CASE {cases} ELSE 1 END) AS phase"


def _units_cte(
    dialect: Dialect, source: Source, experiment_key: str, segments: Sequence[str], as_of_us: int | None
) -> str:
    x = source.exposures
    time = dialect.micros(f"x.{quote_identifier(x.timestamp)}")
    items = [
        f"x.{quote_identifier(x.unit)} AS unit_id",
        f"x.{quote_identifier(x.variant)} AS variant",
        f"{time} AS x_us",
    ]
    for j, name in enumerate(segments):
        place, column = x.segment(name)
        quoted = f"x.{quote_identifier(column)}"
        expression = f"CAST({quoted} AS TEXT)" if place == "column" else dialect.json_text(quoted, name)
        items.append(f"{expression} AS s{j}")
    flag = dialect.flag(f"x.{quote_identifier(x.multiple_variants)}") if x.multiple_variants is not None else "0"
    items.append(f"{flag} AS {'multiple' if x.one_row_per_unit else 'flagged'}")
    conditions = []
    if x.experiment is not None:
        conditions.append(f"x.{quote_identifier(x.experiment)} = {sql_string(experiment_key)}")
    if as_of_us is not None:
        conditions.append(f"{time} <= {as_of_us}")
    where = f"\n  WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = f"SELECT {', '.join(items)}\n  FROM {quote_table(x.table)} x{where}"
    if x.one_row_per_unit:
        return f"units AS MATERIALIZED (\n  {rows}\n)"
    segment_columns = "".join(f", s{j}" for j in range(len(segments)))
    # The first exposure decides variant, time and segments; two variants (or a flag) make the unit ambiguous.
    return (
        f"exposure_rows AS (\n  {rows}\n),\n"
        f"units AS MATERIALIZED (\n"
        f"  SELECT unit_id, variant, x_us{segment_columns},\n"
        f"    CASE WHEN variant_min <> variant_max OR flagged_any = 1 THEN 1 ELSE 0 END AS multiple\n"
        f"  FROM (\n"
        f"    SELECT unit_id, variant, x_us{segment_columns},\n"
        f"      ROW_NUMBER() OVER (PARTITION BY unit_id ORDER BY x_us, variant) AS exposure_rank,\n"
        f"      MIN(variant) OVER (PARTITION BY unit_id) AS variant_min,\n"
        f"      MAX(variant) OVER (PARTITION BY unit_id) AS variant_max,\n"
        f"      MAX(flagged) OVER (PARTITION BY unit_id) AS flagged_any\n"
        f"    FROM exposure_rows\n"
        f"  ) ranked_exposures\n"
        f"  WHERE exposure_rank = 1\n)"
    )


def build_query(
    dialect: Dialect,
    *,
    experiment_key: str,
    metrics: Sequence[MetricDefinition],
    source: Source,
    segments: Sequence[str] = (),
    by_day: bool = False,
    as_of_us: int | None = None,
    phase_starts_us: Sequence[int] = (),
    unit_level: bool = False,
) -> AggregationQuery:
    """Build the aggregation query of one experiment (arguments as in :func:`aggregate_experiment`).

    With ``unit_level`` the statement ends at the per-unit values instead of aggregating them: one
    row ``(variant, value)`` per unit with a value of the first metric (capped as the cells are), sorted,
    for the tests that need unit-level values (:func:`splitlab.analysis.sql.unit_values`); give it
    that one metric only.

    ``as_of_us`` is the cut-off in microseconds since 1970-01-01 UTC: exposures and events after
    it are ignored. ``phase_starts_us`` are the starts of allocation phases 2, 3, ... (ascending,
    same unit): a unit first exposed at ``x`` is in the last phase whose start is ``<= x``, phase 1
    before the first start. Without them the query has no ``phase`` column. The arguments are
    assumed valid (``aggregate_experiment`` checks them).
    """
    measures = _Measures()
    layouts: list[MetricColumns] = []
    raw_items: list[str] = []
    capped_items: list[str] = []
    cap_ctes: list[str] = []
    cap_names: list[str] = []
    quantiles: list[tuple[int, MetricColumns]] = []
    for i, metric in enumerate(metrics):
        if _uses_values(metric) and source.events.value is None:
            msg = (
                f"metrics: {metric.name!r} ({metric.kind}) needs event values, but the event table has no value column"
            )
            raise ValueError(msg)
        post: _Window = (0, None if metric.window_days is None else window_micros(metric.window_days))
        values = _components(metric, measures, post, post)
        covariates: list[str] = []
        if metric.covariate is not None:
            covariates = _components(metric, measures, (-window_micros(metric.covariate.pre_window_days), 0), post)
        layout = MetricColumns(
            metric.name,
            metric.kind,
            f"m{i}_",
            len(values),
            metric.covariate is not None,
            metric.quantile,
        )
        layouts.append(layout)
        for prefix, expressions in (("m", values), ("c", covariates)):
            for k, expression in enumerate(expressions):
                column = f"{prefix}{i}_{k}"
                raw_items.append(f"{expression} AS {column}")
                capping = metric.capping if k == 0 else None
                if capping is None:
                    capped_items.append(column)
                    continue
                cap_cte = None
                if capping.type == "percentile":
                    cap_cte = f"cap_{column}"
                    cap_ctes.append(_cap_cte(cap_cte, column, capping))
                    cap_names.append(cap_cte)
                capped_items.append(f"{_clamp(column, capping, cap_cte)} AS {column}")
        if metric.kind == "quantile":
            quantiles.append((i, layout))

    phased = bool(phase_starts_us)
    dimensions = [f"s{j}" for j in range(len(segments))] + (["phase"] if phased else []) + (["day"] if by_day else [])
    keys = ", ".join(["variant", *dimensions])
    events = source.events
    names = sorted({key[1] for key in measures.columns})
    start, end = measures.bounds()
    event_time = dialect.micros(f"ev.{quote_identifier(events.timestamp)}")
    value = f"CAST(ev.{quote_identifier(events.value)} AS {_DOUBLE})" if events.value is not None else _ZERO
    event_filter = f"ev.{quote_identifier(events.name)} IN ({', '.join(map(sql_string, names))})"
    if as_of_us is not None:
        event_filter += f" AND {event_time} <= {as_of_us}"
    join_window = f"e.ts_us >= {_offset('u.x_us', start)}" + (
        f" AND e.ts_us < {_offset('u.x_us', end)}" if end is not None else ""
    )
    measure_items = ",\n    ".join(
        f"{_measure_sql(kind, event, (lo, hi))} AS {column}"
        for (kind, event, lo, hi), column in measures.columns.items()
    )
    ctes = [_units_cte(dialect, source, experiment_key, segments, as_of_us)]
    # Every unit keeps its row (LEFT JOIN, window in the ON clause) and its own columns, so the next
    # step reads one table: a second join between CTEs gets no index on SQLite (a nested loop).
    unit_columns = ", ".join(["u.unit_id", "u.variant", "u.x_us", *(f"u.s{j}" for j in range(len(segments))),
                              "u.multiple"])  # fmt: skip
    ctes.append(
        f"unit_values AS MATERIALIZED (\n"
        f"  SELECT {unit_columns},\n    {measure_items}\n"
        f"  FROM units u\n"
        f"  LEFT JOIN (\n"
        f"    SELECT ev.{quote_identifier(events.unit)} AS unit_id, ev.{quote_identifier(events.name)} AS name,\n"
        f"      {value} AS value, {event_time} AS ts_us\n"
        f"    FROM {quote_table(events.table)} ev\n"
        f"    WHERE {event_filter}\n"
        f"  ) e ON e.unit_id = u.unit_id AND {join_window}\n"
        f"  GROUP BY {unit_columns}\n)"
    )
    unit_dimensions = [f"v.s{j}" for j in range(len(segments))] + ([_phase_case(phase_starts_us)] if phased else [])
    unit_dimensions += [f"{dialect.day('v.x_us')} AS day"] if by_day else []
    materialized = " MATERIALIZED" if cap_ctes or quantiles else ""
    ctes.append(
        f"unit_raw AS{materialized} (\n"
        f"  SELECT {', '.join(['v.variant', *unit_dimensions])},\n    " + ",\n    ".join(raw_items) + "\n"
        "  FROM unit_values v\n"
        "  WHERE v.multiple = 0\n)"
    )
    ctes.extend(cap_ctes)
    cross = "".join(f" CROSS JOIN {name}" for name in cap_names)
    ctes.append(
        f"unit_metrics AS (\n  SELECT {keys},\n    " + ",\n    ".join(capped_items) + f"\n  FROM unit_raw{cross}\n)"
    )

    if unit_level:
        # Sorted: the bootstrap resamples by position, so the same units give the same CI on every engine.
        tail = "SELECT variant, m0_0 AS value FROM unit_metrics WHERE m0_0 IS NOT NULL ORDER BY variant, m0_0"
        sql = dialect.finish("WITH " + ",\n".join(ctes) + "\n" + tail)
        return AggregationQuery(sql, tuple(segments), by_day, tuple(layouts), phased)

    aggregate_columns = [item for i, layout in enumerate(layouts) if layout.kind != "quantile"
                         for item in _cell_aggregates(layout, i)]  # fmt: skip
    aggregate_names = [item.rsplit(" AS ", 1)[1] for item in aggregate_columns]
    segment_names = [f"s{j}" for j in range(len(segments))]
    phase_names = ["phase"] if phased else []
    header = ["grain", "variant", *segment_names, *phase_names, "day", "q_metric", "q_rank", "q_value", "units"]
    header += aggregate_names

    # Typed NULLs: PostgreSQL settles a UNION column's type branch by branch, and a bare NULL is text.
    null_types = {"phase": "BIGINT", "day": "BIGINT", "q_metric": "BIGINT", "q_rank": "BIGINT", "units": "BIGINT"}
    null_types |= dict.fromkeys(("grain", "variant", *segment_names), "TEXT")

    def branch(values: dict[str, str], tail: str) -> str:
        items = [f"{values.get(name, f'CAST(NULL AS {null_types.get(name, _DOUBLE)})')} AS {name}" for name in header]
        return "SELECT " + ", ".join(items) + "\n" + tail

    cell_values = {"grain": "'cell'", "variant": "variant", "units": "COUNT(*)"}
    cell_values |= {name: name for name in segment_names}
    if phased:
        cell_values["phase"] = "phase"
    if by_day:
        cell_values["day"] = "day"
    cell_values |= {
        name: item.rsplit(" AS ", 1)[0] for name, item in zip(aggregate_names, aggregate_columns, strict=True)
    }
    branches = [branch(cell_values, f"FROM unit_metrics\nGROUP BY {keys}")]
    branches.append(
        branch(
            {"grain": "'multiple'", "variant": "variant", "units": "COUNT(*)"},
            "FROM units\nWHERE multiple = 1\nGROUP BY variant",
        )
    )
    for i, layout in quantiles:
        assert layout.quantile is not None  # noqa: S101 - model-validated
        grains = [("quantile", ["variant"])]
        if segments:
            grains.append(("quantile_segment", ["variant", *segment_names]))
        for grain, partition in grains:
            items = {"grain": f"'{grain}'", "variant": "variant", "q_metric": str(i), "q_rank": "rn", "q_value": "x"}
            items["units"] = "n"
            if grain == "quantile_segment":
                items |= {name: name for name in segment_names}
            over = f"PARTITION BY {', '.join(partition)}"
            branches.append(
                branch(
                    items,
                    f"FROM (\n  SELECT {', '.join(partition)}, m{i}_0 AS x,\n"
                    f"    ROW_NUMBER() OVER ({over} ORDER BY m{i}_0) AS rn, COUNT(*) OVER ({over}) AS n\n"
                    f"  FROM unit_raw\n) ranked_m{i}\nWHERE {_quantile_band(layout.quantile)}",
                )
            )
    sql = dialect.finish("WITH " + ",\n".join(ctes) + "\n" + "\nUNION ALL\n".join(branches))
    return AggregationQuery(sql, tuple(segments), by_day, tuple(layouts), phased)
