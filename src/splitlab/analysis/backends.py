"""``splitlab.analyze``'s inputs, each aggregated where it lives, keyed by the input's type.

* In memory (pandas or polars DataFrame, pyarrow Table, a mapping of columns): each column
  becomes one numpy array (zero-copy for a pyarrow or polars float column without nulls) and
  :func:`splitlab.analysis.aggregate.metric_statistics` sums it with ``np.bincount``.
* In an engine (polars LazyFrame, Ibis table, DuckDB relation): one group-by on the variant (and
  the time column, for sequential looks) computes every sum the metrics need, in the engine, and
  only those rows, one per variant (and look), come to Python; the data's rows never do. This is
  tea-tasting's approach (``tea_tasting.aggr.read_aggregates`` aggregates an Ibis table in its
  backend), taken one step further: one query for all the metrics of an analysis. A DuckDB
  relation runs the SQL that Ibis compiles for the same plan.

Either way the sums are :class:`splitlab.analysis.aggregate.Moments` and the statistics objects
come from :func:`splitlab.analysis.aggregate.metric_data`, so every input gives the same
statistics, to the rounding of its engine's sums.

The engine plan sums raw values and their products (``n, sum, sum of squares``, cross-products),
as the SQL aggregation of a stored experiment does; tea-tasting centres each group first (a window
mean), which loses less precision when a mean dwarfs its spread (a mean 10^5 times the standard
deviation) at the cost of a second pass.

A test on unit-level values (``mann-whitney``, ``bootstrap``) needs the values themselves: for an
engine input :meth:`FrameSource.unit_values` collects exactly two columns, the variant and the
metric's. SQL engines promise no row order, and the bootstrap's resamples depend on it: its result
on an Ibis table or DuckDB relation can differ from the same rows in a frame by Monte Carlo error.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from splitlab.analysis.aggregate import (
    FloatArray,
    Groups,
    MetricData,
    Moments,
    check_proportion,
    distinct_labels,
    floats,
    groups,
    kind_of,
    look_codes,
    metric_data,
    metric_statistics,
    missing_column,
    missing_times,
    natural_order,
    not_numeric,
    resolve_kind,
)
from splitlab.analysis.metrics import MetricSpec

__all__ = ["Aggregation", "FrameSource", "NonBinary", "Sum", "frame_source"]


@dataclass(frozen=True, slots=True)
class Aggregation:
    """Everything an analysis needs of the data: variants, their units and each metric's statistics.

    Attributes:
        labels: the variant labels as strings (in order of appearance in memory, natural order
            from an engine).
        counts: units (rows) per label.
        unlabelled: rows without a variant, left out of everything.
        specs: the metrics, ``auto`` kinds resolved from the data.
        metrics: each spec's statistics, in the order of ``specs``.
    """

    labels: tuple[str, ...]
    counts: tuple[int, ...]
    unlabelled: int
    specs: tuple[MetricSpec, ...]
    metrics: tuple[MetricData, ...]


class FrameSource(Protocol):
    """One kind of input: how it is aggregated, and how a metric's unit-level values are read."""

    def aggregate(self, specs: Sequence[MetricSpec], *, variant: str, time_column: str | None) -> Aggregation:
        """Aggregate every metric per variant (and per look of ``time_column``, when given)."""
        ...

    def unit_values(self, spec: MetricSpec, *, variant: str, labels: tuple[str, ...]) -> list[FloatArray]:
        """The values of ``spec.column`` of each label's units, NaN kept (the test drops them)."""
        ...


class _InMemory:
    """pandas or polars DataFrame, pyarrow Table, mapping of equal-length columns."""

    def __init__(self, data: Any) -> None:
        self._data = data
        self._groups: Groups | None = None

    def aggregate(self, specs: Sequence[MetricSpec], *, variant: str, time_column: str | None) -> Aggregation:
        resolved = tuple(resolve_kind(spec, self._data) for spec in specs)
        self._groups = grouping = groups(self._data, variant)
        looks = None if time_column is None else look_codes(self._data, time_column)
        return Aggregation(
            labels=grouping.labels,
            counts=grouping.counts,
            unlabelled=grouping.unlabelled,
            specs=resolved,
            metrics=tuple(metric_statistics(spec, self._data, grouping, looks=looks) for spec in resolved),
        )

    def unit_values(self, spec: MetricSpec, *, variant: str, labels: tuple[str, ...]) -> list[FloatArray]:
        grouping = self._groups or groups(self._data, variant)
        values = floats(self._data, str(spec.column), spec.name)
        return [values[grouping.codes == grouping.labels.index(label)] for label in labels]


@dataclass(frozen=True, slots=True)
class Sum:
    """The sum of the product of ``factors`` (1 without any) over rows with a value in every ``present`` column.

    A value is missing when it is null or NaN, as a NaN is in a frame.
    """

    present: tuple[str, ...]
    factors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NonBinary:
    """The number of rows whose ``column`` has a value other than 0 or 1 (a proportion needs none)."""

    column: str


Term = Sum | NonBinary
ROWS = "splitlab_rows"
"""The alias of the rows count of each group in an engine's answer."""


@dataclass(frozen=True, slots=True)
class _MetricPlan:
    spec: MetricSpec
    count: str
    sums: tuple[str, ...]
    products: dict[tuple[int, int], str]
    present: str
    non_binary: str


class _Engine(ABC):
    """Shared by the engine inputs: the plan of sums, checking it against the schema, and reading the answer.

    A subclass says how to name the columns, whether one is numeric, how to run one group-by of
    terms (:meth:`run`) and how to read two columns (:meth:`select`).
    """

    @abstractmethod
    def names(self) -> list[str]:
        """The columns' names."""

    @abstractmethod
    def is_numeric(self, name: str) -> bool:
        """Whether the column holds numbers or booleans."""

    @abstractmethod
    def run(self, keys: list[str], terms: dict[Term, str]) -> list[dict[str, Any]]:
        """One group-by on ``keys``: a row per group with its keys, ``ROWS`` and every term by alias."""

    @abstractmethod
    def select(self, variant: str, column: str) -> pa.Table:
        """The two columns, ``column`` cast to float64, as Arrow."""

    def aggregate(self, specs: Sequence[MetricSpec], *, variant: str, time_column: str | None) -> Aggregation:
        names = self.names()
        for key in (variant, time_column):
            if key is not None and key not in names:
                raise ValueError(missing_column(key, names))
        terms: dict[Term, str] = {}

        def alias(term: Term) -> str:
            return terms.setdefault(term, f"splitlab_{len(terms)}")

        plans = [self._plan(spec, names, alias) for spec in specs]
        keys = [variant] if time_column is None else [variant, time_column]
        rows = self.run(keys, terms)
        return _assemble(rows, plans, variant=variant, time_column=time_column)

    def _plan(self, spec: MetricSpec, names: list[str], alias: Callable[[Term], str]) -> _MetricPlan:
        columns = spec.columns
        for name in columns:
            if name not in names:
                msg = f"metrics[{spec.name!r}]: {missing_column(name, names)}"
                raise ValueError(msg)
            if not self.is_numeric(name):
                raise ValueError(not_numeric(spec.name, name))
        return _MetricPlan(
            spec=spec,
            count=alias(Sum(columns)),
            sums=tuple(alias(Sum(columns, (name,))) for name in columns),
            products={
                (i, j): alias(Sum(columns, (columns[i], columns[j])))
                for i in range(len(columns))
                for j in range(i, len(columns))
            },
            # Over every row of the data, as the kind of an in-memory column is judged.
            present=alias(Sum((columns[0],))),
            non_binary=alias(NonBinary(columns[0])),
        )

    def unit_values(self, spec: MetricSpec, *, variant: str, labels: tuple[str, ...]) -> list[FloatArray]:
        table = self.select(variant, str(spec.column))
        encoded = pc.dictionary_encode(table.column(0)).combine_chunks()
        codes = np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.intp)
        where = {str(value): g for g, value in enumerate(encoded.dictionary.to_pylist())}
        values = np.asarray(table.column(1).to_numpy(), dtype=np.float64)
        return [values[codes == where[label]] if label in where else np.empty(0) for label in labels]


def _assemble(
    rows: list[dict[str, Any]], plans: list[_MetricPlan], *, variant: str, time_column: str | None
) -> Aggregation:
    """The engine's group rows -> per-variant (and per-look) arrays -> statistics, as in memory."""
    if time_column is not None:
        missing = sum(int(row[ROWS]) for row in rows if row[time_column] is None)
        if missing:
            raise ValueError(missing_times(time_column, missing))
    labelled = [row for row in rows if row[variant] is not None]
    values = sorted({row[variant] for row in labelled}, key=lambda value: natural_order(str(value)))
    labels = distinct_labels(variant, values)
    label_index = {value: g for g, value in enumerate(values)}
    times = [None] if time_column is None else sorted({row[time_column] for row in rows})
    time_index = {value: t for t, value in enumerate(times)}
    cells = [
        (label_index[row[variant]], 0 if time_column is None else time_index[row[time_column]]) for row in labelled
    ]

    def grid(alias: str) -> FloatArray:
        out = np.zeros((len(labels), len(times)), dtype=np.float64)
        for cell, row in zip(cells, labelled, strict=True):
            out[cell] += float(row[alias])
        return out

    counts = tuple(int(n) for n in grid(ROWS).sum(axis=1))
    all_rows = sum(int(row[ROWS]) for row in rows)
    specs = []
    metrics = []
    for plan in plans:
        present = int(sum(row[plan.present] for row in rows))
        non_binary = int(sum(row[plan.non_binary] for row in rows))
        spec = kind_of(plan.spec, present=present, non_binary=non_binary)
        check_proportion(spec, rows=all_rows, present=present, non_binary=non_binary)
        moments = Moments(
            count=grid(plan.count),
            sums=tuple(grid(alias) for alias in plan.sums),
            products={key: grid(alias) for key, alias in plan.products.items()},
        )
        specs.append(spec)
        metrics.append(metric_data(spec, moments, counts))
    return Aggregation(
        labels=labels,
        counts=counts,
        unlabelled=all_rows - sum(counts),
        specs=tuple(specs),
        metrics=tuple(metrics),
    )


class _PolarsLazy(_Engine):
    """A polars LazyFrame: the plan is one ``group_by().agg()`` collected by polars' engine."""

    def __init__(self, frame: Any) -> None:
        self._frame = frame
        self._schema = frame.collect_schema()  # resolves names and types without reading rows

    def names(self) -> list[str]:
        return list(self._schema.names())

    def is_numeric(self, name: str) -> bool:
        import polars as pl

        dtype = self._schema[name]
        return bool(dtype.is_numeric() or dtype == pl.Boolean)

    def run(self, keys: list[str], terms: dict[Term, str]) -> list[dict[str, Any]]:
        import polars as pl

        # Each column is masked once per set of columns that must be present (null where any is
        # missing): the sums then skip nulls, and a count is a count of non-nulls. A condition in
        # every sum instead made polars slower (1 M rows from Parquet, three metrics: 230 -> 150 ms).
        masked: dict[tuple[tuple[str, ...], str], str] = {}

        def value(name: str) -> Any:
            return pl.col(name).cast(pl.Float64)

        def column(present: tuple[str, ...], name: str) -> Any:
            alias = masked.setdefault((present, name), f"splitlab_masked_{len(masked)}")
            return pl.col(alias)

        def expression(term: Term) -> Any:
            if isinstance(term, NonBinary):
                x = column((term.column,), term.column)
                return ((x != 0) & (x != 1)).sum()
            if not term.factors:
                return column(term.present, term.present[0]).count()
            product = column(term.present, term.factors[0])
            for name in term.factors[1:]:
                product = product * column(term.present, name)
            return product.sum()

        aggregates = [pl.len().alias(ROWS), *(expression(term).alias(name) for term, name in terms.items())]
        columns = []
        for (present, name), alias in masked.items():
            condition = pl.all_horizontal([value(n).is_not_null() & value(n).is_not_nan() for n in present])
            columns.append(pl.when(condition).then(value(name)).alias(alias))
        answer = self._frame.with_columns(columns).group_by(keys).agg(aggregates).collect()
        return list(answer.rows(named=True))

    def select(self, variant: str, column: str) -> pa.Table:
        import polars as pl

        return self._frame.select(pl.col(variant), pl.col(column).cast(pl.Float64)).collect().to_arrow()


class _IbisTable(_Engine):
    """An Ibis table: the plan is one ``group_by().aggregate()`` run by the table's own backend."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self._schema = table.schema()

    def names(self) -> list[str]:
        return list(self._schema.names)

    def is_numeric(self, name: str) -> bool:
        dtype = self._schema[name]
        return bool(dtype.is_numeric() or dtype.is_boolean())

    def expression(self, keys: list[str], terms: dict[Term, str]) -> Any:
        """The group-by as an Ibis expression (compiled to SQL by the backend that runs it)."""
        import ibis

        table = self._table
        schema = self._schema

        def value(name: str) -> Any:
            # PostgreSQL casts a boolean to a 4-byte integer only, not to a bigint or a float.
            column = table[name].cast("int32") if schema[name].is_boolean() else table[name]
            return column.cast("float64")

        def present(names: tuple[str, ...]) -> Any:
            condition = ibis.literal(True)
            for name in names:
                condition = condition & value(name).notnull() & ~value(name).isnan()
            return condition

        def expression(term: Term) -> Any:
            if isinstance(term, NonBinary):
                x = value(term.column)
                return ibis.ifelse(present((term.column,)) & (x != 0) & (x != 1), 1, 0).sum()
            if not term.factors:
                # An integer count: PostgreSQL sums a float literal as numeric, which Arrow cannot read as a double.
                return ibis.ifelse(present(term.present), 1, 0).sum()
            product = value(term.factors[0])
            for name in term.factors[1:]:
                product = product * value(name)
            return ibis.ifelse(present(term.present), product, 0.0).sum()

        aggregates = {ROWS: table.count(), **{name: expression(term) for term, name in terms.items()}}
        return table.group_by(keys).aggregate(**aggregates)

    def run(self, keys: list[str], terms: dict[Term, str]) -> list[dict[str, Any]]:
        # Through Arrow, not pandas: an integer variant with a null group stays an integer label.
        answer: list[dict[str, Any]] = self.expression(keys, terms).to_pyarrow().to_pylist()
        return answer

    def select(self, variant: str, column: str) -> pa.Table:
        table = self._table
        answer: pa.Table = table.select(table[variant], table[column].cast("float64")).to_pyarrow()
        return answer


class _DuckDBRelation(_IbisTable):
    """A DuckDB relation: the Ibis plan compiled to DuckDB SQL over an unbound table, run on the relation."""

    _NAME = "splitlab_data"

    def __init__(self, relation: Any) -> None:
        import ibis

        self._relation = relation
        # A zero-row query gives the relation's Arrow schema without reading its rows.
        schema = _arrow(relation.limit(0)).schema
        super().__init__(ibis.table(ibis.Schema.from_pyarrow(schema), name=self._NAME))

    def _query(self, expression: Any) -> pa.Table:
        import ibis

        sql = ibis.to_sql(expression, dialect="duckdb")
        return _arrow(self._relation.query(self._NAME, str(sql)))

    def run(self, keys: list[str], terms: dict[Term, str]) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = self._query(self.expression(keys, terms)).to_pylist()
        return answer

    def select(self, variant: str, column: str) -> pa.Table:
        table = self._table
        return self._query(table.select(table[variant], table[column].cast("float64")))


def _arrow(relation: Any) -> pa.Table:
    """A DuckDB relation's answer as an Arrow table (``fetch_arrow_table`` before DuckDB 1.1, deprecated in 2)."""
    fetch = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
    answer: pa.Table = fetch()
    return answer


# (module, class name) of each engine input. The module is looked up in ``sys.modules`` only: an
# object of a library that was never imported cannot be the input, so nothing optional is imported.
_ENGINES: tuple[tuple[str, str, Callable[[Any], FrameSource]], ...] = (
    ("polars", "LazyFrame", _PolarsLazy),
    ("ibis.expr.types", "Table", _IbisTable),
    ("duckdb", "DuckDBPyRelation", _DuckDBRelation),
)


def frame_source(data: Any) -> FrameSource:
    """The source for ``data``, by its type: an engine input, or in-memory columns otherwise."""
    for module_name, class_name, make in _ENGINES:
        module = sys.modules.get(module_name)
        kind = getattr(module, class_name, None) if module is not None else None
        if isinstance(kind, type) and isinstance(data, kind):
            return make(data)
    return _InMemory(data)
