"""Multiple-testing corrections of p-values, and confidence intervals that stay consistent with them.

Methods (named exactly; ``method="holm"`` is the default):

* ``bonferroni``: ``p~_i = min(1, m p_i)`` (FWER, any dependence).
* ``holm``: step-down, ``p~_(i) = max_{j<=i} min(1, (m - j + 1) p_(j))`` (FWER, any dependence;
  Holm 1979).
* ``hochberg``: step-up, ``p~_(i) = min_{j>=i} min(1, (m - j + 1) p_(j))`` (FWER under
  independence or positive dependence; Hochberg 1988). statsmodels calls it ``simes-hochberg``.
* ``benjamini-hochberg``: ``p~_(i) = min_{j>=i} min(1, m p_(j) / j)`` (FDR under independence or
  PRDS; Benjamini & Hochberg 1995). statsmodels ``fdr_bh``.
* ``benjamini-yekutieli``: as BH with ``m`` replaced by ``m c(m)``, ``c(m) = sum_{i<=m} 1/i``
  (FDR under any dependence; Benjamini & Yekutieli 2001, Theorem 1.3). statsmodels ``fdr_by``.
* ``none``: the p-values unchanged.

Here ``p_(1) <= ... <= p_(m)`` are the sorted p-values. NaN p-values (tests that could not be
computed) are passed through as NaN and are not counted in ``m``: a comparison without a p-value
is not a hypothesis that was tested. A hypothesis is rejected when its adjusted p-value is
``< alpha``, the same strict rule as :attr:`EffectResult.significant`.

Confidence intervals under correction (:func:`ci_alpha`): FWER methods report Bonferroni
simultaneous intervals at per-comparison level ``alpha / m``; FDR methods report the
false-coverage-rate (FCR) adjusted intervals of Benjamini & Yekutieli (2005) at level
``1 - max(R, 1) q / m`` (``R`` rejections), deflated by ``c(m)`` for ``benjamini-yekutieli``.

References:
    Holm, S. (1979). A simple sequentially rejective multiple test procedure. Scand. J. Statist. 6, 65-70.
    Hochberg, Y. (1988). A sharper Bonferroni procedure for multiple tests of significance.
    Biometrika 75, 800-802.
    Benjamini, Y., Hochberg, Y. (1995). Controlling the false discovery rate. JRSS B 57, 289-300,
    section 3.
    Benjamini, Y., Yekutieli, D. (2001). The control of the false discovery rate in multiple
    testing under dependency. Ann. Statist. 29, 1165-1188, Theorem 1.3.
    Benjamini, Y., Yekutieli, D. (2005). False discovery rate-adjusted multiple confidence
    intervals for selected parameters. JASA 100, 71-81, sections 2-3 (FCR; level 1 - R q / m,
    Theorem 1; BH-selected intervals and their duality with the BH test).
    Wright, S. P. (1992). Adjusted p-values for simultaneous inference. Biometrics 48, 1005-1013
    (adjusted p-values of the step-down and step-up procedures).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from splitlab.stats._validation import check_choice, check_probability
from splitlab.stats.frequentist import _critical, _wilson
from splitlab.stats.results import EffectResult, Interval

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

FWER_METHODS = ("bonferroni", "holm", "hochberg")
FDR_METHODS = ("benjamini-hochberg", "benjamini-yekutieli")
METHODS = (*FWER_METHODS, *FDR_METHODS, "none")

__all__ = ["FDR_METHODS", "FWER_METHODS", "METHODS", "adjust_p_values", "adjust_results", "ci_alpha", "reject"]


def _as_p_values(p_values: Any) -> FloatArray:
    try:
        p = np.asarray(p_values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        msg = f"p_values must be numbers in [0, 1] (or NaN), got {p_values!r}"
        raise ValueError(msg) from error
    if p.ndim == 0:
        msg = f"p_values must be an array of shape (m,) or (..., m), got a scalar {float(p)!r}"
        raise ValueError(msg)
    outside = ~np.isnan(p) & ((p < 0) | (p > 1))
    if outside.any():
        msg = f"p_values contains {float(p[outside].flat[0])!r}, must be in [0, 1] (NaN marks a missing test)"
        raise ValueError(msg)
    return p


def _harmonic(m: npt.NDArray[np.int64], size: int) -> FloatArray:
    """``c(m) = sum_{i=1}^{m} 1 / i`` for every entry of ``m`` (Benjamini & Yekutieli 2001)."""
    partial = np.concatenate(([0.0], np.cumsum(1.0 / np.arange(1, size + 1))))
    return partial[m]


def adjust_p_values(p_values: Any, *, method: str = "holm") -> FloatArray:
    """Adjusted p-values for one family of tests, or for many families at once.

    Args:
        p_values: array-like of shape ``(m,)``, or ``(..., m)`` to adjust every family along the
            last axis in one vectorised pass. Values in [0, 1]; NaN entries stay NaN and are
            excluded from ``m`` (each family counts its own non-NaN entries).
        method: ``bonferroni``, ``holm`` (default), ``hochberg``, ``benjamini-hochberg``,
            ``benjamini-yekutieli`` or ``none``; see the module docstring for the formulas.

    Returns:
        A new float array of the shape of ``p_values``; ties get equal adjusted values.

    Raises:
        ValueError: an unknown ``method``, or a p-value outside [0, 1].

    Example:
        >>> adjust_p_values([0.01, 0.04, 0.03], method="holm").round(6).tolist()
        [0.03, 0.06, 0.06]
        >>> adjust_p_values([0.01, float("nan"), 0.04], method="benjamini-hochberg").round(6).tolist()
        [0.02, nan, 0.04]
    """
    check_choice("method", method, METHODS)
    p = _as_p_values(p_values)
    size = p.shape[-1]
    if method == "none" or size == 0:
        return p.copy()
    # NaNs sort last, so the m valid values of each family occupy ranks 1..m.
    order = np.argsort(p, axis=-1, kind="stable")
    ordered = np.take_along_axis(p, order, axis=-1)
    valid = ~np.isnan(ordered)
    m = valid.sum(axis=-1, keepdims=True)
    rank = np.arange(1, size + 1, dtype=np.float64)
    if method == "bonferroni":
        adjusted = m * ordered
    elif method == "holm":
        # NaNs at the tail cannot reach the valid prefix of a forward running maximum.
        adjusted = np.maximum.accumulate((m - rank + 1) * ordered, axis=-1)
    else:
        if method == "hochberg":
            raw = (m - rank + 1) * ordered
        else:
            scale = m if method == "benjamini-hochberg" else m * _harmonic(m, size)
            raw = scale * ordered / rank
        # A backward running minimum would carry the tail's NaNs forward; 1 is neutral after clipping.
        raw = np.where(valid, raw, 1.0)
        adjusted = np.flip(np.minimum.accumulate(np.flip(raw, axis=-1), axis=-1), axis=-1)
    adjusted = np.where(valid, np.minimum(adjusted, 1.0), np.nan)
    out = np.empty_like(p)
    np.put_along_axis(out, order, adjusted, axis=-1)
    return out


def reject(p_values: Any, *, method: str = "holm", alpha: float = 0.05) -> BoolArray:
    """Which hypotheses the ``method`` rejects at family level ``alpha``: adjusted p-value ``< alpha``.

    Args:
        p_values: as for :func:`adjust_p_values`; NaN entries are never rejected.
        method: as for :func:`adjust_p_values` (default ``holm``).
        alpha: the family-wise error rate or false discovery rate, in (0, 1). Default 0.05.

    Example:
        >>> reject([0.001, 0.02, 0.04, 0.30], method="benjamini-hochberg", alpha=0.05).tolist()
        [True, True, False, False]
    """
    check_probability("alpha", alpha)
    return adjust_p_values(p_values, method=method) < alpha


def ci_alpha(method: str, *, alpha: float, m: int, rejections: int) -> float:
    """The per-comparison alpha at which confidence intervals are reported under ``method``.

    * FWER methods (``bonferroni``, ``holm``, ``hochberg``): ``alpha / m``, Bonferroni
      simultaneous intervals. For Bonferroni the intervals agree with the adjusted p-values both
      ways (for tests whose p-value and CI use the same standard error). For Holm and Hochberg
      they are the conservative choice and agree one way only: an interval that excludes the
      null value implies rejection, but a hypothesis may be rejected while its interval still
      covers the null value, since their adjusted p-values are never larger than Bonferroni's.
    * FDR methods: the FCR-adjusted level of Benjamini & Yekutieli (2005, section 3 and
      Theorem 1), ``max(R, 1) q / m`` for ``benjamini-hochberg``; for ``benjamini-yekutieli``
      ``q`` is replaced by ``q / c(m)``, ``c(m) = sum_{i<=m} 1/i``, the deflation that keeps
      FCR (like FDR) controlled under any dependence. ``R`` is the number of rejections. With
      these levels the intervals are dual to the step-up test: a hypothesis is rejected exactly
      when its interval excludes the null value. BY (2005) build intervals only when ``R >= 1``;
      here ``R = 0`` uses ``R = 1``, giving the Bonferroni level ``q / m`` (``q / (m c(m))``),
      so that every comparison still reports an interval and none of them excludes the null.
      The same level is used for all comparisons, selected or not; the FCR guarantee is about
      the selected (rejected) ones.
    * ``none``: ``alpha``.

    Args:
        method: one of :data:`METHODS`.
        alpha: family level (FWER or FDR ``q``), in (0, 1).
        m: number of hypotheses with a p-value, >= 1.
        rejections: number rejected by ``method`` at ``alpha``, between 0 and ``m``.

    Example:
        >>> ci_alpha("holm", alpha=0.05, m=5, rejections=2)
        0.01
        >>> ci_alpha("benjamini-hochberg", alpha=0.05, m=10, rejections=4)
        0.02
    """
    check_choice("method", method, METHODS)
    check_probability("alpha", alpha)
    if isinstance(m, bool) or not isinstance(m, int | np.integer) or m < 1:
        msg = f"m == {m!r}, must be an integer >= 1"
        raise ValueError(msg)
    if isinstance(rejections, bool) or not isinstance(rejections, int | np.integer) or not 0 <= rejections <= m:
        msg = f"rejections == {rejections!r}, must be an integer between 0 and m == {m}"
        raise ValueError(msg)
    if method == "none":
        return alpha
    if method in FWER_METHODS:
        return alpha / m
    selected = max(int(rejections), 1)
    if method == "benjamini-hochberg":
        return selected * alpha / m
    return selected * alpha / (m * math.fsum(1.0 / i for i in range(1, m + 1)))


def _rebuild(ci: Interval, center: float, ratio: float, alternative: str, *, log: bool) -> Interval:
    """Stretch each finite side of ``ci`` about ``center`` by ``ratio`` (log(1 + r) space if ``log``).

    For a Wald-type interval ``center -/+ crit * se`` the side's length over ``crit`` is the
    standard error, so the result is ``center -/+ crit_new * se``.
    """
    low, high = ci
    if math.isnan(low) or math.isnan(high) or math.isnan(center):
        return ci
    to_scale, from_scale = (math.log1p, math.expm1) if log else (float, float)
    mid = to_scale(center)
    if alternative != "less":
        low = from_scale(mid - (mid - to_scale(low)) * ratio)
    if alternative != "greater":
        high = from_scale(mid + (to_scale(high) - mid) * ratio)
    return (low, high)


def _newcombe(result: EffectResult, alpha: float) -> Interval:
    """Newcombe's hybrid score interval (method 10) at ``alpha``, as ``proportions_test`` builds it."""
    z = _critical(alpha, None, two_sided=result.alternative == "two-sided")
    pc, pt, nc, nt = result.control_mean, result.treatment_mean, result.control_n, result.treatment_n
    lt, ut = _wilson(pt * nt, nt, z)
    lc, uc = _wilson(pc * nc, nc, z)
    effect = pt - pc
    low = effect - math.sqrt((pt - lt) ** 2 + (uc - pc) ** 2)
    high = effect + math.sqrt((ut - pt) ** 2 + (pc - lc) ** 2)
    if result.alternative == "greater":
        return (low, math.inf)
    if result.alternative == "less":
        return (-math.inf, high)
    return (low, high)


def _recompute_cis(result: EffectResult, alpha: float) -> tuple[Interval, Interval]:
    two_sided = result.alternative == "two-sided"
    df_abs, df_rel = result.df, result.relative_df

    def ratio(df: float | None) -> float:
        return _critical(alpha, df, two_sided=two_sided) / _critical(result.alpha, df, two_sided=two_sided)

    if result.test == "fisher-exact" and not (math.isnan(result.absolute_ci[0]) or math.isnan(result.absolute_ci[1])):
        absolute = _newcombe(result, alpha)
    else:
        absolute = _rebuild(result.absolute_ci, result.absolute_effect, ratio(df_abs), result.alternative, log=False)
    relative = _rebuild(
        result.relative_ci,
        result.relative_effect,
        ratio(df_rel),
        result.alternative,
        log=result.relative_ci_method == "log",
    )
    return absolute, relative


def adjust_results(
    results: Sequence[EffectResult], *, method: str = "holm", alpha: float | None = None
) -> list[EffectResult]:
    """Correct a family of comparisons for multiplicity: p-values and confidence intervals.

    Each result with a p-value becomes a copy with ``p_value`` adjusted by ``method``,
    ``unadjusted_p_value`` holding the raw one, ``correction=method``, ``alpha`` the family level
    (so ``significant`` is the rejection decision of :func:`reject`), and ``absolute_ci`` and
    ``relative_ci`` rebuilt at the per-comparison level :func:`ci_alpha`. The CIs are rebuilt
    from the result alone: the standard error is each finite side's length divided by the
    critical value of the result's own ``alpha`` (normal, or Student t with ``result.df``;
    one-sided for one-sided alternatives), and the side is rebuilt with the new critical value;
    the ``log`` relative CI is rebuilt in ``log(1 + r)`` space, the ``delta`` one in ``r``. A Welch
    t result's relative CI is rebuilt with its own Welch-Satterthwaite df, ``result.relative_df``.
    ``fisher-exact`` results get Newcombe's score interval recomputed at the new level. Note that
    after correction ``alpha`` is the family level and the CIs are at level
    ``1 - ci_alpha(method, ...)``.

    Results whose p-value is NaN are returned unchanged except for ``correction`` and do not count
    in ``m``.

    Args:
        results: the family, e.g. every treatment-versus-control comparison of the experiment's
            metrics; each must be uncorrected (``correction is None``).
        method: one of :data:`METHODS` (default ``holm``).
        alpha: family level in (0, 1). Default: the results' common ``alpha`` (they must agree).

    Returns:
        New :class:`EffectResult` objects in the order of ``results``.

    Raises:
        ValueError: unknown ``method``, invalid ``alpha``, results with different ``alpha`` and no
            ``alpha`` given, an already corrected result, or a p-value outside [0, 1].

    Example:
        >>> from splitlab.stats.frequentist import proportions_test
        >>> from splitlab.stats.statistics import ProportionStatistic as P
        >>> family = [proportions_test(P(5000, 500), P(5000, s)) for s in (580, 540, 505)]
        >>> first = adjust_results(family, method="holm")[0]
        >>> round(first.unadjusted_p_value, 4), round(first.p_value, 4), first.significant
        (0.01, 0.0299, True)
        >>> [round(x, 4) for x in first.absolute_ci]  # 1 - 0.05 / 3 level; unadjusted (0.0038, 0.0282)
        [0.0011, 0.0309]
    """
    check_choice("method", method, METHODS)
    family = list(results)
    if not family:
        return []
    if alpha is None:
        levels = sorted({r.alpha for r in family})
        if len(levels) > 1:
            msg = f"alpha is None but the results have different alpha values {levels}; pass alpha"
            raise ValueError(msg)
        alpha = levels[0]
    check_probability("alpha", alpha)
    for i, r in enumerate(family):
        if r.correction is not None:
            msg = f"results[{i}].correction == {r.correction!r}, must be None: pass the unadjusted results"
            raise ValueError(msg)
    raw = np.array([r.p_value for r in family], dtype=np.float64)
    adjusted = adjust_p_values(raw, method=method)
    m = int(np.count_nonzero(~np.isnan(raw)))
    if m == 0:
        return [replace(r, correction=method) for r in family]
    level = ci_alpha(method, alpha=alpha, m=m, rejections=int(np.count_nonzero(adjusted < alpha)))
    out = []
    for r, p in zip(family, adjusted, strict=True):
        if math.isnan(r.p_value):
            out.append(replace(r, correction=method))
            continue
        absolute_ci, relative_ci = _recompute_cis(r, level)
        out.append(
            replace(
                r,
                alpha=alpha,
                p_value=float(p),
                unadjusted_p_value=r.p_value,
                correction=method,
                absolute_ci=absolute_ci,
                relative_ci=relative_ci,
            )
        )
    return out
