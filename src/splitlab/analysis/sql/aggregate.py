"""Run an experiment's aggregation query and turn its rows into sufficient statistics.

One query per experiment (see :mod:`splitlab.analysis.sql.query`) returns the statistics of the
finest cells (variant × segment levels × allocation phase × exposure day); every coarser cell is a sum of those,
because the statistics are sums (``a + b`` pools them). Only quantiles, which do not add, come
from the database for each cell they are given for.

Example:
    >>> import sqlite3
    >>> from sqlalchemy import create_engine
    >>> from splitlab.specs.model import MetricDefinition
    >>> engine = create_engine("sqlite://")
    >>> with engine.begin() as conn:
    ...     _ = conn.exec_driver_sql(
    ...         "CREATE TABLE exposures (experiment_key TEXT, unit_id TEXT, variant TEXT, first_exposed_at TEXT, "
    ...         "attributes TEXT, multiple_variants INTEGER)")
    ...     _ = conn.exec_driver_sql(
    ...         "CREATE TABLE events (event_id TEXT, unit_id TEXT, name TEXT, value REAL, timestamp TEXT)")
    ...     _ = conn.exec_driver_sql("INSERT INTO exposures VALUES "
    ...         "('demo', 'u1', 'control', '2024-01-01 00:00:00.000000', '{}', 0), "
    ...         "('demo', 'u2', 'treatment', '2024-01-01 00:00:00.000000', '{}', 0), "
    ...         "('demo', 'u3', 'treatment', '2024-01-01 00:00:00.000000', '{}', 0)")
    ...     _ = conn.exec_driver_sql("INSERT INTO events VALUES "
    ...         "('e1', 'u2', 'purchase', 30.0, '2024-01-02 00:00:00.000000'), "
    ...         "('e2', 'u3', 'purchase', 10.0, '2024-01-09 00:00:00.000000')")
    >>> conversion = MetricDefinition(name="conversion", kind="binary", event="purchase", window_days=7)
    >>> result = aggregate_experiment(engine, experiment_key="demo", metrics=[conversion],
    ...                               source=Source.splitlab_store())
    >>> result.variant_units
    {'control': 1, 'treatment': 2}
    >>> result.statistic("conversion", "treatment")
    ProportionStatistic(n=2, successes=1.0)
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple, Union

import numpy as np
import numpy.typing as npt

from splitlab.analysis.sql._dialect import DIALECTS, Dialect, dialect_of, execute
from splitlab.analysis.sql.quantile import QuantileStatistic
from splitlab.analysis.sql.query import AggregationQuery, MetricColumns, build_query
from splitlab.analysis.sql.source import Source
from splitlab.specs.model import MetricDefinition
from splitlab.stats.statistics import CovariateStatistic, MeanStatistic, ProportionStatistic, RatioStatistic

__all__ = ["CellKey", "ExperimentAggregates", "Statistic", "aggregate_experiment", "unit_values"]

Statistic = Union[MeanStatistic, ProportionStatistic, RatioStatistic, CovariateStatistic, QuantileStatistic]  # noqa: UP007
"""What a cell holds per metric: the statistics the stats engine tests (quantiles: order statistics)."""

Segment = tuple[str | None, ...]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = date(1970, 1, 1)


class CellKey(NamedTuple):
    """A cell of the results: a variant, optionally one level per segment, a day, an allocation phase.

    ``segment`` is a tuple with one level per requested segment (``None`` for a unit without the
    attribute); ``segment=None`` is every level together. ``day`` is a UTC date: the cell holds
    the units first exposed on or before it (cumulative); ``day=None`` is every day. ``phase`` is
    the allocation phase of the units' first exposure (1, 2, ...); ``phase=None`` is every phase.
    """

    variant: str
    segment: Segment | None = None
    day: date | None = None
    phase: int | None = None


@dataclass(frozen=True, slots=True)
class ExperimentAggregates:
    """Sufficient statistics of an experiment, per cell and metric.

    Attributes:
        experiment_key: the experiment.
        variant_units: units analysed per variant (multiple-exposure units excluded).
        multiple_exposure_units: units seen in more than one variant, excluded from every cell.
        segments: the segment names, in the order of each cell's level tuple.
        days: the UTC days of first exposure, ascending (empty unless ``by_day``).
        cells: ``CellKey -> metric name -> statistic``; ``quantile`` metrics only in cells without a
            day or a phase.
        cell_units: units per cell.
        sql: the query that produced them.
        as_of: the cut-off time, if any.
        phases: the allocation phases that have units, ascending (empty unless ``phase_starts``).
    """

    experiment_key: str
    variant_units: dict[str, int]
    multiple_exposure_units: int
    segments: tuple[str, ...]
    days: tuple[date, ...]
    cells: dict[CellKey, dict[str, Statistic]]
    cell_units: dict[CellKey, int]
    sql: str = field(repr=False)
    as_of: datetime | None = None
    phases: tuple[int, ...] = ()

    @property
    def variants(self) -> tuple[str, ...]:
        """The variants with at least one analysed unit, sorted."""
        return tuple(sorted(self.variant_units))

    @property
    def multiple_exposure_rate(self) -> float:
        """Share of exposed units seen in more than one variant (NaN without units)."""
        total = sum(self.variant_units.values()) + self.multiple_exposure_units
        return self.multiple_exposure_units / total if total else math.nan

    def statistic(
        self,
        metric: str,
        variant: str,
        *,
        segment: Segment | None = None,
        day: date | None = None,
        phase: int | None = None,
    ) -> Statistic:
        """The statistic of ``metric`` in one cell.

        Raises:
            KeyError: no such cell (e.g. a variant without units) or metric.
        """
        key = CellKey(variant, segment, day, phase)
        if key not in self.cells:
            msg = f"no cell {key} in the aggregates of {self.experiment_key!r}"
            raise KeyError(msg)
        statistics = self.cells[key]
        if metric not in statistics:
            msg = f"metric {metric!r} is not in cell {key} (metrics: {', '.join(statistics)})"
            raise KeyError(msg)
        return statistics[metric]

    def segment_levels(self, segment: str) -> tuple[str | None, ...]:
        """The levels of one segment that occur, sorted (``None``, a missing attribute, last)."""
        index = self._segment_index(segment)
        levels = {key.segment[index] for key in self.cells if key.segment is not None}
        return tuple(sorted(levels, key=lambda level: (level is None, level or "")))

    def marginal(
        self, metric: str, variant: str, segment: str, level: str | None, *, phase: int | None = None
    ) -> Statistic:
        """The statistic of the units whose ``segment`` is ``level``, summed over the other segments.

        ``phase``: only the units of that allocation phase; default every phase.

        Raises:
            KeyError: unknown segment, level or metric; ``ValueError`` for a quantile (not additive).
        """
        index = self._segment_index(segment)
        parts = [
            statistics[metric]
            for key, statistics in self.cells.items()
            if key.variant == variant
            and key.day is None
            and key.phase == phase
            and key.segment is not None
            and key.segment[index] == level
        ]
        if not parts:
            msg = f"no units with {segment} == {level!r} in variant {variant!r}"
            raise KeyError(msg)
        if isinstance(parts[0], QuantileStatistic):
            msg = f"metric {metric!r} is a quantile: it is given per cell only, its cells do not add"
            raise ValueError(msg)  # noqa: TRY004 - the metric's kind, not the argument's type, is the problem
        return _sum(parts)

    def _segment_index(self, segment: str) -> int:
        if segment not in self.segments:
            msg = f"segment {segment!r} was not aggregated (segments: {', '.join(self.segments) or 'none'})"
            raise KeyError(msg)
        return self.segments.index(segment)


def _sum(parts: Sequence[Any]) -> Statistic:
    total: Statistic = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def _check_arguments(
    experiment_key: object,
    metrics: object,
    source: object,
    segments: object,
    by_day: object,
    as_of: object,
    phase_starts: object,
) -> tuple[list[MetricDefinition], tuple[str, ...]]:
    if not isinstance(experiment_key, str) or not experiment_key:
        msg = f"experiment_key == {experiment_key!r}, must be a non-empty string"
        raise ValueError(msg)
    if isinstance(metrics, MetricDefinition) or not isinstance(metrics, Sequence) or not metrics:
        msg = "metrics must be a non-empty sequence of MetricDefinition"
        raise ValueError(msg)
    for i, metric in enumerate(metrics):
        if not isinstance(metric, MetricDefinition):
            msg = f"metrics.{i} is a {type(metric).__name__}, must be a MetricDefinition"
            raise ValueError(msg)  # noqa: TRY004 - a caller mistake in a parameter's value
    names = [metric.name for metric in metrics]
    if duplicates := sorted({name for name in names if names.count(name) > 1}):
        msg = f"metrics: {', '.join(map(repr, duplicates))} defined more than once, names must be unique"
        raise ValueError(msg)
    if not isinstance(source, Source):
        msg = (
            f"source must be a Source (Source.splitlab_store() or Source.from_config(...)), got {type(source).__name__}"
        )
        raise ValueError(msg)  # noqa: TRY004 - a caller mistake in a parameter's value
    if isinstance(segments, str) or not isinstance(segments, Sequence):
        msg = f"segments == {segments!r}, must be a sequence of segment names"
        raise ValueError(msg)  # noqa: TRY004 - a caller mistake in a parameter's value
    if len(set(segments)) != len(segments):
        msg = f"segments == {list(segments)} names a segment more than once"
        raise ValueError(msg)
    for name in segments:
        source.exposures.segment(name)
    if not isinstance(by_day, bool):
        msg = f"by_day == {by_day!r}, must be True or False"
        raise ValueError(msg)  # noqa: TRY004 - a caller mistake in a parameter's value
    if as_of is not None and (not isinstance(as_of, datetime) or as_of.utcoffset() is None):
        msg = f"as_of == {as_of!r}, must be a timezone-aware datetime or None"
        raise ValueError(msg)
    if isinstance(phase_starts, str) or not isinstance(phase_starts, Sequence):
        msg = f"phase_starts == {phase_starts!r}, must be a sequence of timezone-aware datetimes"
        raise ValueError(msg)  # noqa: TRY004 - a caller mistake in a parameter's value
    for i, start in enumerate(phase_starts):
        if not isinstance(start, datetime) or start.utcoffset() is None:
            msg = f"phase_starts.{i} == {start!r}, must be a timezone-aware datetime"
            raise ValueError(msg)
        if i and start <= phase_starts[i - 1]:
            msg = f"phase_starts.{i} == {start.isoformat()}, must be later than phase_starts.{i - 1}"
            raise ValueError(msg)
    return list(metrics), tuple(segments)


def aggregate_experiment(
    connection: Any,
    *,
    experiment_key: str,
    metrics: Sequence[MetricDefinition],
    source: Source,
    segments: Sequence[str] = (),
    by_day: bool = False,
    as_of: datetime | None = None,
    phase_starts: Sequence[datetime] = (),
) -> ExperimentAggregates:
    """Aggregate an experiment's exposures and events into sufficient statistics, in one query.

    Args:
        connection: a SQLAlchemy ``Engine`` or ``Connection`` (SQLite, PostgreSQL; DuckDB through
            duckdb-engine) or a ``duckdb.DuckDBPyConnection``. Only read from.
        experiment_key: the experiment whose exposures are analysed.
        metrics: the metric definitions (unique names).
        source: where exposures and events are (:class:`~splitlab.analysis.sql.source.Source`).
        segments: segment attributes to split by; cells hold one level per segment. Default none.
        by_day: also give cumulative cells per UTC day of first exposure. Default False.
        as_of: ignore exposures and events after this time (aware); default None, everything.
        phase_starts: when allocation phases 2, 3, ... started (aware, ascending); a unit is in the
            phase of its first exposure (phase 1 before the first start). Default none: no phases.

    Returns:
        :class:`ExperimentAggregates`: cells ``(variant, None, None)`` always; ``(variant,
        levels, None)`` with segments; ``(variant, None | levels, day)`` with ``by_day``; and
        with ``phase_starts`` the same cells per phase (``phase=1, 2, ...``) besides those.

    Raises:
        ValueError: invalid arguments (the message names the parameter), a metric that needs
            event values from a source without a value column, an unsupported database.
        TypeError: ``connection`` is not a database connection.
    """
    query, segment_names = _checked_query(
        lambda: dialect_of(connection),
        experiment_key=experiment_key,
        metrics=metrics,
        source=source,
        segments=segments,
        by_day=by_day,
        as_of=as_of,
        phase_starts=phase_starts,
    )
    rows = execute(connection, query.sql)
    return _assemble(
        rows,
        query.metrics,
        experiment_key,
        segment_names,
        by_day=by_day,
        sql=query.sql,
        as_of=as_of,
        phased=query.phased,
    )


def aggregation_sql(
    dialect: str,
    *,
    experiment_key: str,
    metrics: Sequence[MetricDefinition],
    source: Source,
    segments: Sequence[str] = (),
    by_day: bool = False,
    as_of: datetime | None = None,
    phase_starts: Sequence[datetime] = (),
) -> str:
    """The statement :func:`aggregate_experiment` runs, in ``dialect``'s SQL, for a database splitlab cannot reach.

    Arguments as in :func:`aggregate_experiment`, with the engine named instead of connected:
    ``sqlite``, ``postgresql``, ``duckdb``, ``spark``, ``databricks``, ``bigquery``, ``snowflake``
    or ``trino``. Its result rows are the sufficient statistics (docs/aggregation.md, docs/scale.md).

    Raises:
        ValueError: an unknown dialect (the message lists them), or invalid arguments.
    """
    if dialect not in DIALECTS:
        msg = f"dialect == {dialect!r}, must be one of {', '.join(DIALECTS)}"
        raise ValueError(msg)
    query, _ = _checked_query(
        lambda: DIALECTS[dialect],
        experiment_key=experiment_key,
        metrics=metrics,
        source=source,
        segments=segments,
        by_day=by_day,
        as_of=as_of,
        phase_starts=phase_starts,
    )
    return query.sql


def _checked_query(
    dialect: Callable[[], Dialect],
    *,
    experiment_key: str,
    metrics: Sequence[MetricDefinition],
    source: Source,
    segments: Sequence[str],
    by_day: bool,
    as_of: datetime | None,
    phase_starts: Sequence[datetime],
) -> tuple[AggregationQuery, tuple[str, ...]]:
    """The arguments checked (before the engine is looked at), then the query in the engine's dialect."""
    metric_list, segment_names = _check_arguments(
        experiment_key, metrics, source, segments, by_day, as_of, phase_starts
    )
    query = build_query(
        dialect(),
        experiment_key=experiment_key,
        metrics=metric_list,
        source=source,
        segments=segment_names,
        by_day=by_day,
        as_of_us=None if as_of is None else _micros(as_of),
        phase_starts_us=[_micros(start) for start in phase_starts],
    )
    return query, segment_names


def unit_values(
    connection: Any,
    *,
    experiment_key: str,
    metric: MetricDefinition,
    source: Source,
    as_of: datetime | None = None,
) -> dict[str, npt.NDArray[np.float64]]:
    """The per-unit values of one metric, by variant: what a test on unit-level values needs.

    One query, the aggregation query's per-unit steps for ``metric`` alone (the same units, window,
    capping and exclusion of multiple-exposure units as its cells), returning ``(variant, value)``
    rows: the only query that brings one row per unit to Python, for a metric whose definition
    names ``test: mann-whitney`` or ``bootstrap``. Units without a value (kind ``mean`` without the
    event) have no row. Arguments as in :func:`aggregate_experiment`.
    """
    _check_arguments(experiment_key, [metric], source, (), False, as_of, ())
    query = build_query(
        dialect_of(connection),
        experiment_key=experiment_key,
        metrics=[metric],
        source=source,
        as_of_us=None if as_of is None else _micros(as_of),
        unit_level=True,
    )
    by_variant: dict[str, list[float]] = defaultdict(list)
    for row in execute(connection, query.sql):
        by_variant[str(row["variant"])].append(float(row["value"]))
    return {variant: np.asarray(values, dtype=np.float64) for variant, values in by_variant.items()}


def _micros(time: datetime) -> int:
    """Microseconds since 1970-01-01 UTC, the integer time every engine's query compares."""
    return (time - _EPOCH) // timedelta(microseconds=1)


def _statistics(row: Mapping[str, Any], layouts: Sequence[MetricColumns]) -> dict[str, Statistic]:
    out: dict[str, Statistic] = {}
    for layout in layouts:
        p = layout.prefix
        metric: MeanStatistic | ProportionStatistic | RatioStatistic
        if layout.kind == "quantile":
            continue
        if layout.kind == "binary":
            metric = ProportionStatistic.from_row(row, prefix=p)
        elif layout.kind == "ratio":
            metric = RatioStatistic.from_row(row, prefix=p)
        else:
            metric = MeanStatistic.from_row(row, prefix=p)
        if not layout.covariate:
            out[layout.name] = metric
            continue
        covariate_row = {**row, f"{p}cov_n": row[f"{p}n"]}
        covariate: MeanStatistic | RatioStatistic
        if layout.components == 2:
            covariate = RatioStatistic.from_row(covariate_row, prefix=f"{p}cov_")
        else:
            covariate = MeanStatistic.from_row(covariate_row, prefix=f"{p}cov_")
        cross = tuple(
            tuple(float(row[f"{p}cross_{a}_{b}"] or 0.0) for b in range(layout.components))
            for a in range(layout.components)
        )
        out[layout.name] = CovariateStatistic(metric, covariate, cross)
    return out


def _zero(statistic: Statistic) -> Statistic:
    """An empty statistic of the same shape (the cumulative cell before a series' first unit)."""
    if isinstance(statistic, ProportionStatistic):
        return ProportionStatistic(0, 0.0)
    if isinstance(statistic, MeanStatistic):
        return MeanStatistic(0, 0.0, 0.0)
    if isinstance(statistic, RatioStatistic):
        return RatioStatistic(MeanStatistic(0, 0.0, 0.0), MeanStatistic(0, 0.0, 0.0), 0.0)
    if isinstance(statistic, CovariateStatistic):
        cross = tuple(tuple(0.0 for _ in row) for row in statistic.cross)
        return CovariateStatistic(_zero(statistic.metric), _zero(statistic.covariate), cross)  # type: ignore[arg-type]
    msg = f"{type(statistic).__name__} has no zero"
    raise TypeError(msg)


def _add_into(target: dict[str, Statistic], statistics: Mapping[str, Statistic]) -> None:
    for name, statistic in statistics.items():
        target[name] = target[name] + statistic if name in target else statistic  # type: ignore[operator]


def _segment_of(row: Mapping[str, Any], count: int) -> Segment | None:
    if not count:
        return None
    return tuple(None if row[f"s{j}"] is None else str(row[f"s{j}"]) for j in range(count))


def _assemble(
    rows: Sequence[Mapping[str, Any]],
    layouts: Sequence[MetricColumns],
    experiment_key: str,
    segments: tuple[str, ...],
    *,
    by_day: bool,
    sql: str,
    as_of: datetime | None,
    phased: bool = False,
) -> ExperimentAggregates:
    cells: dict[CellKey, dict[str, Statistic]] = defaultdict(dict)
    units: dict[CellKey, int] = defaultdict(int)
    daily: dict[tuple[str, Segment | None, int | None], dict[date, tuple[int, dict[str, Statistic]]]] = defaultdict(
        dict
    )
    phases: set[int] = set()
    multiple = 0
    quantile_rows: dict[tuple[int, CellKey], list[tuple[int, float]]] = defaultdict(list)
    quantile_n: dict[tuple[int, CellKey], int] = {}
    for row in rows:
        grain, variant = row["grain"], str(row["variant"])
        if grain == "multiple":
            multiple += int(row["units"])
            continue
        if grain in ("quantile", "quantile_segment"):
            segment = _segment_of(row, len(segments)) if grain == "quantile_segment" else None
            cell = (int(row["q_metric"]), CellKey(variant, segment))
            quantile_rows[cell].append((int(row["q_rank"]), float(row["q_value"])))
            quantile_n[cell] = int(row["units"])
            continue
        statistics = _statistics(row, layouts)
        segment = _segment_of(row, len(segments))
        count = int(row["units"])
        phase_options: list[int | None] = [None]
        if phased:
            phase_options.append(int(row["phase"]))
            phases.add(int(row["phase"]))
        segment_options = [None, segment] if segments else [None]
        for phase in phase_options:
            for level in segment_options:
                key = CellKey(variant, level, None, phase)
                _add_into(cells[key], statistics)
                units[key] += count
        if by_day:
            day = _EPOCH_DAY + timedelta(days=int(row["day"]))
            for series in {(variant, level, phase) for level in (None, segment) for phase in phase_options}:
                n, sums = daily[series].get(day, (0, {}))
                _add_into(sums, statistics)
                daily[series][day] = (n + count, sums)
    days = tuple(sorted({day for series in daily.values() for day in series}))
    for (variant, segment, phase), per_day in daily.items():
        running: dict[str, Statistic] = {}
        running_units = 0
        first = next(iter(per_day.values()))[1]
        for day in days:
            if day in per_day:
                running_units += per_day[day][0]
                _add_into(running, per_day[day][1])
            key = CellKey(variant, segment, day, phase)
            cells[key] = dict(running) if running else {name: _zero(s) for name, s in first.items()}
            units[key] = running_units
    for (index, key), ranked in quantile_rows.items():
        ranked.sort()
        start = ranked[0][0] - 1
        if [rank for rank, _ in ranked] != list(range(start + 1, start + 1 + len(ranked))):
            msg = f"order statistics of {layouts[index].name!r} in cell {key} are not consecutive ranks"
            raise RuntimeError(msg)
        quantile = layouts[index].quantile
        assert quantile is not None  # noqa: S101 - set for every quantile metric
        values = tuple(value for _, value in ranked)
        cells[key][layouts[index].name] = QuantileStatistic(quantile_n[index, key], quantile, start, values)
    variant_units = dict(
        sorted(
            (key.variant, n)
            for key, n in units.items()
            if key.segment is None and key.day is None and key.phase is None
        )
    )
    return ExperimentAggregates(
        experiment_key=experiment_key,
        variant_units=variant_units,
        multiple_exposure_units=multiple,
        segments=segments,
        days=days,
        cells=dict(cells),
        cell_units=dict(units),
        sql=sql,
        as_of=as_of,
        phases=tuple(sorted(phases)),
    )
