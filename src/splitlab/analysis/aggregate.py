"""Unit-level frame -> sufficient statistics per variant, in one vectorised pass per column.

Variant labels are factorised once; every sum is an ``np.bincount`` over the codes, so a
million-row frame costs a handful of C loops, and the statistics layer never sees rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from splitlab.analysis.metrics import MetricSpec
from splitlab.stats.statistics import (
    CovariateStatistic,
    MeanStatistic,
    MetricStatistic,
    ProportionStatistic,
    RatioStatistic,
)

FloatArray = npt.NDArray[np.float64]


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


def column(data: Any, name: str) -> Any:
    """A column of a pandas or polars frame (or a mapping of arrays), with a clear error if missing."""
    columns = list(data.columns) if hasattr(data, "columns") else list(data)
    if name not in columns:
        msg = f"column {name!r} is not in the data; columns are {columns}"
        raise ValueError(msg)
    return data[name]


def _factorize(values: Any) -> tuple[npt.NDArray[np.intp], list[Any]]:
    """Codes (-1 for missing) and unique labels, in the column's own library when it has a fast path."""
    if isinstance(values, pd.Series):
        series_codes, series_uniques = pd.factorize(values, use_na_sentinel=True)
        return np.asarray(series_codes, dtype=np.intp), list(series_uniques)
    if hasattr(values, "to_arrow"):  # polars: Arrow dictionary encoding, no Python objects per row
        import pyarrow as pa
        import pyarrow.compute as pc

        encoded = pc.dictionary_encode(values.to_arrow())
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        codes = np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.intp)
        return codes, encoded.dictionary.to_pylist()
    codes, uniques = pd.factorize(np.asarray(values), use_na_sentinel=True)
    return np.asarray(codes, dtype=np.intp), list(uniques)


def groups(data: Any, variant: str) -> Groups:
    """Factorise the variant column; labels are compared as strings; missing labels get code -1."""
    codes, uniques = _factorize(column(data, variant))
    labels = tuple(str(u) for u in uniques)
    if len(set(labels)) != len(labels):
        msg = f"variant labels of {variant!r} are not distinct as strings: {uniques}"
        raise ValueError(msg)
    return Groups(labels, codes)


def _floats(data: Any, name: str, metric: str) -> FloatArray:
    try:
        return np.asarray(column(data, name), dtype=np.float64)
    except (TypeError, ValueError) as error:
        if "is not in the data" in str(error):
            msg = f"metrics[{metric!r}]: {error}"
            raise ValueError(msg) from error
        msg = f"metrics[{metric!r}]: column {name!r} is not numeric"
        raise ValueError(msg) from error


def _is_binary(values: FloatArray) -> bool:
    finite = values[~np.isnan(values)]
    return bool(finite.size) and bool(np.all((finite == 0) | (finite == 1)))


def resolve_kind(spec: MetricSpec, data: Any) -> MetricSpec:
    """Turn ``kind='auto'`` into ``proportion`` (0/1 values) or ``mean``."""
    if spec.kind != "auto" or spec.column is None:
        return spec
    values = _floats(data, spec.column, spec.name)
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


def look_codes(data: Any, time_column: str) -> tuple[npt.NDArray[np.intp], int]:
    """Each row's look (the rank of its value in ``time_column``, e.g. its exposure day) and the number of looks."""
    values = column(data, time_column)
    codes, uniques = _factorize(values)
    if (codes < 0).any():
        msg = f"column {time_column!r} has missing values in {int((codes < 0).sum())} rows"
        raise ValueError(msg)
    order = sorted(range(len(uniques)), key=lambda index: uniques[index])
    rank = np.empty(len(uniques), dtype=np.intp)
    rank[order] = np.arange(len(uniques))
    return rank[codes], len(uniques)


def metric_statistics(
    spec: MetricSpec, data: Any, grouping: Groups, *, looks: tuple[npt.NDArray[np.intp], int] | None = None
) -> MetricData:
    """Aggregate one metric per variant (and per look, cumulatively, when ``looks`` is given).

    Rows with a missing (NaN) value in any of the metric's columns are excluded.
    """
    k = len(grouping.labels)
    n_looks = 1 if looks is None else looks[1]
    own = [spec.numerator, spec.denominator] if spec.kind == "ratio" else [spec.column]
    cov = (
        []
        if spec.covariate is None
        else list(spec.covariate if isinstance(spec.covariate, tuple) else [spec.covariate])
    )
    arrays = [_floats(data, str(name), spec.name) for name in own + cov]
    if spec.kind == "proportion" and arrays[0].size and not _is_binary(arrays[0]):
        msg = f"metrics[{spec.name!r}]: a proportion metric needs 0/1 values in column {spec.column!r}"
        raise ValueError(msg)
    valid = grouping.codes >= 0
    for array in arrays:
        valid &= ~np.isnan(array)
    # One cell per (variant, look); cumulative sums over looks give each look's statistics.
    cells = grouping.codes if looks is None else grouping.codes * n_looks + looks[0]
    all_counts = np.asarray(grouping.counts)
    if not valid.all():
        cells = cells[valid]
        arrays = [a[valid] for a in arrays]
    size = k * n_looks

    def total(values: FloatArray | None) -> FloatArray:
        summed = np.bincount(cells, weights=values, minlength=size).astype(np.float64)
        return np.cumsum(summed.reshape(k, n_looks), axis=1).ravel()

    counts = total(None)
    sums = [total(a) for a in arrays]
    squares = [[total(a * b) if j >= i else np.empty(0) for j, b in enumerate(arrays)] for i, a in enumerate(arrays)]

    def product(i: int, j: int) -> FloatArray:
        return squares[min(i, j)][max(i, j)]

    own_n = len(own)
    cov_index = list(range(own_n, own_n + len(cov)))

    def cell_statistic(cell: int) -> MetricStatistic | CovariateStatistic:
        n = int(counts[cell])
        metric = _statistic(spec.kind, n, [0, 1] if own_n == 2 else [0], sums, product, cell)
        if not cov:
            return metric
        covariate = _statistic("mean" if len(cov) == 1 else "ratio", n, cov_index, sums, product, cell)
        cross = tuple(tuple(float(product(i, j)[cell]) for j in cov_index) for i in range(own_n))
        metric_for_cuped = metric.as_mean() if isinstance(metric, ProportionStatistic) else metric
        return CovariateStatistic(metric_for_cuped, covariate, cross)

    by_look = tuple(tuple(cell_statistic(g * n_looks + look) for g in range(k)) for look in range(n_looks))
    final_counts = counts.reshape(k, n_looks)[:, -1]
    return MetricData(by_look, tuple(int(a - b) for a, b in zip(all_counts, final_counts, strict=True)))


def _statistic(kind: str, n: int, index: list[int], sums: list[FloatArray], product: Any, g: int) -> MetricStatistic:
    if len(index) == 2:
        i, j = index
        return RatioStatistic(
            MeanStatistic(n, float(sums[i][g]), float(product(i, i)[g])),
            MeanStatistic(n, float(sums[j][g]), float(product(j, j)[g])),
            float(product(i, j)[g]),
        )
    (i,) = index
    if kind == "proportion":
        return ProportionStatistic(n, float(sums[i][g]))
    return MeanStatistic(n, float(sums[i][g]), float(product(i, i)[g]))
