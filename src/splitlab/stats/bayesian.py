"""Bayesian A/B tests on sufficient statistics.

Two models:

* ``beta-binomial``: conversions with a Beta prior (``uniform`` Beta(1, 1) by default, or
  ``jeffreys`` Beta(1/2, 1/2), or an explicit ``(a, b)``). Everything is exact, no Monte Carlo:
  the chance to win by Evan Miller's closed-form sum when a posterior parameter is an integer
  of at most 5,000 (1-d quadrature otherwise), the expected loss by Stucchio's identity, the credible interval by
  inverting the exactly integrated CDF of the difference (or ratio) of two Beta variables.
* ``gaussian``: GrowthBook's effect model for any metric. The lift (relative ``t/c - 1`` with its
  delta-method variance, or absolute ``t - c``) is ``N(lift_hat, se^2)``; a normal prior on the
  lift gives the conjugate normal posterior, a flat prior the likelihood itself.

:func:`probability_best` ranks k >= 2 variants by seeded, chunked Monte Carlo.

Conventions:
    * ``chance_to_win`` is the posterior probability that treatment is better, that is higher
      when ``higher_is_better`` and lower otherwise.
    * ``expected_loss_treatment`` is the risk of shipping treatment, ``E[max(control - treatment,
      0)]`` on the effect's scale for a higher-is-better metric (``E[max(-lift, 0)]``), and
      ``expected_loss_control`` the risk of keeping control, ``E[max(lift, 0)]``; the two swap
      for a lower-is-better metric. Their difference is the posterior mean of the effect.
    * ``control_mean`` and ``treatment_mean`` are the observed estimates; ``effect`` and the
      credible interval are posterior quantities.

References:
    Miller, E. (2015). Formulas for Bayesian A/B Testing. evanmiller.org/bayesian-ab-testing.html,
    the closed form of ``Pr(p_B > p_A)`` and its equivalent forms.
    Stucchio, C. (2014). Easy evaluation of decision rules in Bayesian A/B testing (blog post,
    chrisstucchio.com): ``E[max(X - Y, 0)] = B(a+1, b)/B(a, b) h(a+1, b, c, d) - B(c+1, d)/B(c, d)
    h(a, b, c+1, d)`` with ``h = P(X > Y)``; Stucchio (2015), Bayesian A/B Testing at VWO (VWO
    whitepaper): expected loss as the decision criterion.
    Loader, C. (2000). Fast and Accurate Computation of Binomial Probabilities: the saddle-point
    density with ``bd0`` and Stirling remainders, used for Beta densities of large parameters.
    Gelman, A. et al. (2013). Bayesian Data Analysis, 3rd ed., sections 2.1 and 2.4 (Beta-binomial),
    2.5 (normal-normal conjugate update, eq. 2.9-2.10) and 2.8 (Jeffreys prior).
    GrowthBook stats engine (gbstats), ``bayesian/tests.py``: ``EffectBayesianABTest`` (normal
    model of the lift, proper or flat prior) and ``get_risk``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import integrate, optimize, special
from scipy import stats as sps

from splitlab.stats._validation import check_choice, check_positive, check_probability
from splitlab.stats.frequentist import GroupEstimate, estimate
from splitlab.stats.results import NAN_INTERVAL, ErrorCode, Interval
from splitlab.stats.statistics import FloatArray, MeanStatistic, MetricStatistic, ProportionStatistic, RatioStatistic

__all__ = [
    "BETA_PRIORS",
    "BayesianResult",
    "ProbabilityBest",
    "beta_binomial",
    "gaussian",
    "gaussian_from_statistics",
    "probability_best",
]

BETA_PRIORS: dict[str, tuple[float, float]] = {"uniform": (1.0, 1.0), "jeffreys": (0.5, 0.5)}

# Miller's sum costs O(summation parameter) and its log-space rounding error grows with the number
# of terms (~1e-12 at 1e4, ~2e-11 at 1e5); at 5,000 terms it costs about one quadrature (~1 ms),
# whose cost and error do not grow with the counts, so past that the quadrature is used.
_MAX_TERMS = 5_000
# Posterior mass left outside the quadrature interval on each side.
_TAIL = 1e-15
# Elements per Monte Carlo chunk (about 8 MB of float64).
_CHUNK = 1 << 20
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True, slots=True)
class BayesianResult:
    """A Bayesian comparison of a treatment against control.

    Attributes:
        test: ``"beta-binomial"`` or ``"gaussian"``.
        control_mean, treatment_mean: observed estimates per group.
        control_n, treatment_n: units per group.
        effect: posterior mean of the effect, ``t - c`` or ``t / c - 1`` (see ``relative``).
        credible_interval: equal-tailed posterior interval of the effect at level ``1 - alpha``.
        relative: whether the effect is relative (``t / c - 1``) or absolute (``t - c``).
        chance_to_win: posterior probability that treatment is better than control.
        expected_loss_treatment: risk of shipping treatment, on the effect's scale.
        expected_loss_control: risk of keeping control, on the effect's scale.
        alpha: one minus the level of the credible interval.
        higher_is_better: direction of the metric.
        prior: the prior used, e.g. ``"beta(1, 1)"``, ``"flat"`` or ``"normal(0, 0.01)"``.
        error_code, error_message: set when the data do not allow (part of) the result.
    """

    test: str
    control_mean: float
    treatment_mean: float
    control_n: int
    treatment_n: int
    effect: float
    credible_interval: Interval
    relative: bool
    chance_to_win: float
    expected_loss_treatment: float
    expected_loss_control: float
    alpha: float
    higher_is_better: bool = True
    prior: str = ""
    error_code: ErrorCode | None = None
    error_message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (tuples become lists; JSON-ready except NaN)."""
        data = asdict(self)
        data["credible_interval"] = list(self.credible_interval)
        data["error_code"] = None if self.error_code is None else str(self.error_code)
        return data


@dataclass(frozen=True, slots=True)
class ProbabilityBest:
    """Monte Carlo ranking of k variants.

    Attributes:
        distribution: ``"beta"`` (proportions) or ``"normal"`` (group estimates).
        p_best: per variant, the posterior probability of being the best; sums to 1.
        expected_loss: per variant, ``E[max_j theta_j - theta_i]`` (``E[theta_i - min_j theta_j]``
            when lower is better): the expected shortfall of choosing it.
        draws: number of joint posterior draws.
        higher_is_better: direction of the metric.
        error_code, error_message: set when the data do not allow the ranking.
    """

    distribution: str
    p_best: tuple[float, ...]
    expected_loss: tuple[float, ...]
    draws: int
    higher_is_better: bool = True
    error_code: ErrorCode | None = None
    error_message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (tuples become lists)."""
        data = asdict(self)
        data["p_best"] = list(self.p_best)
        data["expected_loss"] = list(self.expected_loss)
        data["error_code"] = None if self.error_code is None else str(self.error_code)
        return data


# --------------------------------------------------------------------------------------------
# Validation


def _check_prior(prior: tuple[float, float] | str) -> tuple[float, float]:
    if isinstance(prior, str):
        return BETA_PRIORS[check_choice("prior", prior, tuple(BETA_PRIORS))]
    if not isinstance(prior, tuple | list) or len(prior) != 2:
        msg = f"prior == {prior!r}, must be 'uniform', 'jeffreys' or a pair (a, b) of numbers > 0"
        raise ValueError(msg)
    return check_positive("prior[0]", prior[0]), check_positive("prior[1]", prior[1])


def _check_proportion(name: str, stat: ProportionStatistic) -> None:
    if not isinstance(stat, ProportionStatistic):
        msg = f"{name} must be a ProportionStatistic, got {type(stat).__name__}"
        raise TypeError(msg)
    if stat.n < 0 or not 0 <= stat.successes <= stat.n:
        msg = f"{name}.successes == {stat.successes}, must be between 0 and {name}.n == {stat.n}"
        raise ValueError(msg)


def _check_finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"{name} == {value!r}, must be a finite number"
        raise ValueError(msg)
    return float(value)


# --------------------------------------------------------------------------------------------
# Exact Beta computations


def _beta_mean_sd(a: float, b: float) -> tuple[float, float]:
    s = a + b
    return a / s, math.sqrt(a * b / (s * s * (s + 1)))


def _binet(y: FloatArray) -> FloatArray:
    """Stirling remainder ``lgamma(y) - (y - 1/2) log y + y - log sqrt(2 pi)`` (its series for y >= 10)."""
    out = np.empty_like(y)
    large = y >= 10
    inv = 1.0 / y[large]
    inv2 = inv * inv
    out[large] = inv * (1 / 12 - inv2 * (1 / 360 - inv2 * (1 / 1260 - inv2 * (1 / 1680 - inv2 / 1188))))
    small = y[~large]
    out[~large] = special.gammaln(small) - (small - 0.5) * np.log(small) + small - _HALF_LOG_2PI
    return out


def _log_beta(a: FloatArray, b: FloatArray) -> FloatArray:
    """``log B(a, b)`` from Stirling remainders, accurate to a few ulp of the result.

    ``scipy.special.betaln`` subtracts log-gammas of ~1e7 when both arguments are ~1e5-1e6 and
    loses ~1e-9 (absolute); here the large terms are ``(a - 1/2) log1p(b / a)``, each exact to an ulp.
    """
    s = a + b
    return (
        _HALF_LOG_2PI - 0.5 * np.log(s) - (a - 0.5) * np.log1p(b / a) - (b - 0.5) * np.log1p(a / b)
        + _binet(a) + _binet(b) - _binet(s)
    )  # fmt: skip


def _scalar_log_beta(a: float, b: float) -> float:
    return float(_log_beta(np.array([a], dtype=np.float64), np.array([b], dtype=np.float64))[0])


def _miller_sum(a1: float, b1: float, a2: float, b2: float) -> float:
    """``P(X1 > X2)`` for ``X1 ~ Beta(a1, b1)``, ``X2 ~ Beta(a2, b2)`` and integer ``a1``.

    Miller (2015): ``sum_{i=0}^{a1-1} B(a2+i, b1+b2) / ((b1+i) B(1+i, b1) B(a2, b2))``,
    summed in log space.
    """
    i = np.arange(int(a1), dtype=np.float64)
    log_terms = _log_beta(a2 + i, np.full_like(i, b1 + b2)) - np.log(b1 + i) - _log_beta(1.0 + i, np.full_like(i, b1))
    peak = float(log_terms.max())
    return math.exp(peak + math.log(float(np.exp(log_terms - peak).sum())) - _scalar_log_beta(a2, b2))


def _beta_log_density(a: float, b: float) -> Callable[[float], float]:
    """``log f(x)`` of Beta(a, b), accurate to ~1e-14 even for parameters of 1e6 and more.

    For ``a, b > 1`` it is Loader's saddle-point form of the binomial density, ``f(x) = (N + 1)
    dbinom(a - 1; N, x)`` with ``N = a + b - 2``: the large terms ``(a - 1) log x`` and ``log B(a, b)``,
    whose naive difference loses ~1e-10 at a = 1e5, never appear.
    """
    if a > 1 and b > 1:
        k, j = a - 1.0, b - 1.0
        n = k + j
        remainders = _binet(np.array([n, k, j], dtype=np.float64))
        constant = (
            math.log1p(n)
            + 0.5 * math.log(n / (2 * math.pi * k * j))
            + float(remainders[0] - remainders[1] - remainders[2])
        )
        return lambda x: constant - _bd0(k, n * x) - _bd0(j, n * (1.0 - x))
    log_norm = _scalar_log_beta(a, b)
    return lambda x: (a - 1.0) * math.log(x) + (b - 1.0) * math.log1p(-x) - log_norm


def _bd0(k: float, m: float) -> float:
    """Deviance term ``k log(k/m) + m - k`` without cancellation when ``k`` is near ``m`` (Loader 2000)."""
    if abs(k - m) < 0.1 * (k + m):
        v = (k - m) / (k + m)
        total = (k - m) * v
        term = 2 * k * v
        v2 = v * v
        j = 1
        while True:
            term *= v2
            updated = total + term / (2 * j + 1)
            if updated == total:
                return total
            total = updated
            j += 1
    return k * math.log(k / m) + m - k


def _support(a: float, b: float) -> tuple[float, float]:
    """Interval holding all but ``2 * _TAIL`` of Beta(a, b); an endpoint of a singular density stays."""
    low = 0.0 if a <= 1 else float(special.betaincinv(a, b, _TAIL))
    high = 1.0 if b <= 1 else float(special.betainccinv(a, b, _TAIL))
    return low, high


# A function of a point of (0, 1) given as (x, 1 - x): the integrator supplies whichever of the two
# it holds exactly, so functions of points near 1 lose nothing to the rounding of 1 - x.
PointFunction = Callable[[float, float], float]


def _expect(a: float, b: float, g: PointFunction, kinks: Sequence[float] = ()) -> float:
    """``E[g(X, 1 - X)]`` for ``X ~ Beta(a, b)`` by adaptive Gauss-Kronrod quadrature (QUADPACK QAGP).

    The interval is cut to where the density lives (all but 2e-15 of the mass) and split at the
    mode and at the points ``kinks`` where ``g`` has a kink, so the adaptive rule sees smooth
    pieces. A posterior with its mass near 1 is integrated in ``y = 1 - x`` (``Y ~ Beta(b, a)``),
    so that nodes crowding toward a singular endpoint at 1 do not round onto it.
    """
    reflect = a > b
    if reflect:
        a, b = b, a
        kinks = [1.0 - k for k in kinks]
    low, high = _support(a, b)
    log_density = _beta_log_density(a, b)

    def integrand(u: float) -> float:
        weight = math.exp(log_density(u))
        return weight * (g(1.0 - u, u) if reflect else g(u, 1.0 - u))

    points = [(a - 1) / (a + b - 2)] if a > 1 and b > 1 else []
    inner = sorted({p for p in [*points, *kinks] if low < p < high})
    # full_output silences IntegrationWarning: at the requested 1e-13 the error estimate itself
    # can stall at rounding level, which is still far below the accuracy promised.
    result = integrate.quad(
        integrand, low, high, points=inner or None, epsabs=1e-13, epsrel=1e-11, limit=400, full_output=1
    )
    return float(result[0])


def _cdf(a: float, b: float, x: float, complement: float) -> float:
    """``P(X <= x)`` for ``X ~ Beta(a, b)``, given ``x`` and ``complement = 1 - x`` (either may be exact)."""
    if x <= 0:
        return 0.0
    if complement <= 0:
        return 1.0
    if x <= 0.5:
        return float(special.betainc(a, b, x))
    return float(special.betaincc(b, a, complement))


def _sf(a: float, b: float, x: float, complement: float) -> float:
    """``P(X > x)`` for ``X ~ Beta(a, b)``, given ``x`` and ``complement = 1 - x``."""
    return _cdf(b, a, complement, x)


def _prob_greater_quad(a1: float, b1: float, a2: float, b2: float) -> float:
    """``P(X1 > X2)`` as ``E[S_1(X2)]`` or ``E[F_2(X1)]``, integrating over the narrower posterior."""
    if _beta_mean_sd(a2, b2)[1] <= _beta_mean_sd(a1, b1)[1]:
        return _expect(a2, b2, lambda x, xc: _sf(a1, b1, x, xc))
    return _expect(a1, b1, lambda x, xc: _cdf(a2, b2, x, xc))


def _prob_greater(a1: float, b1: float, a2: float, b2: float) -> float:
    """Exact ``P(X1 > X2)`` for independent Beta variables.

    Miller's sum runs over one parameter; by ``P(X1 > X2) = 1 - P(X2 > X1)`` and by the reflection
    ``X -> 1 - X`` (``Beta(a, b) -> Beta(b, a)``) any integer parameter can serve, so the smallest
    one is used. Without an integer parameter (e.g. the Jeffreys prior) the 1-d integral is used.
    """
    forms: tuple[tuple[float, Callable[[], float]], ...] = (
        (a1, lambda: _miller_sum(a1, b1, a2, b2)),
        (a2, lambda: 1.0 - _miller_sum(a2, b2, a1, b1)),
        (b1, lambda: 1.0 - _miller_sum(b1, a1, b2, a2)),
        (b2, lambda: _miller_sum(b2, a2, b1, a1)),
    )
    candidates = [(terms, form) for terms, form in forms if float(terms).is_integer() and terms <= _MAX_TERMS]
    if candidates:
        value = min(candidates, key=lambda candidate: candidate[0])[1]()
    else:
        value = _prob_greater_quad(a1, b1, a2, b2)
    return min(max(value, 0.0), 1.0)


def _beta_cdf_of_effect(a_c: float, b_c: float, a_t: float, b_t: float, *, relative: bool) -> Callable[[float], float]:
    """CDF of ``p_T - p_C`` (or of ``p_T / p_C - 1``) as one exact 1-d integral per point.

    ``P(p_T - p_C <= d) = E[F_T(p_C + d)] = E[S_C(p_T - d)]`` and ``P(p_T / p_C - 1 <= r) =
    E[F_T((1 + r) p_C)] = E[S_C(p_T / (1 + r))]``; the expectation runs over the narrower posterior
    (in absolute or relative spread), where the other CDF is smooth.
    """
    mean_c, sd_c = _beta_mean_sd(a_c, b_c)
    mean_t, sd_t = _beta_mean_sd(a_t, b_t)
    over_control = sd_c / mean_c <= sd_t / mean_t if relative else sd_c <= sd_t

    def cdf(x: float) -> float:
        if relative:
            scale = 1.0 + x
            if scale <= 0:
                return 0.0
            if over_control:  # F_T(s c), with 1 - s c = s (1 - c) - r
                return _expect(a_c, b_c, lambda c, cc: _cdf(a_t, b_t, scale * c, scale * cc - x), [1 / scale])
            # S_C(t / s), with 1 - t / s = ((1 - t) + r) / s
            return _expect(a_t, b_t, lambda t, tc: _sf(a_c, b_c, t / scale, (tc + x) / scale), [scale])
        if x <= -1:
            return 0.0
        if x >= 1:
            return 1.0
        if over_control:  # F_T(c + d)
            return _expect(a_c, b_c, lambda c, cc: _cdf(a_t, b_t, c + x, cc - x), [-x, 1 - x])
        # otherwise the survival function of control at t - d
        return _expect(a_t, b_t, lambda t, tc: _sf(a_c, b_c, t - x, tc + x), [x, 1 + x])

    return cdf


def _beta_interval(a_c: float, b_c: float, a_t: float, b_t: float, *, relative: bool, alpha: float) -> Interval:
    """Equal-tailed credible interval: Brent's root of the exact CDF at ``alpha/2`` and ``1 - alpha/2``.

    A normal approximation of the effect (of ``log(p_T / p_C)`` with digamma/trigamma moments on
    the relative scale) gives the first guess and a bracket of one standard deviation, widened
    until it holds the root.
    """
    exact_cdf = _beta_cdf_of_effect(a_c, b_c, a_t, b_t, relative=relative)
    memo: dict[float, float] = {}

    def cdf(x: float) -> float:
        if x not in memo:
            memo[x] = exact_cdf(x)
        return memo[x]

    if relative:
        center = float(
            special.digamma(a_t) - special.digamma(a_t + b_t) - special.digamma(a_c) + special.digamma(a_c + b_c)
        )
        spread = math.sqrt(
            float(special.polygamma(1, a_t) - special.polygamma(1, a_t + b_t))
            + float(special.polygamma(1, a_c) - special.polygamma(1, a_c + b_c))
        )

        def at(u: float) -> float:
            return math.expm1(center + u * spread)
    else:
        mean_c, sd_c = _beta_mean_sd(a_c, b_c)
        mean_t, sd_t = _beta_mean_sd(a_t, b_t)
        center, spread = mean_t - mean_c, math.hypot(sd_c, sd_t)

        def at(u: float) -> float:
            return min(max(center + u * spread, -1.0), 1.0)

    def quantile(q: float) -> float:
        guess = float(sps.norm.ppf(q))
        low, high, step = guess - 0.5, guess + 0.5, 1.0
        while cdf(at(low)) > q:  # the CDF is 0 at -1 on both scales, so this ends
            low -= step
            step *= 2
        step = 1.0
        while cdf(at(high)) < q:
            high += step
            step *= 2
        # Tolerance: 1e-10 of the local standard deviation (d at(u) / du at the guess).
        local_sd = spread * (math.exp(center + guess * spread) if relative else 1.0)
        xtol = max(1e-10 * local_sd, 1e-300)
        return float(optimize.brentq(lambda x: cdf(x) - q, at(low), at(high), xtol=xtol, rtol=1e-13))

    return (quantile(alpha / 2), quantile(1 - alpha / 2))


def beta_binomial(
    control: ProportionStatistic,
    treatment: ProportionStatistic,
    *,
    prior: tuple[float, float] | str = "uniform",
    alpha: float = 0.05,
    higher_is_better: bool = True,
    relative: bool = False,
) -> BayesianResult:
    """Beta-binomial comparison of two conversion rates, computed exactly (no Monte Carlo).

    Each rate has the posterior ``Beta(a + successes, b + n - successes)``.

    * ``chance_to_win``: ``P(p_T > p_C)`` by Miller's closed-form sum in log space when a posterior
      parameter is an integer (the cheapest of the four equivalent forms) of at most 5,000, else by
      adaptive quadrature of ``E[S_T(p_C)]`` (or ``E[F_C(p_T)]``) over the narrower posterior. Past
      5,000 terms the sum costs more than the quadrature (which does not grow with the counts) and
      its rounding error grows; both paths are accurate to about 1e-11.
    * Expected loss, absolute scale (Stucchio 2014): ``E[max(X - Y, 0)] = m_X P(X' > Y) - m_Y
      P(X > Y')`` with ``m = a / (a + b)`` and ``X' ~ Beta(a_X + 1, b_X)``.
    * Expected loss, relative scale (``relative=True``), ``L = p_T / p_C - 1``: the same trick with
      ``t / c f_T(t) f_C(c) = m_T E[1/p_C] f_T'(t) f_C-(c)``, ``C- ~ Beta(a_C - 1, b_C)`` and
      ``E[1/p_C] = (a_C + b_C - 1) / (a_C - 1)``, gives ``E[max(L, 0)] = m_T E[1/p_C] P(T' > C-) -
      P(T > C)`` and ``E[max(-L, 0)] = P(T < C) - m_T E[1/p_C] P(T' < C-)``. The loss is therefore
      on the relative scale, like the effect.
    * Credible interval: the exact CDF of the effect (one quadrature per point) inverted with
      Brent's method.

    With ``relative=True`` the posterior mean of ``p_T / p_C`` is infinite when ``a_C <= 1`` (no
    control conversions under a uniform or Jeffreys prior): the effect and the losses are then
    NaN with ``ZERO_CONTROL_MEAN``; the chance to win and the interval stay defined.

    Args:
        control, treatment: units and conversions per group.
        prior: ``"uniform"`` (Beta(1, 1), default), ``"jeffreys"`` (Beta(1/2, 1/2)) or ``(a, b)``.
        alpha: one minus the level of the credible interval, in (0, 1).
        higher_is_better: whether a higher rate is better (direction of win and loss).
        relative: report the effect as ``p_T / p_C - 1`` instead of ``p_T - p_C``.

    References:
        Miller (2015), closed form of ``Pr(p_B > p_A)``; Stucchio (2014), closed-form expected loss;
        Loader (2000), saddle-point density; Gelman et al. (2013), sections 2.4 (Beta-binomial
        posterior) and 2.8 (Jeffreys prior).

    Example:
        >>> r = beta_binomial(ProportionStatistic(1000, 100), ProportionStatistic(1000, 130))
        >>> round(r.chance_to_win, 4), round(r.effect, 4)
        (0.9822, 0.0299)
    """
    _check_proportion("control", control)
    _check_proportion("treatment", treatment)
    prior_a, prior_b = _check_prior(prior)
    check_probability("alpha", alpha)
    label = f"beta({prior_a:g}, {prior_b:g})"

    def result(effect: float, interval: Interval, win: float, loss_t: float, loss_c: float,
               code: ErrorCode | None = None, message: str | None = None) -> BayesianResult:  # fmt: skip
        return BayesianResult(
            "beta-binomial", control.mean, treatment.mean, control.n, treatment.n, effect, interval,
            relative, win, loss_t, loss_c, alpha, higher_is_better, label, code, message,
        )  # fmt: skip

    if control.n == 0 or treatment.n == 0:
        nan = math.nan
        return result(nan, NAN_INTERVAL, nan, nan, nan, ErrorCode.EMPTY_GROUP, "a group has no units")

    a_c, b_c = prior_a + control.successes, prior_b + control.n - control.successes
    a_t, b_t = prior_a + treatment.successes, prior_b + treatment.n - treatment.successes
    mean_c, mean_t = a_c / (a_c + b_c), a_t / (a_t + b_t)
    p_greater = _prob_greater(a_t, b_t, a_c, b_c)
    interval = _beta_interval(a_c, b_c, a_t, b_t, relative=relative, alpha=alpha)

    code: ErrorCode | None = None
    message: str | None = None
    if not relative:
        effect = mean_t - mean_c
        # Stucchio's identity with T' ~ Beta(a_T + 1, b_T) and C' ~ Beta(a_C + 1, b_C).
        p_t_shifted = _prob_greater(a_t + 1, b_t, a_c, b_c)
        p_c_shifted = _prob_greater(a_t, b_t, a_c + 1, b_c)
        upside = max(mean_t * p_t_shifted - mean_c * p_c_shifted, 0.0)
        downside = max(mean_c * (1.0 - p_c_shifted) - mean_t * (1.0 - p_t_shifted), 0.0)
    elif a_c > 1:
        scale = mean_t * (a_c + b_c - 1) / (a_c - 1)  # E[p_T] E[1 / p_C]
        p_shifted = _prob_greater(a_t + 1, b_t, a_c - 1, b_c)
        effect = scale - 1.0
        upside = max(scale * p_shifted - p_greater, 0.0)
        downside = max((1.0 - p_greater) - scale * (1.0 - p_shifted), 0.0)
    else:
        effect = upside = downside = math.nan
        code = ErrorCode.ZERO_CONTROL_MEAN
        message = f"the control posterior Beta({a_c:g}, {b_c:g}) has a <= 1, so the mean relative lift is infinite"
    if higher_is_better:
        return result(effect, interval, p_greater, downside, upside, code, message)
    return result(effect, interval, 1.0 - p_greater, upside, downside, code, message)


# --------------------------------------------------------------------------------------------
# Gaussian effect model


def _normal_risks(mu: float, sigma: float) -> tuple[float, float]:
    """``(E[max(X, 0)], E[max(-X, 0)])`` for ``X ~ N(mu, sigma^2)``: ``mu Phi(mu/s) + s phi(mu/s)``."""
    z = mu / sigma
    density = float(sps.norm.pdf(z))
    upside = mu * float(sps.norm.cdf(z)) + sigma * density
    downside = -mu * float(sps.norm.cdf(-z)) + sigma * density
    return max(upside, 0.0), max(downside, 0.0)


def gaussian(
    control: GroupEstimate,
    treatment: GroupEstimate,
    *,
    prior_mean: float = 0.0,
    prior_variance: float | None = None,
    relative: bool = True,
    alpha: float = 0.05,
    higher_is_better: bool = True,
) -> BayesianResult:
    """Bayesian comparison of two group estimates with a normal model of the lift (GrowthBook).

    The lift is ``lift_hat = t / c - 1`` with delta-method variance ``se^2 = v_t / c^2 + t^2 v_c /
    c^4`` (relative, default) or ``t - c`` with ``se^2 = v_t + v_c``; its likelihood is
    ``N(lift_hat, se^2)``. With a prior ``N(prior_mean, prior_variance)`` on the lift the posterior is
    normal with precision ``1/se^2 + 1/prior_variance`` and mean ``(lift_hat/se^2 +
    prior_mean/prior_variance) / precision``; with ``prior_variance=None`` (flat, improper) it is
    ``N(lift_hat, se^2)``. Then ``chance_to_win = Phi(mu / sigma)`` (``Phi(-mu / sigma)`` when lower is
    better), the interval is ``mu +- z_{1-alpha/2} sigma`` and the risks are ``E[max(X, 0)] = mu
    Phi(mu/sigma) + sigma phi(mu/sigma)`` and ``E[max(-X, 0)] = -mu Phi(-mu/sigma) + sigma
    phi(mu/sigma)``.

    Args:
        control, treatment: group estimates with the variance of each estimate
            (:func:`splitlab.stats.frequentist.estimate`).
        prior_mean: mean of the normal prior on the lift (on the lift's scale).
        prior_variance: variance of that prior (> 0), or ``None`` for a flat prior.
        relative: model the relative lift ``t / c - 1`` (default) instead of ``t - c``.
        alpha: one minus the level of the credible interval, in (0, 1).
        higher_is_better: whether a higher metric is better.

    References:
        Gelman et al. (2013), eq. 2.9-2.10 (normal-normal update); Deng, Knoblich, Lu (2018),
        eq. 4 (variance of the relative lift); GrowthBook gbstats ``EffectBayesianABTest`` and
        ``get_risk`` (risk as truncated-normal means); Johnson & Kotz, Continuous Univariate
        Distributions vol. 1, section 13.10.1 (mean of a truncated normal).

    Example:
        >>> c = GroupEstimate(mean=10.0, variance=0.04, n=1000)
        >>> t = GroupEstimate(mean=10.5, variance=0.04, n=1000)
        >>> r = gaussian(c, t, relative=False)
        >>> round(r.chance_to_win, 4), round(r.credible_interval[0], 4)
        (0.9615, -0.0544)
    """
    _check_finite("prior_mean", prior_mean)
    if prior_variance is not None:
        check_positive("prior_variance", prior_variance)
    check_probability("alpha", alpha)
    label = "flat" if prior_variance is None else f"normal({prior_mean:g}, {prior_variance:g})"

    def failed(code: ErrorCode, message: str) -> BayesianResult:
        nan = math.nan
        return BayesianResult(
            "gaussian", control.mean, treatment.mean, control.n, treatment.n, nan, NAN_INTERVAL, relative,
            nan, nan, nan, alpha, higher_is_better, label, code, message,
        )  # fmt: skip

    c, t = control.mean, treatment.mean
    if control.n == 0 or treatment.n == 0:
        return failed(ErrorCode.EMPTY_GROUP, "a group has no units")
    if math.isnan(c) or math.isnan(t):
        return failed(ErrorCode.ZERO_DENOMINATOR, "a ratio's denominator sums to 0 in a group")
    if math.isnan(control.variance) or math.isnan(treatment.variance):
        return failed(ErrorCode.TOO_FEW_UNITS, "a group has too few units to estimate its variance")
    if relative and c == 0:
        return failed(ErrorCode.ZERO_CONTROL_MEAN, "the control mean is 0, so the relative lift is undefined")
    if relative:
        lift = t / c - 1.0
        variance = treatment.variance / c**2 + t**2 * control.variance / c**4
    else:
        lift = t - c
        variance = treatment.variance + control.variance
    if not variance > 0:
        return failed(ErrorCode.ZERO_VARIANCE, "both groups have zero variance; the lift has no spread")

    if prior_variance is None:
        mu, sigma = lift, math.sqrt(variance)
    else:
        precision = 1.0 / variance + 1.0 / prior_variance
        mu = (lift / variance + prior_mean / prior_variance) / precision
        sigma = math.sqrt(1.0 / precision)
    z = float(sps.norm.ppf(1 - alpha / 2))
    win = float(sps.norm.cdf(mu / sigma)) if higher_is_better else float(sps.norm.cdf(-mu / sigma))
    upside, downside = _normal_risks(mu, sigma)
    loss_t, loss_c = (downside, upside) if higher_is_better else (upside, downside)
    return BayesianResult(
        "gaussian", c, t, control.n, treatment.n, mu, (mu - z * sigma, mu + z * sigma), relative, win,
        loss_t, loss_c, alpha, higher_is_better, label,
    )  # fmt: skip


def gaussian_from_statistics(
    control: MetricStatistic,
    treatment: MetricStatistic,
    *,
    prior_mean: float = 0.0,
    prior_variance: float | None = None,
    relative: bool = True,
    alpha: float = 0.05,
    higher_is_better: bool = True,
) -> BayesianResult:
    """:func:`gaussian` on the delta-method estimates of two statistics of the same kind.

    Example:
        >>> c = MeanStatistic.from_values([1.0, 2.0, 3.0, 4.0])
        >>> t = MeanStatistic.from_values([2.0, 3.0, 4.0, 6.0])
        >>> round(gaussian_from_statistics(c, t).effect, 4)  # 3.75 / 2.5 - 1
        0.5
    """
    kinds = (ProportionStatistic, MeanStatistic, RatioStatistic)
    if not any(isinstance(control, kind) and isinstance(treatment, kind) for kind in kinds):
        msg = (
            "control and treatment must be statistics of the same kind, "
            f"got {type(control).__name__} and {type(treatment).__name__}"
        )
        raise TypeError(msg)
    return gaussian(
        estimate(control), estimate(treatment), prior_mean=prior_mean, prior_variance=prior_variance,
        relative=relative, alpha=alpha, higher_is_better=higher_is_better,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# k variants


def _normal_problem(estimates: Sequence[GroupEstimate]) -> tuple[ErrorCode, str] | None:
    if any(e.n == 0 for e in estimates):
        return ErrorCode.EMPTY_GROUP, "a variant has no units"
    if any(math.isnan(e.mean) for e in estimates):
        return ErrorCode.ZERO_DENOMINATOR, "a ratio's denominator sums to 0 in a variant"
    if any(math.isnan(e.variance) for e in estimates):
        return ErrorCode.TOO_FEW_UNITS, "a variant has too few units to estimate its variance"
    if not all(e.variance > 0 for e in estimates):
        return ErrorCode.ZERO_VARIANCE, "a variant has zero variance"
    return None


def probability_best(
    posteriors: Sequence[ProportionStatistic] | Sequence[GroupEstimate],
    *,
    prior: tuple[float, float] | str = "uniform",
    draws: int = 100_000,
    seed: int | np.random.Generator = 0,
    higher_is_better: bool = True,
) -> ProbabilityBest:
    """Probability that each of k >= 2 variants is the best, and the expected loss of choosing it.

    Proportions get the posteriors ``Beta(a + successes, b + n - successes)`` with the Beta
    ``prior`` (as in :func:`beta_binomial`); group estimates get ``N(mean, variance)`` (a flat prior
    on each mean; ``prior`` is then not used). ``draws`` joint posterior draws, made in chunks of
    about 1e6 numbers, give ``p_best[i] = P(theta_i = max_j theta_j)`` and ``expected_loss[i] =
    E[max_j theta_j - theta_i]`` (minimum instead of maximum when lower is better). The output
    is a pure function of the inputs and an integer ``seed``.

    Args:
        posteriors: all :class:`ProportionStatistic` or all :class:`GroupEstimate`, one per variant.
        prior: Beta prior for proportions: ``"uniform"`` (default), ``"jeffreys"`` or ``(a, b)``.
        draws: Monte Carlo draws, at least 1000; the standard error of ``p_best[i]`` is
            ``sqrt(p (1 - p) / draws)``.
        seed: seed of :func:`numpy.random.default_rng`, or a generator to draw from.
        higher_is_better: whether the best variant is the highest or the lowest.

    References:
        Scott, S. L. (2010). A modern Bayesian look at the multi-armed bandit. Applied Stochastic
        Models in Business and Industry 26, section 3 (probability of being optimal by simulation);
        Stucchio (2015), expected loss as the decision criterion.

    Example:
        >>> arms = [ProportionStatistic(1000, 100), ProportionStatistic(1000, 130), ProportionStatistic(1000, 90)]
        >>> r = probability_best(arms, draws=20_000, seed=1)
        >>> r.p_best.index(max(r.p_best)), round(sum(r.p_best), 12)
        (1, 1.0)
    """
    prior_a, prior_b = _check_prior(prior)
    if isinstance(draws, bool) or not isinstance(draws, int | np.integer) or draws < 1000:
        msg = f"draws == {draws!r}, must be an integer >= 1000"
        raise ValueError(msg)
    if not isinstance(seed, np.random.Generator) and (
        isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0
    ):
        msg = f"seed == {seed!r}, must be an integer >= 0 or a numpy Generator"
        raise ValueError(msg)
    variants = list(posteriors)
    k = len(variants)
    if k < 2:
        msg = f"posteriors has {k} variant(s), must have at least 2"
        raise ValueError(msg)
    draws = int(draws)

    proportions = [v for v in variants if isinstance(v, ProportionStatistic)]
    estimates = [v for v in variants if isinstance(v, GroupEstimate)]
    sample: Callable[[np.random.Generator, int], FloatArray]
    if len(proportions) == k:
        distribution = "beta"
        for index, stat in enumerate(proportions):
            _check_proportion(f"posteriors[{index}]", stat)
        problem = (ErrorCode.EMPTY_GROUP, "a variant has no units") if any(v.n == 0 for v in proportions) else None
        a = np.array([prior_a + v.successes for v in proportions], dtype=np.float64)
        b = np.array([prior_b + v.n - v.successes for v in proportions], dtype=np.float64)

        def sample(rng: np.random.Generator, rows: int) -> FloatArray:
            return rng.beta(a, b, size=(rows, k))

    elif len(estimates) == k:
        distribution = "normal"
        problem = _normal_problem(estimates)
        means = np.array([e.mean for e in estimates], dtype=np.float64)
        sds = np.sqrt(np.abs([e.variance for e in estimates]))

        def sample(rng: np.random.Generator, rows: int) -> FloatArray:
            return rng.normal(means, sds, size=(rows, k))

    else:
        msg = "posteriors must be all ProportionStatistic or all GroupEstimate"
        raise ValueError(msg)
    if problem is not None:
        nan = (math.nan,) * k
        return ProbabilityBest(distribution, nan, nan, draws, higher_is_better, *problem)

    rng = np.random.default_rng(seed)
    sign = 1.0 if higher_is_better else -1.0
    wins = np.zeros(k, dtype=np.int64)
    shortfall = np.zeros(k, dtype=np.float64)
    chunk = max(1, _CHUNK // k)
    for start in range(0, draws, chunk):
        theta = sign * sample(rng, min(chunk, draws - start))
        wins += np.bincount(theta.argmax(axis=1), minlength=k)
        shortfall += (theta.max(axis=1, keepdims=True) - theta).sum(axis=0)
    return ProbabilityBest(
        distribution,
        tuple(float(w) / draws for w in wins),
        tuple(float(s) / draws for s in shortfall),
        draws,
        higher_is_better,
    )
