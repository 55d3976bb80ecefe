"""Always-valid inference: p-values and confidence sequences that survive any number of looks.

Every look sees the cumulative effect estimate ``theta_n`` (``treatment - control``, or the relative
lift ``treatment / control - 1`` with its delta-method variance) and the variance ``V_n`` of that
estimate; ``n`` is the number of units in both groups together. Three procedures:

* **mSPRT** (``msprt(mode="always-valid")``): the mixture sequential probability ratio test with a
  normal mixture ``N(0, tau^2)`` over the effect (Johari et al. 2017, 2022)::

      Lambda_n = sqrt(V_n / (V_n + tau^2)) * exp(tau^2 theta_n^2 / (2 V_n (V_n + tau^2)))
      p_n      = min(p_{n-1}, 1 / Lambda_n)
      CS_n     = theta_n +- sqrt(V_n (V_n + tau^2) / tau^2 * (log((V_n + tau^2) / V_n) - 2 log alpha))

  intersected over looks. ``Lambda_n`` is a nonnegative martingale under the null, so Ville's
  inequality gives ``P(exists n: Lambda_n >= 1 / alpha) <= alpha`` for every look schedule and
  without a horizon. One-sided versions use the half-normal mixture over ``delta >= 0`` (derived
  by completing the square in the Gaussian integral)::

      Lambda+_n = 2 Lambda_n Phi(theta_n tau / sqrt(V_n (V_n + tau^2)))

  and its boundary ``theta_n - w sqrt(V_n (V_n + tau^2) / tau^2)`` with ``w`` solving
  ``2 Phi(w) exp(w^2 / 2) = sqrt((V_n + tau^2) / V_n) / alpha`` (``greater``; mirrored for ``less``).

* **Hybrid** (``msprt(mode="hybrid")``, the default): the experiment stops at its planned size
  ``N``, so an always-valid guarantee on ``[0, infinity)`` wastes power. The hybrid keeps the
  mixture boundary before ``N`` but calibrates its threshold to the horizon, and ends with a
  fixed-horizon z-test at the first look with ``n >= N``::

      interim (n < N): reject when Lambda_n >= lambda_1,  with tau^2 = V_N (r_n = n / N)
      final (n >= N):  reject when |z_n| >= c

  ``lambda_1`` spends ``kappa alpha`` (``kappa = 0.5``): the probability that Brownian motion
  crosses the mixture boundary at *any* time in ``[0, 1]`` is ``kappa alpha``. ``c`` spends the
  rest jointly: ``kappa alpha + P(no crossing, |W_1| >= c) = alpha``. Both are computed by
  recursive numerical integration of the Brownian-motion density between boundaries (200 time
  steps, Brownian-bridge correction for crossings between grid times, Richardson extrapolation
  in the space step) and stored as tables below. The calibration is in *continuous time*; a
  discrete schedule can only cross less often, so the error bound holds for any number and
  placement of looks, planned or not. P-values come from the nested family of designs indexed by
  the level: ``p = min(1, G(log Lambda) / kappa)`` at interim looks and ``p = c^{-1}(|z|)`` at the
  final look, with a running minimum. Looks after the final one repeat it (stage ``"closed"``).

* **Gaussian-mixture confidence sequence** (``confidence_sequence``), as GrowthBook computes it
  (Waudby-Smith et al. 2023, equation numbers as cited in GrowthBook's
  ``gbstats/frequentist/tests.py``)::

      rho       = sqrt((-2 log a + log(-2 log a + 1)) / N*)           (eq. 161; a = alpha, or 2 alpha one-sided)
      halfwidth = sqrt(s2) sqrt(2 (n rho^2 + 1) log(sqrt(n rho^2 + 1) / alpha) / (n rho)^2)     (eq. 9)
      one-sided = sqrt(s2 2 (n rho^2 + 1) / (n rho)^2 log(1 + sqrt(n rho^2 + 1) / (2 alpha)))   (eq. 134)
      p         = min(1, 1 / E),  E = exp(rho^2 st2 / (2 (n rho^2 + 1))) / sqrt(n rho^2 + 1)   (eq. 155)

  with ``s2 = V_n n`` and ``st2 = theta_n^2 n / V_n``. It is the mSPRT with ``tau^2 = rho^2 s2``
  (substitute ``r = tau^2 / V_n = n rho^2``: both half-widths and both statistics coincide).
  GrowthBook's default tuning is ``N* = 5000``; here ``N* = planned_n`` when a plan is given.

Tuning (derived here). In units of the planned size, ``r_n = tau^2 / V_n = x n / N`` with
``x = tau^2 / V_N``. The two-sided z-boundary at ``n = N`` is
``sqrt((1 + x) / x (log(1 + x) - 2 log alpha))``; setting its derivative to zero gives
``x = log(1 + x) - 2 log alpha``, solved by ``x* = -1 - W_{-1}(-alpha^2 / e)`` (Lambert W, lower
branch): the mixture variance ``tau^2 = x* V_N`` makes the boundary tightest at the planned size.
GrowthBook's eq. 161 is one fixed-point step of the same equation from ``x = -2 log alpha``:
``rho^2 N* = -2 log alpha + log(1 - 2 log alpha)``. One-sided, ``x*`` minimises the half-normal
boundary numerically. ``V_N`` is estimated at each look by ``V_n n / N``.

References:
    Johari, R., Koomen, P., Pekelis, L., Walsh, D. (2017). Peeking at A/B tests: why it matters,
    and what to do about it. KDD, section 4 (mSPRT, normal mixture, always-valid p-values and
    confidence intervals).
    Johari, R., Koomen, P., Pekelis, L., Walsh, D. (2022). Always valid inference: continuous
    monitoring of A/B tests. Operations Research 70(3), 1806-1821, sections 3-4.
    Robbins, H. (1970). Statistical methods related to the law of the iterated logarithm. Ann.
    Math. Statist. 41, 1397-1409 (normal mixture martingale; Ville's inequality).
    Howard, S. R., Ramdas, A., McAuliffe, J., Sekhon, J. (2021). Time-uniform, nonparametric,
    nonasymptotic confidence sequences. Ann. Statist. 49(2), 1055-1080 (normal-mixture boundaries,
    two- and one-sided).
    Waudby-Smith, I., Arbour, D., Sinha, R., Kennedy, E. H., Ramdas, A. (2023). Time-uniform
    central limit theory and asymptotic confidence sequences. arXiv:2103.06476v7, eq. 9, 134,
    155, 161.
    Wang, L., Poetzelberger, K. (1997). Boundary crossing probability for Brownian motion and
    general boundaries. J. Appl. Probab. 34, 54-65 (piecewise-linear boundaries, bridge formula
    ``P = exp(-2 (b_1 - s)(b_2 - y) / dt)``).
    Jennison, C., Turnbull, B. W. (2000). Group Sequential Methods with Applications to Clinical
    Trials, ch. 19 (recursive numerical integration).
    Deng, A., Knoblich, U., Lu, J. (2018). Applying the Delta Method in Metric Analytics. KDD,
    eq. (4) (variance of the relative lift).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import integrate, interpolate, optimize, signal, special

from splitlab.stats._validation import check_alternative, check_choice, check_positive, check_probability
from splitlab.stats.frequentist import GroupEstimate, estimate
from splitlab.stats.results import NAN_INTERVAL, ErrorCode, Interval
from splitlab.stats.statistics import MetricStatistic

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

MODES = ("hybrid", "always-valid")
GROWTHBOOK_TUNING = 5000.0
HYBRID_MIXTURE_RATIO = 1.0
HYBRID_INTERIM_SHARE = 0.5

__all__ = [
    "GROWTHBOOK_TUNING",
    "HYBRID_INTERIM_SHARE",
    "HYBRID_MIXTURE_RATIO",
    "MODES",
    "AlwaysValidResult",
    "SequencePath",
    "confidence_sequence",
    "confidence_sequence_path",
    "msprt",
    "msprt_path",
    "optimal_mixture_ratio",
]


@dataclass(frozen=True, slots=True)
class AlwaysValidResult:
    """One look of a sequential comparison of treatment against control.

    Attributes:
        method: ``"msprt-hybrid"``, ``"msprt"`` (always-valid mode) or ``"gaussian-mixture-cs"``.
        alternative: ``"two-sided"``, ``"greater"`` (treatment higher) or ``"less"``.
        alpha: level of the confidence sequence and of ``significant``.
        relative: whether ``effect`` is the relative lift ``treatment / control - 1``.
        effect: the effect estimate at this look.
        variance: the variance of that estimate (delta method for the relative lift).
        ci: the confidence sequence at this look, intersected with earlier looks when ``previous``
            was given; one-sided alternatives have an infinite end.
        p_value: the always-valid p-value, a running minimum over looks when ``previous`` was given.
        statistic: ``effect / sqrt(variance)``.
        log_likelihood_ratio: log of the mixture likelihood ratio (e-value) at this look: the
            half-normal mixture for one-sided mSPRT, else the normal mixture.
        tau2: the mixture variance on the effect's scale used at this look.
        tuning: the caller's tuning: ``planned_n`` (hybrid, or mSPRT tuned to a plan), ``tau2``
            (mSPRT with a fixed mixture variance) or ``N*`` (confidence sequence).
        n: units in both groups together.
        stage: ``"interim"``; for the hybrid also ``"final"`` (first look with ``n >= planned_n``)
            and ``"closed"`` (later looks, which repeat the final result).
        error_code, error_message: set when the data do not allow a test at this look; the
            p-value and interval are then those of ``previous`` (NaN without it).
    """

    method: str
    alternative: str
    alpha: float
    relative: bool
    effect: float
    variance: float
    ci: Interval
    p_value: float
    statistic: float
    log_likelihood_ratio: float
    tau2: float
    tuning: float
    n: int
    stage: str = "interim"
    error_code: ErrorCode | None = None
    error_message: str | None = None

    @property
    def significant(self) -> bool:
        """Whether the null of no effect is rejected at ``alpha`` (``p <= alpha``)."""
        return bool(self.p_value <= self.alpha)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (tuples become lists; JSON-ready except NaN and infinities)."""
        data = asdict(self)
        data["ci"] = list(self.ci)
        data["error_code"] = None if self.error_code is None else str(self.error_code)
        return data


@dataclass(frozen=True, slots=True)
class SequencePath:
    """A whole sequence of looks, arrays of shape ``(..., looks)``.

    Attributes:
        p_value: always-valid p-values, running minimum over looks.
        lower, upper: the confidence sequence, intersected over looks (running max / min).
        log_likelihood_ratio: log mixture likelihood ratio per look (NaN where the data are
            degenerate, and at hybrid looks after the final one); not accumulated.
        alpha: the level of the confidence sequence.
    """

    p_value: FloatArray
    lower: FloatArray
    upper: FloatArray
    log_likelihood_ratio: FloatArray
    alpha: float

    @property
    def rejected(self) -> BoolArray:
        """Whether the null has been rejected by each look (``p <= alpha``)."""
        return np.asarray(self.p_value <= self.alpha)


# --------------------------------------------------------------------------------------------
# Tuning


def optimal_mixture_ratio(alpha: float = 0.05, *, alternative: str = "two-sided") -> float:
    """The ratio ``x = tau^2 / V_N`` that makes the mSPRT boundary tightest at the planned size.

    Two-sided: ``x* = -1 - W_{-1}(-alpha^2 / e)``, the root of ``x = log(1 + x) - 2 log alpha``
    (module docstring). One-sided: the minimiser of the half-normal boundary at ``n = N``.

    Example:
        >>> round(optimal_mixture_ratio(0.05), 4)
        8.212
    """
    check_probability("alpha", alpha)
    check_alternative(alternative)
    return _optimal_ratio(alpha, alternative == "two-sided")


@lru_cache(maxsize=64)
def _optimal_ratio(alpha: float, two_sided: bool) -> float:
    if two_sided:
        return float(-1.0 - special.lambertw(-(alpha**2) / math.e, -1).real)

    def boundary(log_x: float) -> float:
        x = math.exp(log_x)
        w = float(_half_normal_root(np.array([0.5 * math.log1p(x) - math.log(alpha)]))[0])
        return w * w * (1 + x) / x

    found = optimize.minimize_scalar(boundary, bounds=(math.log(1e-3), math.log(1e4)), method="bounded",
                                     options={"xatol": 1e-10})  # fmt: skip
    return float(math.exp(found.x))


def _growthbook_rho(alpha: float, tuning: float, *, two_sided: bool) -> float:
    """GrowthBook's mixing parameter (Waudby-Smith et al. 2023, eq. 161; ``2 alpha`` one-sided)."""
    level = alpha if two_sided else 2 * alpha
    return math.sqrt((-2 * math.log(level) + math.log(-2 * math.log(level) + 1)) / tuning)


def _half_normal_root(log_k: FloatArray) -> FloatArray:
    """Solve ``log 2 + log Phi(w) + w^2 / 2 = log_k`` for ``w`` (vectorised Newton).

    The left side is convex and increasing in ``w``; Newton from ``sqrt(2 max(log_k, 0))``, which
    lies at or right of the root, converges monotonically.
    """
    w = np.sqrt(2 * np.maximum(log_k, 0.0))
    for _ in range(60):
        log_phi = special.log_ndtr(w)
        value = math.log(2.0) + log_phi + 0.5 * w * w - log_k
        slope = np.exp(-0.5 * w * w - log_phi) / math.sqrt(2 * math.pi) + w
        step = value / slope
        w = w - step
        if float(np.max(np.abs(step), initial=0.0)) < 1e-13:
            break
    return np.asarray(w, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Per-look statistics (vectorised); invalid entries are patched by the callers.


def _normal_mixture_log_lr(z: FloatArray, r: FloatArray) -> FloatArray:
    """``log Lambda`` of the N(0, tau^2) mixture, with ``r = tau^2 / V`` and ``z = theta / sqrt(V)``."""
    return -0.5 * np.log1p(r) + 0.5 * z * z * r / (1 + r)


def _msprt_look(
    effect: FloatArray, sd: FloatArray, r: FloatArray, alpha: float, alternative: str
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    z = effect / sd
    log_lr = _normal_mixture_log_lr(z, r)
    if alternative == "two-sided":
        half = sd * np.sqrt((1 + r) / r * (np.log1p(r) - 2 * math.log(alpha)))
        p = np.minimum(1.0, np.exp(-log_lr))
        return log_lr, p, effect - half, effect + half
    sign = 1.0 if alternative == "greater" else -1.0
    log_lr = math.log(2.0) + log_lr + special.log_ndtr(sign * z * np.sqrt(r / (1 + r)))
    p = np.minimum(1.0, np.exp(-log_lr))
    half = sd * _half_normal_root(0.5 * np.log1p(r) - math.log(alpha)) * np.sqrt((1 + r) / r)
    if alternative == "greater":
        return log_lr, p, effect - half, np.full_like(effect, np.inf)
    return log_lr, p, np.full_like(effect, -np.inf), effect + half


def _hybrid_look(
    effect: FloatArray, sd: FloatArray, r: FloatArray, final: BoolArray, alpha: float, alternative: str
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    two_sided = alternative == "two-sided"
    z = effect / sd
    log_lr = _normal_mixture_log_lr(z, r)
    signed = np.abs(z) if two_sided else (z if alternative == "greater" else -z)
    interim_p = np.minimum(1.0, np.exp(_log_crossing(log_lr, two_sided)) / HYBRID_INTERIM_SHARE)
    if not two_sided:
        interim_p = np.where(signed > 0, interim_p, 1.0)
    u1 = _interim_threshold(alpha, two_sided)
    interim_half = sd * np.sqrt((1 + r) / r * (np.log1p(r) + 2 * u1))
    final = np.broadcast_to(final, signed.shape)
    final_p = np.ones(signed.shape)
    final_p[final] = _final_p_value(signed[final], two_sided)
    final_half = sd * _final_critical(alpha, two_sided)
    p = np.where(final, final_p, interim_p)
    half = np.where(final, final_half, interim_half)
    lower = effect - half if alternative != "less" else np.full_like(effect, -np.inf)
    upper = effect + half if alternative != "greater" else np.full_like(effect, np.inf)
    return log_lr, p, lower, upper


def _growthbook_look(
    effect: FloatArray, variance: FloatArray, n: FloatArray, alpha: float, alternative: str, tuning: float
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    two_sided = alternative == "two-sided"
    rho = _growthbook_rho(alpha, tuning, two_sided=two_sided)
    s2 = variance * n
    n_rho2 = n * rho**2
    st2 = effect * effect * n / variance
    log_lr = rho**2 * st2 / (2 * (n_rho2 + 1)) - 0.5 * np.log(n_rho2 + 1)
    if two_sided:
        half = np.sqrt(s2) * np.sqrt(2 * (n_rho2 + 1) * np.log(np.sqrt(n_rho2 + 1) / alpha) / (n * rho) ** 2)
        p = np.minimum(1.0, np.exp(-log_lr))
        return log_lr, p, effect - half, effect + half
    half = np.sqrt(s2 * 2 * (n_rho2 + 1) / (n * rho) ** 2 * np.log(1 + np.sqrt(n_rho2 + 1) / (2 * alpha)))
    # GrowthBook bisects on alpha for the level at which the one-sided bound touches 0; the bound
    # is explicit in alpha, so the level is explicit too.
    exponent = effect * effect * (n * rho) ** 2 / (2 * s2 * (n_rho2 + 1))
    sign = 1.0 if alternative == "greater" else -1.0
    p = np.where(sign * effect > 0, np.minimum(1.0, np.sqrt(n_rho2 + 1) / (2 * np.expm1(exponent))), 1.0)
    if alternative == "greater":
        return log_lr, p, effect - half, np.full_like(effect, np.inf)
    return log_lr, p, np.full_like(effect, -np.inf), effect + half


def _accumulate(p: FloatArray, lower: FloatArray, upper: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    return (
        np.minimum.accumulate(p, axis=-1),
        np.maximum.accumulate(lower, axis=-1),
        np.minimum.accumulate(upper, axis=-1),
    )


def _patch_invalid(
    valid: BoolArray, log_lr: FloatArray, p: FloatArray, lower: FloatArray, upper: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """A degenerate look carries no information: p 1 and an unbounded interval, before the running min/max."""
    return (
        np.where(valid, log_lr, np.nan),
        np.where(valid, p, 1.0),
        np.where(valid, lower, -np.inf),
        np.where(valid, upper, np.inf),
    )


# --------------------------------------------------------------------------------------------
# Vectorised cores


def _as_looks(name: str, values: Any) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        msg = f"{name} must have a looks axis (shape (..., looks)), got a scalar"
        raise ValueError(msg)
    return array


def _check_planned_n(planned_n: float | None) -> float | None:
    return None if planned_n is None else check_positive("planned_n", planned_n)


def _required(planned_n: float | None) -> float:
    """``planned_n`` where the mode needs it (already enforced by ``_check_mode``)."""
    if planned_n is None:
        msg = "planned_n is required with mode='hybrid' or without tau2"
        raise ValueError(msg)
    return planned_n


def _check_n(n: Any, shape: tuple[int, ...]) -> FloatArray:
    """Units per look, kept in its own (broadcastable) shape so per-look work is done once per look."""
    if n is None:
        msg = "n (units per look, both groups) is required with planned_n or mode='hybrid'"
        raise ValueError(msg)
    units = np.asarray(n, dtype=np.float64)
    if units.ndim == 0 or np.broadcast_shapes(units.shape, shape) != shape:
        msg = f"n with shape {units.shape} must broadcast to the effect's shape {shape} along the looks axis"
        raise ValueError(msg)
    if not np.all(np.isfinite(units)) or np.any(units < 0):
        msg = "n must be finite and >= 0 at every look"
        raise ValueError(msg)
    return units


def _check_mode(mode: str, alpha: float, planned_n: float | None, tau2: float | None) -> None:
    check_choice("mode", mode, MODES)
    if mode == "hybrid":
        if planned_n is None:
            msg = "planned_n is required with mode='hybrid'; pass it, or use mode='always-valid' with tau2"
            raise ValueError(msg)
        if tau2 is not None:
            msg = "tau2 is fixed by the hybrid design (tau2 = V at planned_n); pass tau2 with mode='always-valid'"
            raise ValueError(msg)
        if not _HYBRID_MIN_ALPHA <= alpha <= _HYBRID_MAX_ALPHA:
            msg = f"alpha == {alpha}, must be between {_HYBRID_MIN_ALPHA} and {_HYBRID_MAX_ALPHA} with mode='hybrid'"
            raise ValueError(msg)
        return
    if (planned_n is None) == (tau2 is None):
        msg = "mode='always-valid' needs exactly one of tau2 and planned_n"
        raise ValueError(msg)
    if tau2 is not None:
        check_positive("tau2", tau2)


def msprt_path(
    effect: Any,
    variance: Any,
    n: Any = None,
    *,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    mode: str = "hybrid",
    planned_n: float | None = None,
    tau2: float | None = None,
) -> SequencePath:
    """Run the mSPRT over a whole sequence of looks, for many replications at once.

    Args:
        effect, variance: cumulative effect estimates and their variances, shape ``(..., looks)``.
        n: units in both groups at each look, broadcastable to ``effect``; needed with
            ``planned_n`` (the information fraction is ``n / planned_n``).
        alpha: level, in (0, 1); the hybrid design supports 1e-6 to 0.5.
        alternative: ``two-sided``, ``greater`` or ``less``.
        mode: ``hybrid`` (default; needs ``planned_n``) or ``always-valid`` (needs ``tau2`` or
            ``planned_n``).
        planned_n: the planned total number of units (both groups).
        tau2: a fixed mixture variance on the effect's scale (``always-valid`` only).

    Degenerate looks (non-finite estimate, variance <= 0) leave the running p-value and interval
    unchanged. In hybrid mode the first look with ``n >= planned_n`` runs the final test and
    later looks repeat it.

    Example:
        >>> path = msprt_path([[0.0, 0.1, 0.3]], [[0.01, 0.005, 0.0025]], [100, 200, 400], planned_n=400)
        >>> path.rejected.tolist()
        [[False, False, True]]
    """
    check_probability("alpha", alpha)
    check_alternative(alternative)
    planned = _check_planned_n(planned_n)
    _check_mode(mode, alpha, planned, tau2)
    theta = _as_looks("effect", effect)
    var = _as_looks("variance", variance)
    theta, var = np.broadcast_arrays(theta, var)
    with np.errstate(all="ignore"):
        valid = np.isfinite(theta) & np.isfinite(var) & (var > 0)
        sd = np.sqrt(np.where(valid, var, 1.0))
        est = np.where(valid, theta, 0.0)
        if tau2 is not None:
            look = _msprt_look(est, sd, tau2 / (sd * sd), alpha, alternative)
        elif mode == "always-valid":
            units = _check_n(n, theta.shape)
            valid &= units > 0
            r = _optimal_ratio(alpha, alternative == "two-sided") * units / _required(planned)
            look = _msprt_look(est, sd, r, alpha, alternative)
        else:
            horizon = _required(planned)
            units = _check_n(n, theta.shape)
            valid &= units > 0
            # The final test runs at the first usable look with n >= planned_n; later looks are closed.
            reached = np.logical_or.accumulate((units >= horizon) & valid, axis=-1)
            closed = np.concatenate([np.zeros_like(reached[..., :1]), reached[..., :-1]], axis=-1)
            r = HYBRID_MIXTURE_RATIO * units / horizon
            look = _hybrid_look(est, sd, r, reached & ~closed, alpha, alternative)
            valid &= ~closed
        log_lr, p, lower, upper = _patch_invalid(valid, *look)
    p, lower, upper = _accumulate(p, lower, upper)
    return SequencePath(p, lower, upper, log_lr, alpha)


def confidence_sequence_path(
    effect: Any,
    variance: Any,
    n: Any,
    *,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    tuning: float | None = None,
    planned_n: float | None = None,
) -> SequencePath:
    """GrowthBook's Gaussian-mixture confidence sequence over a sequence of looks.

    Args:
        effect, variance: cumulative effect estimates and their variances, shape ``(..., looks)``.
        n: units in both groups at each look, broadcastable to ``effect``.
        alpha: level, in (0, 1) (below 0.5 for one-sided sequences).
        alternative: ``two-sided``, ``greater`` or ``less``.
        tuning: ``N*``, the size at which the sequence is tightest; defaults to ``planned_n`` when
            given, else GrowthBook's 5000.
        planned_n: the planned total number of units (both groups).

    Example:
        >>> path = confidence_sequence_path([[0.1, 0.2]], [[0.01, 0.005]], [1000, 2000])
        >>> [round(float(v), 4) for v in path.lower[0]]
        [-0.2364, -0.0209]
    """
    check_probability("alpha", alpha)
    check_alternative(alternative)
    n_star = _check_tuning(alpha, alternative, tuning, planned_n)
    theta = _as_looks("effect", effect)
    var = _as_looks("variance", variance)
    theta, var = np.broadcast_arrays(theta, var)
    units = _check_n(n, theta.shape)
    with np.errstate(all="ignore"):
        valid = np.isfinite(theta) & np.isfinite(var) & (var > 0) & (units > 0)
        look = _growthbook_look(
            np.where(valid, theta, 0.0), np.where(valid, var, 1.0), np.where(valid, units, 1.0), alpha, alternative,
            n_star,
        )  # fmt: skip
        log_lr, p, lower, upper = _patch_invalid(valid, *look)
    p, lower, upper = _accumulate(p, lower, upper)
    return SequencePath(p, lower, upper, log_lr, alpha)


def _check_tuning(alpha: float, alternative: str, tuning: float | None, planned_n: float | None) -> float:
    if alternative != "two-sided" and alpha >= 0.5:
        msg = f"alpha == {alpha}, must be < 0.5 for a one-sided confidence sequence"
        raise ValueError(msg)
    if tuning is not None:
        return check_positive("tuning", tuning)
    if planned_n is not None:
        return check_positive("planned_n", planned_n)
    return GROWTHBOOK_TUNING


# --------------------------------------------------------------------------------------------
# Scalar API


Group = MetricStatistic | GroupEstimate


def _effect(control: Group, treatment: Group, relative: bool) -> tuple[float, float, int, ErrorCode | None, str | None]:
    """Effect, its variance, total units, and an error code when the data allow no test."""
    c = control if isinstance(control, GroupEstimate) else estimate(control)
    t = treatment if isinstance(treatment, GroupEstimate) else estimate(treatment)
    n = int(c.n + t.n)
    if c.n == 0 or t.n == 0:
        return math.nan, math.nan, n, ErrorCode.EMPTY_GROUP, "a group has no units"
    if math.isnan(c.mean) or math.isnan(t.mean):
        return math.nan, math.nan, n, ErrorCode.ZERO_DENOMINATOR, "a ratio's denominator sums to 0 in a group"
    if math.isnan(c.variance) or math.isnan(t.variance):
        return math.nan, math.nan, n, ErrorCode.TOO_FEW_UNITS, "a group has too few units for a variance"
    if relative:
        if c.mean == 0:
            msg = "the control mean is 0, so the relative effect is undefined"
            return math.nan, math.nan, n, ErrorCode.ZERO_CONTROL_MEAN, msg
        effect = t.mean / c.mean - 1
        variance = t.mean**2 * c.variance / c.mean**4 + t.variance / c.mean**2
    else:
        effect = t.mean - c.mean
        variance = c.variance + t.variance
    if not variance > 0:
        return effect, variance, n, ErrorCode.ZERO_VARIANCE, "the effect estimate has zero variance"
    return effect, variance, n, None, None


def _check_previous_type(previous: object) -> None:
    if previous is not None and not isinstance(previous, AlwaysValidResult):
        msg = f"previous must be an AlwaysValidResult, got {type(previous).__name__}"
        raise TypeError(msg)


def _check_previous(previous: AlwaysValidResult | None, expected: AlwaysValidResult) -> None:
    if previous is None:
        return
    for field in ("method", "alternative", "alpha", "relative", "tuning"):
        before, now = getattr(previous, field), getattr(expected, field)
        if before != now:
            msg = f"previous.{field} == {before!r}, must equal this look's {field} == {now!r}"
            raise ValueError(msg)
    if previous.n > expected.n:
        msg = f"previous.n == {previous.n}, must be <= n == {expected.n} (data are cumulative)"
        raise ValueError(msg)


def _combine(result: AlwaysValidResult, previous: AlwaysValidResult | None) -> AlwaysValidResult:
    """Running minimum of the p-value and intersection of the intervals with the previous look."""
    if previous is None:
        return result
    if result.error_code is not None or result.stage == "closed":
        p, ci = previous.p_value, previous.ci
    else:
        p = min(previous.p_value, result.p_value) if not math.isnan(previous.p_value) else result.p_value
        low, high = previous.ci
        ci = (
            result.ci[0] if math.isnan(low) else max(low, result.ci[0]),
            result.ci[1] if math.isnan(high) else min(high, result.ci[1]),
        )
    return replace(result, p_value=p, ci=ci)


def _scalar(
    method: str,
    control: Group,
    treatment: Group,
    *,
    alpha: float,
    alternative: str,
    relative: bool,
    tuning: float,
    previous: AlwaysValidResult | None,
    stage_of: Callable[[int], str],
    look: Callable[[FloatArray, FloatArray, FloatArray, str], tuple[FloatArray, ...]],
    tau2_of: Callable[[float, int], float],
) -> AlwaysValidResult:
    effect, variance, n, error, message = _effect(control, treatment, relative)
    stage = stage_of(n)
    base = AlwaysValidResult(
        method, alternative, alpha, relative, effect, variance, NAN_INTERVAL, math.nan, math.nan, math.nan,
        math.nan, tuning, n, stage, error, message,
    )  # fmt: skip
    _check_previous(previous, base)
    if error is not None or stage == "closed":
        return _combine(base, previous)
    arrays = (np.array([effect]), np.array([variance]), np.array([float(n)]))
    log_lr, p, lower, upper = (float(v[0]) for v in look(*arrays, stage))
    result = replace(
        base, ci=(lower, upper), p_value=p, statistic=effect / math.sqrt(variance), log_likelihood_ratio=log_lr,
        tau2=tau2_of(variance, n),
    )  # fmt: skip
    return _combine(result, previous)


def msprt(
    control: Group,
    treatment: Group,
    *,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    relative: bool = False,
    mode: str = "hybrid",
    planned_n: float | None = None,
    tau2: float | None = None,
    previous: AlwaysValidResult | None = None,
) -> AlwaysValidResult:
    """Mixture SPRT at one look, from cumulative statistics (or estimates) of both groups.

    Args:
        control, treatment: cumulative sufficient statistics (mean, proportion or ratio) or
            :class:`~splitlab.stats.frequentist.GroupEstimate` records.
        alpha: level, in (0, 1); the hybrid design supports 1e-6 to 0.5.
        alternative: ``two-sided``, ``greater`` (treatment higher) or ``less``.
        relative: test the relative lift ``treatment / control - 1`` (delta-method variance).
        mode: ``hybrid`` (default: horizon-calibrated mixture boundary, then a final z-test at
            ``planned_n``) or ``always-valid`` (the untruncated mSPRT, valid forever).
        planned_n: planned total units in both groups; required by ``hybrid``; in
            ``always-valid`` mode it tunes ``tau^2`` to be tightest there.
        tau2: fixed mixture variance on the effect's scale (``always-valid`` only).
        previous: this test's result at the previous look; the p-value becomes a running minimum
            and the interval an intersection.

    Example:
        >>> from splitlab.stats.statistics import ProportionStatistic
        >>> first = msprt(ProportionStatistic(5000, 500), ProportionStatistic(5000, 580), planned_n=40000)
        >>> second = msprt(ProportionStatistic(10000, 1000), ProportionStatistic(10000, 1160), planned_n=40000,
        ...                previous=first)
        >>> round(first.p_value, 3), round(second.p_value, 3), second.stage
        (0.377, 0.013, 'interim')
    """
    check_probability("alpha", alpha)
    check_alternative(alternative)
    planned = _check_planned_n(planned_n)
    _check_mode(mode, alpha, planned, tau2)
    _check_previous_type(previous)
    two_sided = alternative == "two-sided"
    if mode == "hybrid":
        horizon = _required(planned)
        ratio = HYBRID_MIXTURE_RATIO
        closed = previous is not None and (
            previous.stage == "closed" or (previous.stage == "final" and previous.error_code is None)
        )

        def stage_of(n: int) -> str:
            return "closed" if closed else "final" if n >= horizon else "interim"

        def look(effect: FloatArray, var: FloatArray, n: FloatArray, stage: str) -> tuple[FloatArray, ...]:
            r = ratio * n / horizon
            return _hybrid_look(effect, np.sqrt(var), r, np.array([stage == "final"]), alpha, alternative)

        return _scalar("msprt-hybrid", control, treatment, alpha=alpha, alternative=alternative, relative=relative,
                       tuning=horizon, previous=previous, stage_of=stage_of, look=look,
                       tau2_of=lambda v, n: ratio * v * n / horizon)  # fmt: skip

    def fixed_stage(_: int) -> str:
        return "interim"

    if tau2 is not None:
        mixture = tau2

        def look_fixed(effect: FloatArray, var: FloatArray, _n: FloatArray, _stage: str) -> tuple[FloatArray, ...]:
            return _msprt_look(effect, np.sqrt(var), mixture / var, alpha, alternative)

        return _scalar("msprt", control, treatment, alpha=alpha, alternative=alternative, relative=relative,
                       tuning=mixture, previous=previous, stage_of=fixed_stage, look=look_fixed,
                       tau2_of=lambda _v, _n: mixture)  # fmt: skip
    target = _required(planned)
    x = _optimal_ratio(alpha, two_sided)

    def look_planned(effect: FloatArray, var: FloatArray, n: FloatArray, _stage: str) -> tuple[FloatArray, ...]:
        return _msprt_look(effect, np.sqrt(var), x * n / target, alpha, alternative)

    return _scalar("msprt", control, treatment, alpha=alpha, alternative=alternative, relative=relative,
                   tuning=target, previous=previous, stage_of=fixed_stage, look=look_planned,
                   tau2_of=lambda v, n: x * v * n / target)  # fmt: skip


def confidence_sequence(
    control: Group,
    treatment: Group,
    *,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    relative: bool = False,
    tuning: float | None = None,
    planned_n: float | None = None,
    previous: AlwaysValidResult | None = None,
) -> AlwaysValidResult:
    """GrowthBook's asymptotic confidence sequence at one look (Waudby-Smith et al. 2023, eq. 9).

    Args:
        control, treatment: cumulative sufficient statistics or group estimates.
        alpha: level, in (0, 1) (below 0.5 one-sided).
        alternative: ``two-sided``, ``greater`` or ``less``.
        relative: the relative lift ``treatment / control - 1`` (GrowthBook's default scale).
        tuning: ``N*``; defaults to ``planned_n`` when given, else GrowthBook's 5000.
        planned_n: planned total units in both groups.
        previous: this test's result at the previous look (running minimum and intersection);
            without it the result is GrowthBook's, which does not intersect over looks.

    Example:
        >>> from splitlab.stats.statistics import MeanStatistic
        >>> a, b = MeanStatistic(2000, 2000.0, 4000.0), MeanStatistic(2000, 2150.0, 4460.0)
        >>> [round(v, 4) for v in confidence_sequence(a, b).ci]
        [-0.0229, 0.1729]
    """
    check_probability("alpha", alpha)
    check_alternative(alternative)
    n_star = _check_tuning(alpha, alternative, tuning, planned_n)
    _check_previous_type(previous)
    rho = _growthbook_rho(alpha, n_star, two_sided=alternative == "two-sided")

    def look(effect: FloatArray, var: FloatArray, n: FloatArray, _stage: str) -> tuple[FloatArray, ...]:
        return _growthbook_look(effect, var, n, alpha, alternative, n_star)

    return _scalar("gaussian-mixture-cs", control, treatment, alpha=alpha, alternative=alternative,
                   relative=relative, tuning=n_star, previous=previous, stage_of=lambda _n: "interim", look=look,
                   tau2_of=lambda v, n: rho**2 * v * n)  # fmt: skip


# --------------------------------------------------------------------------------------------
# Hybrid design: boundary-crossing probabilities of Brownian motion on [0, 1]

_STEPS = 200
_CELLS = 4
_ONE_SIDED_FLOOR = 8.5
_HYBRID_MIN_ALPHA = 1e-6
_HYBRID_MAX_ALPHA = 0.5


def _density(x: FloatArray, sd: float) -> FloatArray:
    return np.exp(-0.5 * (x / sd) ** 2) / (sd * math.sqrt(2 * math.pi))


def _kill(s: FloatArray, b1: float, b2: float, slope: float, sd: float, two_sided: bool) -> FloatArray:
    """Probability that a path from ``s`` crosses the linear barrier(s) within one step.

    Ends beyond the barrier, plus paths that end inside but cross in between: the Brownian-bridge
    crossing probability ``exp(-2 (b1 - s)(b2 - y) / dt)`` times the transition density equals
    ``exp(-2 slope (b1 - s)) phi(y + s - 2 b1)`` (reflection), integrated over the inside in closed form.
    """
    exponent = -2 * slope * (b1 - s)
    upper = special.ndtr((s - b2) / sd) + np.exp(exponent + special.log_ndtr((b2 + s - 2 * b1) / sd))
    if not two_sided:
        return np.asarray(upper)
    upper = upper - np.exp(exponent + special.log_ndtr((s - b2 - 2 * b1) / sd))
    exponent = -2 * slope * (b1 + s)
    lower = (
        special.ndtr((-b2 - s) / sd)
        + np.exp(exponent + special.log_ndtr((b2 - s - 2 * b1) / sd))
        - np.exp(exponent + special.log_ndtr((-b2 - s - 2 * b1) / sd))
    )
    return np.asarray(upper + lower)


def _crossing_once(boundary: FloatArray, two_sided: bool, cells: int) -> tuple[float, FloatArray, FloatArray]:
    """Crossing probability of ``+-boundary`` (or ``+boundary``) on an equally spaced time grid of [0, 1].

    Recursive integration on a space grid of step ``sqrt(dt) / cells`` (trapezoid rule, the
    density vanishing at the barrier); returns the probability and the survivors' density at t = 1.
    """
    steps = boundary.size - 1
    dt = 1.0 / steps
    sd = math.sqrt(dt)
    h = sd / cells
    top = float(boundary.max())
    first = -math.ceil((top if two_sided else _ONE_SIDED_FLOOR) / h)
    size = math.ceil(top / h) - first + 1
    grid = (first + np.arange(size, dtype=np.float64)) * h
    sums = (2 * first + np.arange(2 * size - 1, dtype=np.float64)) * h  # y_j + s_i at index i + j
    free = _density((np.arange(2 * size - 1, dtype=np.float64) - (size - 1)) * h, sd)

    def inside(b: float) -> BoolArray:
        return np.asarray((grid < b) & (grid > -b)) if two_sided else np.asarray(grid < b)

    b0, b1 = float(boundary[0]), float(boundary[1])
    slope = (b1 - b0) / dt
    total = float(_kill(np.zeros(1), b0, b1, slope, sd, two_sided)[0])
    f: FloatArray = _density(grid, sd) - math.exp(-2 * slope * b0) * _density(grid - 2 * b0, sd)
    if two_sided:
        f -= math.exp(-2 * slope * b0) * _density(grid + 2 * b0, sd)
    f = np.where(inside(b1), np.maximum(f, 0.0), 0.0)
    for k in range(1, steps):
        b1, b2 = float(boundary[k]), float(boundary[k + 1])
        slope = (b2 - b1) / dt
        alive = np.flatnonzero(inside(b1))
        weights = np.zeros(size)
        weights[alive] = h
        weights[alive[-1]] = (h + b1 - grid[alive[-1]]) / 2
        if two_sided:
            weights[alive[0]] = (h + grid[alive[0]] + b1) / 2
        mass: FloatArray = f * weights
        total += float(np.dot(mass[alive], _kill(grid[alive], b1, b2, slope, sd, two_sided)))
        new: FloatArray = signal.fftconvolve(mass, free)[size - 1 : 2 * size - 1]
        reflected: FloatArray = mass * np.exp(-2 * slope * (b1 - grid))
        new -= signal.fftconvolve(_density(sums - 2 * b1, sd), reflected[::-1], mode="valid")
        if two_sided:
            reflected = mass * np.exp(-2 * slope * (b1 + grid))
            new -= signal.fftconvolve(_density(sums + 2 * b1, sd), reflected[::-1], mode="valid")
        f = np.where(inside(b2), np.maximum(new, 0.0), 0.0)
    return total, grid, f


def _survivor_tail(grid: FloatArray, density: FloatArray, c: float, two_sided: bool) -> float:
    cumulative = integrate.cumulative_trapezoid(density, grid, initial=0)
    mass = cumulative[-1] - np.interp(c, grid, cumulative)
    if two_sided:
        mass += np.interp(-c, grid, cumulative)
    return float(mass)


def _crossing(boundary: FloatArray, two_sided: bool) -> tuple[float, Callable[[float], float]]:
    """Crossing probability on [0, 1] and the survivors' tail ``c -> P(no crossing, |W_1| >= c)``.

    Richardson extrapolation over the space step (its error is ``O(h^2)``, about
    ``-h^2 / (6 dt)`` relative) leaves errors near 1e-5 relative.
    """
    coarse = _crossing_once(boundary, two_sided, _CELLS)
    fine = _crossing_once(boundary, two_sided, 2 * _CELLS)

    def tail(c: float) -> float:
        return (4 * _survivor_tail(*fine[1:], c, two_sided) - _survivor_tail(*coarse[1:], c, two_sided)) / 3

    return (4 * fine[0] - coarse[0]) / 3, tail


def _hybrid_boundary(log_lambda: float) -> FloatArray:
    """The mixture boundary on the Brownian scale ``S = z sqrt(n / N)``, ``r = x t``."""
    t = np.linspace(0.0, 1.0, _STEPS + 1)
    x = HYBRID_MIXTURE_RATIO
    return np.asarray(np.sqrt((1 / x + t) * (np.log1p(x * t) + 2 * log_lambda)))


def _final_critical_exact(level: float, two_sided: bool) -> float:
    """The final critical value ``c`` of the design at ``level`` (interim threshold from the table)."""
    interim = HYBRID_INTERIM_SHARE * level
    _, tail = _crossing(_hybrid_boundary(_interim_threshold(level, two_sided)), two_sided)
    return float(optimize.brentq(lambda c: interim + tail(c) - level, -3.0, 8.0, xtol=1e-12))


def _hybrid_tables() -> dict[str, list[float]]:
    """Recompute the tables below (about a minute); the tests check a few entries."""
    tables: dict[str, list[float]] = {}
    for name, two_sided in (("two", True), ("one", False)):
        tables[f"log_g_{name}"] = [math.log(_crossing(_hybrid_boundary(u), two_sided)[0]) for u in _LOG_LAMBDA]
    for name, two_sided in (("two", True), ("one", False)):
        tables[f"c_{name}"] = [_final_critical_exact(float(level), two_sided) for level in np.exp(_LOG_LEVELS)]
    return tables


# Nodes of log(lambda) and the log of the continuous-time crossing probability G on [0, 1] of the
# hybrid mixture boundary (x = 1), two- and one-sided, from _hybrid_tables().
_LOG_LAMBDA = np.round(np.concatenate([[0.02, 0.05], np.arange(0.1, 2.0001, 0.1), np.arange(2.25, 10.0001, 0.25)]), 4)
# fmt: off
_LOG_G_TWO = np.array([
    -0.0791836061321, -0.19286180454, -0.37086921594, -0.695186699482, -0.990818125873, -1.26780402401,
    -1.5320992081, -1.78736424802, -2.03592638399, -2.27932521395, -2.51862391264, -2.7545824893,
    -2.98776165055, -3.21858820516, -3.44739126539, -3.6744367321, -3.89994687046, -4.12408454816,
    -4.34700474382, -4.56882915623, -4.78965842905, -5.00959039466, -5.55596882008, -6.09816156392,
    -6.63687955288, -7.1726739977, -7.70596252745, -8.23709382091, -8.76632902105, -9.29389313425,
    -9.81996169902, -10.3447071434, -10.8682484384, -11.3907089491, -11.912179876, -12.432744275,
    -12.9524832446, -13.4714618259, -13.9897191575, -14.5073378158, -15.0243343413, -15.5407662848,
    -16.0566768518, -16.5720894017, -17.0870296117, -17.6015244765, -18.115602735, -18.6292973749,
    -19.1426280038, -19.6556139159, -20.1682491912, -20.6805916672, -21.192609217, -21.7043685442
])
_LOG_G_ONE = np.array([
    -0.598857441521, -0.797375853094, -1.02607165166, -1.37915413784, -1.68145049914, -1.96022704263,
    -2.22503237074, -2.48044718328, -2.72905407981, -2.97246644232, -3.21176926532, -3.44772910628,
    -3.6809086568, -3.91173533168, -4.14053842916, -4.36758390743, -4.59309404939, -4.81723172821,
    -5.04015192422, -5.26197633674, -5.4828056096, -5.70273757521, -6.24911600064, -6.79130874448,
    -7.33002673344, -7.86582117825, -8.399109708, -8.93024100145, -9.45947620161, -9.9870403148, -10.5131088796,
    -11.0378543241, -11.5613956191, -12.0838561295, -12.6053270562, -13.1258914553, -13.645630424,
    -14.1646090061, -14.6828663371, -15.2004849997, -15.717481531, -16.23391346, -16.7498240246, -17.2652365593,
    -17.7801767871, -18.2946715425, -18.8087500285, -19.3224445622, -19.8357751353, -20.3487608527,
    -20.8613966299, -21.3737374, -21.8857584361, -22.3975158162
])
# fmt: on
# Levels a (log nodes) of the nested family of hybrid designs and the final critical value c(a).
_LOG_LEVELS = np.linspace(math.log(_HYBRID_MIN_ALPHA), math.log(_HYBRID_MAX_ALPHA), 40)
# fmt: off
_C_TWO = np.array([
    4.92076378491, 4.85441809153, 4.78732582332, 4.71925754717, 4.65028688035, 4.58036454854, 4.5094305347,
    4.43742332716, 4.36436237234, 4.29014712833, 4.21471270972, 4.13809631657, 4.06010012316, 3.98074793013,
    3.89991369788, 3.81757815815, 3.73359940938, 3.64786389628, 3.56030598204, 3.47081785226, 3.37923488771,
    3.28542241016, 3.1891579526, 3.09037914721, 2.9887560216, 2.88410426477, 2.77609985416, 2.66448041237,
    2.5488173033, 2.42866498672, 2.30352543461, 2.17271505224, 2.03544063181, 1.89068285859, 1.73718845795,
    1.57324531861, 1.39656099574, 1.20385959066, 0.990020241268, 0.745961470703
])
_C_ONE = np.array([
    4.78320744838, 4.71515134065, 4.64611245384, 4.57613556998, 4.50513775088, 4.43309517146, 4.35992271077,
    4.28560933899, 4.2101782763, 4.13344315837, 4.05535361934, 3.97595414334, 3.8950269535, 3.81257689834,
    3.72848807821, 3.64267409849, 3.55500006162, 3.46538334576, 3.37367361547, 3.27964023204, 3.1833294735,
    3.08430612522, 2.98255836811, 2.87770004368, 2.76950612113, 2.65764474346, 2.5417385158, 2.4212992023,
    2.29584316869, 2.16462960849, 2.02695103296, 1.88170749931, 1.72765758682, 1.56300720438, 1.38549793589,
    1.19177493424, 0.976924760685, 0.732948761897, 0.445701280701, 0.0849146237435
])
# fmt: on


@lru_cache(maxsize=2)
def _log_crossing_spline(two_sided: bool) -> interpolate.CubicSpline:
    return interpolate.CubicSpline(_LOG_LAMBDA, _LOG_G_TWO if two_sided else _LOG_G_ONE)


def _log_crossing(log_lambda: FloatArray, two_sided: bool) -> FloatArray:
    """``log G(lambda)``: 0 below the first node, cubic spline, then linear beyond the last node."""
    spline = _log_crossing_spline(two_sided)
    last = float(_LOG_LAMBDA[-1])
    inner = np.clip(log_lambda, _LOG_LAMBDA[0], last)
    value = spline(inner) + float(spline(last, 1)) * np.maximum(log_lambda - last, 0.0)
    # Ville's inequality for the untruncated mixture bounds the truncated crossing: G <= 1 / lambda.
    value = np.minimum(value, -log_lambda)
    return np.asarray(np.where(log_lambda < _LOG_LAMBDA[0], 0.0, value))


@lru_cache(maxsize=256)
def _interim_threshold(level: float, two_sided: bool) -> float:
    """``log lambda_1`` with ``G(lambda_1) = kappa * level``."""
    target = math.log(HYBRID_INTERIM_SHARE * level)
    return float(
        optimize.brentq(lambda u: float(_log_crossing(np.array([u]), two_sided)[0]) - target,
                        float(_LOG_LAMBDA[0]), 40.0, xtol=1e-13)
    )  # fmt: skip


@lru_cache(maxsize=2)
def _critical_spline(two_sided: bool) -> interpolate.CubicSpline:
    return interpolate.CubicSpline(_LOG_LEVELS, _C_TWO if two_sided else _C_ONE)


@lru_cache(maxsize=256)
def _final_critical(level: float, two_sided: bool) -> float:
    """``c(level)`` of the final z-test, interpolated in ``log level``."""
    return float(_critical_spline(two_sided)(math.log(level)))


def _final_p_value(z: FloatArray, two_sided: bool) -> FloatArray:
    """The smallest level whose final test rejects at ``z`` (``|z|`` two-sided): ``c^{-1}(z)``.

    Bisection on the spline ``c(log a)``; beyond ``c(1e-6)`` the level follows the normal tail,
    and below ``c(0.5)`` it is reported as 1.
    """
    spline = _critical_spline(two_sided)
    c_low, c_high = float(_C_TWO[-1] if two_sided else _C_ONE[-1]), float(_C_TWO[0] if two_sided else _C_ONE[0])
    low = np.full(z.shape, _LOG_LEVELS[0])
    high = np.full(z.shape, _LOG_LEVELS[-1])
    for _ in range(60):
        middle = 0.5 * (low + high)
        rejects = spline(middle) <= z
        high = np.where(rejects, middle, high)
        low = np.where(rejects, low, middle)
    log_level = 0.5 * (low + high)
    beyond = _LOG_LEVELS[0] + special.log_ndtr(-np.maximum(z, c_high)) - special.log_ndtr(-c_high)
    log_level = np.where(z >= c_high, beyond, log_level)
    return np.asarray(np.where(z <= c_low, 1.0, np.exp(log_level)))
