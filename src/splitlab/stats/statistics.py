"""Frozen, addable sufficient statistics.

Every test in :mod:`splitlab.stats` runs on these records, never on rows: a record holds what a
SQL ``GROUP BY`` returns (counts, sums, sums of squares and cross-products), so statistics of days,
segments or shards pool with ``a + b``.

Each record also knows its *delta-method linearisation*: the per-unit means of its components,
their covariance, and the gradient of the estimate with respect to those means. That single view
gives the variance of a mean, a proportion, a ratio of means and a CUPED-adjusted metric.

References:
    Deng, Knoblich, Lu (2018). Applying the Delta Method in Metric Analytics. KDD. Eq. (2)-(4).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Union

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def _as_float_array(values: Any, name: str) -> FloatArray:
    """Convert a numpy array, pandas/polars column or sequence to a 1-d float array."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        msg = f"{name} must be one-dimensional, got shape {array.shape}"
        raise ValueError(msg)
    return array


def _row_value(row: Mapping[str, Any], key: str) -> float:
    if key not in row:
        msg = f"row is missing the aggregate {key!r}; it has {sorted(row)}"
        raise KeyError(msg)
    value = row[key]
    return 0.0 if value is None else float(value)


@dataclass(frozen=True, slots=True)
class Linearization:
    """Delta-method view of a statistic: ``estimate = f(means)``.

    Attributes:
        n: number of units.
        means: per-unit means of the components.
        covariance: sample covariance (ddof=1) of the components.
        gradient: gradient of ``f`` at ``means``.
        estimate: the value of ``f``.
    """

    n: int
    means: FloatArray
    covariance: FloatArray
    gradient: FloatArray
    estimate: float

    @property
    def unit_variance(self) -> float:
        """Variance of the linearised per-unit contribution, ``g' S g``."""
        return float(self.gradient @ self.covariance @ self.gradient)


@dataclass(frozen=True, slots=True)
class MeanStatistic:
    """Sufficient statistics of a per-unit value: count, sum and sum of squares.

    Example:
        >>> a = MeanStatistic.from_values([1.0, 2.0, 3.0])
        >>> (a + MeanStatistic.from_values([4.0])).mean
        2.5
    """

    n: int
    sum: float
    sum_sq: float

    def __add__(self, other: MeanStatistic) -> MeanStatistic:
        if not isinstance(other, MeanStatistic):
            return NotImplemented
        return MeanStatistic(self.n + other.n, self.sum + other.sum, self.sum_sq + other.sum_sq)

    @classmethod
    def from_values(cls, values: Any) -> MeanStatistic:
        """Build from a numpy array, a pandas or polars column, or a sequence."""
        array = _as_float_array(values, "values")
        return cls(int(array.size), float(array.sum()), float(array @ array))

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, prefix: str = "") -> MeanStatistic:
        """Build from a row of SQL aggregates with keys ``{prefix}n``, ``{prefix}sum``, ``{prefix}sum_sq``."""
        return cls(
            int(_row_value(row, f"{prefix}n")), _row_value(row, f"{prefix}sum"), _row_value(row, f"{prefix}sum_sq")
        )

    @property
    def mean(self) -> float:
        """Sample mean (NaN when empty)."""
        return self.sum / self.n if self.n > 0 else math.nan

    @property
    def variance(self) -> float:
        """Unbiased sample variance (ddof=1); NaN below two units, never negative."""
        if self.n < 2:
            return math.nan
        return max((self.sum_sq - self.sum * self.sum / self.n) / (self.n - 1), 0.0)

    def linearize(self) -> Linearization:
        """One component, the value itself; gradient 1."""
        return Linearization(self.n, np.array([self.mean]), np.array([[self.variance]]), np.array([1.0]), self.mean)


@dataclass(frozen=True, slots=True)
class ProportionStatistic:
    """Sufficient statistics of a binary per-unit value: units and successes.

    Example:
        >>> ProportionStatistic(n=200, successes=30).mean
        0.15
    """

    n: int
    successes: float

    def __add__(self, other: ProportionStatistic) -> ProportionStatistic:
        if not isinstance(other, ProportionStatistic):
            return NotImplemented
        return ProportionStatistic(self.n + other.n, self.successes + other.successes)

    @classmethod
    def from_values(cls, values: Any) -> ProportionStatistic:
        """Build from 0/1 (or boolean) values; any other value raises."""
        array = _as_float_array(values, "values")
        if array.size and not np.all((array == 0) | (array == 1)):
            msg = "values of a proportion metric must be 0 or 1 (or booleans)"
            raise ValueError(msg)
        return cls(int(array.size), float(array.sum()))

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, prefix: str = "") -> ProportionStatistic:
        """Build from a row of SQL aggregates with keys ``{prefix}n`` and ``{prefix}sum``."""
        return cls(int(_row_value(row, f"{prefix}n")), _row_value(row, f"{prefix}sum"))

    @property
    def mean(self) -> float:
        """Share of successes (NaN when empty)."""
        return self.successes / self.n if self.n > 0 else math.nan

    @property
    def variance(self) -> float:
        """Bernoulli variance ``p (1 - p)`` (the maximum-likelihood form used by z-tests)."""
        p = self.mean
        return p * (1.0 - p) if self.n > 0 else math.nan

    def as_mean(self) -> MeanStatistic:
        """The same data as a :class:`MeanStatistic` (a 0/1 value squared is itself)."""
        return MeanStatistic(self.n, self.successes, self.successes)

    def linearize(self) -> Linearization:
        """Linearisation of the 0/1 values with the unbiased (ddof=1) variance, as for any mean."""
        return self.as_mean().linearize()


@dataclass(frozen=True, slots=True)
class RatioStatistic:
    """Sufficient statistics of a ratio of two per-unit sums (clicks per session, order value).

    The estimate is ``numerator.sum / denominator.sum``; ``cross`` is the sum over units of
    numerator times denominator, needed for the delta-method variance.
    """

    numerator: MeanStatistic
    denominator: MeanStatistic
    cross: float

    def __post_init__(self) -> None:
        if self.numerator.n != self.denominator.n:
            msg = f"numerator.n == {self.numerator.n} and denominator.n == {self.denominator.n} must be equal"
            raise ValueError(msg)

    def __add__(self, other: RatioStatistic) -> RatioStatistic:
        if not isinstance(other, RatioStatistic):
            return NotImplemented
        return RatioStatistic(
            self.numerator + other.numerator, self.denominator + other.denominator, self.cross + other.cross
        )

    @classmethod
    def from_values(cls, numerator: Any, denominator: Any) -> RatioStatistic:
        """Build from per-unit numerator and denominator columns of equal length."""
        num = _as_float_array(numerator, "numerator")
        den = _as_float_array(denominator, "denominator")
        if num.shape != den.shape:
            msg = f"numerator has {num.size} values and denominator {den.size}; they must match"
            raise ValueError(msg)
        return cls(MeanStatistic.from_values(num), MeanStatistic.from_values(den), float(num @ den))

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, prefix: str = "") -> RatioStatistic:
        """Build from SQL aggregates ``n, num_sum, num_sum_sq, den_sum, den_sum_sq, num_den_sum``."""
        n = int(_row_value(row, f"{prefix}n"))
        return cls(
            MeanStatistic(n, _row_value(row, f"{prefix}num_sum"), _row_value(row, f"{prefix}num_sum_sq")),
            MeanStatistic(n, _row_value(row, f"{prefix}den_sum"), _row_value(row, f"{prefix}den_sum_sq")),
            _row_value(row, f"{prefix}num_den_sum"),
        )

    @property
    def n(self) -> int:
        """Number of units."""
        return self.numerator.n

    @property
    def mean(self) -> float:
        """The ratio ``sum(numerator) / sum(denominator)`` (NaN when the denominator sums to 0)."""
        return self.numerator.sum / self.denominator.sum if self.denominator.sum != 0 else math.nan

    def linearize(self) -> Linearization:
        """Components (numerator, denominator); gradient ``(1/d, -n/d^2)`` at the means."""
        n = self.n
        mean_num, mean_den = self.numerator.mean, self.denominator.mean
        if n >= 2:
            cov = (self.cross - self.numerator.sum * self.denominator.sum / n) / (n - 1)
            covariance = np.array([[self.numerator.variance, cov], [cov, self.denominator.variance]])
        else:
            covariance = np.full((2, 2), math.nan)
        if n > 0 and mean_den != 0:
            gradient = np.array([1.0 / mean_den, -mean_num / mean_den**2])
        else:
            gradient = np.full(2, math.nan)
        return Linearization(n, np.array([mean_num, mean_den]), covariance, gradient, self.mean)


MetricStatistic = Union[MeanStatistic, ProportionStatistic, RatioStatistic]  # noqa: UP007 - runtime alias


def is_finite(statistic: object) -> bool:
    """Whether every number a statistic holds (counts, sums, sums of squares and cross-products) is finite.

    An infinite or NaN value, or a finite one whose square overflows (``1e308``), makes a sum
    infinite or NaN; no test can use it, and the comparison reports ``ErrorCode.NON_FINITE``.

    Example:
        >>> is_finite(MeanStatistic(2, 3.0, 5.0)), is_finite(MeanStatistic(2, 1e308 + 2.0, math.inf))
        (True, False)
    """
    return all(_finite(getattr(statistic, item.name)) for item in fields(statistic))  # type: ignore[arg-type]


def _finite(value: object) -> bool:
    if is_dataclass(value):
        return is_finite(value)
    if isinstance(value, tuple):
        return all(map(_finite, value))
    return not isinstance(value, float | int) or math.isfinite(value)


def _components(statistic: MetricStatistic) -> int:
    return 2 if isinstance(statistic, RatioStatistic) else 1


@dataclass(frozen=True, slots=True)
class CovariateStatistic:
    """A metric with its pre-exposure covariate, for CUPED.

    ``cross[i][j]`` is the sum over units of metric component ``i`` times covariate component
    ``j`` (components: the value of a mean or proportion; numerator and denominator of a ratio).
    """

    metric: MetricStatistic
    covariate: MetricStatistic
    cross: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        if self.metric.n != self.covariate.n:
            msg = f"metric.n == {self.metric.n} and covariate.n == {self.covariate.n} must be equal"
            raise ValueError(msg)
        shape = (_components(self.metric), _components(self.covariate))
        if len(self.cross) != shape[0] or any(len(row) != shape[1] for row in self.cross):
            msg = f"cross must have shape {shape} for these statistics"
            raise ValueError(msg)

    def __add__(self, other: CovariateStatistic) -> CovariateStatistic:
        if not isinstance(other, CovariateStatistic):
            return NotImplemented
        cross = tuple(
            tuple(a + b for a, b in zip(row_a, row_b, strict=True))
            for row_a, row_b in zip(self.cross, other.cross, strict=True)
        )
        return CovariateStatistic(
            self.metric + other.metric,  # type: ignore[operator]
            self.covariate + other.covariate,  # type: ignore[operator]
            cross,
        )

    @classmethod
    def from_values(cls, metric: Any, covariate: Any, *, kind: str = "mean") -> CovariateStatistic:
        """Build from per-unit columns.

        Args:
            metric: the metric's values, or a ``(numerator, denominator)`` pair for a ratio.
            covariate: the covariate's values, or a ``(numerator, denominator)`` pair.
            kind: ``"mean"`` or ``"proportion"`` for a single-column metric.
        """
        metric_columns = _columns(metric, "metric")
        covariate_columns = _columns(covariate, "covariate")
        cross = tuple(tuple(float(m @ c) for c in covariate_columns) for m in metric_columns)
        return cls(_statistic(metric_columns, kind), _statistic(covariate_columns, "mean"), cross)

    @property
    def n(self) -> int:
        """Number of units."""
        return self.metric.n

    def cross_covariance(self) -> FloatArray:
        """Sample covariance (ddof=1) between metric components and covariate components."""
        n = self.n
        metric_lin, covariate_lin = self.metric.linearize(), self.covariate.linearize()
        if n < 2:
            return np.full((metric_lin.means.size, covariate_lin.means.size), math.nan)
        cross = np.array(self.cross, dtype=np.float64)
        return (cross - n * np.outer(metric_lin.means, covariate_lin.means)) / (n - 1)


def _columns(values: Any, name: str) -> list[FloatArray]:
    if isinstance(values, tuple):
        if len(values) != 2:
            msg = f"{name} must be one column or a (numerator, denominator) pair"
            raise ValueError(msg)
        return [_as_float_array(values[0], f"{name} numerator"), _as_float_array(values[1], f"{name} denominator")]
    return [_as_float_array(values, name)]


def _statistic(columns: list[FloatArray], kind: str) -> MetricStatistic:
    if len(columns) == 2:
        return RatioStatistic.from_values(columns[0], columns[1])
    if kind == "proportion":
        return ProportionStatistic.from_values(columns[0])
    return MeanStatistic.from_values(columns[0])
