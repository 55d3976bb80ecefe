"""Sequential sample ratio mismatch (SRM) check: an always-valid p-value for the traffic split.

The fixed chi-square check (:func:`splitlab.stats.srm.srm_test`) is valid at one look; checking it
after every batch inflates its false alarms. This check, from Lindon & Malek (2022), stays valid
however often it is looked at. It compares the configured split ``p0`` (H0) with a
Dirichlet-multinomial alternative: the shares are drawn from ``Dirichlet(a)`` with
``a_i = concentration * p0_i`` (centred on the configured split). The Bayes factor of the first
``n`` units, with cumulative counts ``x_1..x_k``, is::

    BF_n = [Gamma(sum a) / Gamma(sum a + n)] * prod_i Gamma(a_i + x_i) / Gamma(a_i)
           / prod_i p0_i^x_i

(the Dirichlet-multinomial marginal likelihood of the sequence of assignments over its
likelihood under ``p0``; the multinomial coefficients cancel, so the value depends on the
cumulative counts only and does not change with how the units were batched). It is computed in
log space with ``scipy.special.gammaln``.

Under H0, ``BF_n`` is a non-negative martingale with mean 1, so by Ville's inequality
``P0(BF_n >= 1 / a for some n) <= a``. The always-valid p-value ``p_n = min(p_{n-1}, 1 / BF_n)``
(``p_0 = 1``) therefore satisfies ``P0(p_n < a for some n) <= a`` at any monitoring frequency,
with optional stopping and continuation. Its flag, ``p_n < threshold``, stays raised once raised.

Default concentration: 10,000 (``a = 10,000 * p0``), the default ``dirichlet_concentration`` of
the authors' reference implementation (Lindon, ``ssrm`` for Optimizely, ``ssrm_test.py``, with
the prior mean equal to the null split). A large concentration puts the alternative's shares
close to ``p0`` (a prior standard deviation of the share of about 0.005 for a 50/50 split), which
is where SRMs worth catching live: it detects small imbalances sooner and gross ones a little
later than a diffuse prior would. Validity holds for any concentration.

The default threshold is 0.001, the same as the fixed check, for the same reason: the check runs on
every analysis and an SRM invalidates the experiment.

References:
    Lindon, M., Malek, A. (2022). Anytime-Valid Inference For Multinomial Count Data. NeurIPS 35,
    section 2 (the Dirichlet-multinomial Bayes factor against a point multinomial null, the
    sequential p-value ``min(p_{n-1}, 1 / BF_n)``, and its use as an SRM check).
    Ville, J. (1939). Etude critique de la notion de collectif. Gauthier-Villars (the maximal
    inequality for non-negative martingales).
    Lindon, M. ``ssrm`` (Optimizely), ``ssrm_test/ssrm_test.py``: reference implementation,
    ``dirichlet_concentration=10000``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import gammaln, xlogy

from splitlab.stats._validation import check_positive, check_probability
from splitlab.stats.results import ErrorCode
from splitlab.stats.srm import Counts, Weights, _parse_counts, _parse_weights

FloatArray = npt.NDArray[np.float64]

DEFAULT_CONCENTRATION = 10_000.0

__all__ = [
    "DEFAULT_CONCENTRATION",
    "SequentialSrmResult",
    "sequential_srm_log_bayes_factor",
    "sequential_srm_p_values",
    "sequential_srm_test",
]


@dataclass(frozen=True, slots=True)
class SequentialSrmResult:
    """One look of the sequential SRM check.

    Attributes:
        p_value: the always-valid p-value ``min(previous, 1 / BF_n)``, in (0, 1].
        log_bayes_factor: ``log BF_n`` of the Dirichlet-multinomial alternative against the
            configured split, at this look.
        flag: ``p_value < threshold`` (once raised it stays raised if ``previous_p_value`` is passed
            along).
        counts: cumulative units per variant.
        observed_shares: ``count / total`` per variant (NaN when no unit was counted).
        expected_shares: the configured weights, normalised to sum to exactly 1.
        variants: variant names (mapping keys as ``str``, or positions ``"0"``, ``"1"``, ...).
        threshold: the p-value below which the split is flagged.
        concentration: the Dirichlet concentration (``a = concentration * expected_shares``).
        error_code, error_message: ``EMPTY_GROUP`` when no unit has been counted yet (the p-value
            is then the previous one, or 1).
    """

    p_value: float
    log_bayes_factor: float
    flag: bool
    counts: tuple[int, ...]
    observed_shares: tuple[float, ...]
    expected_shares: tuple[float, ...]
    variants: tuple[str, ...]
    threshold: float
    concentration: float
    error_code: ErrorCode | None = None
    error_message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (tuples become lists; JSON-ready except NaN)."""
        return {
            "p_value": self.p_value,
            "log_bayes_factor": self.log_bayes_factor,
            "flag": self.flag,
            "counts": list(self.counts),
            "observed_shares": list(self.observed_shares),
            "expected_shares": list(self.expected_shares),
            "variants": list(self.variants),
            "threshold": self.threshold,
            "concentration": self.concentration,
            "error_code": None if self.error_code is None else str(self.error_code),
            "error_message": self.error_message,
        }


def _log_bayes_factor(counts: FloatArray, shares: FloatArray, concentration: float) -> FloatArray:
    """``log BF_n`` over the last axis (variants) of ``counts``; Lindon & Malek (2022), section 2."""
    prior = concentration * shares
    constant = gammaln(concentration) - float(np.sum(gammaln(prior)))
    log_marginal = constant - gammaln(concentration + counts.sum(axis=-1)) + np.sum(gammaln(prior + counts), axis=-1)
    return np.asarray(log_marginal - np.sum(xlogy(counts, shares), axis=-1), dtype=np.float64)


def _p_value(log_bf: FloatArray) -> FloatArray:
    """``min(1, 1 / BF)`` without overflow."""
    return np.asarray(np.exp(-np.maximum(log_bf, 0.0)), dtype=np.float64)


def _counts_array(counts: Any) -> FloatArray:
    array = np.asarray(counts)
    if array.ndim < 1 or array.shape[-1] < 2:
        msg = f"counts must have a last axis of at least 2 variants, got shape {array.shape}"
        raise ValueError(msg)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        msg = f"counts must be non-negative integers, got dtype {array.dtype}"
        raise ValueError(msg)
    values = array.astype(np.float64)
    integral = np.issubdtype(array.dtype, np.integer) or bool(
        np.all(np.isfinite(values) & (values == np.floor(values)))
    )
    if not integral or np.any(values < 0):
        msg = "counts must be non-negative integers"
        raise ValueError(msg)
    return values


def _shares(weights: Any, k: int) -> FloatArray:
    return np.asarray(_parse_weights(weights, tuple(range(k)), keyed=False), dtype=np.float64)


def sequential_srm_log_bayes_factor(
    counts: Any, weights: Any = None, *, concentration: float = DEFAULT_CONCENTRATION
) -> FloatArray:
    """``log BF_n`` of the Dirichlet-multinomial alternative, vectorised over counts ``(..., k)``.

    Args:
        counts: cumulative units per variant along the last axis; non-negative integers.
        weights: the configured split, a sequence of ``k`` positive weights summing to 1
            (default equal).
        concentration: Dirichlet concentration (> 0), ``a = concentration * weights``.

    Example:
        >>> round(float(sequential_srm_log_bayes_factor([10_400, 9_600])), 4)
        10.119
    """
    values = _counts_array(counts)
    shares = _shares(weights, values.shape[-1])
    return _log_bayes_factor(values, shares, check_positive("concentration", concentration))


def sequential_srm_p_values(
    counts: Any, weights: Any = None, *, concentration: float = DEFAULT_CONCENTRATION
) -> tuple[FloatArray, FloatArray]:
    """Always-valid p-values along cumulative looks, vectorised: counts of shape ``(..., looks, k)``.

    ``p_j = min(1, min_{i <= j} 1 / BF_i)`` over the looks ``i`` (the running minimum starts at 1).
    Looks may be any subset of the units' arrivals (batches, days): the bound holds at any stopping time.

    Args:
        counts: cumulative counts per look and variant, non-decreasing along the looks axis.
        weights: the configured split (a sequence of ``k`` positive weights summing to 1).
        concentration: Dirichlet concentration (> 0).

    Returns:
        ``(p_values, log_bayes_factors)``, each of shape ``(..., looks)``.

    Example:
        >>> p, log_bf = sequential_srm_p_values([[5_000, 5_000], [10_300, 9_700], [10_400, 10_000]])
        >>> [round(float(x), 5) for x in p]
        [1.0, 0.00429, 0.00429]
    """
    values = _counts_array(counts)
    if values.ndim < 2:
        msg = f"counts must have shape (..., looks, k), got shape {values.shape}"
        raise ValueError(msg)
    if np.any(np.diff(values, axis=-2) < 0):
        msg = "counts must be cumulative: non-decreasing along the looks axis"
        raise ValueError(msg)
    shares = _shares(weights, values.shape[-1])
    log_bf = _log_bayes_factor(values, shares, check_positive("concentration", concentration))
    return np.minimum.accumulate(_p_value(log_bf), axis=-1), log_bf


def sequential_srm_test(
    counts: Counts,
    weights: Weights | None = None,
    *,
    threshold: float = 0.001,
    concentration: float = DEFAULT_CONCENTRATION,
    previous_p_value: float | None = None,
) -> SequentialSrmResult:
    """Sequential SRM check at one look (Lindon & Malek 2022): always-valid p-value and flag.

    Args:
        counts: cumulative units per variant, a sequence (variants named by position) or a
            mapping of variant name to count. Integers >= 0; integral floats are accepted.
        weights: the configured split, of the same shape as ``counts`` (a mapping needs exactly
            the keys of ``counts``). Positive, summing to 1 within 1e-6; renormalised to exactly 1.
            Default: an equal split.
        threshold: flag when ``p_value < threshold``, in (0, 1). Default 0.001 (as the fixed check).
        concentration: Dirichlet concentration (> 0); the prior is ``Dirichlet(concentration *
            weights)``. Default 10,000 (the authors' reference implementation).
        previous_p_value: the p-value of the previous look, in (0, 1]; the running minimum makes the
            p-value valid under continuous monitoring. ``None`` at the first look (treated as 1).
            The p-value at a look is ``min(previous, 1 / BF_n)`` and ``BF_n`` depends on the
            cumulative counts only, so skipping looks loses nothing.

    Returns:
        A :class:`SequentialSrmResult`. With no units counted yet it carries
        ``ErrorCode.EMPTY_GROUP``, ``log_bayes_factor = 0`` and the previous p-value (or 1).

    Raises:
        ValueError: as :func:`splitlab.stats.srm.srm_test` for counts, weights and threshold; a
            non-positive concentration; a ``previous_p_value`` outside (0, 1].

    Example:
        >>> r = sequential_srm_test({"control": 10_300, "treatment": 9_700})
        >>> round(r.p_value, 5), r.flag
        (0.00429, False)
        >>> sequential_srm_test([10_400, 9_600], [0.5, 0.5]).flag
        True
    """
    check_probability("threshold", threshold)
    conc = check_positive("concentration", concentration)
    previous = (
        1.0 if previous_p_value is None else check_probability("previous_p_value", previous_p_value, open_high=False)
    )
    keys, names, observed = _parse_counts(counts)
    shares = _parse_weights(weights, keys, keyed=isinstance(counts, Mapping))
    total = sum(observed)
    if total == 0:
        return SequentialSrmResult(
            previous, 0.0, previous < threshold, observed, (math.nan,) * len(observed), shares, names, threshold,
            conc, ErrorCode.EMPTY_GROUP, "no units were counted in any variant yet; the p-value is unchanged",
        )  # fmt: skip
    log_bf = float(_log_bayes_factor(np.asarray(observed, dtype=np.float64), np.asarray(shares), conc))
    p_value = min(previous, float(_p_value(np.asarray(log_bf))))
    return SequentialSrmResult(
        p_value=p_value,
        log_bayes_factor=log_bf,
        flag=p_value < threshold,
        counts=observed,
        observed_shares=tuple(c / total for c in observed),
        expected_shares=shares,
        variants=names,
        threshold=threshold,
        concentration=conc,
    )
