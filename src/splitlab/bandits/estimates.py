"""Per-arm mean rewards that stay valid after adaptive allocation.

A bandit changes each arm's share of traffic as it learns, and that breaks the plain per-arm mean
(``sum / n`` over everything the arm received) in two ways:

* **Time confounding (Simpson's paradox).** Rewards drift (weekday vs weekend, a campaign); an
  arm that got most of its traffic in a good period looks better than one that got it in a bad
  period, even if, period by period, it is worse.
* **Adaptive-sampling bias.** Even with stationary rewards, an arm that looked bad early by bad
  luck is sampled less afterwards, so its low early values are never diluted: the plain mean is
  biased downwards (Nie et al. 2018).

Two estimators fix both, given the periods in which the allocation was fixed:

* **period-weighted** (the production default): ``mu_a = sum_p W_p xbar_pa`` with ``W_p = N_p / N``
  the period's share of all units. Each ``xbar_pa`` is unbiased because within a period the
  allocation did not depend on that period's rewards, and the weights do not depend on any
  reward. Its variance is ``s_a^2 sum_p W_p^2 / n_pa`` with ``s_a^2`` the arm's within-period
  pooled variance; ``1 / sum_p W_p^2 / n_pa`` is its effective sample size (Kish).
* **inverse-propensity weighted** (Horvitz-Thompson): ``mu_a = (1/N) sum_t 1[A_t = a] R_t / pi_t(a)``
  with ``pi_t(a)`` the arm's allocation probability when unit ``t`` arrived. Each term has
  conditional mean ``mu_a``, so the estimate is unbiased whenever every ``pi_t(a) > 0`` (a floor
  guarantees it); the variance is estimated by the sample variance of the terms over ``N``.

Periods where an arm had no data (period-weighted) or no chance (IPW, after a stop) are left out
of that arm's estimate, and the weights of the remaining periods are renormalised.

References:
    Horvitz, D. G., Thompson, D. J. (1952). A Generalization of Sampling Without Replacement
    from a Finite Universe. JASA 47(260), 663-685 (the inverse-probability estimator).
    Nie, X., Tian, X., Taylor, J., Zou, J. (2018). Why Adaptively Collected Data Have Negative
    Bias and How to Correct for It. AISTATS, theorem 1.
    Hadad, V., Hirshberg, D. A., Zhan, R., Wager, S., Athey, S. (2021). Confidence Intervals for
    Policy Evaluation in Adaptive Experiments. PNAS 118(15), section 2 (IPW scores under
    adaptive assignment; normality needs propensities bounded away from 0).
    Kish, L. (1965). Survey Sampling, section 11.7 (effective sample size of a weighted mean).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# scipy is imported by the functions that use it: the service's /assign imports this module
# (through splitlab.operations.bandits), and its workers start without scipy.
from splitlab.bandits._common import FloatArray
from splitlab.stats._validation import check_probability
from splitlab.stats.results import NAN_INTERVAL, ErrorCode, Interval
from splitlab.stats.statistics import MeanStatistic

__all__ = [
    "ESTIMATORS",
    "STATISTICS",
    "ArmEstimate",
    "PeriodArrays",
    "ipw_estimates",
    "naive_estimates",
    "period_arrays",
    "period_weighted_estimates",
    "within_period",
]

ESTIMATORS: tuple[str, ...] = ("period-weighted", "ipw", "naive")

PeriodArrays = tuple[FloatArray, FloatArray, FloatArray]
"""``(n, sums, sums_sq)`` of shape ``(..., periods, arms)``."""


@dataclass(frozen=True, slots=True)
class ArmEstimate:
    """The mean reward of one arm.

    Attributes:
        arm: the arm's index.
        estimator: ``period-weighted``, ``ipw`` or ``naive`` (the plain pooled mean, biased under
            adaptive allocation; for comparison only).
        mean: the estimate (NaN without data).
        standard_error: its standard error (NaN when it cannot be estimated).
        ci: the normal ``1 - alpha`` interval ``mean +- z se``.
        n: the arm's observations.
        effective_n: the sample size an equally weighted mean with the same variance would need.
        alpha: level of ``ci``.
        error_code, error_message: set when the data do not allow the estimate.
    """

    arm: int
    estimator: str
    mean: float
    standard_error: float
    ci: Interval
    n: int
    effective_n: float
    alpha: float
    error_code: ErrorCode | None = None
    error_message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (tuples become lists)."""
        data = asdict(self)
        data["ci"] = list(self.ci)
        data["error_code"] = None if self.error_code is None else str(self.error_code)
        return data


def period_arrays(periods: Sequence[Sequence[MeanStatistic]]) -> PeriodArrays:
    """``(n, sums, sums_sq)`` arrays of shape ``(periods, arms)`` from ``periods[p][arm]`` statistics."""
    rows = [list(period) for period in periods]
    if not rows or not rows[0]:
        msg = "periods is empty, must hold at least one period with one statistic per arm"
        raise ValueError(msg)
    k = len(rows[0])
    for p, row in enumerate(rows):
        if len(row) != k:
            msg = f"periods[{p}] has {len(row)} arms, must have {k} like periods[0]"
            raise ValueError(msg)
        for a, stat in enumerate(row):
            if not isinstance(stat, MeanStatistic) or stat.n < 0 or stat.sum_sq < 0:
                msg = f"periods[{p}][{a}] == {stat!r}, must be a MeanStatistic with n >= 0 and sum_sq >= 0"
                raise ValueError(msg)
    n = np.array([[s.n for s in row] for row in rows], dtype=np.float64)
    sums = np.array([[s.sum for s in row] for row in rows], dtype=np.float64)
    sums_sq = np.array([[s.sum_sq for s in row] for row in rows], dtype=np.float64)
    if not (np.isfinite(sums).all() and np.isfinite(sums_sq).all()):
        msg = "periods holds a non-finite sum or sum_sq"
        raise ValueError(msg)
    return n, sums, sums_sq


def period_weighted(n: FloatArray, sums: FloatArray, sums_sq: FloatArray) -> tuple[FloatArray, ...]:
    """Period-weighted mean, its variance, effective n and within-period unit variance, each ``(..., k)``.

    Works on ``(..., periods, arms)`` arrays; arms without data get mean 0 and effective n 0.
    """
    has = n > 0
    weight = n.sum(axis=-1, keepdims=True) * has
    total = weight.sum(axis=-2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(total > 0, weight / total, 0.0)
        period_mean = np.where(has, sums / n, 0.0)
        mean = (weight * period_mean).sum(axis=-2)
        inverse_n_eff = np.where(has, weight * weight / n, 0.0).sum(axis=-2)
        effective_n = np.where(inverse_n_eff > 0, 1.0 / inverse_n_eff, 0.0)
        within = np.where(has, np.maximum(sums_sq - sums * period_mean, 0.0), 0.0).sum(axis=-2)
        dof = n.sum(axis=-2) - has.sum(axis=-2)
        unit_variance = np.where(dof > 0, within / dof, np.nan)
    return mean, unit_variance * inverse_n_eff, effective_n, unit_variance


def within_period(n: FloatArray, sums: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Arm means from within-period comparisons, and their effective sample sizes, each ``(..., k)``.

    The two-way additive model ``x = alpha_p + beta_a + e`` (a level per period, an effect per
    arm) is fitted by least squares on the cell sums. Absorbing the period levels leaves the
    reduced normal equations ``C beta = q`` with ``C = diag(n_a) - sum_p n_p n_p^T / N_p`` and
    ``q_a = S_a - sum_p n_pa S_p / N_p`` (``n_p`` the period's counts per arm, ``S`` sums). The arm
    mean on the overall level is ``mu_a = xbar + beta_a - sum_b (n_b / N) beta_b`` (invariant to
    the constant ``beta`` is defined up to), and ``Var(mu_a) = sigma^2 (1 / N + d^T C^+ d)`` with
    ``d = e_a - n / N``; its effective sample size is ``1 / (1 / N + d^T C^+ d)``. With one period
    this is the plain mean and ``n_a``; with drifting periods, arms are compared only within a
    period, so when an arm got its traffic does not bias it (Simpson's paradox) -- at little cost
    in precision, unlike the period-weighted mean, which gives a period with one observation of
    an arm as much weight as a period with a hundred.

    References:
        Searle, S. R. (1987). Linear Models for Unbalanced Data. Wiley, chapter 7 (two-way
        classification without interaction: absorbing one factor gives the reduced normal equations).
    """
    k = n.shape[-1]
    period_n = n.sum(axis=-1)
    inverse = np.where(period_n > 0, 1.0 / np.where(period_n > 0, period_n, 1.0), 0.0)
    arm_n = n.sum(axis=-2)
    total = np.maximum(period_n.sum(axis=-1), 1.0)[..., None]
    reduced = arm_n[..., :, None] * np.eye(k) - np.einsum("...pa,...pb,...p->...ab", n, n, inverse)
    q = sums.sum(axis=-2) - np.einsum("...pa,...p,...p->...a", n, sums.sum(axis=-1), inverse)
    pseudo = np.linalg.pinv(reduced)
    beta = np.einsum("...ab,...b->...a", pseudo, q)
    share = arm_n / total
    mean = sums.sum(axis=(-2, -1))[..., None] / total + beta - (share * beta).sum(axis=-1, keepdims=True)
    d = np.eye(k) - share[..., None, :]
    spread = np.einsum("...ab,...bc,...ac->...a", d, pseudo, d)
    effective_n = np.where(arm_n > 0, 1.0 / (1.0 / total + np.maximum(spread, 0.0)), 0.0)
    return mean, effective_n


STATISTICS: tuple[str, ...] = ("within-period", "period-weighted", "pooled")
"""How :func:`effective_statistics` summarises periods for a policy."""


def effective_statistics(
    n: FloatArray, sums: FloatArray, sums_sq: FloatArray, method: str = "within-period"
) -> PeriodArrays:
    """Per-arm ``(n_eff, sum, sum_sq)``: an estimate and its precision for a policy, ``(..., periods, k) -> (..., k)``.

    ``method``: ``within-period`` (:func:`within_period`, the default), ``period-weighted``
    (traffic-weighted period means with their Kish effective sample size) or ``pooled`` (plain
    sums, blind to drift). Then ``sum = n_eff mu`` and ``sum_sq = (n_eff - 1) s^2 + n_eff mu^2``
    with ``s^2`` the arm's within-period pooled variance, so the policy sees the estimate ``mu``
    with variance ``s^2 / n_eff``.
    """
    if method == "pooled":
        return n.sum(axis=-2), sums.sum(axis=-2), sums_sq.sum(axis=-2)
    pw_mean, _, pw_n, unit_variance = period_weighted(n, sums, sums_sq)
    if method == "period-weighted":
        mean, effective_n = pw_mean, pw_n
    elif method == "within-period":
        mean, effective_n = within_period(n, sums)
    else:
        msg = f"method == {method!r}, must be one of {', '.join(STATISTICS)}"
        raise ValueError(msg)
    variance = np.where(np.isnan(unit_variance), 0.0, unit_variance)
    return effective_n, effective_n * mean, np.maximum(effective_n - 1.0, 0.0) * variance + effective_n * mean * mean


def _interval(mean: float, se: float, alpha: float) -> Interval:
    if not (math.isfinite(mean) and math.isfinite(se)):
        return NAN_INTERVAL
    from scipy import special

    z = float(special.ndtri(1 - alpha / 2))
    return (mean - z * se, mean + z * se)


def _records(
    estimator: str,
    mean: FloatArray,
    variance: FloatArray,
    n: FloatArray,
    effective_n: FloatArray,
    alpha: float,
) -> tuple[ArmEstimate, ...]:
    records = []
    for arm in range(mean.size):
        count = round(float(n[arm]))
        if count == 0:
            message = f"arm {arm} has no observations"
            empty = ArmEstimate(
                arm, estimator, math.nan, math.nan, NAN_INTERVAL, 0, 0.0, alpha, ErrorCode.EMPTY_GROUP, message
            )
            records.append(empty)
            continue
        se = math.sqrt(variance[arm]) if math.isfinite(variance[arm]) and variance[arm] >= 0 else math.nan
        code, problem = (None, None)
        if math.isnan(se):
            code, problem = ErrorCode.TOO_FEW_UNITS, f"arm {arm} has too few observations to estimate a variance"
        value = float(mean[arm])
        interval = _interval(value, se, alpha)
        records.append(
            ArmEstimate(arm, estimator, value, se, interval, count, float(effective_n[arm]), alpha, code, problem)
        )
    return tuple(records)


def period_weighted_estimates(
    periods: Sequence[Sequence[MeanStatistic]], *, alpha: float = 0.05
) -> tuple[ArmEstimate, ...]:
    """Per-arm means weighting each period by its share of all units (see the module docstring).

    Args:
        periods: ``periods[p][arm]``: the rewards of the units allocated during period ``p``.
        alpha: level of the intervals; default 0.05.

    Example:
        >>> stats = [[MeanStatistic(50, 10, 10), MeanStatistic(50, 15, 15)],
        ...          [MeanStatistic(10, 6, 6), MeanStatistic(90, 63, 63)]]
        >>> [round(e.mean, 3) for e in period_weighted_estimates(stats)]
        [0.4, 0.5]
    """
    check_probability("alpha", alpha)
    n, sums, sums_sq = period_arrays(periods)
    mean, variance, effective_n, _ = period_weighted(n, sums, sums_sq)
    return _records("period-weighted", mean, variance, n.sum(axis=0), effective_n, alpha)


def ipw_estimates(
    periods: Sequence[Sequence[MeanStatistic]],
    weights: Sequence[Sequence[float]],
    *,
    alpha: float = 0.05,
) -> tuple[ArmEstimate, ...]:
    """Inverse-propensity weighted (Horvitz-Thompson) means from per-period statistics and allocation weights.

    With ``N_a`` the units of the periods in which arm ``a`` had a positive weight,
    ``mu_a = (1 / N_a) sum_p sum_pa / w_pa`` and, with ``G = sum_p sum_sq_pa / w_pa^2`` the sum of
    the squared terms, ``var = (G - N_a mu_a^2) / (N_a (N_a - 1))``.

    Args:
        periods: ``periods[p][arm]``: the rewards of the units allocated during period ``p``.
        weights: ``weights[p][arm]``: the allocation probabilities during period ``p``.
        alpha: level of the intervals; default 0.05.

    Raises:
        ValueError: weights of the wrong shape, outside [0, 1], or zero for an arm that has units
            in that period.

    Example:
        >>> stats = [[MeanStatistic(50, 10, 10), MeanStatistic(50, 15, 15)],
        ...          [MeanStatistic(10, 6, 6), MeanStatistic(90, 63, 63)]]
        >>> [round(e.mean, 3) for e in ipw_estimates(stats, [[0.5, 0.5], [0.1, 0.9]])]
        [0.4, 0.5]
    """
    check_probability("alpha", alpha)
    n, sums, sums_sq = period_arrays(periods)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != n.shape:
        msg = f"weights has shape {w.shape}, must be {n.shape} (one weight per period and arm)"
        raise ValueError(msg)
    if not np.isfinite(w).all() or (w < 0).any() or (w > 1).any():
        msg = "weights must be probabilities in [0, 1]"
        raise ValueError(msg)
    if ((w == 0) & (n > 0)).any():
        p, a = (int(i[0]) for i in np.nonzero((w == 0) & (n > 0)))
        msg = f"weights[{p}][{a}] == 0 but arm {a} has units in period {p}: the weights are not the allocation used"
        raise ValueError(msg)
    mean, variance, _ = ipw_arrays(n, sums, sums_sq, w)
    with np.errstate(divide="ignore", invalid="ignore"):
        effective = np.where(variance > 0, _unit_var(n, sums, sums_sq) / variance, 0.0)
    return _records("ipw", mean, variance, n.sum(axis=0), np.nan_to_num(effective), alpha)


def ipw_arrays(
    n: FloatArray, sums: FloatArray, sums_sq: FloatArray, weights: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """IPW means, their variances and the units behind them from ``(..., periods, arms)`` arrays."""
    chance = weights > 0
    units = (n.sum(axis=-1, keepdims=True) * chance).sum(axis=-2)
    safe = np.where(chance, weights, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(units > 0, (sums / safe).sum(axis=-2) / units, np.nan)
        squares = (sums_sq / (safe * safe)).sum(axis=-2)
        variance = np.where(units > 1, (squares - units * mean * mean) / (units * (units - 1)), np.nan)
    return mean, np.maximum(variance, 0.0), units


def _unit_var(n: FloatArray, sums: FloatArray, sums_sq: FloatArray) -> FloatArray:
    total_n = n.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = sums.sum(axis=0) / total_n
        return np.asarray((sums_sq.sum(axis=0) - total_n * mean * mean) / (total_n - 1), dtype=np.float64)


def naive_estimates(periods: Sequence[Sequence[MeanStatistic]], *, alpha: float = 0.05) -> tuple[ArmEstimate, ...]:
    """The plain pooled mean ``sum / n`` per arm, with ``se = s / sqrt(n)``: biased under adaptive allocation.

    Kept for comparison (and for fixed allocations, where it is the usual estimate).
    """
    check_probability("alpha", alpha)
    n, sums, sums_sq = period_arrays(periods)
    total_n = n.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(total_n > 0, sums.sum(axis=0) / total_n, np.nan)
        variance = _unit_var(n, sums, sums_sq) / total_n
    return _records("naive", mean, np.where(total_n > 1, variance, np.nan), total_n, total_n, alpha)
