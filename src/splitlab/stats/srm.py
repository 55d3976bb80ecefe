"""Sample ratio mismatch (SRM): do the assignment counts match the configured traffic split?

The check is Pearson's chi-square goodness-of-fit test of the observed counts per variant against
``total * weight``: ``X^2 = sum_j (O_j - E_j)^2 / E_j`` with ``k - 1`` degrees of freedom. An SRM
means the assignment or the logging is broken, so every other result of the experiment is suspect;
the default threshold is strict (``p < 0.001``) because the check runs on every analysis.

References:
    Pearson, K. (1900). On the criterion that a given system of deviations from the probable ...
    Philosophical Magazine 50(302), 157-175 (the X^2 statistic).
    Agresti, A. (2013). Categorical Data Analysis, 3rd ed., section 1.5.2 (Pearson statistic for
    a specified multinomial, df = k - 1).
    Fabijan, A. et al. (2019). Diagnosing Sample Ratio Mismatch in Online Controlled Experiments.
    KDD (the chi-square SRM check and a strict threshold).
    Kohavi, R., Tang, D., Xu, Y. (2020). Trustworthy Online Controlled Experiments, ch. 21.
    Agresti, A. (2013), section 1.5.6 and 16.1.4 (independent chi-square statistics add, and so
    do their degrees of freedom: the check of several allocation phases, each against its weights).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

# scipy is imported by the functions that use it: the service's /assign imports this module
# (through splitlab.operations.bandits), and its workers start without scipy.
from splitlab.stats._validation import check_positive, check_probability
from splitlab.stats.results import ErrorCode

WEIGHTS_TOLERANCE = 1e-6

__all__ = ["WEIGHTS_TOLERANCE", "SrmResult", "phased_srm_test", "srm_test"]

Counts = Mapping[Any, int] | Iterable[int]
Weights = Mapping[Any, float] | Iterable[float]


@dataclass(frozen=True, slots=True)
class SrmResult:
    """Outcome of a sample ratio mismatch check.

    Attributes:
        statistic: Pearson's ``X^2`` (NaN when no unit was counted).
        df: degrees of freedom, ``k - 1``.
        p_value: ``P(chi2_df >= statistic)`` (NaN when no unit was counted).
        counts: observed units per variant.
        expected: ``total * expected_share`` per variant.
        observed_shares: ``count / total`` per variant (NaN when no unit was counted).
        expected_shares: the configured weights, normalised to sum to exactly 1.
        variants: variant names (mapping keys as ``str``, or positions ``"0"``, ``"1"``, ...).
        threshold: the p-value below which the split is flagged.
        flag: ``p_value < threshold``; False when the p-value is undefined.
        error_code, error_message: set when the counts do not allow a test (total of 0).
    """

    statistic: float
    df: int
    p_value: float
    counts: tuple[int, ...]
    expected: tuple[float, ...]
    observed_shares: tuple[float, ...]
    expected_shares: tuple[float, ...]
    variants: tuple[str, ...]
    threshold: float
    flag: bool
    error_code: ErrorCode | None = None
    error_message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (tuples become lists; JSON-ready except NaN)."""
        return {
            "statistic": self.statistic,
            "df": self.df,
            "p_value": self.p_value,
            "counts": list(self.counts),
            "expected": list(self.expected),
            "observed_shares": list(self.observed_shares),
            "expected_shares": list(self.expected_shares),
            "variants": list(self.variants),
            "threshold": self.threshold,
            "flag": self.flag,
            "error_code": None if self.error_code is None else str(self.error_code),
            "error_message": self.error_message,
        }


def _count(label: str, value: Any) -> int:
    """A non-negative integer count; integral floats (SQL ``SUM`` results) are accepted."""
    integral = isinstance(value, numbers.Integral) or (
        isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer()
    )
    if isinstance(value, bool) or not integral or value < 0:
        msg = f"{label} == {value!r}, must be a non-negative integer"
        raise ValueError(msg)
    return int(value)


def _parse_counts(counts: Counts) -> tuple[tuple[Any, ...], tuple[str, ...], tuple[int, ...]]:
    if isinstance(counts, Mapping):
        keys: tuple[Any, ...] = tuple(counts)
        values = tuple(_count(f"counts[{key!r}]", counts[key]) for key in keys)
        names = tuple(str(key) for key in keys)
    elif isinstance(counts, str | bytes) or not isinstance(counts, Iterable):
        msg = f"counts must be a sequence or a mapping of variant to count, got {type(counts).__name__}"
        raise ValueError(msg)  # noqa: TRY004 - caller mistakes raise ValueError naming the parameter (DESIGN.md)
    else:
        values = tuple(_count(f"counts[{i}]", value) for i, value in enumerate(counts))
        keys = tuple(range(len(values)))
        names = tuple(str(key) for key in keys)
    if len(values) < 2:
        msg = f"counts has {len(values)} variant(s), must have at least 2"
        raise ValueError(msg)
    return keys, names, values


def _parse_weights(weights: Weights | None, keys: tuple[Any, ...], *, keyed: bool) -> tuple[float, ...]:
    k = len(keys)
    if weights is None:
        return (1.0 / k,) * k
    if keyed:
        if not isinstance(weights, Mapping) or set(weights) != set(keys):
            given = sorted(map(repr, weights)) if isinstance(weights, Mapping) else type(weights).__name__
            msg = f"weights must be a mapping with the keys of counts {sorted(map(repr, keys))}, got {given}"
            raise ValueError(msg)
        raw = [weights[key] for key in keys]
    else:
        if isinstance(weights, Mapping | str | bytes) or not isinstance(weights, Iterable):
            msg = f"weights must be a sequence like counts, got {type(weights).__name__}"
            raise ValueError(msg)
        raw = list(weights)
        if len(raw) != k:
            msg = f"weights has {len(raw)} entries, must have {k} (one per variant in counts)"
            raise ValueError(msg)
    # numpy scalars become floats so that the shared check accepts them; bools and strings do not.
    values = [
        check_positive(f"weights[{key!r}]", float(w) if isinstance(w, numbers.Real) and not isinstance(w, bool) else w)
        for key, w in zip(keys, raw, strict=True)
    ]
    total = math.fsum(values)
    if abs(total - 1.0) > WEIGHTS_TOLERANCE:
        msg = f"weights sum to {total!r}, must sum to 1 within {WEIGHTS_TOLERANCE:g}"
        raise ValueError(msg)
    return tuple(w / total for w in values)


def srm_test(counts: Counts, weights: Weights | None = None, *, threshold: float = 0.001) -> SrmResult:
    """Pearson's chi-square test of the assignment counts against the configured weights.

    ``X^2 = sum_j (O_j - E_j)^2 / E_j`` with ``E_j = N w_j`` and ``N = sum_j O_j``; under a correct
    split ``X^2`` is asymptotically chi-square with ``k - 1`` df (Pearson 1900; Agresti 2013,
    section 1.5.2). The approximation needs every ``E_j`` to be at least about 5.

    Args:
        counts: units per variant, a sequence (variants are named by position) or a mapping of
            variant name to count. Integers >= 0; floats with an integral value are accepted.
        weights: the configured split, of the same shape as ``counts`` (a mapping needs exactly
            the keys of ``counts``). Positive, summing to 1 within ``WEIGHTS_TOLERANCE`` (1e-6);
            they are renormalised to sum to exactly 1. Default: an equal split.
        threshold: flag the split when ``p_value < threshold``, in (0, 1). Default 0.001.

    Returns:
        An :class:`SrmResult`; with no units at all it carries ``ErrorCode.EMPTY_GROUP``, a NaN
        p-value and ``flag=False``.

    Raises:
        ValueError: fewer than 2 variants, a negative or non-integer count, weights of another
            shape, non-positive weights, weights not summing to 1, or a threshold outside (0, 1).

    Example:
        >>> r = srm_test({"control": 10_000, "treatment": 10_400})
        >>> round(r.p_value, 4), r.flag
        (0.0051, False)
        >>> srm_test([10_400, 9_600], [0.5, 0.5]).flag
        True
    """
    check_probability("threshold", threshold)
    keys, names, observed = _parse_counts(counts)
    shares = _parse_weights(weights, keys, keyed=isinstance(counts, Mapping))
    df = len(observed) - 1
    total = sum(observed)
    if total == 0:
        return SrmResult(
            math.nan, df, math.nan, observed, (0.0,) * len(observed), (math.nan,) * len(observed), shares, names,
            threshold, False, ErrorCode.EMPTY_GROUP, "no units were counted in any variant; the split cannot be tested",
        )  # fmt: skip
    obs = np.asarray(observed, dtype=np.float64)
    expected = total * np.asarray(shares, dtype=np.float64)
    statistic = float(np.sum((obs - expected) ** 2 / expected))
    from scipy import stats as sps

    p_value = float(sps.chi2.sf(statistic, df))
    return SrmResult(
        statistic=statistic,
        df=df,
        p_value=p_value,
        counts=observed,
        expected=tuple(float(e) for e in expected),
        observed_shares=tuple(c / total for c in observed),
        expected_shares=shares,
        variants=names,
        threshold=threshold,
        flag=p_value < threshold,
    )


def phased_srm_test(
    phases: Iterable[tuple[Mapping[Any, int], Mapping[Any, float]]], *, threshold: float = 0.001
) -> tuple[SrmResult, tuple[SrmResult, ...]]:
    """The split checked per allocation phase, each phase against its own weights, and over all phases.

    Each phase is :func:`srm_test` of its counts against its weights. The phases hold disjoint
    units, so under a correct split their statistics are independent and
    ``X^2 = sum_p X^2_p`` is chi-square with ``sum_p (k_p - 1)`` df (Agresti 2013, section 1.5.6):
    the overall check. Its counts are the units per variant over all phases and its expected
    counts ``sum_p N_p w_pj``; phases without units add nothing. With one phase this is
    :func:`srm_test`.

    Args:
        phases: ``(counts, weights)`` per phase, mappings of variant to count and to weight (as in
            :func:`srm_test`; every phase names the same variants).
        threshold: flag when ``p_value < threshold``, in (0, 1). Default 0.001.

    Returns:
        The overall result and each phase's.

    Raises:
        ValueError: no phase, phases naming different variants, or what :func:`srm_test` refuses.

    Example:
        >>> ramp = [({"a": 1000, "b": 9000}, {"a": 0.1, "b": 0.9}), ({"a": 5050, "b": 4950}, {"a": 0.5, "b": 0.5})]
        >>> overall, (first, second) = phased_srm_test(ramp)
        >>> overall.df, round(overall.p_value, 3), overall.flag, overall.counts
        (2, 0.607, False, (6050, 13950))
    """
    check_probability("threshold", threshold)
    given = list(phases)
    if not given:
        msg = "phases is empty, must hold at least one (counts, weights) pair"
        raise ValueError(msg)
    results = tuple(srm_test(counts, weights, threshold=threshold) for counts, weights in given)
    variants = results[0].variants
    for p, result in enumerate(results):
        if result.variants != variants:
            msg = f"phases[{p}] names the variants {list(result.variants)}, must name {list(variants)} like phases[0]"
            raise ValueError(msg)
    if len(results) == 1:
        return results[0], results
    counted = [r for r in results if r.error_code is None]
    counts = tuple(sum(r.counts[j] for r in results) for j in range(len(variants)))
    total = sum(counts)
    if not counted:
        return srm_test(dict(zip(variants, counts, strict=True)), threshold=threshold), results
    expected = tuple(math.fsum(r.expected[j] for r in counted) for j in range(len(variants)))
    statistic = math.fsum(r.statistic for r in counted)
    df = sum(r.df for r in counted)
    from scipy import stats as sps

    p_value = float(sps.chi2.sf(statistic, df))
    overall = SrmResult(
        statistic=statistic,
        df=df,
        p_value=p_value,
        counts=counts,
        expected=expected,
        observed_shares=tuple(c / total for c in counts),
        expected_shares=tuple(e / total for e in expected),
        variants=variants,
        threshold=threshold,
        flag=p_value < threshold,
    )
    return overall, results
