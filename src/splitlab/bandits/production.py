"""Production mode: allocation weights fixed per period, recomputed in batches, as products run bandits.

A live experiment cannot re-decide after every unit: assignment runs on many machines from a
published set of weights, and rewards arrive late. So the weights stay fixed during a *period*
(every ``batch_size`` units, or every ``interval`` seconds) and are recomputed at its end:

1. **Burn-in.** Until ``burn_in`` units (at least one) have rewards, every arm gets ``1 / k``.
2. **Statistics that drift cannot fool.** When rewards drift over time (weekdays, campaigns),
   pooled sums credit an arm for *when* it got traffic (Simpson's paradox). The policy sees
   instead, per arm, an estimate built from comparisons within periods, with its effective
   sample size (:func:`~splitlab.bandits.estimates.effective_statistics`): by default the
   two-way additive (period + arm) least-squares fit, ``within-period``; or the traffic-weighted
   period means, ``period-weighted`` (GrowthBook's weighting: unbiased, but a period in which
   an arm got one unit weighs as much as one in which it got a hundred, which doubles the
   regret of the benchmark in ``benchmarks/bandit_bench.py``); or ``pooled`` sums.
3. **Policy weights.** Thompson policies allocate ``P(best)`` (top-two: Russo's ``psi``),
   estimated from ``draws`` posterior draws with a generator seeded by ``(seed, period)``, so
   every process recomputes the same weights; other policies give their own allocation.
4. **Floor.** ``w = floor + (1 - k floor) p``: every arm keeps at least ``floor`` (so every arm
   keeps being measured, and inverse-propensity estimates stay defined), and the weights still
   sum to 1.
5. **Stopping rule.** After burn-in, when the leader's ``P(best) >= stop_p_best``, or its expected
   loss ``E[max_j theta_j - theta_leader] <= stop_expected_loss`` (the regret still at risk per
   unit), the leader is declared the winner and gets 100 % from then on. ``P(best)`` and the
   loss come from the policy's posterior (a :class:`GaussianThompson` on the same statistics for
   UCB and epsilon-greedy).

References:
    Scott, S. L. (2015). Multi-armed bandit experiments in the online service economy. Applied
    Stochastic Models in Business and Industry 31(1), 37-45: Thompson sampling with periodic
    (daily) weight updates and a stopping rule on the value remaining.
    Kalkanli, C., Özgür, A. (2021). Batched Thompson Sampling. NeurIPS (batched TS keeps the
    regret of online TS up to constants).
    Stucchio, C. (2015). Bayesian A/B Testing at VWO (expected loss as the stopping criterion).
    GrowthBook (2024). Multi-armed bandits documentation: burn-in ("exploratory stage"), weights
    updated on a schedule, a minimum variation weight, and period weighting against Simpson's paradox.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, overload

import numpy as np

from splitlab.bandits._common import (
    BoolArray,
    FloatArray,
    IntArray,
    argmax_random_ties,
    arm_index,
    as_arms,
    as_rewards,
    check_count,
    check_generator,
    check_number,
    one_hot_mean,
    reward_value,
)
from splitlab.bandits.estimates import (
    STATISTICS,
    ArmEstimate,
    effective_statistics,
    ipw_estimates,
    naive_estimates,
    period_weighted_estimates,
)
from splitlab.bandits.policies import GaussianThompson, Policy, ThompsonPolicy, TopTwoThompson, top_two_shares
from splitlab.stats._validation import check_choice
from splitlab.stats.statistics import MeanStatistic

__all__ = ["PHASES", "AllocationDecision", "BatchedBandit", "ProductionSettings", "decide_weights"]

PHASES: tuple[str, ...] = ("burn-in", "adaptive", "stopped")
"""Every :attr:`AllocationDecision.phase`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductionSettings:
    """How the weights of the next period are decided (validated when built).

    Attributes:
        burn_in: units with rewards before the weights adapt (equal allocation until then); default 0.
        floor: minimum share of every arm, in ``[0, 1 / k]``; default 0.01.
        stop_p_best: stop when the leader's ``P(best)`` reaches this, in (0, 1); default None (never).
        stop_expected_loss: stop when the leader's expected loss is at most this (>= 0, in reward
            units); default None (never).
        draws: posterior draws for ``P(best)``, the loss and Thompson weights (>= 100); default 10,000.
        statistics: what the policy sees of the periods (:func:`~splitlab.bandits.estimates.effective_statistics`):
            ``within-period`` (default), ``period-weighted`` or ``pooled``.
    """

    burn_in: int = 0
    floor: float = 0.01
    stop_p_best: float | None = None
    stop_expected_loss: float | None = None
    draws: int = 10_000
    statistics: str = "within-period"

    def __post_init__(self) -> None:
        check_count("burn_in", self.burn_in)
        check_number("floor", self.floor, low=0.0, high=1.0)
        if self.stop_p_best is not None:
            check_number("stop_p_best", self.stop_p_best, low=1e-12, high=1 - 1e-12)
        if self.stop_expected_loss is not None:
            check_number("stop_expected_loss", self.stop_expected_loss, low=0.0)
        check_count("draws", self.draws, minimum=100)
        check_choice("statistics", self.statistics, STATISTICS)

    def check_arms(self, n_arms: int) -> None:
        """Raise unless ``n_arms * floor <= 1``."""
        if n_arms * self.floor > 1 + 1e-12:
            msg = f"floor == {self.floor}, must be <= 1 / n_arms == {1 / n_arms:.6g}"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class AllocationDecision:
    """The weights chosen for a period, and why.

    Attributes:
        period: index of the period these weights apply to.
        weights: allocation probabilities per arm; they sum to 1.
        phase: ``burn-in`` (equal weights), ``adaptive`` or ``stopped`` (the winner has 100 %).
        winner: the winning arm once stopped, else None.
        p_best: posterior probability that each arm is the best.
        expected_loss: per arm, ``E[max_j theta_j - theta_i]``.
        units: units with rewards when the decision was made.
    """

    period: int
    weights: tuple[float, ...]
    phase: str
    winner: int | None
    p_best: tuple[float, ...]
    expected_loss: tuple[float, ...]
    units: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (tuples become lists)."""
        data = asdict(self)
        for key in ("weights", "p_best", "expected_loss"):
            data[key] = list(data[key])
        return data


def _ranker(policy: Policy) -> ThompsonPolicy:
    if isinstance(policy, TopTwoThompson):
        return policy.base
    if isinstance(policy, ThompsonPolicy):
        return policy
    return GaussianThompson(policy.n_arms)


def decide_weights(
    policy: Policy,
    n: FloatArray,
    sums: FloatArray,
    sums_sq: FloatArray,
    settings: ProductionSettings,
    rng: np.random.Generator,
) -> tuple[FloatArray, IntArray, IntArray, FloatArray, FloatArray]:
    """The next period's weights from per-period statistics, vectorised over leading dimensions.

    Args:
        policy: the policy (its parameters; its state is not used).
        n, sums, sums_sq: ``(..., periods, arms)`` statistics of the periods so far.
        settings: burn-in, floor, stopping rule, draws.
        rng: the generator for the posterior draws.

    Returns:
        ``(weights, phase, winner, p_best, expected_loss)``: weights ``(..., k)``; phase ``(...)``
        as an index into :data:`PHASES`; winner ``(...)`` (-1 when not stopped); ``p_best`` and
        ``expected_loss`` ``(..., k)``.
    """
    k = policy.n_arms
    settings.check_arms(k)
    eff_n, eff_sum, eff_sq = effective_statistics(n, sums, sums_sq, settings.statistics)
    theta = _ranker(policy)._sample(eff_n, eff_sum, eff_sq, rng, settings.draws)
    p_best = one_hot_mean(argmax_random_ties(theta, rng), k)
    with np.errstate(invalid="ignore"):
        loss = (theta.max(axis=-1, keepdims=True) - theta).mean(axis=-2)
    if isinstance(policy, TopTwoThompson):
        allocation = top_two_shares(p_best, policy.beta)
    elif isinstance(policy, ThompsonPolicy):
        allocation = p_best
    else:
        allocation = policy._weights(eff_n, eff_sum, eff_sq, rng, settings.draws)
    leader = p_best.argmax(axis=-1)
    leader_p = np.take_along_axis(p_best, leader[..., None], axis=-1)[..., 0]
    leader_loss = np.take_along_axis(loss, leader[..., None], axis=-1)[..., 0]
    burn: BoolArray = n.sum(axis=(-2, -1)) < max(settings.burn_in, 1)  # no data at all: equal weights too
    stop = np.zeros(burn.shape, dtype=bool)
    if settings.stop_p_best is not None:
        stop |= leader_p >= settings.stop_p_best
    if settings.stop_expected_loss is not None:
        stop |= leader_loss <= settings.stop_expected_loss
    stop &= ~burn
    weights = settings.floor + (1 - k * settings.floor) * allocation
    weights = np.where(burn[..., None], 1.0 / k, weights)
    weights = np.where(stop[..., None], np.arange(k) == leader[..., None], weights)
    weights = weights / weights.sum(axis=-1, keepdims=True)
    phase = np.where(stop, 2, np.where(burn, 0, 1))
    winner = np.where(stop, leader, -1)
    return weights, phase, winner, p_best, loss


class BatchedBandit:
    """A policy run in production mode: weights fixed within a period, recomputed at its end.

    A period ends when ``batch_size`` rewards of the period are in (:meth:`update`), when
    :meth:`advance` is called ``interval`` seconds after it began, or on :meth:`close_period`.
    The weights of period ``p`` are decided with ``np.random.default_rng((seed, p))``, so they
    are reproducible and every process computes the same ones. After a stop the winner keeps
    100 % for good.

    Args:
        policy: a context-free policy; its state is replaced by the (period-weighted) statistics
            at every period end.
        batch_size: units per period (>= 1); default None (periods end by time or by hand).
        interval: period length in seconds (> 0) for :meth:`advance`; default None.
        start: the time the first period starts, in the same clock as :meth:`advance`; default 0.
        seed: seed of the per-period generators (>= 0); default 0.
        settings: a :class:`ProductionSettings`; or give its fields as keywords.

    Example:
        >>> import numpy as np
        >>> from splitlab.bandits.policies import BernoulliThompson
        >>> bandit = BatchedBandit(BernoulliThompson(2), batch_size=100, floor=0.05, seed=3)
        >>> rng = np.random.default_rng(0)
        >>> for _ in range(5):
        ...     arms = bandit.choose(rng, size=100)
        ...     _ = bandit.update_batch(arms, rng.random(100) < np.where(arms == 1, 0.6, 0.3))
        >>> bandit.period, [round(w, 3) for w in bandit.weights]
        (5, [0.05, 0.95])
    """

    def __init__(
        self,
        policy: Policy,
        *,
        batch_size: int | None = None,
        interval: float | None = None,
        start: float = 0.0,
        seed: int = 0,
        settings: ProductionSettings | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(policy, Policy):
            msg = f"policy == {policy!r}, must be a context-free Policy"
            raise TypeError(msg)
        if settings is not None and options:
            msg = f"give settings or its fields ({', '.join(sorted(options))}), not both"
            raise ValueError(msg)
        try:
            self.settings = settings if settings is not None else ProductionSettings(**options)
        except TypeError as exc:
            msg = f"invalid production option: {exc}"
            raise ValueError(msg) from None
        self.settings.check_arms(policy.n_arms)
        self.policy = policy
        self.n_arms = policy.n_arms
        self.batch_size = None if batch_size is None else check_count("batch_size", batch_size, minimum=1)
        self.interval = None if interval is None else check_number("interval", interval, low=1e-300)
        self.seed = check_count("seed", seed)
        self._start = check_number("start", start)
        k = self.n_arms
        self._stats: list[FloatArray] = [np.zeros((3, k))]  # per period: rows n, sum, sum_sq
        self._weights: list[FloatArray] = [np.full(k, 1.0 / k)]
        self._decisions: list[AllocationDecision] = []
        self._open_units = 0
        self._winner: int | None = None

    # ---------------------------------------------------------------------------------------
    # State

    @property
    def weights(self) -> tuple[float, ...]:
        """The current period's allocation probabilities."""
        return tuple(float(w) for w in self._weights[-1])

    @property
    def period(self) -> int:
        """Index of the current (open) period; periods before it are closed."""
        return len(self._stats) - 1

    @property
    def winner(self) -> int | None:
        """The arm declared the winner by the stopping rule, or None."""
        return self._winner

    @property
    def decisions(self) -> tuple[AllocationDecision, ...]:
        """Every weight decision so far (one per closed period)."""
        return tuple(self._decisions)

    @property
    def period_statistics(self) -> tuple[tuple[MeanStatistic, ...], ...]:
        """``[p][arm]``: the rewards of the units allocated in period ``p`` (the open one last)."""
        return tuple(
            tuple(MeanStatistic(round(n), float(s), float(ss)) for n, s, ss in stats.T) for stats in self._stats
        )

    @property
    def period_weights(self) -> tuple[tuple[float, ...], ...]:
        """``[p][arm]``: the allocation used in period ``p``."""
        return tuple(tuple(float(x) for x in w) for w in self._weights)

    # ---------------------------------------------------------------------------------------
    # Decisions and updates

    @overload
    def choose(self, rng: np.random.Generator, size: None = None) -> int: ...

    @overload
    def choose(self, rng: np.random.Generator, size: int) -> IntArray: ...

    def choose(self, rng: np.random.Generator, size: int | None = None) -> int | IntArray:
        """Arms drawn from the current weights: one (``size`` None) or ``size`` of them."""
        check_generator(rng)
        cumulative = np.cumsum(self._weights[-1])[:-1]
        if size is None:
            return int(np.searchsorted(cumulative, rng.random(), side="right"))
        draws = rng.random(check_count("size", size, minimum=1))
        return np.searchsorted(cumulative, draws, side="right").astype(np.intp)

    def update(self, arm: int, reward: float, *, period: int | None = None) -> AllocationDecision | None:
        """Add one unit's reward to the period it was allocated in (default the current one).

        Returns:
            The decision for the next period when this reward completed a batch, else None.
        """
        i = arm_index(arm, self.n_arms)
        r = reward_value(reward, unit_interval=self.policy.unit_interval)
        p = self._period_index(period)
        self._stats[p][:, i] += (1.0, r, r * r)
        return self._count(1) if p == self.period else None

    def update_batch(self, arms: Any, rewards: Any) -> list[AllocationDecision]:
        """Add rewards of units of the current period in arrival order, closing periods as batches fill.

        Units past a batch boundary belong to the next period (with its new weights): pass the
        rewards of units allocated before a boundary in separate calls, or with :meth:`update`
        and ``period=``.
        """
        index = as_arms(arms, self.n_arms)
        values = as_rewards(rewards, index.size, unit_interval=self.policy.unit_interval)
        decisions: list[AllocationDecision] = []
        start = 0
        while start < index.size:
            room = index.size - start if self.batch_size is None else self.batch_size - self._open_units
            stop = min(index.size, start + room)
            a, r = index[start:stop], values[start:stop]
            stats = self._stats[-1]
            stats[0] += np.bincount(a, minlength=self.n_arms)
            stats[1] += np.bincount(a, weights=r, minlength=self.n_arms)
            stats[2] += np.bincount(a, weights=r * r, minlength=self.n_arms)
            decision = self._count(stop - start)
            if decision is not None:
                decisions.append(decision)
            start = stop
        return decisions

    def update_statistics(
        self, statistics: Sequence[MeanStatistic], *, period: int | None = None
    ) -> AllocationDecision | None:
        """Add per-arm sufficient statistics to a period (default the current one, counting toward its batch)."""
        stats = list(statistics)
        if len(stats) != self.n_arms or not all(isinstance(s, MeanStatistic) and s.n >= 0 for s in stats):
            msg = f"statistics must hold {self.n_arms} MeanStatistic records with n >= 0, one per arm"
            raise ValueError(msg)
        p = self._period_index(period)
        self._stats[p] += np.array([[s.n, s.sum, s.sum_sq] for s in stats], dtype=np.float64).T
        return self._count(sum(s.n for s in stats)) if p == self.period else None

    def advance(self, now: float) -> AllocationDecision | None:
        """Close the current period if ``interval`` seconds have passed since it began (time-based batches)."""
        if self.interval is None:
            msg = "interval is None: this bandit closes periods by batch_size or close_period()"
            raise ValueError(msg)
        elapsed = check_number("now", now) - self._start
        if elapsed < self.interval:
            return None
        self._start += self.interval * math.floor(elapsed / self.interval)
        return self.close_period()

    def close_period(self) -> AllocationDecision:
        """End the current period and decide the weights of the next one."""
        n, sums, sums_sq = (np.stack([s[row] for s in self._stats]) for row in range(3))
        period = len(self._stats)
        if self._winner is not None:
            weights = np.eye(self.n_arms)[self._winner]
            last = self._decisions[-1]
            decision = AllocationDecision(period, tuple(weights.tolist()), "stopped", self._winner,
                                          last.p_best, last.expected_loss, int(n.sum()))  # fmt: skip
        else:
            rng = np.random.default_rng((self.seed, period))
            w, phase, winner, p_best, loss = decide_weights(self.policy, n, sums, sums_sq, self.settings, rng)
            weights = w
            self._winner = None if int(winner) < 0 else int(winner)
            decision = AllocationDecision(period, tuple(float(x) for x in w), PHASES[int(phase)], self._winner,
                                          tuple(p_best.tolist()), tuple(loss.tolist()), int(n.sum()))  # fmt: skip
        self.policy.set_state(*effective_statistics(n, sums, sums_sq, self.settings.statistics))
        self._stats.append(np.zeros((3, self.n_arms)))
        self._weights.append(np.asarray(weights, dtype=np.float64))
        self._decisions.append(decision)
        self._open_units = 0
        return decision

    def _count(self, units: int) -> AllocationDecision | None:
        self._open_units += units
        if self.batch_size is not None and self._open_units >= self.batch_size:
            return self.close_period()
        return None

    def _period_index(self, period: int | None) -> int:
        if period is None:
            return self.period
        if isinstance(period, bool) or not isinstance(period, int | np.integer) or not 0 <= period <= self.period:
            msg = f"period == {period!r}, must be an integer in [0, {self.period}]"
            raise ValueError(msg)
        return int(period)

    # ---------------------------------------------------------------------------------------
    # Estimates

    def estimates(self, *, estimator: str = "period-weighted", alpha: float = 0.05) -> tuple[ArmEstimate, ...]:
        """Per-arm mean rewards over every period: ``period-weighted`` (default), ``ipw`` or ``naive``.

        See :mod:`splitlab.bandits.estimates` for why the naive pooled mean is biased here.
        """
        periods = self.period_statistics
        if estimator == "period-weighted":
            return period_weighted_estimates(periods, alpha=alpha)
        if estimator == "ipw":
            return ipw_estimates(periods, self.period_weights, alpha=alpha)
        if estimator == "naive":
            return naive_estimates(periods, alpha=alpha)
        msg = f"estimator == {estimator!r}, must be one of period-weighted, ipw, naive"
        raise ValueError(msg)

    def __repr__(self) -> str:
        return f"BatchedBandit({self.policy!r}, period={self.period}, weights={list(self.weights)})"
