"""Unit-level columns -> sufficient statistics per variant.

Two halves. :class:`Moments` -> :class:`MetricData` is the one place that turns sums into the
statistics objects (cumulating over looks, choosing the statistic of the metric's kind, pairing a
metric with its CUPED covariate). The sums come either from in-memory columns here (variant
labels factorised once, every sum an ``np.bincount`` over the codes, so a million-row frame costs
a handful of C loops) or from a group-by in the input's own engine
(:mod:`splitlab.analysis.backends`). The statistics layer never sees rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from splitlab.analysis.metrics import MetricSpec
from splitlab.stats.statistics import (
    CovariateStatistic,
    MeanStatistic,
    MetricStatistic,
    ProportionStatistic,
    RatioStatistic,
)

FloatArray = npt.NDArray[np.float64]


def natural_order(label: str) -> tuple[int, float, str]:
    """Sort key of variant labels: numeric labels by value ("2" before "10"), then text alphabetically."""
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)


@dataclass(frozen=True, slots=True)
class Groups:
    """Variant labels in order of appearance and each row's code into them (-1: no variant)."""

    labels: tuple[str, ...]
    codes: npt.NDArray[np.intp]

    @property
    def counts(self) -> tuple[int, ...]:
        """Rows (units) per variant."""
        labelled = self.codes[self.codes >= 0]
        return tuple(int(c) for c in np.bincount(labelled, minlength=len(self.labels)))

    @property
    def unlabelled(self) -> int:
        """Rows without a variant label; they are left out of every metric."""
        return int((self.codes < 0).sum())


def column_names(data: Any) -> list[str]:
    """The column names of a pandas or polars frame, a pyarrow Table or a mapping of arrays."""
    if isinstance(data, pa.Table):
        # A Table's ``columns`` are its arrays, not their names.
        return list(data.column_names)
    return list(data.columns) if hasattr(data, "columns") else list(data)


def missing_column(name: str, columns: list[str]) -> str:
    """The error text of a column the data lack (one wording for every kind of input)."""
    return f"column {name!r} is not in the data; columns are {columns}"


def column(data: Any, name: str) -> Any:
    """A column of a pandas or polars frame, a pyarrow Table or a mapping of arrays; a clear error if missing."""
    columns = column_names(data)
    if name not in columns:
        raise ValueError(missing_column(name, columns))
    return data[name]


def _factorize(values: Any) -> tuple[npt.NDArray[np.intp], list[Any]]:
    """Codes (-1 for missing) and unique labels, in the column's own library when it has a fast path."""
    if isinstance(values, pd.Series):
        series_codes, series_uniques = pd.factorize(values, use_na_sentinel=True)
        return np.asarray(series_codes, dtype=np.intp), list(series_uniques)
    if hasattr(values, "to_arrow") or isinstance(values, pa.ChunkedArray | pa.Array):
        # polars and pyarrow: Arrow dictionary encoding, no Python objects per row.
        encoded = pc.dictionary_encode(values if isinstance(values, pa.ChunkedArray | pa.Array) else values.to_arrow())
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        codes = np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.intp)
        return codes, encoded.dictionary.to_pylist()
    codes, uniques = pd.factorize(np.asarray(values), use_na_sentinel=True)
    return np.asarray(codes, dtype=np.intp), list(uniques)


def groups(data: Any, variant: str) -> Groups:
    """Factorise the variant column; labels are compared as strings; missing labels get code -1."""
    codes, uniques = _factorize(column(data, variant))
    return Groups(distinct_labels(variant, uniques), codes)


def distinct_labels(variant: str, values: list[Any]) -> tuple[str, ...]:
    """The variant values as string labels; two values with one string (1 and "1") are a caller mistake."""
    labels = tuple(str(u) for u in values)
    if len(set(labels)) != len(labels):
        msg = f"variant labels of {variant!r} are not distinct as strings: {values}"
        raise ValueError(msg)
    return labels


def floats(data: Any, name: str, metric: str) -> FloatArray:
    """Column ``name`` of in-memory data as float64 (NaN for a missing value); errors name ``metrics[metric]``."""
    try:
        values = column(data, name)
        if isinstance(values, pa.ChunkedArray):
            # Zero-copy for a float column without nulls; otherwise one cast, nulls becoming NaN.
            return np.asarray(pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, pa.ArrowException) as error:
        if "is not in the data" in str(error):
            msg = f"metrics[{metric!r}]: {error}"
            raise ValueError(msg) from error
        raise ValueError(not_numeric(metric, name)) from error


def not_numeric(metric: str, name: str) -> str:
    """The error text of a metric column that holds no numbers."""
    return f"metrics[{metric!r}]: column {name!r} is not numeric"


def _is_binary(values: FloatArray) -> bool:
    finite = values[~np.isnan(values)]
    return bool(finite.size) and bool(np.all((finite == 0) | (finite == 1)))


def kind_of(spec: MetricSpec, *, present: int, non_binary: int) -> MetricSpec:
    """Turn ``kind='auto'`` into ``proportion`` (values present, every one 0 or 1) or ``mean``.

    ``present`` counts the rows of ``spec.column`` with a value (not NaN, not null) and
    ``non_binary`` those whose value is neither 0 nor 1, over every row of the data.
    """
    if spec.kind != "auto":
        return spec
    return replace(spec, kind="proportion" if present and not non_binary else "mean")


def check_proportion(spec: MetricSpec, *, rows: int, present: int, non_binary: int) -> None:
    """A proportion metric of data with rows needs a column of 0/1 values (counts as in :func:`kind_of`)."""
    if spec.kind == "proportion" and rows and (non_binary or not present):
        msg = f"metrics[{spec.name!r}]: a proportion metric needs 0/1 values in column {spec.column!r}"
        raise ValueError(msg)


def resolve_kind(spec: MetricSpec, data: Any) -> MetricSpec:
    """Turn ``kind='auto'`` into ``proportion`` (0/1 values) or ``mean``, from in-memory columns."""
    if spec.kind != "auto" or spec.column is None:
        return spec
    values = floats(data, spec.column, spec.name)
    return replace(spec, kind="proportion" if _is_binary(values) else "mean")


@dataclass(frozen=True, slots=True)
class MetricData:
    """Per-variant statistics of one metric and the units left out for missing values.

    ``by_look[l][g]`` holds the cumulative statistics of variant ``g`` up to look ``l``;
    ``statistics`` is the last look (all the data).
    """

    by_look: tuple[tuple[MetricStatistic | CovariateStatistic, ...], ...]
    excluded: tuple[int, ...]

    @property
    def statistics(self) -> tuple[MetricStatistic | CovariateStatistic, ...]:
        """Per-variant statistics over all the data."""
        return self.by_look[-1]


@dataclass(frozen=True, slots=True)
class Moments:
    """One metric's sums per cell (variant x look), over the units with a value in every column it reads.

    Every array has shape ``(variants, looks)`` and holds each look's own units (not yet
    cumulative). Columns are indexed as in ``MetricSpec.columns``: the metric's own column (or
    numerator and denominator), then the covariate's.

    Attributes:
        count: units with a value in every column.
        sums: ``sums[i]``, the sum of column ``i``.
        products: ``products[(i, j)]`` for ``i <= j``, the sum of column ``i`` times column ``j``.
    """

    count: FloatArray
    sums: tuple[FloatArray, ...]
    products: dict[tuple[int, int], FloatArray]


def metric_data(spec: MetricSpec, moments: Moments, units: tuple[int, ...]) -> MetricData:
    """The statistics of ``spec``'s kind, per variant and cumulatively per look, from its sums.

    Args:
        spec: the metric, its kind resolved.
        moments: its sums per variant and look.
        units: units per variant over all looks (those left out of the metric are the difference).
    """
    k, n_looks = moments.count.shape

    def cumulative(values: FloatArray) -> FloatArray:
        return np.cumsum(np.asarray(values, dtype=np.float64).reshape(k, n_looks), axis=1)

    counts = cumulative(moments.count)
    sums = [cumulative(s) for s in moments.sums]
    products = {key: cumulative(value) for key, value in moments.products.items()}
    own_n = 2 if spec.kind == "ratio" else 1
    cov_index = list(range(own_n, len(sums)))

    def product(i: int, j: int, cell: tuple[int, int]) -> float:
        return float(products[(min(i, j), max(i, j))][cell])

    def one(kind: str, index: list[int], n: int, cell: tuple[int, int]) -> MetricStatistic:
        if len(index) == 2:
            i, j = index
            return RatioStatistic(
                MeanStatistic(n, float(sums[i][cell]), product(i, i, cell)),
                MeanStatistic(n, float(sums[j][cell]), product(j, j, cell)),
                product(i, j, cell),
            )
        (i,) = index
        if kind == "proportion":
            return ProportionStatistic(n, float(sums[i][cell]))
        return MeanStatistic(n, float(sums[i][cell]), product(i, i, cell))

    def cell_statistic(cell: tuple[int, int]) -> MetricStatistic | CovariateStatistic:
        n = int(counts[cell])
        metric = one(spec.kind, list(range(own_n)), n, cell)
        if not cov_index:
            return metric
        covariate = one("mean" if len(cov_index) == 1 else "ratio", cov_index, n, cell)
        cross = tuple(tuple(product(i, j, cell) for j in cov_index) for i in range(own_n))
        metric_for_cuped = metric.as_mean() if isinstance(metric, ProportionStatistic) else metric
        return CovariateStatistic(metric_for_cuped, covariate, cross)

    by_look = tuple(tuple(cell_statistic((g, look)) for g in range(k)) for look in range(n_looks))
    final_counts = counts[:, -1]
    return MetricData(by_look, tuple(int(a - b) for a, b in zip(units, final_counts, strict=True)))


def look_codes(data: Any, time_column: str) -> tuple[npt.NDArray[np.intp], int]:
    """Each row's look (the rank of its value in ``time_column``, e.g. its exposure day) and the number of looks."""
    values = column(data, time_column)
    codes, uniques = _factorize(values)
    if (codes < 0).any():
        raise ValueError(missing_times(time_column, int((codes < 0).sum())))
    order = sorted(range(len(uniques)), key=lambda index: uniques[index])
    rank = np.empty(len(uniques), dtype=np.intp)
    rank[order] = np.arange(len(uniques))
    return rank[codes], len(uniques)


def missing_times(time_column: str, rows: int) -> str:
    """The error text of a time column with missing values."""
    return f"column {time_column!r} has missing values in {rows} rows"


def metric_statistics(
    spec: MetricSpec, data: Any, grouping: Groups, *, looks: tuple[npt.NDArray[np.intp], int] | None = None
) -> MetricData:
    """Aggregate one metric of in-memory columns per variant (and per look, cumulatively, when ``looks`` is given).

    Rows with a missing (NaN) value in any of the metric's columns are excluded.
    """
    k = len(grouping.labels)
    n_looks = 1 if looks is None else looks[1]
    arrays = [floats(data, name, spec.name) for name in spec.columns]
    if spec.kind == "proportion":
        present = arrays[0][~np.isnan(arrays[0])]
        non_binary = int(np.count_nonzero((present != 0) & (present != 1)))
        check_proportion(spec, rows=arrays[0].size, present=present.size, non_binary=non_binary)
    valid = grouping.codes >= 0
    for array in arrays:
        valid &= ~np.isnan(array)
    # One cell per (variant, look).
    cells = grouping.codes if looks is None else grouping.codes * n_looks + looks[0]
    if not valid.all():
        cells = cells[valid]
        arrays = [a[valid] for a in arrays]

    def total(values: FloatArray | None) -> FloatArray:
        summed = np.bincount(cells, weights=values, minlength=k * n_looks).astype(np.float64)
        return summed.reshape(k, n_looks)

    moments = Moments(
        count=total(None),
        sums=tuple(total(a) for a in arrays),
        products={(i, j): total(a * arrays[j]) for i, a in enumerate(arrays) for j in range(i, len(arrays))},
    )
    return metric_data(spec, moments, grouping.counts)
