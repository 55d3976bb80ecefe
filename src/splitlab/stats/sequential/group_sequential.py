"""Group-sequential designs: error-spending and classical boundaries, power, and inference at stopping.

A group-sequential test looks at the data at information fractions ``t_1 < ... < t_K <= 1`` of a
planned maximum information ``I_max`` and stops as soon as the standardised statistic
``Z_k = theta_hat_k / se_k`` crosses a boundary. Under the canonical joint distribution
(Jennison & Turnbull 2000, ch. 3) ``(Z_1, ..., Z_K)`` is multivariate normal with
``E[Z_k] = eta sqrt(t_k)`` and ``Cov(Z_j, Z_k) = sqrt(t_j / t_k)`` for ``j <= k``, where the
*drift* ``eta = theta sqrt(I_max)`` is the expected final statistic. Everything here rests on the
probabilities that this process first leaves its continuation region at each look, computed by the
recursive numerical integration of Armitage, McPherson & Rowe (1969) on the grid of Jennison &
Turnbull (2000, ch. 19).

Conventions:
    * Boundaries are on the Z scale and point in the direction of the alternative: ``"greater"``
      rejects when ``Z_k >= b_k``, ``"less"`` when ``Z_k <= -b_k``, ``"two-sided"`` when
      ``|Z_k| >= b_k`` (``Z_k <= -b_k`` is a stop for *harm*).
    * Spending functions are written for a one-sided level; a two-sided symmetric design spends
      ``alpha / 2`` on each side (Reboussin et al. 2000), as gsDesign, rpact and ldbounds do. Its
      total two-sided spending is therefore ``2 f(t; alpha / 2)``.
    * Futility bounds are non-binding: the efficacy boundary is computed ignoring them, so the
      type I error stays at most ``alpha`` whether or not a futility stop is obeyed. For a one-sided
      design the futility bound ``a_k`` stops when the directed statistic is below ``a_k``; for a
      two-sided design it is an inner wedge that stops when ``|Z_k| < a_k``.
    * The last look is the final analysis when its fraction is 1 (or ``final=True``): it spends
      all the remaining alpha, and its futility bound equals its efficacy bound.

References:
    Armitage, P., McPherson, C. K., Rowe, B. C. (1969). Repeated significance tests on
    accumulating data. JRSS A 132, 235-244.
    Jennison, C., Turnbull, B. W. (2000). Group Sequential Methods with Applications to Clinical
    Trials. Chapman & Hall/CRC: ch. 2 (Pocock and O'Brien-Fleming tests, Tables 2.1-2.4), ch. 3
    (canonical joint distribution), ch. 7 (error spending), ch. 8 (stage-wise ordering), ch. 9
    (repeated confidence intervals), ch. 19 (numerical computation).
    Lan, K. K. G., DeMets, D. L. (1983). Discrete sequential boundaries for clinical trials.
    Biometrika 70, 659-663.
    O'Brien, P. C., Fleming, T. R. (1979). A multiple testing procedure for clinical trials.
    Biometrics 35, 549-556.
    Pocock, S. J. (1977). Group sequential methods in the design and analysis of clinical trials.
    Biometrika 64, 191-199.
    Kim, K., DeMets, D. L. (1987). Design and analysis of group sequential tests based on the type
    I error spending rate function. Biometrika 74, 149-154.
    Hwang, I. K., Shih, W. J., DeCani, J. S. (1990). Group sequential designs using a family of
    type I error probability spending functions. Statistics in Medicine 9, 1439-1445.
    Pampallona, S., Tsiatis, A. A., Kim, K. (2001). Interim monitoring of group sequential trials
    using spending functions for the type I and type II error probabilities. Drug Information
    Journal 35, 1113-1121.
    Tsiatis, A. A., Rosner, G. L., Mehta, C. R. (1984). Exact confidence intervals following a
    group sequential test. Biometrics 40, 797-803.
    Reboussin, D. M., DeMets, D. L., Kim, K., Lan, K. K. G. (2000). Computations for group
    sequential boundaries using the Lan-DeMets spending function method. Controlled Clinical
    Trials 21, 190-207.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize, special

from splitlab.stats._validation import check_choice, check_positive, check_probability
from splitlab.stats.frequentist import GroupEstimate, estimate
from splitlab.stats.power import SampleSizePlan
from splitlab.stats.results import NAN_INTERVAL, ErrorCode, Interval
from splitlab.stats.statistics import MeanStatistic, ProportionStatistic, RatioStatistic

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

SPENDING_FUNCTIONS = ("obrien-fleming", "pocock", "hsd", "kim-demets")
CLASSICAL_DESIGNS = ("pocock", "obrien-fleming")
ALTERNATIVES = ("two-sided", "greater", "less")
DECISIONS = ("continue", "efficacy", "futility", "harm")
NO_NEW_INFORMATION = "NO_NEW_INFORMATION"
"""Error code of a look whose information fraction does not exceed the previous look's."""

_DEFAULT_PARAMETERS = {"hsd": -4.0, "kim-demets": 3.0}
_DEFAULT_R = 18
# Grid refinement for many looks: no gap between grid points wider than one standard deviation of
# the next increment (in Z units); the grid stops _TAIL from the mean; the kernel is cut at _BAND sd.
_REFINE = 1.0
_TAIL = 8.0
_BAND = 9.0
_SQRT_2PI = math.sqrt(2 * math.pi)
_XTOL = 1e-12

__all__ = [
    "ALTERNATIVES",
    "CLASSICAL_DESIGNS",
    "DECISIONS",
    "NO_NEW_INFORMATION",
    "SPENDING_FUNCTIONS",
    "CrossingProbabilities",
    "GroupSequentialDesign",
    "OperatingCharacteristics",
    "SequentialLook",
    "SequentialPaths",
    "SequentialSampleSize",
    "StagewiseInference",
    "classical_design",
    "crossing_probabilities",
    "design_drift",
    "inflation_factor",
    "operating_characteristics",
    "repeated_confidence_intervals",
    "sequential_decisions",
    "sequential_look",
    "sequential_sample_size",
    "spending_design",
    "spending_function",
    "stagewise_inference",
    "t_to_z",
    "update_design",
    "welch_df",
]


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _check_fractions(fractions: Sequence[float] | FloatArray, name: str = "fractions") -> FloatArray:
    """Strictly increasing information fractions in (0, 1]."""
    values = np.asarray(fractions, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        msg = f"{name} must be a non-empty one-dimensional sequence, got shape {values.shape}"
        raise ValueError(msg)
    for k, value in enumerate(values):
        if not (math.isfinite(value) and 0 < value <= 1):
            msg = f"{name}[{k}] == {value}, must be in (0, 1]"
            raise ValueError(msg)
        if k > 0 and value <= values[k - 1]:
            msg = f"{name}[{k}] == {value}, must be > {name}[{k - 1}] == {values[k - 1]}"
            raise ValueError(msg)
    return values


def _check_parameter(kind: str, parameter: float | None, name: str) -> float | None:
    """The shape parameter of a spending family (``None`` for the parameter-free ones)."""
    if kind not in _DEFAULT_PARAMETERS:
        if parameter is not None:
            msg = f"{name} == {parameter}, must be None for the {kind!r} spending function"
            raise ValueError(msg)
        return None
    value = _DEFAULT_PARAMETERS[kind] if parameter is None else parameter
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"{name} == {value!r}, must be a finite number"
        raise ValueError(msg)
    if kind == "kim-demets":
        check_positive(name, value)
    return float(value)


def _check_r(r: int) -> int:
    if isinstance(r, bool) or not isinstance(r, int) or r < 4:
        msg = f"r == {r!r}, must be an integer >= 4"
        raise ValueError(msg)
    return r


# --------------------------------------------------------------------------------------------
# Spending functions
# --------------------------------------------------------------------------------------------


def spending_function(
    t: float | Sequence[float] | FloatArray,
    *,
    alpha: float,
    kind: str = "obrien-fleming",
    parameter: float | None = None,
) -> FloatArray:
    """Cumulative error ``f(t)`` a spending function allows by information fraction ``t``.

    * ``"obrien-fleming"``: ``f(t) = 2 - 2 Phi(z_{alpha/2} / sqrt(t))`` (Lan & DeMets 1983, alpha_1*).
    * ``"pocock"``: ``f(t) = alpha log(1 + (e - 1) t)`` (Lan & DeMets 1983, alpha_2*).
    * ``"hsd"``: ``f(t) = alpha (1 - exp(-gamma t)) / (1 - exp(-gamma))``, ``alpha t`` at
      ``gamma = 0``; default ``gamma = -4`` (Hwang, Shih & DeCani 1990, the gamma family).
    * ``"kim-demets"``: ``f(t) = alpha t^rho``, default ``rho = 3`` (Kim & DeMets 1987, the rho family).

    ``f(0) = 0`` and ``f(t) = alpha`` for ``t >= 1``. ``alpha`` is the level spent on one side: a
    two-sided symmetric design calls it with ``alpha / 2`` per side.

    Args:
        t: information fractions, >= 0.
        alpha: total error to spend, in (0, 1).
        kind: one of :data:`SPENDING_FUNCTIONS`.
        parameter: ``gamma`` of ``"hsd"`` or ``rho > 0`` of ``"kim-demets"``; None for the others.

    Returns:
        ``f(t)`` with the shape of ``t``.

    Example:
        >>> [round(float(x), 6) for x in spending_function([0.5, 1.0], alpha=0.025)]
        [0.001525, 0.025]
    """
    check_probability("alpha", alpha)
    check_choice("kind", kind, SPENDING_FUNCTIONS)
    gamma = _check_parameter(kind, parameter, "parameter")
    x = np.asarray(t, dtype=np.float64)
    if np.any(~np.isfinite(x)) or np.any(x < 0):
        msg = f"t == {t!r}, must be finite and >= 0"
        raise ValueError(msg)
    return _spend(np.minimum(x, 1.0), alpha, kind, gamma)


def _spend(t: FloatArray, alpha: float, kind: str, parameter: float | None) -> FloatArray:
    if kind == "obrien-fleming":
        with np.errstate(divide="ignore"):
            z = special.ndtri(1 - alpha / 2) / np.sqrt(t)
        return np.asarray(2 * special.ndtr(-z), dtype=np.float64)
    if kind == "pocock":
        return np.asarray(alpha * np.log1p((math.e - 1) * t), dtype=np.float64)
    if kind == "hsd":
        gamma = float(parameter if parameter is not None else _DEFAULT_PARAMETERS["hsd"])
        if gamma == 0:
            return np.asarray(alpha * t, dtype=np.float64)
        return np.asarray(alpha * np.expm1(-gamma * t) / math.expm1(-gamma), dtype=np.float64)
    rho = float(parameter if parameter is not None else _DEFAULT_PARAMETERS["kim-demets"])
    return np.asarray(alpha * t**rho, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Recursive numerical integration (Armitage, McPherson & Rowe 1969; Jennison & Turnbull ch. 19)
# --------------------------------------------------------------------------------------------

Region = list[tuple[float, float]]


def _base_offsets(r: int) -> FloatArray:
    """The ``6r - 1`` grid points around the mean (Jennison & Turnbull 2000, ch. 19, pp. 349-350)."""
    i = np.arange(1, 6 * r, dtype=np.float64)
    return np.where(
        i < r,
        -3 - 4 * np.log(r / i),
        np.where(i <= 5 * r, -3 + 3 * (i - r) / (2 * r), 3 + 4 * np.log(r / np.maximum(6 * r - i, 1))),
    )


def _grid(mean: float, region: Region, spacing: float, r: int) -> tuple[FloatArray, FloatArray]:
    """Simpson nodes and weights over a continuation region (a union of sorted intervals).

    The ``6r - 1`` points ``mean + offsets`` are trimmed to each interval, whose ends are added
    (J&T 2000, ch. 19, pp. 349-350). Two changes keep many looks accurate and stable: intervals are cut
    at ``mean -+ _TAIL`` (the sub-density there is below ``phi(8) ~ 5e-15``), and gaps wider than
    ``spacing`` (one standard deviation of the next increment) are split evenly, so a narrow
    kernel never falls between grid points. Midpoints are then inserted and each pair of gaps gets
    Simpson's weights ``(d/6, 4d/6, d/6)``.
    """
    base = mean + _base_offsets(r)
    all_nodes: list[FloatArray] = []
    all_weights: list[FloatArray] = []
    for region_low, region_high in region:
        low, high = max(region_low, mean - _TAIL), min(region_high, mean + _TAIL)
        if not high > low:
            continue
        points = np.concatenate(([low], base[(base > low) & (base < high)], [high]))
        gaps = np.diff(points)
        pieces = np.maximum(1.0, np.ceil(gaps / spacing - 1e-9)).astype(np.int64)  # no ties: mirror grids stay mirrored
        offsets = np.arange(int(pieces.sum())) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        points = np.concatenate(
            (np.repeat(points[:-1], pieces) + np.repeat(gaps / pieces, pieces) * offsets, points[-1:])
        )
        nodes = np.empty(2 * points.size - 1)
        nodes[0::2] = points
        nodes[1::2] = 0.5 * (points[:-1] + points[1:])
        widths = np.diff(points)
        weights = np.zeros(nodes.size)
        weights[0:-1:2] += widths / 6
        weights[1::2] += 4 * widths / 6
        weights[2::2] += widths / 6
        all_nodes.append(nodes)
        all_weights.append(weights)
    if not all_nodes:
        return np.empty(0), np.empty(0)
    return np.concatenate(all_nodes), np.concatenate(all_weights)


class _Recursion:
    """First-exit probabilities of ``Z_k`` look by look, for a given drift.

    After :meth:`look` moves to fraction ``t``, :meth:`upper` and :meth:`lower` give the
    probability of reaching this look inside every earlier continuation region and being above
    (below) a value; :meth:`close` fixes this look's continuation region. The sub-density of
    ``Z_{k-1}`` on its region is held as Simpson nodes and weights-times-density ``(z_j, w_j g_j)``;
    the next one is ``g_k(z) = sum_j w_j g_j sqrt(t_k / D) phi((z sqrt(t_k) - z_j sqrt(t_{k-1}) -
    eta D) / sqrt(D))`` with ``D = t_k - t_{k-1}`` (J&T 2000, ch. 19, on the Z scale).
    """

    def __init__(self, drift: float, r: int) -> None:
        self.drift = drift
        self.r = r
        # Stage 0 is a point mass at 0 with t = 0, so look 1 needs no special case.
        self.nodes: FloatArray = np.zeros(1)
        self.mass: FloatArray = np.ones(1)
        self.t_nodes = 0.0
        self.t = 0.0
        self.region: Region | None = None

    def look(self, t: float) -> None:
        if self.region is not None:
            spacing = _REFINE * math.sqrt((t - self.t) / self.t)
            nodes, weights = _grid(self.drift * math.sqrt(self.t), self.region, spacing, self.r)
            self.mass = weights * self._density(nodes)
            self.nodes = nodes
            self.t_nodes = self.t
            self.region = None
        self.t = t

    def close(self, region: Region) -> None:
        self.region = region

    def _density(self, z: FloatArray) -> FloatArray:
        """Sub-density of the current look's ``Z`` at ``z`` (banded when the kernel is narrow)."""
        step = self.t - self.t_nodes
        scale = math.sqrt(self.t / step) / _SQRT_2PI
        sd = math.sqrt(step)
        root_t, root_nodes = math.sqrt(self.t), math.sqrt(self.t_nodes)
        n = self.nodes.size
        if z.size == 0 or n == 0:
            return np.zeros(z.size)
        if self.t_nodes > 0 and n > 64:
            half = _BAND * sd / root_nodes
            centers = (z * root_t - self.drift * step) / root_nodes
            first = np.searchsorted(self.nodes, centers - half, side="left")
            stop = np.searchsorted(self.nodes, centers + half, side="right")
            width = int((stop - first).max())
            if width < n // 2:
                index = first[:, None] + np.arange(width)
                valid = index < stop[:, None]
                index = np.minimum(index, n - 1)
                u = (z[:, None] * root_t - self.nodes[index] * root_nodes - self.drift * step) / sd
                return np.asarray((np.exp(-0.5 * u * u) * np.where(valid, self.mass[index], 0.0)).sum(axis=1) * scale)
        u = (z[:, None] * root_t - (self.nodes * root_nodes + self.drift * step)[None, :]) / sd
        return np.asarray((np.exp(-0.5 * u * u) @ self.mass) * scale)

    def _arguments(self, x: float) -> FloatArray:
        step = self.t - self.t_nodes
        return np.asarray(
            (x * math.sqrt(self.t) - self.nodes * math.sqrt(self.t_nodes) - self.drift * step) / math.sqrt(step)
        )

    def upper(self, x: float) -> float:
        """P(still running at this look and ``Z >= x``)."""
        if x == math.inf:
            return 0.0
        return float(special.ndtr(-self._arguments(x)) @ self.mass)

    def lower(self, x: float) -> float:
        """P(still running at this look and ``Z <= x``)."""
        if x == -math.inf:
            return 0.0
        return float(special.ndtr(self._arguments(x)) @ self.mass)


def _region(efficacy: float, futility: float | None, *, two_sided: bool) -> Region:
    if two_sided:
        inner = 0.0 if futility is None else max(futility, 0.0)
        if inner > 0:
            return [(-efficacy, -inner), (inner, efficacy)]
        return [(-efficacy, efficacy)]
    return [(-math.inf if futility is None else futility, efficacy)]


@dataclass(frozen=True, slots=True)
class CrossingProbabilities:
    """Probabilities of first leaving the continuation region at each look.

    Attributes:
        upper: ``P(Z_k >= upper_k, continued to k)`` per look.
        lower: ``P(Z_k <= lower_k, continued to k)`` per look.
        drift: the drift ``eta`` (``E[Z_k] = eta sqrt(t_k)``) they were computed at.
    """

    upper: FloatArray
    lower: FloatArray
    drift: float

    @property
    def total(self) -> float:
        """Probability of stopping at some look."""
        return float(self.upper.sum() + self.lower.sum())

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (arrays become lists)."""
        return {"upper": self.upper.tolist(), "lower": self.lower.tolist(), "drift": self.drift}


def crossing_probabilities(
    fractions: Sequence[float] | FloatArray,
    upper: Sequence[float] | FloatArray,
    lower: Sequence[float] | FloatArray | None = None,
    *,
    drift: float = 0.0,
    r: int = _DEFAULT_R,
) -> CrossingProbabilities:
    """First-exit probabilities of the canonical process through the bounds ``lower_k < Z_k < upper_k``.

    ``Z_k`` has the canonical joint distribution: ``E[Z_k] = drift sqrt(t_k)``, ``Cov(Z_j, Z_k) =
    sqrt(t_j / t_k)``. Computed by recursive numerical integration on Jennison & Turnbull's grid of
    ``12 r - 3`` Simpson nodes per look (refined when increments are small relative to the grid).
    With the default ``r = 18`` a few looks are accurate to about 1e-7 (``r = 128``: 1e-10); with
    1,000 looks the total is accurate to about 1e-4 and each look to 1e-3, relative.

    Args:
        fractions: information fractions ``0 < t_1 < ... < t_K <= 1``.
        upper: upper bounds on the Z scale (``inf`` for none).
        lower: lower bounds (``-inf`` for none, the default), each below ``upper``.
        drift: ``eta = theta sqrt(I_max)``.
        r: grid size parameter of Jennison & Turnbull (default 18, as in gsDesign).

    Returns:
        The upper and lower crossing probabilities per look.

    Example:
        >>> p = crossing_probabilities([0.5, 1.0], [2.0, 2.0], [-2.0, -2.0])
        >>> round(p.total, 6)
        0.075973

    References:
        Armitage, McPherson & Rowe (1969); Jennison & Turnbull (2000), ch. 3 and ch. 19.
    """
    t = _check_fractions(fractions)
    upper_bounds = np.asarray(upper, dtype=np.float64)
    lower_bounds = np.full(t.size, -math.inf) if lower is None else np.asarray(lower, dtype=np.float64)
    for name, bounds in (("upper", upper_bounds), ("lower", lower_bounds)):
        if bounds.shape != t.shape or np.any(np.isnan(bounds)):
            msg = f"{name} must hold {t.size} numbers (one per look), got {bounds.tolist()}"
            raise ValueError(msg)
    if np.any(lower_bounds >= upper_bounds):
        k = int(np.argmax(lower_bounds >= upper_bounds))
        msg = f"lower[{k}] == {lower_bounds[k]}, must be < upper[{k}] == {upper_bounds[k]}"
        raise ValueError(msg)
    if isinstance(drift, bool) or not isinstance(drift, int | float) or not math.isfinite(drift):
        msg = f"drift == {drift!r}, must be a finite number"
        raise ValueError(msg)
    rec = _Recursion(float(drift), _check_r(r))
    up, low = np.empty(t.size), np.empty(t.size)
    for k in range(t.size):
        rec.look(float(t[k]))
        up[k] = rec.upper(float(upper_bounds[k]))
        low[k] = rec.lower(float(lower_bounds[k]))
        rec.close([(float(lower_bounds[k]), float(upper_bounds[k]))])
    return CrossingProbabilities(up, low, float(drift))


# --------------------------------------------------------------------------------------------
# Designs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupSequentialDesign:
    """Boundaries of a group-sequential test at its looks.

    Attributes:
        method: ``"spending"`` (Lan-DeMets error spending) or ``"classical"`` (Pocock or
            O'Brien-Fleming constants for equally spaced looks).
        spending: the spending function (``"obrien-fleming"``, ``"pocock"``, ``"hsd"``,
            ``"kim-demets"``) or, for a classical design, the boundary shape.
        parameter: ``gamma`` (hsd) or ``rho`` (kim-demets); None otherwise.
        alternative: ``"two-sided"``, ``"greater"`` or ``"less"``.
        alpha: the type I error (two-sided total for a two-sided design).
        power: the power the design is planned for (futility spending, sample sizes).
        fractions: information fractions of the looks.
        efficacy_bounds: ``b_k > 0`` on the Z scale, in the direction of the alternative.
        futility_bounds: ``a_k`` (non-binding), or None without futility stopping.
        futility: the beta-spending function, or None.
        futility_parameter: its ``gamma`` or ``rho``.
        futility_drift: the drift ``eta`` under which beta is spent (the planned alternative).
        alpha_spent: cumulative type I error spent by each look (both sides, futility ignored).
        final: whether the last look is the final analysis.
    """

    method: str
    spending: str
    parameter: float | None
    alternative: str
    alpha: float
    power: float
    fractions: tuple[float, ...]
    efficacy_bounds: tuple[float, ...]
    futility_bounds: tuple[float, ...] | None
    futility: str | None
    futility_parameter: float | None
    futility_drift: float | None
    alpha_spent: tuple[float, ...]
    final: bool

    @property
    def looks(self) -> int:
        """Number of looks."""
        return len(self.fractions)

    @property
    def two_sided(self) -> bool:
        """Whether the design is two-sided symmetric."""
        return self.alternative == "two-sided"

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (tuples become lists; JSON-ready except infinite bounds)."""
        data = asdict(self)
        for key in ("fractions", "efficacy_bounds", "alpha_spent"):
            data[key] = list(data[key])
        if self.futility_bounds is not None:
            data["futility_bounds"] = list(self.futility_bounds)
        return data


def _sides(alternative: str) -> int:
    return 2 if alternative == "two-sided" else 1


def _one_sided_z(alpha: float, alternative: str) -> float:
    return float(special.ndtri(1 - alpha / _sides(alternative)))


def _solve_efficacy(rec: _Recursion, target: float, *, two_sided: bool) -> float:
    """The bound ``b`` with ``P(exit beyond b at this look) = target`` (one side or both)."""
    if not target > 1e-300:
        return math.inf

    def exit_probability(b: float) -> float:
        return rec.upper(b) + (rec.lower(-b) if two_sided else 0.0)

    high = -float(special.ndtri(target / (2 if two_sided else 1)))
    while exit_probability(high) > target:
        high += 0.25
    low = 0.0 if two_sided else high - 1.0
    if two_sided:
        if exit_probability(low) <= target:
            return 0.0
    else:
        while exit_probability(low) <= target:
            low -= 1.0
            if low < -40:
                return low
    return float(optimize.brentq(lambda b: exit_probability(b) / target - 1, low, high, xtol=_XTOL))


def _solve_futility(rec: _Recursion, target: float, efficacy: float, *, two_sided: bool, cap: bool) -> float:
    """The futility bound ``a`` with ``P(futility exit at this look) = target``.

    One-sided designs stop for futility below ``a``, two-sided ones inside ``(-a, a)``. With
    ``cap`` the bound is at most ``efficacy``; without it (the drift search) it may pass it.
    """
    if not target > 0:
        return 0.0 if two_sided else -math.inf

    def exit_probability(a: float) -> float:
        return rec.lower(a) - (rec.lower(-a) if two_sided else 0.0)

    high = efficacy
    if exit_probability(high) <= target:
        if cap:
            return efficacy
        while exit_probability(high) <= target:
            high += 1.0
            if high > efficacy + 40:
                return high
    low = 0.0
    if not two_sided:
        low = min(high, rec.drift * math.sqrt(rec.t)) - 1.0
        while exit_probability(low) > target:
            low -= 1.0
            if low < -40:
                return -math.inf
    return float(optimize.brentq(lambda a: exit_probability(a) / target - 1, low, high, xtol=_XTOL))


def _spending_points(fractions: FloatArray, final: bool) -> FloatArray:
    spend_at = fractions.copy()
    if final:
        spend_at[-1] = 1.0
    return spend_at


def _efficacy_bounds(
    fractions: FloatArray, *, final: bool, alpha: float, alternative: str, kind: str, parameter: float | None, r: int
) -> tuple[FloatArray, FloatArray]:
    """Lan-DeMets boundaries look by look: each depends only on the looks before it."""
    sides = _sides(alternative)
    spent = sides * _spend(_spending_points(fractions, final), alpha / sides, kind, parameter)
    rec = _Recursion(0.0, r)
    bounds = np.empty(fractions.size)
    previous = 0.0
    for k in range(fractions.size):
        rec.look(float(fractions[k]))
        bounds[k] = _solve_efficacy(rec, float(spent[k]) - previous, two_sided=sides == 2)
        previous = float(spent[k])
        rec.close(_region(float(bounds[k]), None, two_sided=sides == 2))
    return bounds, spent


def _futility_bounds(
    fractions: FloatArray,
    efficacy: FloatArray,
    *,
    final: bool,
    beta: float,
    two_sided: bool,
    kind: str,
    parameter: float | None,
    drift: float,
    r: int,
    solve_last: bool = False,
) -> FloatArray:
    """Beta-spending futility bounds under ``drift`` (Pampallona, Tsiatis & Kim 2001)."""
    spent = _spend(_spending_points(fractions, final), beta, kind, parameter)
    rec = _Recursion(drift, r)
    bounds = np.empty(fractions.size)
    previous = 0.0
    last = fractions.size - 1
    for k in range(fractions.size):
        rec.look(float(fractions[k]))
        b = float(efficacy[k])
        if k == last and final and not solve_last:
            bounds[k] = b
        else:
            bounds[k] = _solve_futility(rec, float(spent[k]) - previous, b, two_sided=two_sided, cap=k < last)
        previous = float(spent[k])
        rec.close(_region(b, float(bounds[k]), two_sided=two_sided))
    return bounds


def _increasing_root(func: Callable[[float], float], low: float, high: float, *, xtol: float = 1e-10) -> float:
    """Root of an increasing ``func``, searched from ``[low, high]`` (widened until it brackets).

    Each evaluation is a full pass of the recursion, so values are cached and the bracket is
    solved by TOMS 748 (Alefeld, Potra & Shi 1995), which needs fewer evaluations than Brent.
    """
    values: dict[float, float] = {}

    def cached(x: float) -> float:
        if x not in values:
            values[x] = func(x)
        return values[x]

    width = high - low
    for _ in range(200):
        if cached(low) <= 0:
            break
        low, high = low - width, low
    for _ in range(200):
        if cached(high) >= 0:
            break
        low, high = high, high + width
    if cached(low) == 0:
        return low
    if cached(high) == 0:
        return high
    return float(optimize.toms748(cached, low, high, xtol=xtol))


def _check_design_options(alpha: float, power: float, alternative: str, r: int) -> tuple[float, float, str, int]:
    check_probability("alpha", alpha)
    check_probability("power", power)
    check_choice("alternative", alternative, ALTERNATIVES)
    if power <= alpha / _sides(alternative):
        msg = f"power == {power}, must be > alpha / {_sides(alternative)} == {alpha / _sides(alternative)}"
        raise ValueError(msg)
    return float(alpha), float(power), alternative, _check_r(r)


def spending_design(
    fractions: Sequence[float] | FloatArray,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: str = "two-sided",
    spending: str = "obrien-fleming",
    parameter: float | None = None,
    futility: str | None = None,
    futility_parameter: float | None = None,
    final: bool = False,
    r: int = _DEFAULT_R,
) -> GroupSequentialDesign:
    """Error-spending (Lan-DeMets) design at planned or unplanned looks.

    The efficacy bound at look ``k`` solves ``P_0(continue to k, exit beyond b_k) = f(t_k) -
    f(t_{k-1})`` given the earlier bounds only (one side; both sides with ``alpha / 2`` each for a
    two-sided design), so looks may be added as they happen (Lan & DeMets 1983; J&T 2000,
    ch. 7). With ``futility``, beta is spent the same way under the drift ``eta`` of the
    planned alternative, ``P_eta(continue to k, futility exit at k) = g(t_k) - g(t_{k-1})`` with
    ``g`` the spending function at level ``1 - power``; ``eta`` is chosen so the two bounds meet at the
    final look (Pampallona, Tsiatis & Kim 2001; J&T 2000, ch. 7). Futility is non-binding:
    the efficacy bounds ignore it.

    Args:
        fractions: information fractions ``0 < t_1 < ... < t_K <= 1`` of the looks.
        alpha: type I error, two-sided total for ``"two-sided"``.
        power: planned power (sets beta for futility spending and the default of sample sizes).
        alternative: ``"two-sided"`` (symmetric, harm below ``-b_k``), ``"greater"`` or ``"less"``.
        spending: the alpha-spending function, one of :data:`SPENDING_FUNCTIONS`.
        parameter: ``gamma`` (hsd, default -4) or ``rho`` (kim-demets, default 3).
        futility: beta-spending function for non-binding futility bounds, or None (default).
        futility_parameter: its ``gamma`` or ``rho``.
        final: treat the last look as the final analysis even if its fraction is below 1.
        r: grid size parameter of the numerical integration.

    Returns:
        The design.

    Example:
        >>> d = spending_design([0.2, 0.4, 0.6, 0.8, 1.0])
        >>> [round(b, 3) for b in d.efficacy_bounds]
        [4.877, 3.357, 2.68, 2.29, 2.031]

    References:
        Lan & DeMets (1983); Reboussin et al. (2000); Pampallona, Tsiatis & Kim (2001);
        Jennison & Turnbull (2000), ch. 7.
    """
    alpha, power, alternative, r = _check_design_options(alpha, power, alternative, r)
    check_choice("spending", spending, SPENDING_FUNCTIONS)
    parameter = _check_parameter(spending, parameter, "parameter")
    if futility is not None:
        check_choice("futility", futility, SPENDING_FUNCTIONS)
        futility_parameter = _check_parameter(futility, futility_parameter, "futility_parameter")
    elif futility_parameter is not None:
        msg = f"futility_parameter == {futility_parameter}, must be None without futility"
        raise ValueError(msg)
    t = _check_fractions(fractions)
    final = bool(final or t[-1] == 1.0)
    efficacy, spent = _efficacy_bounds(
        t, final=final, alpha=alpha, alternative=alternative, kind=spending, parameter=parameter, r=r
    )
    futility_bounds: tuple[float, ...] | None = None
    drift: float | None = None
    if futility is not None:
        two_sided = alternative == "two-sided"
        options: dict[str, Any] = {"beta": 1 - power, "two_sided": two_sided, "kind": futility,
                                   "parameter": futility_parameter, "r": r}  # fmt: skip

        def gap(eta: float) -> float:
            bounds = _futility_bounds(t, efficacy, final=True, drift=eta, solve_last=True, **options)
            return float(bounds[-1] - efficacy[-1])

        fixed = _one_sided_z(alpha, alternative) + float(special.ndtri(power))
        drift = _increasing_root(gap, fixed, 1.25 * fixed)
        futility_bounds = tuple(float(a) for a in _futility_bounds(t, efficacy, final=final, drift=drift, **options))
    return GroupSequentialDesign(
        "spending", spending, parameter, alternative, alpha, power, tuple(float(x) for x in t),
        tuple(float(b) for b in efficacy), futility_bounds, futility, futility_parameter, drift,
        tuple(float(a) for a in spent), final,
    )  # fmt: skip


def update_design(
    design: GroupSequentialDesign,
    fractions: Sequence[float] | FloatArray,
    *,
    final: bool = False,
    r: int = _DEFAULT_R,
) -> GroupSequentialDesign:
    """The design's boundaries at the looks actually taken (unplanned looks, over- or under-running).

    A spending design re-derives its bounds at ``fractions`` with the same spending functions;
    futility bounds keep the planned drift ``futility_drift``. A classical design's bounds are
    fixed by look number, so only the first ``len(fractions)`` of them apply.

    Args:
        design: a design from :func:`spending_design` or :func:`classical_design`.
        fractions: the information fractions of the looks so far.
        final: the last of them is the final analysis (spend all the remaining alpha).
        r: grid size parameter of the numerical integration.
    """
    t = _check_fractions(fractions)
    _check_r(r)
    final = bool(final or t[-1] == 1.0)
    if design.method == "classical":
        if t.size > design.looks:
            msg = f"fractions has {t.size} looks, the classical design only {design.looks}"
            raise ValueError(msg)
        k = t.size
        kept = design.efficacy_bounds[:k]
        crossing = crossing_probabilities(t, kept, _lower(kept, design), r=r)
        cumulative = np.cumsum(crossing.upper + crossing.lower)
        return GroupSequentialDesign(
            design.method, design.spending, None, design.alternative, design.alpha, design.power,
            tuple(float(x) for x in t), design.efficacy_bounds[:k], None, None, None, None,
            tuple(float(a) for a in cumulative), final,
        )  # fmt: skip
    efficacy, spent = _efficacy_bounds(
        t, final=final, alpha=design.alpha, alternative=design.alternative, kind=design.spending,
        parameter=design.parameter, r=r,
    )  # fmt: skip
    futility_bounds: tuple[float, ...] | None = None
    if design.futility is not None and design.futility_drift is not None:
        bounds = _futility_bounds(
            t, efficacy, final=final, beta=1 - design.power, two_sided=design.two_sided, kind=design.futility,
            parameter=design.futility_parameter, drift=design.futility_drift, r=r,
        )  # fmt: skip
        futility_bounds = tuple(float(a) for a in bounds)
    return GroupSequentialDesign(
        design.method, design.spending, design.parameter, design.alternative, design.alpha, design.power,
        tuple(float(x) for x in t), tuple(float(b) for b in efficacy), futility_bounds, design.futility,
        design.futility_parameter, design.futility_drift, tuple(float(a) for a in spent), final,
    )  # fmt: skip


def _lower(bounds: Sequence[float] | FloatArray, design: GroupSequentialDesign) -> FloatArray:
    """Lower efficacy bounds of the directed statistic: ``-b_k`` (two-sided) or none."""
    values = np.asarray(bounds, dtype=np.float64)
    return -values if design.two_sided else np.full(values.size, -math.inf)


def classical_design(
    looks: int,
    *,
    kind: str = "pocock",
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: str = "two-sided",
    r: int = _DEFAULT_R,
) -> GroupSequentialDesign:
    """Pocock or O'Brien-Fleming boundaries for ``looks`` equally spaced looks.

    Pocock (1977): ``b_k = C_P``; O'Brien & Fleming (1979): ``b_k = C_B sqrt(K / k)``; the constant
    solves ``P_0(some |Z_k| >= b_k) = alpha`` (one side for a one-sided design) by the recursive
    integration (J&T 2000, ch. 2, Tables 2.1 and 2.3).

    Args:
        looks: number of equally spaced looks ``K >= 1``.
        kind: ``"pocock"`` or ``"obrien-fleming"``.
        alpha: type I error, two-sided total for ``"two-sided"``.
        power: planned power (default of sample sizes).
        alternative: ``"two-sided"``, ``"greater"`` or ``"less"``.
        r: grid size parameter of the numerical integration.

    Example:
        >>> round(classical_design(5, kind="pocock").efficacy_bounds[0], 3)
        2.413

    References:
        Pocock (1977); O'Brien & Fleming (1979); Jennison & Turnbull (2000), ch. 2.
    """
    alpha, power, alternative, r = _check_design_options(alpha, power, alternative, r)
    check_choice("kind", kind, CLASSICAL_DESIGNS)
    if isinstance(looks, bool) or not isinstance(looks, int) or looks < 1:
        msg = f"looks == {looks!r}, must be an integer >= 1"
        raise ValueError(msg)
    t = np.arange(1, looks + 1) / looks
    shape = np.ones(looks) if kind == "pocock" else np.sqrt(looks / np.arange(1, looks + 1))
    two_sided = alternative == "two-sided"

    def size(constant: float) -> float:
        bounds = constant * shape
        p = crossing_probabilities(t, bounds, -bounds if two_sided else None, r=r)
        return p.total - alpha

    start = _one_sided_z(alpha, alternative)
    constant = float(optimize.brentq(size, start, start + 3.0, xtol=_XTOL))
    bounds = constant * shape
    p = crossing_probabilities(t, bounds, -bounds if two_sided else None, r=r)
    return GroupSequentialDesign(
        "classical", kind, None, alternative, alpha, power, tuple(float(x) for x in t),
        tuple(float(b) for b in bounds), None, None, None, None,
        tuple(float(a) for a in np.cumsum(p.upper + p.lower)), True,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Power, expected sample size, inflation factor
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OperatingCharacteristics:
    """Stopping probabilities of a design at one drift.

    Attributes:
        drift: ``eta = theta sqrt(I_max)``, in the direction of the alternative.
        power: probability of rejecting the null in the direction of the alternative (efficacy;
            a harm stop of a two-sided design is not counted), futility stops obeyed. At drift 0 of
            a two-sided design it is half the type I error.
        efficacy: probability of stopping for efficacy at each look.
        harm: probability of stopping for harm at each look (zeros for one-sided designs).
        futility: probability of stopping for futility at each look (the final look's
            non-rejection counts here when it is the final analysis).
        expected_fraction: expected information at stopping as a share of ``I_max``.
    """

    drift: float
    power: float
    efficacy: tuple[float, ...]
    harm: tuple[float, ...]
    futility: tuple[float, ...]
    expected_fraction: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (tuples become lists)."""
        data = asdict(self)
        for key in ("efficacy", "harm", "futility"):
            data[key] = list(data[key])
        return data


def _check_design(design: GroupSequentialDesign) -> GroupSequentialDesign:
    if not isinstance(design, GroupSequentialDesign):
        msg = f"design must be a GroupSequentialDesign, got {type(design).__name__}"
        raise TypeError(msg)
    return design


def operating_characteristics(
    design: GroupSequentialDesign, drift: float, *, r: int = _DEFAULT_R
) -> OperatingCharacteristics:
    """Power and expected information of a design at drift ``eta`` (``E[Z_k] = eta sqrt(t_k)``).

    ``eta = delta sqrt(I_max)`` for an effect ``delta`` in the direction of the alternative and a
    maximum information ``I_max``; ``eta = 0`` gives the type I error. The expected information is
    ``I_max sum_k t_k P(stop at k)`` (J&T 2000, ch. 2, Tables 2.7-2.8; ch. 7, Table 7.2).

    Example:
        >>> d = spending_design([0.5, 1.0])
        >>> round(operating_characteristics(d, 0.0).power, 6)
        0.025
    """
    _check_design(design)
    if isinstance(drift, bool) or not isinstance(drift, int | float) or not math.isfinite(drift):
        msg = f"drift == {drift!r}, must be a finite number"
        raise ValueError(msg)
    rec = _Recursion(float(drift), _check_r(r))
    k_max = design.looks
    efficacy, harm, futility = np.zeros(k_max), np.zeros(k_max), np.zeros(k_max)
    for k in range(k_max):
        rec.look(design.fractions[k])
        b = design.efficacy_bounds[k]
        a = None if design.futility_bounds is None else design.futility_bounds[k]
        efficacy[k] = rec.upper(b)
        if design.two_sided:
            harm[k] = rec.lower(-b)
            if a is not None and a > 0:
                futility[k] = rec.lower(min(a, b)) - rec.lower(-min(a, b))
        elif a is not None:
            futility[k] = rec.lower(min(a, b))
        if k == k_max - 1 and design.final:
            futility[k] = max(1.0 - efficacy.sum() - harm.sum() - futility[:k].sum(), 0.0)
        rec.close(_region(b, a, two_sided=design.two_sided))
    t = np.asarray(design.fractions)
    stop = efficacy + harm + futility
    expected = float(t @ stop + t[-1] * max(1.0 - stop.sum(), 0.0))
    power = float(efficacy.sum())
    return OperatingCharacteristics(
        float(drift), power, tuple(efficacy.tolist()), tuple(harm.tolist()), tuple(futility.tolist()), expected
    )


def design_drift(design: GroupSequentialDesign, *, power: float | None = None, r: int = _DEFAULT_R) -> float:
    """The drift ``eta`` at which the design rejects with probability ``power`` (default: the design's).

    For a design with futility bounds at its own power this is ``futility_drift``.

    Example:
        >>> round(design_drift(classical_design(5, kind="obrien-fleming")), 4)
        2.8411
    """
    _check_design(design)
    target = design.power if power is None else check_probability("power", power)
    if target <= design.alpha:
        msg = f"power == {target}, must be > alpha == {design.alpha}"
        raise ValueError(msg)
    if design.futility_drift is not None and target == design.power:
        return design.futility_drift
    fixed = _one_sided_z(design.alpha, design.alternative) + float(special.ndtri(target))

    def shortfall(eta: float) -> float:
        return operating_characteristics(design, eta, r=r).power - target

    return _increasing_root(shortfall, fixed, 1.3 * fixed)


def inflation_factor(design: GroupSequentialDesign, *, power: float | None = None, r: int = _DEFAULT_R) -> float:
    """Maximum information over the fixed-sample information at the same alpha and power.

    ``R = (eta / (z_{alpha/s} + z_{beta}))^2`` with ``eta`` from :func:`design_drift`,
    ``s = 2`` for a two-sided design (J&T 2000, ch. 2, Tables 2.2 and 2.4).

    Example:
        >>> round(inflation_factor(classical_design(5, kind="pocock"), power=0.9), 3)
        1.207
    """
    _check_design(design)
    target = design.power if power is None else check_probability("power", power)
    eta = design_drift(design, power=target, r=r)
    fixed = _one_sided_z(design.alpha, design.alternative) + float(special.ndtri(target))
    return (eta / fixed) ** 2


@dataclass(frozen=True, slots=True)
class SequentialSampleSize:
    """Sample sizes of a group-sequential design relative to the fixed-horizon test.

    Attributes:
        fixed_n: units the fixed-horizon test needs at the same alpha and power.
        max_n: ``ceil(max_n_exact)``.
        max_n_exact: ``inflation_factor * fixed_n``.
        inflation_factor: ``R``.
        expected_n_null: expected units at stopping when there is no effect.
        expected_n_alternative: expected units at stopping at the planned effect.
        drift: the drift of the planned effect at ``max_n``.
        power: the power planned for.
    """

    fixed_n: float
    max_n: int
    max_n_exact: float
    inflation_factor: float
    expected_n_null: float
    expected_n_alternative: float
    drift: float
    power: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary."""
        return asdict(self)


def sequential_sample_size(
    design: GroupSequentialDesign,
    fixed_n: float | SampleSizePlan,
    *,
    power: float | None = None,
    r: int = _DEFAULT_R,
) -> SequentialSampleSize:
    """Maximum and expected sample size of a design, given the fixed-horizon sample size.

    ``N_max = R N_fixed``; ``E[N] = N_max sum_k t_k P(stop at k)`` under ``eta = 0`` and under the
    planned drift (J&T 2000, ch. 2).

    Args:
        design: the design.
        fixed_n: units of the fixed-horizon test, or its :class:`SampleSizePlan` (its
            ``total_exact``; its comparison alpha, power and sidedness must match the design's).
        power: power to plan for; default the design's (or the plan's).
        r: grid size parameter of the numerical integration.

    Example:
        >>> s = sequential_sample_size(classical_design(5, kind="obrien-fleming"), 1000.0)
        >>> s.max_n
        1029
    """
    _check_design(design)
    if isinstance(fixed_n, SampleSizePlan):
        plan = fixed_n
        plan_sides = _sides(plan.alternative)
        if not math.isclose(plan.comparison_alpha, design.alpha, rel_tol=1e-12) or plan_sides != _sides(
            design.alternative
        ):
            msg = (
                f"fixed_n plans alpha == {plan.comparison_alpha} ({plan.alternative}), the design has "
                f"alpha == {design.alpha} ({design.alternative}); they must match"
            )
            raise ValueError(msg)
        if power is not None and not math.isclose(power, plan.power, rel_tol=1e-12):
            msg = f"power == {power}, must equal the plan's power == {plan.power}"
            raise ValueError(msg)
        power = plan.power
        n_fixed = float(plan.total_exact)
    else:
        n_fixed = check_positive("fixed_n", fixed_n)
    target = design.power if power is None else check_probability("power", power)
    eta = design_drift(design, power=target, r=r)
    fixed = _one_sided_z(design.alpha, design.alternative) + float(special.ndtri(target))
    ratio = (eta / fixed) ** 2
    max_exact = ratio * n_fixed
    null = operating_characteristics(design, 0.0, r=r).expected_fraction
    alternative = operating_characteristics(design, eta, r=r).expected_fraction
    return SequentialSampleSize(
        n_fixed, math.ceil(max_exact - 1e-9), max_exact, ratio, null * max_exact, alternative * max_exact, eta, target
    )


# --------------------------------------------------------------------------------------------
# Inference at stopping
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StagewiseInference:
    """Inference after stopping, by the stage-wise ordering of the sample space.

    Attributes:
        look: the look (1-based) the test stopped at.
        statistic: ``Z`` at that look.
        p_value: stage-wise ordering p-value for the null of no effect (two-sided:
            ``2 min(p_upper, 1 - p_upper)``).
        ci: the ``1 - alpha`` confidence interval of the effect (one-sided for one-sided designs).
        median_estimate: the median-unbiased estimate of the effect.
    """

    look: int
    statistic: float
    p_value: float
    ci: Interval
    median_estimate: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary."""
        data = asdict(self)
        data["ci"] = list(self.ci)
        return data


def _upper_tail(design: GroupSequentialDesign, look: int, z: float, drift: float, r: int) -> float:
    """``P_eta((K*, Z*) >= (look, z))`` in the stage-wise ordering, efficacy bounds only.

    ``sum_{j < look} P(exit above b_j at j) + P(continue to look, Z_look >= z)`` (Tsiatis, Rosner &
    Mehta 1984; J&T 2000, ch. 8), on the directed statistic.
    """
    rec = _Recursion(drift, r)
    total = 0.0
    for k in range(look):
        rec.look(design.fractions[k])
        if k == look - 1:
            return total + rec.upper(z)
        b = design.efficacy_bounds[k]
        total += rec.upper(b)
        rec.close(_region(b, None, two_sided=design.two_sided))
    return total


def stagewise_inference(
    design: GroupSequentialDesign,
    *,
    look: int,
    estimate: float,
    standard_error: float,
    r: int = _DEFAULT_R,
) -> StagewiseInference:
    """Stage-wise ordering p-value, confidence interval and median-unbiased estimate at stopping.

    With ``p(eta) = P_eta((K*, Z*) >= (k, z))`` in the stage-wise ordering (earlier upper exits
    are more extreme; at the same look a larger ``Z``), the p-value is ``p(0)`` (doubled and
    capped for two-sided designs), the interval is ``{eta: alpha/2 < p(eta) < 1 - alpha/2}``
    (one-sided: ``p(eta) > alpha``), and the median-unbiased estimate solves ``p(eta) = 1/2``
    (Tsiatis, Rosner & Mehta 1984; J&T 2000, ch. 8). The drift maps to the effect by
    ``theta = eta se_k sqrt(t_k)``. Futility bounds are ignored (non-binding).

    Args:
        design: the design at the looks actually taken (:func:`update_design`).
        look: the look (1-based) the test stopped at.
        estimate: the effect estimate there.
        standard_error: its standard error, > 0.
        r: grid size parameter of the numerical integration.

    Example:
        >>> d = spending_design([0.5, 1.0])
        >>> round(stagewise_inference(d, look=1, estimate=3.0, standard_error=1.0).p_value, 5)
        0.0027
    """
    _check_design(design)
    if isinstance(look, bool) or not isinstance(look, int) or not 1 <= look <= design.looks:
        msg = f"look == {look!r}, must be an integer in [1, {design.looks}]"
        raise ValueError(msg)
    check_positive("standard_error", standard_error)
    if isinstance(estimate, bool) or not isinstance(estimate, int | float) or not math.isfinite(estimate):
        msg = f"estimate == {estimate!r}, must be a finite number"
        raise ValueError(msg)
    _check_r(r)
    sign = -1.0 if design.alternative == "less" else 1.0
    z = sign * estimate / standard_error
    t = design.fractions[look - 1]
    to_effect = standard_error * math.sqrt(t)

    def solve(target: float) -> float:
        def excess(eta: float) -> float:
            return _upper_tail(design, look, z, eta, r) - target

        center = z / math.sqrt(t)
        return _increasing_root(excess, center - 1.0 / math.sqrt(t), center + 1.0 / math.sqrt(t)) * to_effect

    p_upper = _upper_tail(design, look, z, 0.0, r)
    median = solve(0.5)
    if design.two_sided:
        p_value = min(1.0, 2 * min(p_upper, 1 - p_upper))
        low, high = solve(design.alpha / 2), solve(1 - design.alpha / 2)
    else:
        p_value = p_upper
        low, high = solve(design.alpha), math.inf
    if sign < 0:
        low, high, median = -high, -low, -median
    return StagewiseInference(look, sign * z, p_value, (low, high), median)


# --------------------------------------------------------------------------------------------
# Vectorised core: many replications at once
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SequentialPaths:
    """Decisions of a design along many paths of cumulative estimates.

    Attributes:
        statistics: ``Z_k = effect_k / sqrt(variance_k)``, shape ``(..., looks)`` (NaN where the
            variance is not positive).
        decision: index into :data:`DECISIONS` of each path's decision, shape ``(...)``.
        stop_look: 0-based look the path stopped at, -1 if it never stopped.
        stop_fraction: information fraction at stopping (the last look's when it never stopped).
    """

    statistics: FloatArray
    decision: IntArray
    stop_look: IntArray
    stop_fraction: FloatArray

    @property
    def rejected(self) -> npt.NDArray[np.bool_]:
        """Whether each path rejected the null (efficacy, or harm in a two-sided design)."""
        return np.asarray((self.decision == 1) | (self.decision == 3))


def _paths_input(effects: Any, variances: Any, design: GroupSequentialDesign) -> tuple[FloatArray, FloatArray]:
    effect = np.asarray(effects, dtype=np.float64)
    variance = np.asarray(variances, dtype=np.float64)
    if effect.shape != variance.shape:
        msg = f"effects has shape {effect.shape} and variances {variance.shape}; they must match"
        raise ValueError(msg)
    if effect.ndim == 0 or effect.shape[-1] != design.looks:
        msg = f"effects must have the design's {design.looks} looks on its last axis, got shape {effect.shape}"
        raise ValueError(msg)
    return effect, variance


def t_to_z(statistic: Any, df: Any) -> FloatArray:
    """Map a t statistic to the normal scale with the same tail probability.

    With an estimated variance the statistic at an early look (few units) is a t statistic with
    heavier tails than the normal the boundaries assume; matching significance levels,
    ``z = Phi^{-1}(F_t(t; df))``, keeps the spending exact at small samples (the significance-
    level transformation of Jennison & Turnbull 2000, section 11.3). ``df = inf`` leaves it as is.
    """
    t = np.asarray(statistic, dtype=np.float64)
    nu = np.asarray(df, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        upper = special.ndtri(special.stdtr(nu, -np.abs(t)))  # tail matched on the lower side for precision
        mapped = -np.sign(t) * upper
    return np.where(np.isinf(nu), t, mapped)


def welch_df(control: GroupEstimate, treatment: GroupEstimate, *, relative: bool = False) -> float:
    """Welch-Satterthwaite degrees of freedom of the effect's variance (Welch 1947, eq. 9)."""
    if relative and control.mean != 0:
        c, t = control.mean, treatment.mean
        v_c, v_t = t**2 * control.variance / c**4, treatment.variance / c**2
    else:
        v_c, v_t = control.variance, treatment.variance
    denominator = (v_c**2 / (control.n - 1) if control.n > 1 else math.inf) + (
        v_t**2 / (treatment.n - 1) if treatment.n > 1 else math.inf
    )
    return (v_c + v_t) ** 2 / denominator if denominator > 0 else math.inf


def sequential_decisions(
    effects: Any, variances: Any, design: GroupSequentialDesign, *, df: Any = None
) -> SequentialPaths:
    """Apply a design to arrays of cumulative estimates, shape ``(..., looks)``.

    At each look ``Z_k = effect_k / sqrt(variance_k)`` is compared with the design's bounds at its
    planned fractions (the information fraction of a path is taken as planned, e.g. ``n_k /
    N_max``); the first crossing stops the path. The final look, when it is the final analysis,
    stops every remaining path (non-rejection counts as futility).

    Args:
        effects: cumulative effect estimates, shape ``(..., looks)``.
        variances: their variances, same shape.
        design: the design; its number of looks must match the last axis.
        df: degrees of freedom of each statistic when the variance is estimated (means, ratios):
            the statistic is mapped to the normal scale by :func:`t_to_z` first; None (default)
            treats it as normal (proportions, or a known variance).

    Example:
        >>> d = spending_design([0.5, 1.0])
        >>> paths = sequential_decisions([[3.5, 3.0], [0.1, 0.2]], [[1.0, 1.0], [1.0, 1.0]], d)
        >>> [DECISIONS[i] for i in paths.decision.tolist()]
        ['efficacy', 'futility']
    """
    _check_design(design)
    effect, variance = _paths_input(effects, variances, design)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(variance > 0, effect / np.sqrt(np.where(variance > 0, variance, 1.0)), np.nan)
    if df is not None:
        z = t_to_z(z, np.broadcast_to(np.asarray(df, dtype=np.float64), z.shape))
    directed = -z if design.alternative == "less" else z
    b = np.asarray(design.efficacy_bounds)
    efficacy = directed >= b
    harm = (directed <= -b) if design.two_sided else np.zeros(z.shape, dtype=bool)
    if design.futility_bounds is not None:
        a = np.minimum(np.asarray(design.futility_bounds), b)
        futility = (np.abs(directed) < a) if design.two_sided else (directed < a)
    else:
        futility = np.zeros(z.shape, dtype=bool)
    if design.final:
        futility[..., -1] = ~(efficacy[..., -1] | harm[..., -1])
    stop = efficacy | harm | futility
    stopped = stop.any(axis=-1)
    first = np.argmax(stop, axis=-1)

    def at_first(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        return np.asarray(np.take_along_axis(mask, first[..., None], axis=-1)[..., 0] & stopped)

    decision = np.zeros(stopped.shape, dtype=np.int64)
    decision[at_first(futility)] = 2
    decision[at_first(harm)] = 3
    decision[at_first(efficacy)] = 1
    stop_look = np.where(stopped, first, -1).astype(np.int64)
    fractions = np.asarray(design.fractions)
    stop_fraction = np.where(stopped, fractions[first], fractions[-1])
    return SequentialPaths(z, decision, stop_look, np.asarray(stop_fraction, dtype=np.float64))


def repeated_confidence_intervals(
    effects: Any, variances: Any, design: GroupSequentialDesign
) -> tuple[FloatArray, FloatArray]:
    """Repeated confidence intervals at every look, shape ``(..., looks)`` each.

    ``theta_hat_k -+ b_k sqrt(variance_k)``: all of them cover the effect simultaneously with
    probability at least ``1 - alpha`` (Jennison & Turnbull 1989, JRSS B 51, 305-361; J&T 2000, ch. 9). One-sided
    designs give one-sided intervals (``+inf`` or ``-inf`` on the other end).

    Example:
        >>> low, high = repeated_confidence_intervals([1.0], [0.25], spending_design([1.0]))
        >>> round(float(low[0]), 4), round(float(high[0]), 4)
        (0.02, 1.98)
    """
    _check_design(design)
    effect, variance = _paths_input(effects, variances, design)
    with np.errstate(invalid="ignore"):
        half = np.asarray(design.efficacy_bounds) * np.sqrt(np.where(variance >= 0, variance, np.nan))
    low = effect - half
    high = effect + half
    if design.alternative == "greater":
        high = np.full(effect.shape, math.inf)
    elif design.alternative == "less":
        low = np.full(effect.shape, -math.inf)
    return np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Scalar API: one look from two groups' statistics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SequentialLook:
    """One interim (or final) look of a group-sequential test.

    Attributes:
        look: 1-based look number.
        information_fraction: share of the planned maximum information at this look.
        alternative, alpha: of the design.
        relative: whether the effect is the relative lift ``t / c - 1``.
        control_mean, treatment_mean, control_n, treatment_n: the groups' estimates.
        effect, standard_error: the effect estimate and its standard error.
        statistic: ``Z = effect / standard_error``.
        efficacy_bound: ``b_k`` (reject when the directed ``Z >= b_k``; two-sided ``|Z| >= b_k``).
        futility_bound: ``a_k`` (NaN without futility bounds).
        decision: one of :data:`DECISIONS`.
        alpha_spent: cumulative type I error spent by this look.
        repeated_ci: the repeated confidence interval at this look.
        p_value: stage-wise adjusted p-value (NaN while the test continues).
        ci: stage-wise adjusted confidence interval (NaN while the test continues).
        median_estimate: median-unbiased effect estimate (NaN while the test continues).
        error_code, error_message: set when the data give no test; the decision is then ``continue``.
    """

    look: int
    information_fraction: float
    alternative: str
    alpha: float
    relative: bool
    control_mean: float
    treatment_mean: float
    control_n: int
    treatment_n: int
    effect: float
    standard_error: float
    statistic: float
    efficacy_bound: float
    futility_bound: float
    decision: str
    alpha_spent: float
    repeated_ci: Interval
    p_value: float
    ci: Interval
    median_estimate: float
    error_code: ErrorCode | str | None = None
    error_message: str | None = None

    @property
    def stopped(self) -> bool:
        """Whether the test stops at this look."""
        return self.decision != "continue"

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (tuples become lists; JSON-ready except NaN and infinities)."""
        data = asdict(self)
        data["repeated_ci"] = list(self.repeated_ci)
        data["ci"] = list(self.ci)
        data["error_code"] = None if self.error_code is None else str(self.error_code)
        return data


Statistic = MeanStatistic | ProportionStatistic | RatioStatistic | GroupEstimate


def _group(statistic: Statistic, name: str) -> GroupEstimate:
    if isinstance(statistic, GroupEstimate):
        return statistic
    if isinstance(statistic, MeanStatistic | ProportionStatistic | RatioStatistic):
        return estimate(statistic)
    msg = f"{name} must be a MetricStatistic or a GroupEstimate, got {type(statistic).__name__}"
    raise TypeError(msg)


def _effect(control: GroupEstimate, treatment: GroupEstimate, *, relative: bool) -> tuple[float, float, str | None]:
    """Effect, its variance, and an error code when the data give none (Deng et al. 2018, eq. 4)."""
    if control.n == 0 or treatment.n == 0:
        return math.nan, math.nan, ErrorCode.EMPTY_GROUP
    if math.isnan(control.mean) or math.isnan(treatment.mean):
        return math.nan, math.nan, ErrorCode.ZERO_DENOMINATOR
    if relative:
        c, t = control.mean, treatment.mean
        if c == 0:
            return math.nan, math.nan, ErrorCode.ZERO_CONTROL_MEAN
        effect = t / c - 1
        variance = t**2 * control.variance / c**4 + treatment.variance / c**2
    else:
        effect = treatment.mean - control.mean
        variance = control.variance + treatment.variance
    if not variance > 0:
        code = ErrorCode.TOO_FEW_UNITS if math.isnan(variance) else ErrorCode.ZERO_VARIANCE
        return effect, variance, code
    return effect, variance, None


_MESSAGES = {
    ErrorCode.EMPTY_GROUP: "a group has no units",
    ErrorCode.ZERO_DENOMINATOR: "a ratio's denominator sums to 0 in a group",
    ErrorCode.ZERO_CONTROL_MEAN: "the control mean is 0, so the relative effect is undefined",
    ErrorCode.TOO_FEW_UNITS: "the variance of the effect is undefined (fewer than 2 units in a group)",
    ErrorCode.ZERO_VARIANCE: "the effect has zero variance; no test is possible",
    NO_NEW_INFORMATION: "the information fraction does not exceed the previous look's",
}


def sequential_look(
    control: Statistic,
    treatment: Statistic,
    *,
    design: GroupSequentialDesign,
    previous_fractions: Sequence[float] = (),
    final_variance: float | None = None,
    max_n: float | None = None,
    relative: bool = False,
    final: bool = False,
    r: int = _DEFAULT_R,
) -> SequentialLook:
    """Evaluate one look of a group-sequential test from the groups' cumulative statistics.

    The information fraction is ``final_variance / Var(effect)`` (the planned variance of the
    final estimate over the current one) or ``(n_c + n_t) / max_n``, capped at 1 (a look at 1 is
    the final analysis). The boundary comes from :func:`update_design` at
    ``previous_fractions + (fraction,)``. The decision, in this order: efficacy if the directed
    ``Z >= b_k``; harm if a two-sided ``Z <= -b_k``; futility below the futility bound, or at the
    final analysis without rejection; otherwise continue. When the test stops, the stage-wise
    p-value, confidence interval and median-unbiased estimate are given (:func:`stagewise_inference`).

    Args:
        control, treatment: cumulative statistics (or :class:`GroupEstimate`) of the two groups.
        design: the planned design.
        previous_fractions: information fractions of the earlier looks, in order.
        final_variance: planned variance of the effect estimate at the final analysis.
        max_n: planned total units (both groups) at the final analysis; exactly one of the two.
        relative: test the relative lift ``t / c - 1`` (delta-method variance) instead of ``t - c``.
        final: this look is the final analysis whatever its fraction.
        r: grid size parameter of the numerical integration.

    Example:
        >>> d = spending_design([0.5, 1.0])
        >>> c, t = ProportionStatistic(5000, 500), ProportionStatistic(5000, 600)
        >>> look = sequential_look(c, t, design=d, max_n=20000)
        >>> look.decision, round(look.statistic, 3), round(look.efficacy_bound, 3)
        ('efficacy', 3.198, 2.963)

    References:
        Lan & DeMets (1983); Jennison & Turnbull (2000), ch. 7-9.
    """
    _check_design(design)
    c, t = _group(control, "control"), _group(treatment, "treatment")
    if (final_variance is None) == (max_n is None):
        msg = "exactly one of final_variance and max_n must be given"
        raise ValueError(msg)
    if final_variance is not None:
        check_positive("final_variance", final_variance)
    if max_n is not None:
        check_positive("max_n", max_n)
    previous = tuple(float(x) for x in previous_fractions)
    if previous:
        _check_fractions(previous, "previous_fractions")
        if previous[-1] >= 1:
            msg = f"previous_fractions[-1] == {previous[-1]}: the final analysis has already happened"
            raise ValueError(msg)
    look = len(previous) + 1
    if design.method == "classical" and look > design.looks:
        msg = f"previous_fractions has {len(previous)} looks; the classical design has only {design.looks}"
        raise ValueError(msg)
    effect, variance, code = _effect(c, t, relative=relative)
    if code is None:
        if final_variance is not None:
            fraction = min(final_variance / variance, 1.0)
        else:
            fraction = min((c.n + t.n) / float(max_n or math.nan), 1.0)
        if previous and fraction <= previous[-1]:
            code = NO_NEW_INFORMATION
    else:
        fraction = math.nan

    def result(**fields: Any) -> SequentialLook:
        base: dict[str, Any] = {
            "look": look, "information_fraction": fraction, "alternative": design.alternative,
            "alpha": design.alpha, "relative": relative, "control_mean": c.mean, "treatment_mean": t.mean,
            "control_n": c.n, "treatment_n": t.n, "effect": effect,
            "standard_error": math.sqrt(variance) if variance >= 0 else math.nan, "statistic": math.nan,
            "efficacy_bound": math.nan, "futility_bound": math.nan, "decision": "continue",
            "alpha_spent": math.nan, "repeated_ci": NAN_INTERVAL, "p_value": math.nan, "ci": NAN_INTERVAL,
            "median_estimate": math.nan,
        }  # fmt: skip
        base.update(fields)
        return SequentialLook(**base)

    if code is not None:
        return result(error_code=code, error_message=_MESSAGES[code])
    is_final = final or fraction >= 1.0 or (design.method == "classical" and look == design.looks)
    current = update_design(design, (*previous, fraction), final=is_final, r=r)
    se = math.sqrt(variance)
    # A proportion's z uses its Bernoulli variance; means and ratios estimate theirs (a t statistic).
    df = math.inf if isinstance(control, ProportionStatistic) else welch_df(c, t, relative=relative)
    z = float(t_to_z(effect / se, df))
    directed = -z if design.alternative == "less" else z
    b = current.efficacy_bounds[-1]
    a = math.nan if current.futility_bounds is None else min(current.futility_bounds[-1], b)
    if directed >= b:
        decision = "efficacy"
    elif design.two_sided and directed <= -b:
        decision = "harm"
    elif (not math.isnan(a) and (abs(directed) < a if design.two_sided else directed < a)) or current.final:
        decision = "futility"
    else:
        decision = "continue"
    half = b if math.isinf(df) else float(special.stdtrit(df, float(special.ndtr(float(b)))))  # b on the t scale
    repeated_ci = (
        effect - half * se if design.alternative != "less" else -math.inf,
        effect + half * se if design.alternative != "greater" else math.inf,
    )
    fields: dict[str, Any] = {
        "statistic": z, "efficacy_bound": b, "futility_bound": a, "decision": decision,
        "alpha_spent": current.alpha_spent[-1], "repeated_ci": repeated_ci,
    }  # fmt: skip
    if decision != "continue":
        inference = stagewise_inference(current, look=look, estimate=effect, standard_error=se, r=r)
        fields.update(p_value=inference.p_value, ci=inference.ci, median_estimate=inference.median_estimate)
    return result(**fields)
