"""Regret simulations, vectorised across replications.

Every replication runs the same policy against the same arms; all replications advance together,
one round (or one batch, in production mode) per step, so a step is a handful of numpy
operations on ``(replications, arms)`` arrays whatever the number of replications. Regret is
the *pseudo-regret* ``sum_t (mu* - mu_{A_t})``, the expected reward lost to the arms actually
played.

Example:
    >>> result = simulate("thompson", [0.70, 0.85, 0.75], rounds=2_000, replications=50, seed=1)
    >>> result.mean_regret < 30 < 2_000 * (0.85 - 0.7667), result.p_best_found > 0.9
    (True, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# scipy is imported by the functions that use it: the service's /assign imports this module
# (through splitlab.operations.bandits), and its workers start without scipy.
from splitlab.bandits._common import FloatArray, IntArray, check_count, check_number
from splitlab.bandits.policies import Policy, make_policy
from splitlab.bandits.production import ProductionSettings, decide_weights
from splitlab.stats._validation import check_probability
from splitlab.stats.results import Interval

__all__ = ["SimulationResult", "simulate"]


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """Cumulative regret over the replications of a simulation.

    Attributes:
        policy: the policy's name.
        arm_means: the true mean reward of each arm.
        rounds: decisions per replication.
        replications: independent replications.
        batch_size: units per period in production mode, None when fully online.
        regrets: cumulative pseudo-regret of each replication.
        best_found: per replication, whether the most-played arm is the best one.
        mean_regret: mean of ``regrets``.
        regret_ci: normal ``1 - alpha`` interval of the mean, ``mean +- z sd / sqrt(replications)``.
        median_regret: median of ``regrets``.
        p90_regret: 90th percentile of ``regrets`` (linear interpolation).
        p_best_found: share of replications whose most-played arm is the best.
        alpha: level of ``regret_ci``.
    """

    policy: str
    arm_means: tuple[float, ...]
    rounds: int
    replications: int
    batch_size: int | None
    regrets: tuple[float, ...]
    best_found: tuple[bool, ...]
    mean_regret: float
    regret_ci: Interval
    median_regret: float
    p90_regret: float
    p_best_found: float
    alpha: float

    def summary(self) -> dict[str, Any]:
        """The headline figures: ``mean_regret``, ``regret_ci``, ``median_regret``, ``p90_regret``, ``p_best_found``."""
        return {
            "mean_regret": self.mean_regret,
            "regret_ci": list(self.regret_ci),
            "median_regret": self.median_regret,
            "p90_regret": self.p90_regret,
            "p_best_found": self.p_best_found,
        }


def simulate(
    policy: str | Policy,
    arm_means: Sequence[float],
    *,
    rounds: int = 10_000,
    replications: int = 200,
    seed: int | np.random.Generator = 0,
    rewards: Any = None,
    noise_sd: float | None = None,
    batch_size: int | None = None,
    settings: ProductionSettings | None = None,
    alpha: float = 0.05,
    **options: Any,
) -> SimulationResult:
    """Simulate ``replications`` independent runs of a policy and summarise the cumulative regret.

    Args:
        policy: a policy name from :data:`~splitlab.bandits.policies.POLICIES` (built with
            ``options``) or a policy whose parameters are used (its state is not).
        arm_means: the true mean reward of each arm (>= 2 arms).
        rounds: decisions per replication (>= 1); default 10,000.
        replications: independent replications (>= 2); default 200.
        seed: seed of the generator every draw comes from, or the generator itself; default 0.
        rewards: optional reward tapes of shape ``(replications, rounds, arms)``: ``rewards[r, j, a]``
            is what the ``j``-th pull of arm ``a`` pays in replication ``r``, so policies run on the
            same tapes meet the same sequence of outcomes on every arm (common random numbers).
            Default: Bernoulli rewards (means in [0, 1]), or normal ones with ``noise_sd``.
        noise_sd: standard deviation of normal rewards around the means; default None (Bernoulli).
        batch_size: None (default) for a fully online policy; an integer >= 1 for production mode,
            with weights recomputed every ``batch_size`` units under ``settings``.
        settings: production-mode settings (burn-in, floor, stopping rule, draws); default
            :class:`ProductionSettings` with ``draws=1_000``.
        alpha: level of ``regret_ci``; default 0.05.
        options: options of the named policy.

    Returns:
        A :class:`SimulationResult`; identical for identical arguments and integer seed.
    """
    means = np.asarray(arm_means, dtype=np.float64)
    if means.ndim != 1 or means.size < 2 or not np.isfinite(means).all():
        msg = f"arm_means == {list(np.atleast_1d(means))!r}, must be at least 2 finite means"
        raise ValueError(msg)
    k = means.size
    rule = make_policy(policy, k, **options) if isinstance(policy, str) else policy
    if not isinstance(rule, Policy) or rule.n_arms != k:
        msg = f"policy == {policy!r}, must be a policy name or a Policy over {k} arms"
        raise ValueError(msg)
    rounds = check_count("rounds", rounds, minimum=1)
    replications = check_count("replications", replications, minimum=2)
    check_probability("alpha", alpha)
    if noise_sd is not None:
        check_number("noise_sd", noise_sd, low=0.0)
    elif rewards is None and ((means < 0).any() or (means > 1).any()):
        msg = "arm_means must be in [0, 1] for Bernoulli rewards (give noise_sd for normal rewards)"
        raise ValueError(msg)
    table = None
    if rewards is not None:
        table = np.asarray(rewards, dtype=np.float64)
        if table.shape != (replications, rounds, k):
            msg = (
                f"rewards has shape {table.shape}, must be (replications, rounds, arms) == {(replications, rounds, k)}"
            )
            raise ValueError(msg)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(check_count("seed", seed))
    environment = _Environment(means, table, noise_sd, rng, replications)
    if batch_size is None:
        if settings is not None:
            msg = "settings apply to production mode: give batch_size too"
            raise ValueError(msg)
        regrets, pulls = _online(rule, environment, rounds, replications)
    else:
        batch = check_count("batch_size", batch_size, minimum=1)
        chosen = settings if settings is not None else ProductionSettings(draws=1_000)
        chosen.check_arms(k)
        regrets, pulls = _batched(rule, environment, rounds, replications, batch, chosen)
    best_found = pulls.argmax(axis=1) == means.argmax()
    mean = float(regrets.mean())
    from scipy import special

    half = float(special.ndtri(1 - alpha / 2)) * float(regrets.std(ddof=1)) / math.sqrt(replications)
    return SimulationResult(
        policy=rule.name,
        arm_means=tuple(float(m) for m in means),
        rounds=rounds,
        replications=replications,
        batch_size=batch_size,
        regrets=tuple(float(r) for r in regrets),
        best_found=tuple(bool(b) for b in best_found),
        mean_regret=mean,
        regret_ci=(mean - half, mean + half),
        median_regret=float(np.median(regrets)),
        p90_regret=float(np.quantile(regrets, 0.9)),
        p_best_found=float(best_found.mean()),
        alpha=alpha,
    )


class _Environment:
    """Rewards of the played arms: from per-arm tapes, Bernoulli draws, or normal draws."""

    def __init__(
        self,
        means: FloatArray,
        table: FloatArray | None,
        noise_sd: float | None,
        rng: np.random.Generator,
        replications: int,
    ) -> None:
        self.means = means
        self.gaps = means.max() - means
        self.table = table
        self.noise_sd = noise_sd
        self.rng = rng
        self.rows = np.arange(replications)
        self.pulls = np.zeros((replications, means.size), dtype=np.intp)  # position on each arm's tape

    def rewards(self, arms: IntArray) -> FloatArray:
        """Rewards of ``arms`` ``(replications, m)``, played in that order."""
        if self.table is not None:
            if arms.shape[1] == 1:
                played = arms[:, 0]
                position = self.pulls[self.rows, played]
                self.pulls[self.rows, played] += 1
                return self.table[self.rows, position, played][:, None]
            hits = arms[..., None] == np.arange(self.means.size)
            order = self.pulls[:, None, :] + np.cumsum(hits, axis=1) - 1
            position = np.take_along_axis(order, arms[..., None], axis=-1)[..., 0]
            self.pulls += hits.sum(axis=1)
            return self.table[self.rows[:, None], position, arms]
        if self.noise_sd is not None:
            return self.means[arms] + self.noise_sd * self.rng.standard_normal(arms.shape)
        return (self.rng.random(arms.shape) < self.means[arms]).astype(np.float64)


def _online(rule: Policy, env: _Environment, rounds: int, replications: int) -> tuple[FloatArray, FloatArray]:
    k = rule.n_arms
    n, sums, sums_sq = (np.zeros((replications, k)) for _ in range(3))
    rows = np.arange(replications)
    regret = np.zeros(replications)
    for _ in range(rounds):
        arms = rule._choose(n, sums, sums_sq, env.rng)
        reward = env.rewards(arms[:, None])[:, 0]
        n[rows, arms] += 1.0
        sums[rows, arms] += reward
        sums_sq[rows, arms] += reward * reward
        regret += env.gaps[arms]
    return regret, n


def _batched(
    rule: Policy, env: _Environment, rounds: int, replications: int, batch: int, settings: ProductionSettings
) -> tuple[FloatArray, FloatArray]:
    k = rule.n_arms
    periods = math.ceil(rounds / batch)
    stats = np.zeros((3, replications, periods, k))
    weights = np.full((replications, k), 1.0 / k)
    stopped = np.zeros(replications, dtype=bool)
    regret = np.zeros(replications)
    arm_ids = np.arange(k)
    for p in range(periods):
        start = p * batch
        size = min(batch, rounds - start)
        cumulative = np.cumsum(weights, axis=1)[:, None, :-1]
        arms = (env.rng.random((replications, size))[..., None] >= cumulative).sum(axis=-1)
        reward = env.rewards(arms)
        hits = arms[..., None] == arm_ids
        stats[0, :, p] = hits.sum(axis=1)
        stats[1, :, p] = (hits * reward[..., None]).sum(axis=1)
        stats[2, :, p] = (hits * (reward * reward)[..., None]).sum(axis=1)
        regret += env.gaps[arms].sum(axis=1)
        if p + 1 < periods and not stopped.all():
            live = ~stopped
            n, sums, sums_sq = stats[:, live, : p + 1]
            new, phase, _, _, _ = decide_weights(rule, n, sums, sums_sq, settings, env.rng)
            weights[live] = new
            stopped[live] = phase == 2
    return regret, stats[0].sum(axis=1)
