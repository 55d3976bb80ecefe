"""Context-free bandit policies on per-arm sufficient statistics.

Every policy keeps, per arm, the running ``n``, ``sum`` and ``sum_sq`` of its rewards (the same
addable record as :class:`~splitlab.stats.statistics.MeanStatistic` and the store's bandit state)
and offers one interface:

* ``update(arm, reward)``, ``update_batch(arms, rewards)`` and ``update_statistics(statistics)``
  add single rewards, arrays of them, or whole sufficient statistics (a day, a shard, the store);
* ``weights(rng=None, *, draws=None)`` gives the allocation probabilities, the chance that the
  next decision picks each arm: exact where a closed form or a one-dimensional integral exists,
  seeded Monte Carlo with ``draws`` posterior draws otherwise;
* ``choose(rng, size=None)`` makes one decision, or ``size`` independent decisions under the
  current state, drawing only from the numpy Generator it is given.

The decision rules are written once, as kernels over arrays of shape ``(..., k)``, so the same
code decides for one experiment, for a batch of units, or for every replication of a vectorised
simulation (:mod:`splitlab.bandits.simulation`).

Example:
    >>> import numpy as np

# scipy is imported by the functions that use it: the service's /assign imports this module
# (through splitlab.operations.bandits), and its workers start without scipy.
    >>> policy = BernoulliThompson(3)
    >>> policy.update_batch([0, 0, 1, 1, 2, 2], [1, 0, 1, 1, 0, 0])
    >>> policy.weights().round(4).tolist()
    [0.1905, 0.7798, 0.0298]
    >>> policy.choose(np.random.default_rng(7), size=5).tolist()
    [1, 0, 1, 1, 0]

References:
    Lattimore, T., Szepesvári, C. (2020). Bandit Algorithms. Cambridge University Press, ch. 6-8
    (explore-then-commit and UCB), 36 (Thompson sampling).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, overload

import numpy as np

from splitlab.bandits._common import (
    FloatArray,
    IntArray,
    argmax_random_ties,
    arm_index,
    as_arms,
    as_rewards,
    check_count,
    check_draws,
    check_generator,
    check_n_arms,
    check_number,
    one_hot_mean,
    reward_value,
    tie_shares,
)
from splitlab.stats.statistics import MeanStatistic

__all__ = [
    "POLICIES",
    "UCB1",
    "BernoulliThompson",
    "EpsilonGreedy",
    "GaussianThompson",
    "Policy",
    "ThompsonPolicy",
    "TopTwoThompson",
    "UCB1Tuned",
    "make_policy",
]

_NORMAL_RANGE = 12.0  # standard normal mass beyond +-12 is below 1e-32


def _integrate(func: Callable[[float], float], low: float, high: float, kinks: list[float]) -> float:
    """QUADPACK's adaptive integral to about 1e-10, told where the integrand bends sharply."""
    from scipy import integrate

    return float(integrate.quad(func, low, high, points=kinks or None, epsabs=1e-13, epsrel=1e-10, limit=200)[0])


class Policy(ABC):
    """A context-free policy over ``n_arms`` arms (indices ``0 .. n_arms - 1``).

    Attributes:
        n_arms: number of arms, >= 2.
        unit_interval: whether rewards must lie in [0, 1] (Bernoulli models, UCB1-Tuned).
    """

    name: ClassVar[str]

    def __init__(self, n_arms: int, *, unit_interval: bool = False) -> None:
        self.n_arms = check_n_arms(n_arms)
        self.unit_interval = unit_interval
        self._n = np.zeros(self.n_arms)
        self._sum = np.zeros(self.n_arms)
        self._sum_sq = np.zeros(self.n_arms)

    # ---------------------------------------------------------------------------------------
    # State

    @property
    def counts(self) -> FloatArray:
        """Observations per arm (a copy; fractional after period weighting)."""
        return self._n.copy()

    @property
    def statistics(self) -> tuple[MeanStatistic, ...]:
        """Per-arm sufficient statistics of the rewards seen so far."""
        return tuple(
            MeanStatistic(round(n), float(s), float(ss))
            for n, s, ss in zip(self._n, self._sum, self._sum_sq, strict=True)
        )

    def update(self, arm: int, reward: float) -> None:
        """Add one reward to ``arm``."""
        i = arm_index(arm, self.n_arms)
        r = reward_value(reward, unit_interval=self.unit_interval)
        self._n[i] += 1.0
        self._sum[i] += r
        self._sum_sq[i] += r * r

    def update_batch(self, arms: Any, rewards: Any) -> None:
        """Add one reward per decision: ``arms[i]`` earned ``rewards[i]``."""
        index = as_arms(arms, self.n_arms)
        values = as_rewards(rewards, index.size, unit_interval=self.unit_interval)
        self._n += np.bincount(index, minlength=self.n_arms)
        self._sum += np.bincount(index, weights=values, minlength=self.n_arms)
        self._sum_sq += np.bincount(index, weights=values * values, minlength=self.n_arms)

    def update_statistics(self, statistics: Sequence[MeanStatistic]) -> None:
        """Add sufficient statistics, one :class:`MeanStatistic` per arm in arm order."""
        n, total, total_sq = _statistics_arrays(statistics, self.n_arms, unit_interval=self.unit_interval)
        self._n += n
        self._sum += total
        self._sum_sq += total_sq

    def set_state(self, n: Any, sums: Any, sums_sq: Any) -> None:
        """Replace the state by per-arm arrays (e.g. the period-weighted statistics of production mode)."""
        arrays = [np.asarray(x, dtype=np.float64) for x in (n, sums, sums_sq)]
        for name, array in zip(("n", "sums", "sums_sq"), arrays, strict=True):
            if array.shape != (self.n_arms,) or not np.isfinite(array).all():
                msg = f"{name} has shape {array.shape}, must be ({self.n_arms},) finite values"
                raise ValueError(msg)
        if (arrays[0] < 0).any() or (arrays[2] < 0).any():
            msg = "n and sums_sq must be >= 0"
            raise ValueError(msg)
        self._n[:], self._sum[:], self._sum_sq[:] = arrays

    def reset(self) -> None:
        """Forget every reward."""
        self._n[:] = 0.0
        self._sum[:] = 0.0
        self._sum_sq[:] = 0.0

    # ---------------------------------------------------------------------------------------
    # Decisions

    @overload
    def choose(self, rng: np.random.Generator, size: None = None) -> int: ...

    @overload
    def choose(self, rng: np.random.Generator, size: int) -> IntArray: ...

    def choose(self, rng: np.random.Generator, size: int | None = None) -> int | IntArray:
        """One arm (``size`` None) or an array of ``size`` independent decisions under the current state.

        Args:
            rng: the numpy Generator every random draw comes from.
            size: number of decisions; None for a single ``int``.
        """
        check_generator(rng)
        if size is None:
            return int(self._choose(self._n, self._sum, self._sum_sq, rng))
        rows = check_count("size", size, minimum=1)
        shape = (rows, self.n_arms)
        return self._choose(
            np.broadcast_to(self._n, shape),
            np.broadcast_to(self._sum, shape),
            np.broadcast_to(self._sum_sq, shape),
            rng,
        )

    def weights(self, rng: np.random.Generator | None = None, *, draws: int | None = None) -> FloatArray:
        """Allocation probabilities: the chance that :meth:`choose` picks each arm; they sum to 1.

        Args:
            rng: Generator for Monte Carlo (required with ``draws``; unused by deterministic policies).
            draws: None for the exact probabilities; an integer >= 100 for a seeded Monte Carlo
                estimate from that many posterior draws (Thompson policies only).
        """
        draws = check_draws(draws)
        if draws is not None:
            check_generator(rng)
        return self._weights(self._n, self._sum, self._sum_sq, rng, draws)

    @abstractmethod
    def _choose(self, n: FloatArray, sums: FloatArray, sums_sq: FloatArray, rng: np.random.Generator) -> IntArray:
        """One decision per leading index of the ``(..., k)`` state arrays."""

    @abstractmethod
    def _weights(
        self,
        n: FloatArray,
        sums: FloatArray,
        sums_sq: FloatArray,
        rng: np.random.Generator | None,
        draws: int | None,
    ) -> FloatArray:
        """Allocation probabilities ``(..., k)`` for ``(..., k)`` state arrays (exact only for one state)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_arms={self.n_arms}, n={self._n.tolist()})"


def _statistics_arrays(
    statistics: Sequence[MeanStatistic], n_arms: int, *, unit_interval: bool
) -> tuple[FloatArray, FloatArray, FloatArray]:
    stats = list(statistics)
    if len(stats) != n_arms:
        msg = f"statistics has {len(stats)} entries, must have one per arm ({n_arms})"
        raise ValueError(msg)
    for i, stat in enumerate(stats):
        if not isinstance(stat, MeanStatistic):
            msg = f"statistics[{i}] == {stat!r}, must be a MeanStatistic"
            raise TypeError(msg)
        if stat.n < 0 or not math.isfinite(stat.sum) or not math.isfinite(stat.sum_sq) or stat.sum_sq < 0:
            msg = f"statistics[{i}] == {stat!r}, must have n >= 0, a finite sum and a finite sum_sq >= 0"
            raise ValueError(msg)
        if unit_interval and not 0 <= stat.sum <= stat.n:
            msg = f"statistics[{i}].sum == {stat.sum!r}, must be in [0, n] for rewards in [0, 1]"
            raise ValueError(msg)
    n = np.array([s.n for s in stats], dtype=np.float64)
    return n, np.array([s.sum for s in stats]), np.array([s.sum_sq for s in stats])


def _means(n: FloatArray, sums: FloatArray) -> FloatArray:
    """Per-arm means, +inf for arms without data (so that they are tried first)."""
    return np.where(n > 0, sums / np.where(n > 0, n, 1.0), np.inf)


# ---------------------------------------------------------------------------------------------
# Thompson sampling


class ThompsonPolicy(Policy):
    """Thompson sampling: play each arm with the posterior probability that it is the best.

    A decision draws one value per arm from its posterior and plays the largest, so the chance to
    play arm ``i`` is ``P(theta_i = max_j theta_j)``: :meth:`weights` computes it exactly by a
    one-dimensional integral, or by Monte Carlo with ``draws``.

    References:
        Thompson, W. R. (1933). On the likelihood that one unknown probability exceeds another in
        view of the evidence of two samples. Biometrika 25(3/4), 285-294.
        Russo, D. et al. (2018). A Tutorial on Thompson Sampling. Foundations and Trends in
        Machine Learning 11(1), algorithm 2 and section 3.
    """

    def posterior_sample(self, rng: np.random.Generator, draws: int) -> FloatArray:
        """``draws`` joint posterior draws of the arm means, shape ``(draws, n_arms)``."""
        check_generator(rng)
        rows = check_count("draws", draws, minimum=1)
        return self._sample(self._n, self._sum, self._sum_sq, rng, rows)

    @abstractmethod
    def _sample(
        self, n: FloatArray, sums: FloatArray, sums_sq: FloatArray, rng: np.random.Generator, draws: int | None
    ) -> FloatArray:
        """Posterior draws: ``(..., k)`` for ``draws`` None, else ``(..., draws, k)``."""

    @abstractmethod
    def _exact(self, n: FloatArray, sums: FloatArray, sums_sq: FloatArray) -> FloatArray:
        """Exact ``P(best)`` of each arm for one ``(k,)`` state."""

    def _choose(self, n: FloatArray, sums: FloatArray, sums_sq: FloatArray, rng: np.random.Generator) -> IntArray:
        return argmax_random_ties(self._sample(n, sums, sums_sq, rng, None), rng)

    def _weights(
        self,
        n: FloatArray,
        sums: FloatArray,
        sums_sq: FloatArray,
        rng: np.random.Generator | None,
        draws: int | None,
    ) -> FloatArray:
        if draws is None:
            if n.ndim != 1:
                msg = "exact weights are computed for one state at a time; pass draws for a batch of states"
                raise ValueError(msg)
            return self._exact(n, sums, sums_sq)
        assert rng is not None  # noqa: S101 - checked by the public methods
        theta = self._sample(n, sums, sums_sq, rng, draws)
        return one_hot_mean(argmax_random_ties(theta, rng), self.n_arms)


class BernoulliThompson(ThompsonPolicy):
    """Beta-Bernoulli Thompson sampling: ``theta_a ~ Beta(a0 + S_a, b0 + n_a - S_a)``.

    Rewards lie in [0, 1]; a fractional reward ``r`` counts as ``r`` successes and ``1 - r``
    failures (the sufficient-statistics form of the update). :meth:`weights` without ``draws``
    integrates ``P(i best) = int_0^1 prod_{j != i} F_j(Q_i(u)) du`` (``F`` the Beta CDFs, ``Q_i``
    the quantile function of arm ``i``) by adaptive quadrature, to about 1e-10.

    Args:
        n_arms: number of arms, >= 2.
        prior: the Beta prior ``(a0, b0)``, both > 0; default ``(1, 1)`` (uniform).

    References:
        Agrawal, S., Goyal, N. (2012). Analysis of Thompson Sampling for the Multi-armed Bandit
        Problem. COLT, algorithm 1 (Beta-Bernoulli) and its optimal regret bound.
        Chapelle, O., Li, L. (2011). An Empirical Evaluation of Thompson Sampling. NeurIPS, algorithm 2.
    """

    name = "thompson"

    def __init__(self, n_arms: int, *, prior: tuple[float, float] = (1.0, 1.0)) -> None:
        super().__init__(n_arms, unit_interval=True)
        if not isinstance(prior, tuple | list) or len(prior) != 2:
            msg = f"prior == {prior!r}, must be a pair (a0, b0)"
            raise ValueError(msg)
        self.prior = (
            check_number("prior[0]", prior[0], low=1e-300),
            check_number("prior[1]", prior[1], low=1e-300),
        )

    def _parameters(self, n: FloatArray, sums: FloatArray) -> tuple[FloatArray, FloatArray]:
        # Period-adjusted statistics can put an estimate just outside [0, 1]: clip to a proper Beta.
        successes = np.clip(sums, 0.0, n)
        return self.prior[0] + successes, self.prior[1] + (n - successes)

    def _sample(
        self,
        n: FloatArray,
        sums: FloatArray,
        sums_sq: FloatArray,  # noqa: ARG002 - shared kernel signature
        rng: np.random.Generator,
        draws: int | None,
    ) -> FloatArray:
        a, b = self._parameters(n, sums)
        if draws is None:
            if a.ndim == 1:  # numpy's fixed cost per array-parameter call exceeds k scalar draws
                return np.array([rng.beta(x, y) for x, y in zip(a, b, strict=True)])
            return rng.beta(a, b)
        return rng.beta(a[..., None, :], b[..., None, :], size=(*a.shape[:-1], draws, a.shape[-1]))

    def _exact(self, n: FloatArray, sums: FloatArray, sums_sq: FloatArray) -> FloatArray:  # noqa: ARG002 - shared kernel signature
        a, b = self._parameters(n, sums)
        return p_best_beta(a, b)


def p_best_beta(a: FloatArray, b: FloatArray) -> FloatArray:
    """``P(theta_i = max_j theta_j)`` for independent ``Beta(a_j, b_j)``, by quadrature on the quantile scale."""
    from scipy import special

    k = a.size
    means = a / (a + b)
    p = np.empty(k)
    for i in range(k):
        others = [j for j in range(k) if j != i]
        # Arm j's CDF rises around its mean: where that falls on arm i's quantile scale.
        kinks = sorted({float(u) for u in special.betainc(a[i], b[i], means[others]) if 1e-12 < u < 1 - 1e-12})
        p[i] = _integrate(_beta_integrand(a[i], b[i], a[others], b[others]), 0.0, 1.0, kinks)
    return np.asarray(p / p.sum(), dtype=np.float64)


def _beta_integrand(a: float, b: float, a_others: FloatArray, b_others: FloatArray) -> Callable[[float], float]:
    """``u -> prod_j F_j(Q(u))``: the chance that the others are all below arm ``(a, b)``'s ``u``-quantile."""
    from scipy import special

    def integrand(u: float) -> float:
        return float(np.prod(special.betainc(a_others, b_others, special.betaincinv(a, b, u))))

    return integrand


def _normal_integrand(mean: float, sd: float, means: FloatArray, sds: FloatArray) -> Callable[[float], float]:
    """``z -> phi(z) prod_j P(theta_j < mean + sd z)``."""

    def integrand(z: float) -> float:
        return float(np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) * np.prod(_normal_below(mean + sd * z, means, sds)))

    return integrand


def p_best_normal(means: FloatArray, sds: FloatArray) -> FloatArray:
    """``P(theta_i = max_j theta_j)`` for independent ``N(means_j, sds_j^2)`` (``sds_j = 0``: point masses).

    ``P(i best) = int phi(z) prod_{j != i} Phi((m_i + s_i z - m_j) / s_j) dz`` by adaptive quadrature;
    arms at ``+inf`` (not yet tried) share the probability equally.
    """
    k = means.size
    if np.isinf(means).any() or (sds == 0).all():
        return tie_shares(means)
    p = np.empty(k)
    for i in range(k):
        others = np.array([j for j in range(k) if j != i])
        m_o, s_o = means[others], sds[others]
        if sds[i] == 0:
            p[i] = float(np.prod(_normal_below(means[i], m_o, s_o)))
            continue
        kinks = sorted({float(z) for z in (m_o - means[i]) / sds[i] if abs(z) < _NORMAL_RANGE} | {0.0})
        integrand = _normal_integrand(float(means[i]), float(sds[i]), m_o, s_o)
        p[i] = _integrate(integrand, -_NORMAL_RANGE, _NORMAL_RANGE, kinks)
    return np.asarray(p / p.sum(), dtype=np.float64)


def _normal_below(x: float, means: FloatArray, sds: FloatArray) -> FloatArray:
    """``P(theta_j < x)`` per arm; point masses count a tie as one half."""
    from scipy import special

    with np.errstate(divide="ignore", invalid="ignore"):
        smooth = special.ndtr((x - means) / np.where(sds > 0, sds, 1.0))
    step = np.where(x > means, 1.0, np.where(x == means, 0.5, 0.0))
    return np.asarray(np.where(sds > 0, smooth, step), dtype=np.float64)


class GaussianThompson(ThompsonPolicy):
    """Gaussian Thompson sampling for continuous rewards (revenue, time, scores).

    The posterior of arm ``a``'s mean is ``N(m_a, v_a)`` with a normal prior ``N(mu0, tau0^2)`` on
    the mean (flat by default) and a noise variance that is either known (``noise_sd``) or
    estimated: ``sigma_a^2 = (SS_a + s0^2) / n_a``, the arm's sum of squared deviations shrunk by
    one pseudo-observation at ``s0^2``, the variance of all rewards pooled. The pseudo-observation
    keeps early arms (one observation, or only zeros so far) from looking certain. Then
    ``1 / v_a = 1 / tau0^2 + n_a / sigma_a^2`` and ``m_a = v_a (mu0 / tau0^2 + n_a xbar_a / sigma_a^2)``.
    With a flat prior, arms without data (or before two rewards exist to estimate ``s0``) are
    played first.

    Args:
        n_arms: number of arms, >= 2.
        noise_sd: known standard deviation of one reward (> 0); None (default) estimates it.
        prior_mean: mean of the normal prior on each arm's mean; default 0.
        prior_sd: its standard deviation (> 0); default ``inf`` (flat prior).

    References:
        Gelman, A. et al. (2013). Bayesian Data Analysis, 3rd ed., eq. (2.12) (normal mean, known
        variance) and section 3.3 (scaled inverse-chi^2 prior with nu0 = 1 degree of freedom at s0^2).
        Agrawal, S., Goyal, N. (2013). Further Optimal Regret Bounds for Thompson Sampling.
        AISTATS, algorithm 2 (Gaussian priors).
    """

    name = "gaussian-thompson"

    def __init__(
        self,
        n_arms: int,
        *,
        noise_sd: float | None = None,
        prior_mean: float = 0.0,
        prior_sd: float = math.inf,
    ) -> None:
        super().__init__(n_arms)
        self.noise_sd = None if noise_sd is None else check_number("noise_sd", noise_sd, low=1e-300)
        self.prior_mean = check_number("prior_mean", prior_mean, low=-1e300, high=1e300)
        if prior_sd != math.inf:
            check_number("prior_sd", prior_sd, low=1e-300)
        self.prior_sd = float(prior_sd)

    def posterior(self) -> tuple[FloatArray, FloatArray]:
        """Posterior means and standard deviations of the arm means (``+inf`` mean: not yet tried)."""
        return self._posterior(self._n, self._sum, self._sum_sq)

    def _posterior(self, n: FloatArray, sums: FloatArray, sums_sq: FloatArray) -> tuple[FloatArray, FloatArray]:
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = sums / n
            if self.noise_sd is not None:
                variance = np.full(n.shape, self.noise_sd**2)
            else:
                total_n = n.sum(axis=-1, keepdims=True)
                total = sums.sum(axis=-1, keepdims=True)
                pooled = (sums_sq.sum(axis=-1, keepdims=True) - total * total / total_n) / (total_n - 1)
                pooled = np.where(total_n >= 2, np.maximum(pooled, 0.0), np.nan)
                within = np.maximum(sums_sq - sums * mean, 0.0)
                variance = (within + pooled) / n
            has_data = (n > 0) & ~np.isnan(variance)
            certain = has_data & (variance == 0)
            data_precision = np.where(has_data & ~certain, n / np.where(variance > 0, variance, 1.0), 0.0)
            prior_precision = 0.0 if math.isinf(self.prior_sd) else self.prior_sd**-2
            precision = prior_precision + data_precision
            weighted = prior_precision * self.prior_mean + data_precision * np.where(has_data, mean, 0.0)
            post_mean = np.where(precision > 0, weighted / np.where(precision > 0, precision, 1.0), np.inf)
            post_sd = np.where(precision > 0, 1.0 / np.sqrt(np.where(precision > 0, precision, 1.0)), 0.0)
        return np.where(certain, mean, post_mean), np.where(certain, 0.0, post_sd)

    def _sample(
        self, n: FloatArray, sums: FloatArray, sums_sq: FloatArray, rng: np.random.Generator, draws: int | None
    ) -> FloatArray:
        mean, sd = self._posterior(n, sums, sums_sq)
        if draws is None:
            return mean + sd * rng.standard_normal(mean.shape)
        noise = rng.standard_normal((*mean.shape[:-1], draws, mean.shape[-1]))
        return np.asarray(mean[..., None, :] + sd[..., None, :] * noise, dtype=np.float64)

    def _exact(self, n: FloatArray, sums: FloatArray, sums_sq: FloatArray) -> FloatArray:
        return p_best_normal(*self._posterior(n, sums, sums_sq))


class TopTwoThompson(Policy):
    """Top-two Thompson sampling (TTTS), for identifying the best arm rather than earning on the way.

    A decision draws from the posterior; with probability ``beta`` it plays the leader ``I`` of
    that draw; otherwise it draws again until another arm ``J != I`` leads, and plays ``J`` (after
    ``max_resamples`` failed draws, the best arm other than ``I`` in the last draw). The chance to
    play arm ``i`` is ``psi_i = p_i (beta + (1 - beta) sum_{j != i} p_j / (1 - p_j))`` with
    ``p = P(best)``; when one arm holds ``P(best) = 1`` numerically, it gets ``beta`` and the
    others share ``1 - beta`` in proportion to their ``P(best)`` (equally if all are 0).

    Args:
        n_arms: number of arms, >= 2.
        beta: probability of playing the leader, in (0, 1); default 0.5 (Russo's default).
        base: the Thompson policy giving the posterior (default :class:`BernoulliThompson`); it
            shares its state with this policy.
        max_resamples: cap on the re-draws for a challenger; default 100.

    References:
        Russo, D. (2020). Simple Bayesian Algorithms for Best-Arm Identification. Operations
        Research 68(6), 1625-1647: top-two Thompson sampling and its allocation ``psi`` (section 4).
    """

    name = "top-two-thompson"

    def __init__(
        self, n_arms: int, *, beta: float = 0.5, base: ThompsonPolicy | None = None, max_resamples: int = 100
    ) -> None:
        base = BernoulliThompson(n_arms) if base is None else base
        if not isinstance(base, ThompsonPolicy):
            msg = f"base == {base!r}, must be a Thompson policy (BernoulliThompson or GaussianThompson)"
            raise TypeError(msg)
        if base.n_arms != n_arms:
            msg = f"base.n_arms == {base.n_arms}, must equal n_arms == {n_arms}"
            raise ValueError(msg)
        super().__init__(n_arms, unit_interval=base.unit_interval)
        self.beta = check_number("beta", beta, low=1e-12, high=1 - 1e-12)
        self.max_resamples = check_count("max_resamples", max_resamples, minimum=1)
        self.base = base
        self._n, self._sum, self._sum_sq = base._n, base._sum, base._sum_sq  # one state, two views

    def _choose(self, n: FloatArray, sums: FloatArray, sums_sq: FloatArray, rng: np.random.Generator) -> IntArray:
        lead_shape = n.shape[:-1]
        n2, s2, ss2 = (np.reshape(x, (-1, self.n_arms)) for x in (n, sums, sums_sq))
        leader = argmax_random_ties(self.base._sample(n2, s2, ss2, rng, None), rng)
        chosen = leader.copy()
        pending = np.flatnonzero(rng.random(leader.shape) >= self.beta)
        used, block = 0, 1
        last = np.empty((0, self.n_arms))
        while pending.size and used < self.max_resamples:
            # Re-draw in doubling blocks: the first draw that another arm leads is the challenger.
            block = min(block, self.max_resamples - used)
            draws = self.base._sample(n2[pending], s2[pending], ss2[pending], rng, block)
            leaders = argmax_random_ties(draws, rng)
            differs = leaders != leader[pending][:, None]
            found = differs.any(axis=1)
            first = differs.argmax(axis=1)
            chosen[pending[found]] = leaders[found, first[found]]
            last = draws[~found, -1]
            pending = pending[~found]
            used += block
            block *= 2
        if pending.size:
            last[np.arange(pending.size), leader[pending]] = -np.inf
            chosen[pending] = argmax_random_ties(last, rng)
        return chosen.reshape(lead_shape)

    def _weights(
        self,
        n: FloatArray,
        sums: FloatArray,
        sums_sq: FloatArray,
        rng: np.random.Generator | None,
        draws: int | None,
    ) -> FloatArray:
        return top_two_shares(self.base._weights(n, sums, sums_sq, rng, draws), self.beta)


def top_two_shares(p_best: FloatArray, beta: float) -> FloatArray:
    """Russo's top-two allocation ``psi`` from the probabilities of being best, over the last axis."""
    k = p_best.shape[-1]
    rest = np.clip(p_best.sum(axis=-1, keepdims=True) - p_best, 0.0, None)  # 1 - p_i
    with np.errstate(divide="ignore", invalid="ignore"):
        odds = p_best / rest
        psi = p_best * (beta + (1 - beta) * (odds.sum(axis=-1, keepdims=True) - odds))
    degenerate = ~np.isfinite(psi).all(axis=-1)
    if degenerate.any():
        p = p_best[degenerate]
        leader = p.argmax(axis=-1)
        others = p.copy()
        others[np.arange(len(p)), leader] = 0.0
        total = others.sum(axis=-1, keepdims=True)
        uniform = np.full_like(others, 1.0 / (k - 1))
        uniform[np.arange(len(p)), leader] = 0.0
        shares = np.where(total > 0, others / np.where(total > 0, total, 1.0), uniform) * (1 - beta)
        shares[np.arange(len(p)), leader] = beta
        psi[degenerate] = shares
    return np.asarray(psi / psi.sum(axis=-1, keepdims=True), dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Upper confidence bounds and epsilon-greedy


class UCB1(Policy):
    """UCB1: play the arm with the largest ``xbar_a + alpha sqrt(2 ln t / n_a)``; untried arms first.

    ``t`` is the total number of observations. ``alpha = 1`` is Auer et al.'s index for rewards in
    [0, 1]; scale it with the reward range otherwise. Ties are broken at random, and
    :meth:`weights` shares the allocation equally between tied arms.

    Args:
        n_arms: number of arms, >= 2.
        alpha: exploration multiplier (> 0); default 1.

    References:
        Auer, P., Cesa-Bianchi, N., Fischer, P. (2002). Finite-time Analysis of the Multiarmed
        Bandit Problem. Machine Learning 47, 235-256, figure 1 (UCB1) and theorem 1.
    """

    name = "ucb1"

    def __init__(self, n_arms: int, *, alpha: float = 1.0) -> None:
        super().__init__(n_arms)
        self.alpha = check_number("alpha", alpha, low=1e-300)

    def _index(self, n: FloatArray, sums: FloatArray, sums_sq: FloatArray) -> FloatArray:  # noqa: ARG002 - shared kernel signature
        tried = n > 0
        safe = np.where(tried, n, 1.0)
        log_t = np.log(np.maximum(n.sum(axis=-1, keepdims=True), 1.0))
        return np.where(tried, sums / safe + self.alpha * np.sqrt(2.0 * log_t / safe), np.inf)

    def _choose(self, n: FloatArray, sums: FloatArray, sums_sq: FloatArray, rng: np.random.Generator) -> IntArray:
        return argmax_random_ties(self._index(n, sums, sums_sq), rng)

    def _weights(
        self,
        n: FloatArray,
        sums: FloatArray,
        sums_sq: FloatArray,
        rng: np.random.Generator | None,  # noqa: ARG002 - shared kernel signature
        draws: int | None,  # noqa: ARG002 - shared kernel signature
    ) -> FloatArray:
        return tie_shares(self._index(n, sums, sums_sq))


class UCB1Tuned(UCB1):
    """UCB1-Tuned: ``xbar_a + sqrt(ln t / n_a * min(1/4, V_a))`` with ``V_a = s_a^2 + sqrt(2 ln t / n_a)``.

    ``s_a^2 = sum_sq_a / n_a - xbar_a^2`` is the arm's (biased) reward variance and 1/4 the largest
    variance of a reward in [0, 1]; rewards must lie in [0, 1].

    References:
        Auer, P., Cesa-Bianchi, N., Fischer, P. (2002). Finite-time Analysis of the Multiarmed
        Bandit Problem. Machine Learning 47, section 4 (UCB1-Tuned).
    """

    name = "ucb1-tuned"

    def __init__(self, n_arms: int) -> None:
        super().__init__(n_arms)
        self.unit_interval = True

    def _index(self, n: FloatArray, sums: FloatArray, sums_sq: FloatArray) -> FloatArray:
        tried = n > 0
        safe = np.where(tried, n, 1.0)
        log_t = np.log(np.maximum(n.sum(axis=-1, keepdims=True), 1.0))
        mean = sums / safe
        variance = np.maximum(sums_sq / safe - mean * mean, 0.0) + np.sqrt(2.0 * log_t / safe)
        return np.where(tried, mean + np.sqrt(log_t / safe * np.minimum(0.25, variance)), np.inf)


class EpsilonGreedy(Policy):
    """Epsilon-greedy: explore a uniformly random arm with probability ``eps_t``, else play the best mean.

    ``eps_t = epsilon`` (fixed), or with ``decay = c`` the schedule ``eps_t = min(epsilon, c k / t)``
    (``t`` = observations + 1), Auer et al.'s ``eps_n``-greedy with ``c / d^2 = c``, capped at
    ``epsilon``. Untried arms count as the best; ties are broken at random. The allocation is
    ``eps_t / k + (1 - eps_t) * [arm is greedy]`` (tied greedy arms share).

    Args:
        n_arms: number of arms, >= 2.
        epsilon: exploration probability in [0, 1]; default 0.1.
        decay: the constant ``c > 0`` of the decaying schedule; default None (fixed ``epsilon``).

    References:
        Sutton, R. S., Barto, A. G. (2018). Reinforcement Learning, 2nd ed., section 2.2.
        Auer, P., Cesa-Bianchi, N., Fischer, P. (2002). Machine Learning 47, section 3 and
        theorem 3 (``eps_n``-greedy, ``eps_n = min(1, cK / (d^2 n))``).
    """

    name = "epsilon-greedy"

    def __init__(self, n_arms: int, *, epsilon: float = 0.1, decay: float | None = None) -> None:
        super().__init__(n_arms)
        self.epsilon = check_number("epsilon", epsilon, low=0.0, high=1.0)
        self.decay = None if decay is None else check_number("decay", decay, low=1e-300)

    def _epsilon(self, n: FloatArray) -> FloatArray:
        if self.decay is None:
            return np.full(n.shape[:-1], self.epsilon)
        return np.asarray(np.minimum(self.epsilon, self.decay * self.n_arms / (n.sum(axis=-1) + 1.0)))

    def _choose(self, n: FloatArray, sums: FloatArray, sums_sq: FloatArray, rng: np.random.Generator) -> IntArray:  # noqa: ARG002 - shared kernel signature
        greedy = argmax_random_ties(_means(n, sums), rng)
        if n.ndim == 1:  # one decision: skip the array machinery
            explore_one = rng.random() < float(self._epsilon(n))
            return np.asarray(rng.integers(self.n_arms), dtype=np.intp) if explore_one else greedy
        explore = rng.random(greedy.shape) < self._epsilon(n)
        if explore.any():
            greedy[explore] = rng.integers(self.n_arms, size=int(explore.sum()))
        return greedy

    def _weights(
        self,
        n: FloatArray,
        sums: FloatArray,
        sums_sq: FloatArray,  # noqa: ARG002 - shared kernel signature
        rng: np.random.Generator | None,  # noqa: ARG002 - shared kernel signature
        draws: int | None,  # noqa: ARG002 - shared kernel signature
    ) -> FloatArray:
        eps = self._epsilon(n)[..., None]
        return np.asarray(eps / self.n_arms + (1 - eps) * tie_shares(_means(n, sums)), dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Registry


def _top_two(n_arms: int, *, likelihood: str = "bernoulli", **options: Any) -> TopTwoThompson:
    base_options = {key: options.pop(key) for key in list(options) if key not in ("beta", "max_resamples")}
    if likelihood == "bernoulli":
        base: ThompsonPolicy = BernoulliThompson(n_arms, **base_options)
    elif likelihood == "gaussian":
        base = GaussianThompson(n_arms, **base_options)
    else:
        msg = f"likelihood == {likelihood!r}, must be one of bernoulli, gaussian"
        raise ValueError(msg)
    return TopTwoThompson(n_arms, base=base, **options)


_FACTORIES: dict[str, Callable[..., Policy]] = {
    "thompson": BernoulliThompson,
    "gaussian-thompson": GaussianThompson,
    "top-two-thompson": _top_two,
    "ucb1": UCB1,
    "ucb1-tuned": UCB1Tuned,
    "epsilon-greedy": EpsilonGreedy,
}

POLICIES: tuple[str, ...] = tuple(_FACTORIES)
"""Names of the context-free policies :func:`make_policy` builds."""


def make_policy(name: str, n_arms: int, **options: Any) -> Policy:
    """Build a context-free policy by name with its keyword options.

    Names: ``thompson`` (:class:`BernoulliThompson`, options ``prior``), ``gaussian-thompson``
    (:class:`GaussianThompson`: ``noise_sd``, ``prior_mean``, ``prior_sd``), ``top-two-thompson``
    (:class:`TopTwoThompson`: ``beta``, ``max_resamples``, ``likelihood`` ``bernoulli`` or
    ``gaussian`` and that model's options), ``ucb1`` (``alpha``), ``ucb1-tuned``,
    ``epsilon-greedy`` (``epsilon``, ``decay``).

    Raises:
        ValueError: an unknown name or option, or an option out of bounds.

    Example:
        >>> make_policy("epsilon-greedy", 3, epsilon=0.2, decay=5.0).decay
        5.0
    """
    factory = _FACTORIES.get(name)
    if factory is None:
        msg = f"policy == {name!r}, must be one of {', '.join(POLICIES)}"
        raise ValueError(msg)
    try:
        return factory(n_arms, **options)
    except TypeError as exc:  # an unknown keyword: name it like any other bad option
        msg = f"invalid option for policy {name!r}: {exc}"
        raise ValueError(msg) from None
