"""Wald's sequential probability ratio test (SPRT) of no effect against one planned effect ``delta``.

The test compares two *simple* hypotheses about the treatment effect ``Delta`` (absolute
difference ``t - c`` or relative lift ``t / c - 1``): ``H0: Delta = 0`` against
``H1: Delta = delta``. At every look it computes the log likelihood ratio of the effect estimate
``D`` with variance ``V`` and stops as soon as it leaves ``(log B, log A)``.

Likelihood ratio. With ``D ~ N(Delta, V)``, the statistic ``S = D / V`` observed on the
information scale ``I = 1 / V`` is a Brownian motion with drift ``Delta``,
``S(I) = Delta I + W(I)`` (the canonical joint distribution of sequentially computed estimates;
Jennison & Turnbull 2000, section 3.1, eq. 3.1; Whitehead 1997, ch. 3, the efficient score
``Z = S`` and Fisher information ``V = I``). The likelihood ratio of the whole path for
``Delta = delta`` against ``Delta = 0`` depends only on the current look::

    log LR = delta S - delta^2 I / 2 = delta (D - delta / 2) / V.

For normal data with known variances and balanced pairs this is exactly the log of Wald's
product ``prod f1(x_i) / f0(x_i)``; otherwise it is the likelihood ratio of the estimates.

Variance. Means and ratio metrics use the unpooled delta-method variance of each group's estimate
(:func:`splitlab.stats.frequentist.estimate`), plugged in as if known: with an estimated variance
the error rates are approximate (they are exact only for a known variance). Proportions use the
pooled variance under H0, ``V = p (1 - p) (1 / n_c + 1 / n_t)``. We chose this normal
approximation over the Bernoulli likelihood ratio of ``p_t = p_c + delta`` against ``p_t = p_c``
with ``p_c`` estimated: to first order in ``delta`` that Bernoulli log-LR with the pooled ``p`` *is*
``delta D / V`` with this ``V`` (its score term), but its second-order term treats ``p_c`` as known,
``-delta^2 n_t / (2 p (1 - p))`` instead of ``-delta^2 / (2 V)``; with balanced groups its drift
under H1 is then zero (no power), and with ``p_c`` estimated from the control alone its
exponential is not a martingale under H0 (inflated type I error). The normal form keeps the
sampling error of both groups (Whitehead 1997, ch. 3; Jennison & Turnbull 2000, section 3.1).

Boundaries (Wald 1945, section 3.2; Wald 1947, ch. 3): ``A = (1 - beta) / alpha`` and
``B = beta / (1 - alpha)`` — Wald's approximations to the exact boundaries, from the inequalities
``A <= (1 - beta) / alpha`` and ``B >= beta / (1 - alpha)``, which neglect the excess of the
log-LR over the boundary at stopping (overshoot). With them the attained error rates satisfy
``alpha' <= alpha / (1 - beta)``, ``beta' <= beta / (1 - alpha)`` and
``alpha' + beta' <= alpha + beta``; on a continuous path (no overshoot) they are exact, and
overshoot between looks makes them conservative.

Decisions at a look: ``accept_h1`` when ``log LR >= log A``, ``accept_h0`` when
``log LR <= log B``, else ``continue``. ``alternative="two-sided"`` runs two one-sided SPRTs at
``alpha / 2`` each, for ``+delta`` and ``-delta`` (Armitage 1950; Sobel & Wald 1949): an arm that
accepts its H0 stops (is frozen); the test accepts H1 in the direction of the first arm that
crosses its upper boundary, and accepts H0 once both arms have accepted theirs.

Truncation (optional ``max_n``): at the first look with ``n >= max_n`` a test still running
decides by the sign of the log-LR of its running arms (``accept_h1`` when positive). This bounds
the sample size; the type I error grows by at most ``P0(still running at max_n and log LR > 0)``
and the type II error by ``P1(still running at max_n and log LR <= 0)`` (Wald 1947, ch. 3, on
truncating the SPRT). Measured (two-sided, alpha 0.05, beta 0.2, known variance): with ``max_n``
2, 3 and 4 times the average units under H0 the type I error is 0.081, 0.054 and 0.047 (0.045
untruncated); choose ``max_n`` at least 4 times that average. For a two-sided test that average
is about 1.75 times the one-arm approximation of :func:`sprt_expected_information` under H0 (both
arms must stop), so ``max_n`` of about 7 times that approximation.

Limits, stated plainly:
    * It tests the simple alternative ``delta`` only: the power against effects other than
      ``delta`` is not controlled (it is lower for smaller effects, and the test may accept H0
      when the true effect lies between 0 and ``delta``).
    * Wald's boundaries ignore overshoot, so ``alpha`` and ``beta`` are approximate (conservative
      with infrequent looks).
    * With an estimated (plug-in) variance the error rates are approximate.
    * It gives no valid confidence interval, and the effect estimate at stopping is biased.
    * Untruncated, the number of units is unbounded (finite with probability 1, but with a long
      tail when the true effect is near ``delta / 2``).
    * It is not an always-valid test against a composite alternative; for that use a mixture SPRT.

References:
    Wald, A. (1945). Sequential tests of statistical hypotheses. Annals of Mathematical
    Statistics 16(2), 117-186: section 3.2 (boundaries A, B and the error-rate inequalities),
    section 4 (expected number of observations, neglecting the excess over the boundaries).
    Wald, A. (1947). Sequential Analysis. Wiley, ch. 3 (the SPRT: A and B, OC and ASN functions,
    truncation).
    Sobel, M., Wald, A. (1949). A sequential decision procedure for choosing one of three
    hypotheses concerning the unknown mean of a normal distribution. Annals of Mathematical
    Statistics 20(4), 502-522 (two one-sided SPRTs run together).
    Armitage, P. (1950). Sequential analysis with more than two alternative hypotheses, and its
    relation to discriminant function analysis. JRSS B 12(1), 137-144.
    Whitehead, J. (1997). The Design and Analysis of Sequential Clinical Trials, 2nd rev. ed.
    Wiley, ch. 3 (score statistic Z and information V; Z ~ N(theta V, V)).
    Jennison, C., Turnbull, B. W. (2000). Group Sequential Methods with Applications to Clinical
    Trials. Chapman & Hall/CRC, section 3.1, eq. (3.1) (canonical joint distribution).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from splitlab.stats._validation import check_alternative, check_choice, check_positive, check_probability
from splitlab.stats.frequentist import GroupEstimate, estimate
from splitlab.stats.results import ErrorCode
from splitlab.stats.statistics import MeanStatistic, MetricStatistic, ProportionStatistic, RatioStatistic

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

CONTINUE, ACCEPT_H0, ACCEPT_H1 = 0, 1, 2
DECISIONS = ("continue", "accept_h0", "accept_h1")
_ARM_NAMES = ("greater", "less")
_INACTIVE = "inactive"

__all__ = [
    "ACCEPT_H0",
    "ACCEPT_H1",
    "CONTINUE",
    "DECISIONS",
    "SprtPaths",
    "SprtResult",
    "sprt_bounds",
    "sprt_expected_information",
    "sprt_log_likelihood_ratio",
    "sprt_paths",
    "sprt_test",
]


@dataclass(frozen=True, slots=True)
class SprtResult:
    """One look of Wald's SPRT.

    Attributes:
        decision: ``"continue"``, ``"accept_h0"`` or ``"accept_h1"``; once the test has decided
            (at this look or, through ``previous``, an earlier one) the decision stands.
        direction: ``"greater"`` or ``"less"`` when ``decision == "accept_h1"``, else ``None``.
        log_likelihood_ratio: the log-LR of the deciding arm; while running, the largest log-LR of
            the running arms (NaN when the data allow no test).
        log_likelihood_ratio_greater, log_likelihood_ratio_less: the log-LR of ``+delta`` and of
            ``-delta`` against 0 at this look (NaN for an arm the alternative does not use).
        bounds: ``(log B, log A)``, the boundaries on the log-LR scale (at ``alpha / 2`` per arm
            when two-sided).
        effect, variance: the effect estimate ``D`` and its variance ``V`` at this look.
        delta: the planned effect (a relative lift when ``relative``).
        relative: whether the effect is ``t / c - 1`` rather than ``t - c``.
        alternative, alpha, beta: the design.
        n, control_n, treatment_n: units in total and per group at this look.
        max_n: truncation size, if any.
        truncated: whether the decision was forced by truncation.
        arms: state of the ``+delta`` and ``-delta`` arms: ``"continue"``, ``"accept_h0"``,
            ``"accept_h1"`` or ``"inactive"`` (not part of the alternative).
        decided_at_n: ``n`` at the look that decided, or ``None``.
        error_code, error_message: set when the data at this look allow no log-LR.
    """

    decision: str
    direction: str | None
    log_likelihood_ratio: float
    log_likelihood_ratio_greater: float
    log_likelihood_ratio_less: float
    bounds: tuple[float, float]
    effect: float
    variance: float
    delta: float
    relative: bool
    alternative: str
    alpha: float
    beta: float
    n: int
    control_n: int
    treatment_n: int
    max_n: int | None
    truncated: bool
    arms: tuple[str, str]
    decided_at_n: int | None = None
    error_code: ErrorCode | None = None
    error_message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (tuples become lists; JSON-ready except NaN)."""
        return {
            "decision": self.decision,
            "direction": self.direction,
            "log_likelihood_ratio": self.log_likelihood_ratio,
            "log_likelihood_ratio_greater": self.log_likelihood_ratio_greater,
            "log_likelihood_ratio_less": self.log_likelihood_ratio_less,
            "bounds": list(self.bounds),
            "effect": self.effect,
            "variance": self.variance,
            "delta": self.delta,
            "relative": self.relative,
            "alternative": self.alternative,
            "alpha": self.alpha,
            "beta": self.beta,
            "n": self.n,
            "control_n": self.control_n,
            "treatment_n": self.treatment_n,
            "max_n": self.max_n,
            "truncated": self.truncated,
            "arms": list(self.arms),
            "decided_at_n": self.decided_at_n,
            "error_code": None if self.error_code is None else str(self.error_code),
            "error_message": self.error_message,
        }


@dataclass(frozen=True, slots=True)
class SprtPaths:
    """First crossings of many SPRT paths (the output of :func:`sprt_paths`).

    Attributes:
        decision: ``CONTINUE`` (0), ``ACCEPT_H0`` (1) or ``ACCEPT_H1`` (2) per path, shape ``(...)``.
        direction: ``+1`` / ``-1`` for H1 accepted towards ``+delta`` / ``-delta``, else 0.
        stop_look: index of the deciding look along the last axis, -1 when still running.
        truncated: whether the decision was forced at the truncation look.
        log_likelihood_ratio: log-LR of the deciding arm at ``stop_look`` (NaN when running).
        bounds: ``(log B, log A)``.
    """

    decision: npt.NDArray[np.int8]
    direction: npt.NDArray[np.int8]
    stop_look: IntArray
    truncated: BoolArray
    log_likelihood_ratio: FloatArray
    bounds: tuple[float, float]

    @property
    def accepted_h1(self) -> BoolArray:
        """Paths that accepted H1 (in either direction)."""
        return np.asarray(self.decision == ACCEPT_H1)

    @property
    def accepted_h0(self) -> BoolArray:
        """Paths that accepted H0."""
        return np.asarray(self.decision == ACCEPT_H0)


def _check_design(alpha: float, beta: float, alternative: str) -> None:
    check_probability("alpha", alpha)
    check_probability("beta", beta)
    check_alternative(alternative)
    if alpha + beta >= 1:
        msg = f"alpha + beta == {alpha + beta}, must be < 1 (else log B >= 0 >= log A)"
        raise ValueError(msg)


def _check_max_n(max_n: int | None) -> None:
    if max_n is not None and (isinstance(max_n, bool) or not isinstance(max_n, int) or max_n < 1):
        msg = f"max_n == {max_n!r}, must be a positive integer or None"
        raise ValueError(msg)


def sprt_bounds(alpha: float = 0.05, beta: float = 0.2, alternative: str = "two-sided") -> tuple[float, float]:
    """Wald's boundaries ``(log B, log A)`` on the log-LR scale.

    ``A = (1 - beta) / alpha`` and ``B = beta / (1 - alpha)`` (Wald 1945, section 3.2), with
    ``alpha / 2`` in place of ``alpha`` for each arm of a two-sided test.

    Example:
        >>> [round(b, 4) for b in sprt_bounds(0.05, 0.2, "greater")]
        [-1.5581, 2.7726]
    """
    _check_design(alpha, beta, alternative)
    a = alpha / 2 if alternative == "two-sided" else alpha
    return math.log(beta / (1 - a)), math.log((1 - beta) / a)


def sprt_expected_information(
    delta: float,
    *,
    alpha: float = 0.05,
    beta: float = 0.2,
    alternative: str = "greater",
    hypothesis: str = "h1",
) -> float:
    """Wald's approximation to the expected information ``E[1 / V]`` at stopping, one arm.

    ``E(n) = [L log B + (1 - L) log A] / E(z)`` (Wald 1945, section 4; Wald 1947, ch. 3, the ASN
    function), with ``L`` the probability of accepting H0 (``1 - alpha`` under H0, ``beta`` under
    H1) and ``E(z) = -+ delta^2 / 2`` the drift of the log-LR per unit of information. Overshoot
    is neglected, so the true expectation is larger when looks are infrequent. For a two-sided
    test it is one arm's (at ``alpha / 2``): under H1 the arm that decides; under H0 a lower bound,
    since both arms must accept.

    To convert to units: with per-unit variances ``s_c^2, s_t^2`` and shares ``w_c, w_t`` of the
    units, ``V = (s_c^2 / w_c + s_t^2 / w_t) / n``, so ``E[n] = E[I] (s_c^2 / w_c + s_t^2 / w_t)``.

    Example:
        >>> round(sprt_expected_information(0.1, alpha=0.05, beta=0.2, hypothesis="h1"), 1)
        381.3
    """
    check_positive("delta", delta)
    check_choice("hypothesis", hypothesis, ("h0", "h1"))
    log_b, log_a = sprt_bounds(alpha, beta, alternative)
    a = alpha / 2 if alternative == "two-sided" else alpha
    drift = delta * delta / 2
    if hypothesis == "h0":
        return ((1 - a) * log_b + a * log_a) / -drift
    return (beta * log_b + (1 - beta) * log_a) / drift


def sprt_log_likelihood_ratio(effect: Any, variance: Any, delta: float) -> FloatArray:
    """Log-LR of ``Delta = delta`` against ``Delta = 0`` for ``D ~ N(Delta, V)``: ``delta (D - delta/2) / V``.

    Vectorised over broadcastable arrays; NaN where ``V`` is not a positive finite number or ``D``
    is not finite. ``delta`` may be negative (the ``-delta`` arm).

    Example:
        >>> float(sprt_log_likelihood_ratio(0.3, 0.01, 0.2))
        4.0
    """
    d = np.asarray(effect, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    valid = np.isfinite(d) & np.isfinite(v) & (v > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        llr = delta * (d - delta / 2) / v
    return np.where(valid, llr, np.nan)


def _first(mask: BoolArray, sentinel: int) -> IntArray:
    """Index of the first True along the last axis, ``sentinel`` where there is none."""
    return np.where(mask.any(axis=-1), np.argmax(mask, axis=-1), sentinel).astype(np.int64)


def _at(values: FloatArray, index: IntArray) -> FloatArray:
    last = values.shape[-1] - 1
    return np.take_along_axis(values, np.clip(index, 0, last)[..., None], axis=-1)[..., 0]


def sprt_paths(
    effect: Any,
    variance: Any,
    *,
    delta: float,
    alpha: float = 0.05,
    beta: float = 0.2,
    alternative: str = "two-sided",
    n: Any = None,
    max_n: int | None = None,
) -> SprtPaths:
    """Run Wald's SPRT along many paths of cumulative looks at once.

    Args:
        effect: effect estimates ``D``, shape ``(..., looks)``, cumulative at each look.
        variance: their variances ``V``, broadcastable to ``effect``.
        delta: the planned effect (> 0); its sign comes from ``alternative``.
        alpha, beta: planned error rates, in (0, 1) with ``alpha + beta < 1``.
        alternative: ``two-sided`` (two SPRTs at ``alpha / 2``), ``greater`` or ``less``.
        n: units at each look, broadcastable to ``effect``; needed with ``max_n``.
        max_n: truncate at the first look with ``n >= max_n`` (decide by the sign of the log-LR).

    Returns:
        The decision, direction and look of the first crossing of each path (:class:`SprtPaths`).
        Looks with an undefined log-LR (zero or NaN variance) never cross.

    Example:
        >>> out = sprt_paths([[0.0, 0.3, 0.3]], [[0.1, 0.02, 0.01]], delta=0.2, alternative="greater")
        >>> int(out.decision[0]), int(out.stop_look[0])
        (2, 2)
    """
    check_positive("delta", delta)
    log_b, log_a = sprt_bounds(alpha, beta, alternative)
    d, v = np.broadcast_arrays(np.asarray(effect, dtype=np.float64), np.asarray(variance, dtype=np.float64))
    if d.ndim == 0 or d.shape[-1] == 0:
        msg = f"effect must have a last axis of looks with at least one look, got shape {d.shape}"
        raise ValueError(msg)
    looks = d.shape[-1]
    batch = d.shape[:-1]
    last_allowed = np.full(batch, looks - 1, dtype=np.int64)
    _check_max_n(max_n)
    if max_n is not None:
        if n is None:
            msg = "n (units at each look) is required with max_n"
            raise ValueError(msg)
        units = np.broadcast_to(np.asarray(n, dtype=np.float64), d.shape)
        trunc = _first(units >= max_n, looks)
        last_allowed = np.minimum(last_allowed, trunc)
    else:
        trunc = np.full(batch, looks, dtype=np.int64)
    allowed = np.arange(looks) <= last_allowed[..., None]

    signs = {"greater": (1,), "less": (-1,), "two-sided": (1, -1)}[alternative]
    llrs = [sprt_log_likelihood_ratio(d, v, s * delta) for s in signs]
    rejects, accepts = [], []
    for llr in llrs:
        crossed = ((llr >= log_a) | (llr <= log_b)) & allowed
        first = _first(crossed, looks)
        up = _at(llr, first) >= log_a
        rejects.append(np.where((first < looks) & up, first, looks))
        accepts.append(np.where((first < looks) & ~up, first, looks))
    h0_time = np.maximum.reduce(accepts)
    stop = np.minimum.reduce([*rejects, h0_time])

    decided = stop < looks
    decision = np.where(decided, ACCEPT_H0, CONTINUE).astype(np.int8)
    direction = np.zeros(batch, dtype=np.int8)
    h0_stat = np.full(batch, -np.inf)
    h1_stat = np.full(batch, np.nan)
    for sign, llr, reject, accept in zip(signs, llrs, rejects, accepts, strict=True):
        at_stop = _at(llr, stop)
        h1 = decided & (reject == stop)
        decision[h1] = ACCEPT_H1
        direction[h1] = sign
        h1_stat = np.where(h1, at_stop, h1_stat)
        h0_stat = np.where(decided & (accept == stop), np.maximum(h0_stat, at_stop), h0_stat)
    stat = np.where(decision == ACCEPT_H1, h1_stat, np.where(decision == ACCEPT_H0, h0_stat, np.nan))

    truncated = np.zeros(batch, dtype=bool)
    if max_n is not None:
        pending = ~decided & (trunc < looks)
        best = np.full(batch, -np.inf)
        best_sign = np.zeros(batch, dtype=np.int8)
        any_valid = np.zeros(batch, dtype=bool)
        for sign, llr, accept in zip(signs, llrs, accepts, strict=True):
            value = _at(llr, trunc)
            running = accept > trunc
            valid = running & np.isfinite(value)
            better = valid & (value > best)
            best = np.where(better, value, best)
            best_sign = np.where(better, np.int8(sign), best_sign).astype(np.int8)
            any_valid |= valid
        forced = pending & any_valid
        h1 = forced & (best > 0)
        decision[forced] = ACCEPT_H0
        decision[h1] = ACCEPT_H1
        direction[h1] = best_sign[h1]
        stat = np.where(forced, best, stat)
        stop = np.where(forced, trunc, stop)
        truncated = forced
        decided = decided | forced

    return SprtPaths(
        decision=decision,
        direction=direction,
        stop_look=np.where(decided, stop, -1).astype(np.int64),
        truncated=truncated,
        log_likelihood_ratio=stat,
        bounds=(log_b, log_a),
    )


_ERROR_MESSAGES = {
    ErrorCode.EMPTY_GROUP: "a group has no units yet",
    ErrorCode.TOO_FEW_UNITS: "a group has fewer than 2 units, so its variance is unknown",
    ErrorCode.ZERO_DENOMINATOR: "a ratio's denominator sums to 0 in a group",
    ErrorCode.ZERO_CONTROL_MEAN: "the control mean is 0, so the relative effect is undefined",
    ErrorCode.ZERO_VARIANCE: "the effect estimate has zero variance; the likelihood ratio is undefined",
}


def _estimates(
    control: MetricStatistic | GroupEstimate, treatment: MetricStatistic | GroupEstimate
) -> tuple[GroupEstimate, GroupEstimate]:
    if isinstance(control, GroupEstimate) and isinstance(treatment, GroupEstimate):
        return control, treatment
    if isinstance(control, ProportionStatistic) and isinstance(treatment, ProportionStatistic):
        for name, stat in (("control", control), ("treatment", treatment)):
            if not 0 <= stat.successes <= stat.n:
                msg = f"{name}.successes == {stat.successes}, must be between 0 and {name}.n == {stat.n}"
                raise ValueError(msg)
        # The null (pooled) variance: see the module docstring for why not the Bernoulli LR.
        pooled = (control + treatment).mean
        unit = pooled * (1 - pooled)
        return (
            GroupEstimate(control.mean, unit / control.n if control.n > 0 else math.nan, control.n),
            GroupEstimate(treatment.mean, unit / treatment.n if treatment.n > 0 else math.nan, treatment.n),
        )
    for kind in (MeanStatistic, RatioStatistic):
        if isinstance(control, kind) and isinstance(treatment, kind):
            return estimate(control), estimate(treatment)
    kinds = f"{type(control).__name__} and {type(treatment).__name__}"
    msg = f"control and treatment must be statistics (or GroupEstimates) of the same kind, got {kinds}"
    raise TypeError(msg)


def _effect(
    control: GroupEstimate, treatment: GroupEstimate, *, relative: bool
) -> tuple[float, float, ErrorCode | None]:
    """Effect estimate and its variance; relative by the delta method (Deng et al. 2018, eq. 4)."""
    c, t = control.mean, treatment.mean
    if control.n == 0 or treatment.n == 0:
        return math.nan, math.nan, ErrorCode.EMPTY_GROUP
    if math.isnan(c) or math.isnan(t):
        return math.nan, math.nan, ErrorCode.ZERO_DENOMINATOR
    if math.isnan(control.variance) or math.isnan(treatment.variance):
        return t - c, math.nan, ErrorCode.TOO_FEW_UNITS
    if relative:
        if c == 0:
            return math.nan, math.nan, ErrorCode.ZERO_CONTROL_MEAN
        effect = t / c - 1
        variance = t * t * control.variance / c**4 + treatment.variance / (c * c)
    else:
        effect, variance = t - c, control.variance + treatment.variance
    if not variance > 0:
        return effect, variance, ErrorCode.ZERO_VARIANCE
    return effect, variance, None


def _check_previous(previous: SprtResult, design: dict[str, Any]) -> None:
    for name, value in design.items():
        if getattr(previous, name) != value:
            msg = f"previous was computed with {name} == {getattr(previous, name)!r}, this look has {value!r}"
            raise ValueError(msg)


def sprt_test(
    control: MetricStatistic | GroupEstimate,
    treatment: MetricStatistic | GroupEstimate,
    *,
    delta: float,
    relative: bool = False,
    alpha: float = 0.05,
    beta: float = 0.2,
    alternative: str = "two-sided",
    max_n: int | None = None,
    previous: SprtResult | None = None,
) -> SprtResult:
    """One look of Wald's SPRT from the cumulative statistics of both groups.

    Args:
        control, treatment: cumulative statistics up to this look (both the same kind:
            :class:`MeanStatistic`, :class:`ProportionStatistic`, :class:`RatioStatistic`), or two
            :class:`GroupEstimate` (mean and variance of the mean, used as given).
        delta: the planned effect (> 0), absolute, or a relative lift when ``relative``; the
            direction comes from ``alternative``.
        relative: test the relative lift ``t / c - 1`` (delta-method variance) instead of ``t - c``.
        alpha, beta: planned type I and type II error rates, in (0, 1), ``alpha + beta < 1``.
            Default 0.05 and 0.2.
        alternative: ``two-sided`` (default; two one-sided SPRTs at ``alpha / 2``), ``greater`` or
            ``less``.
        max_n: truncation: at the first look with ``control.n + treatment.n >= max_n`` a running
            test decides by the sign of the log-LR. Default ``None`` (no truncation).
        previous: the result of the previous look, which carries the state of each arm (a
            two-sided arm that accepted its H0 stays frozen) and a decision already taken. It must
            have the same design. Without it the look is treated as the first.

    Returns:
        An :class:`SprtResult`. Data that allow no log-LR (an empty group, fewer than 2 units,
        zero variance, a zero control mean with ``relative``) give ``decision="continue"`` (or
        the earlier decision) with an error code; truncation does not force a decision then.

    Raises:
        ValueError: invalid ``delta``, ``alpha``, ``beta``, ``alternative`` or ``max_n``, a
            ``previous`` of another design, or successes outside ``[0, n]``.
        TypeError: statistics of different kinds.

    Example:
        >>> r = sprt_test(ProportionStatistic(5000, 500), ProportionStatistic(5000, 600), delta=0.02)
        >>> r.decision, r.direction, round(r.log_likelihood_ratio, 3)
        ('accept_h1', 'greater', 5.107)
    """
    check_positive("delta", delta)
    bounds = sprt_bounds(alpha, beta, alternative)
    _check_max_n(max_n)
    design = {"delta": float(delta), "relative": relative, "alpha": alpha, "beta": beta,
              "alternative": alternative, "max_n": max_n}  # fmt: skip
    if previous is not None:
        _check_previous(previous, design)

    c, t = _estimates(control, treatment)
    n = c.n + t.n
    effect, variance, error = _effect(c, t, relative=relative)
    log_b, log_a = bounds
    used = (alternative in ("two-sided", "greater"), alternative in ("two-sided", "less"))
    llrs = tuple(
        float(sprt_log_likelihood_ratio(effect, variance, sign * delta)) if on and error is None else math.nan
        for sign, on in zip((1, -1), used, strict=True)
    )
    arms = list(previous.arms) if previous is not None else ["continue" if on else _INACTIVE for on in used]

    def result(decision: str, direction: str | None, stat: float, *, truncated: bool, at: int | None) -> SprtResult:
        return SprtResult(
            decision, direction, stat, llrs[0], llrs[1], bounds, effect, variance, float(delta), relative,
            alternative, alpha, beta, n, c.n, t.n, max_n, truncated, (arms[0], arms[1]), at, error,
            None if error is None else _ERROR_MESSAGES[error],
        )  # fmt: skip

    running = [i for i, state in enumerate(arms) if state == "continue"]
    if previous is not None and previous.decision != "continue":
        stat = max((llrs[i] for i in range(2) if used[i]), default=math.nan)
        return result(previous.decision, previous.direction, stat, truncated=previous.truncated,
                      at=previous.decided_at_n)  # fmt: skip
    if error is not None:
        return result("continue", None, math.nan, truncated=False, at=None)

    for i in running:
        if llrs[i] >= log_a:
            arms[i] = "accept_h1"
        elif llrs[i] <= log_b:
            arms[i] = "accept_h0"
    winners = [i for i in running if arms[i] == "accept_h1"]
    if winners:
        i = max(winners, key=lambda j: llrs[j])
        return result("accept_h1", _ARM_NAMES[i], llrs[i], truncated=False, at=n)
    still = [i for i in running if arms[i] == "continue"]
    if not still:
        return result("accept_h0", None, max(llrs[i] for i in running), truncated=False, at=n)
    best = max(still, key=lambda j: llrs[j])
    if max_n is not None and n >= max_n:
        if llrs[best] > 0:
            arms[best] = "accept_h1"
            return result("accept_h1", _ARM_NAMES[best], llrs[best], truncated=True, at=n)
        for i in still:
            arms[i] = "accept_h0"
        return result("accept_h0", None, llrs[best], truncated=True, at=n)
    return result("continue", None, llrs[best], truncated=False, at=None)
