"""splitlab.bandits vs mabwiser on Bernoulli arms (0.70, 0.85, 0.75): regret, production mode, speed.

Same environment and seeds for both libraries: replication ``r`` draws a reward tape per arm,
``R_r[j, a] ~ Bernoulli(p_a)`` (rounds x arms), from ``numpy.random.default_rng((BASE_SEED, r))``;
the ``j``-th pull of arm ``a`` pays ``R_r[j, a]`` whichever library pulls it, so both meet the same
sequence of outcomes on every arm (common random numbers: an unlucky start on the best arm is
unlucky for both, and the seed-by-seed difference measures the libraries, not the draws). Regret
is the pseudo-regret ``sum_t (0.85 - p_{A_t})``.

* mabwiser: ``MAB([0, 1, 2], policy, seed=r)``, then ``predict()`` + ``partial_fit()`` every round.
  Its UCB1 and epsilon-greedy score untried arms 0 (UCB1 would never try them), so they are first
  fitted on one observation of each arm (rounds 0-2 play arms 0, 1, 2); Thompson starts from its
  Beta(1, 1) prior.
* splitlab: :func:`splitlab.bandits.simulate` on the same tables, vectorised over replications;
  its UCB1 and epsilon-greedy play each untried arm once first, the same warm-up.
* Same parameters: Thompson Beta(1, 1); UCB1 ``alpha = 1``; epsilon-greedy ``epsilon = 0.1``
  (mabwiser's defaults).

Goals (one run; ratios are the figures, absolute times are noise on shared machines):

1. Thompson, UCB1, epsilon-greedy: splitlab's mean regret no worse than mabwiser's. The
   algorithms are the same (on the same tapes UCB1 even makes the same decisions), so for
   Thompson and epsilon-greedy the two means differ only by the policies' own random draws: a
   point estimate a little above or below is noise. The goal is therefore judged on the paired
   95 % interval of the seed-by-seed difference (splitlab - mabwiser): PASS when it does not lie
   above 0; whether the point estimate itself is <= is printed too.
2. Production mode (weights recomputed every 1 % of traffic, 1 % floor, stop when the leader's
   expected loss is below 1e-4): regret <= 1.5x splitlab's fully online Thompson. Printed for
   reference, not as goals: the same without the stopping rule, and with GrowthBook's
   period-weighted statistics instead of the within-period ones.
3. Per decision (choose + update), one unit at a time: >= 3x faster than mabwiser's predict +
   partial_fit, per policy.
4. Batch choose: >= 1,000,000 decisions/s (Thompson on a 1,000,000-unit batch; production mode).

    .venv/bin/python benchmarks/bandit_bench.py [--seeds 200] [--rounds 10000] [--workers 2]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
from mabwiser.mab import MAB, LearningPolicy

from splitlab.bandits import (
    UCB1,
    BatchedBandit,
    BernoulliThompson,
    EpsilonGreedy,
    Policy,
    ProductionSettings,
    simulate,
)

ARMS = np.array([0.70, 0.85, 0.75])
BASE_SEED = 20_240_501
GOAL_PRODUCTION_RATIO = 1.5
GOAL_SPEED_RATIO = 3.0
GOAL_BATCH_RATE = 1_000_000
POLICIES = ("thompson", "ucb1", "epsilon-greedy")


def reward_table(replication: int, rounds: int) -> np.ndarray:
    rng = np.random.default_rng((BASE_SEED, replication))
    return (rng.random((rounds, ARMS.size)) < ARMS).astype(np.float64)


def mabwiser_policy(name: str) -> Any:
    if name == "thompson":
        return LearningPolicy.ThompsonSampling()
    if name == "ucb1":
        return LearningPolicy.UCB1(alpha=1.0)
    return LearningPolicy.EpsilonGreedy(epsilon=0.1)


def splitlab_policy(name: str) -> Policy:
    if name == "thompson":
        return BernoulliThompson(ARMS.size)
    if name == "ucb1":
        return UCB1(ARMS.size, alpha=1.0)
    return EpsilonGreedy(ARMS.size, epsilon=0.1)


def mabwiser_regrets(name: str, replications: list[int], rounds: int) -> list[float]:
    """One mabwiser run per replication, decision by decision (this is the slow part of the benchmark)."""
    gaps = ARMS.max() - ARMS
    regrets = []
    for r in replications:
        table = reward_table(r, rounds)
        mab = MAB([0, 1, 2], mabwiser_policy(name), seed=r)
        pulls = np.zeros(ARMS.size, dtype=int)
        if name == "thompson":
            mab.fit(decisions=np.array([], dtype=int), rewards=np.array([], dtype=float))
        else:
            warm = np.arange(ARMS.size)
            mab.fit(decisions=warm, rewards=table[0, warm])
            pulls += 1
        regret = float(gaps @ pulls)
        for _ in range(int(pulls.sum()), rounds):
            arm = mab.predict()
            mab.partial_fit(np.array([arm]), np.array([table[pulls[arm], arm]]))
            pulls[arm] += 1
            regret += gaps[arm]
        regrets.append(regret)
    return regrets


def run_mabwiser(name: str, seeds: int, rounds: int, workers: int) -> np.ndarray:
    chunks = [list(range(i, seeds, workers)) for i in range(workers)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(mabwiser_regrets, [name] * workers, chunks, [rounds] * workers))
    regrets = np.empty(seeds)
    for chunk, part in zip(chunks, parts, strict=True):
        regrets[chunk] = part
    return regrets


def paired(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float, float]:
    diff = ours - theirs
    half = 1.96 * diff.std(ddof=1) / math.sqrt(diff.size)
    return float(diff.mean()), float(diff.mean() - half), float(diff.mean() + half)


def regret_line(label: str, regrets: np.ndarray) -> str:
    half = 1.96 * regrets.std(ddof=1) / math.sqrt(regrets.size)
    return f"  {label:<44} mean {regrets.mean():7.2f} +- {half:5.2f}   median {np.median(regrets):7.2f}"


def per_decision_seconds(name: str, decisions: int) -> tuple[float, float]:
    """Seconds per choose + update: splitlab, then mabwiser (same rewards)."""
    table = reward_table(10**6, decisions)
    rng = np.random.default_rng(1)
    policy = splitlab_policy(name)
    start = time.perf_counter()
    for t in range(decisions):
        arm = policy.choose(rng)
        policy.update(arm, table[t, arm])
    ours = (time.perf_counter() - start) / decisions
    mab = MAB([0, 1, 2], mabwiser_policy(name), seed=1)
    mab.fit(decisions=np.arange(3), rewards=table[:3, 0])
    start = time.perf_counter()
    for t in range(decisions):
        arm = mab.predict()
        mab.partial_fit(np.array([arm]), np.array([table[t, arm]]))
    theirs = (time.perf_counter() - start) / decisions
    return ours, theirs


def batch_rate(choose: Any, size: int, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        choose(size)
        times.append(time.perf_counter() - start)
    return size / min(times)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--decisions", type=int, default=20_000, help="decisions timed per policy")
    args = parser.parse_args()
    seeds, rounds = args.seeds, args.rounds
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress shows in a pipe too
    print(f"arms {ARMS.tolist()}, {rounds} rounds, {seeds} seeds (reward tapes from seeds ({BASE_SEED}, r))")
    tables = np.stack([reward_table(r, rounds) for r in range(seeds)])
    results: list[bool] = []

    print("\n1. Regret, same environment and seeds (mabwiser decision by decision; this takes a few minutes)")
    online: dict[str, np.ndarray] = {}
    for name in POLICIES:
        start = time.perf_counter()
        ours = np.array(simulate(splitlab_policy(name), ARMS, rounds=rounds, replications=seeds, seed=7,
                                 rewards=tables).regrets)  # fmt: skip
        ours_s = time.perf_counter() - start
        start = time.perf_counter()
        theirs = run_mabwiser(name, seeds, rounds, args.workers)
        theirs_s = time.perf_counter() - start
        online[name] = ours
        diff, low, high = paired(ours, theirs)
        print(regret_line(f"splitlab {name} ({ours_s:.1f} s)", ours))
        print(regret_line(f"mabwiser {name} ({theirs_s:.1f} s, {args.workers} processes)", theirs))
        ratio = ours.mean() / theirs.mean()
        ok = bool(low <= 0)
        below = "yes" if ours.mean() <= theirs.mean() else "no"
        print(f"    ratio {ratio:.3f}; paired difference {diff:+.2f} (95% CI {low:+.2f} to {high:+.2f}); "
              f"point estimate <= mabwiser: {below}  [no worse: paired CI not above 0] {verdict(ok)}")  # fmt: skip
        results.append(ok)

    print("\n2. Production mode: weights every 1% of traffic, 1% floor (splitlab Thompson)")
    batch = max(1, rounds // 100)
    configurations = [
        ("stop at expected loss <= 1e-4 (goal)", ProductionSettings(floor=0.01, stop_expected_loss=1e-4, draws=2_000)),
        ("no stopping rule", ProductionSettings(floor=0.01, draws=2_000)),
        ("period-weighted statistics, stop 1e-4", ProductionSettings(
            floor=0.01, stop_expected_loss=1e-4, draws=2_000, statistics="period-weighted")),
    ]  # fmt: skip
    reference = online["thompson"].mean()
    for index, (label, settings) in enumerate(configurations):
        result = simulate("thompson", ARMS, rounds=rounds, replications=seeds, seed=11, rewards=tables,
                          batch_size=batch, settings=settings)  # fmt: skip
        regrets = np.array(result.regrets)
        ratio = regrets.mean() / reference
        line = regret_line(label, regrets) + f"   x{ratio:.2f} online, P(best found) {result.p_best_found:.3f}"
        if index == 0:
            ok = bool(ratio <= GOAL_PRODUCTION_RATIO)
            results.append(ok)
            line += f"  [<= {GOAL_PRODUCTION_RATIO}x] {verdict(ok)}"
        print(line)

    print(f"\n3. Per decision, choose + update, {args.decisions} decisions one at a time")
    for name in POLICIES:
        ours, theirs = per_decision_seconds(name, args.decisions)
        ok = bool(theirs / ours >= GOAL_SPEED_RATIO)
        results.append(ok)
        print(f"  {name:<16} splitlab {ours * 1e6:7.1f} us   mabwiser {theirs * 1e6:7.1f} us   "
              f"x{theirs / ours:5.1f}  [>= {GOAL_SPEED_RATIO}x] {verdict(ok)}")  # fmt: skip

    print("\n4. Batch choose, 1,000,000 decisions")
    rng = np.random.default_rng(3)
    thompson = BernoulliThompson(ARMS.size)
    thompson.update_batch(np.repeat(np.arange(3), 1000), (rng.random(3000) < np.repeat(ARMS, 1000)).astype(float))
    production = BatchedBandit(BernoulliThompson(ARMS.size), batch_size=1000)
    production.update_batch(np.repeat(np.arange(3), 1000), (rng.random(3000) < np.repeat(ARMS, 1000)).astype(float))
    for label, choose in (
        ("Thompson sampling (a posterior draw per decision)", lambda n: thompson.choose(rng, size=n)),
        ("production mode (draws from the period's weights)", lambda n: production.choose(rng, size=n)),
    ):
        rate = batch_rate(choose, 1_000_000)
        ok = rate >= GOAL_BATCH_RATE
        results.append(ok)
        print(f"  {label:<52} {rate / 1e6:6.2f} M decisions/s  [>= 1 M/s] {verdict(ok)}")

    print(f"\n{sum(results)}/{len(results)} goals met")


if __name__ == "__main__":
    main()
