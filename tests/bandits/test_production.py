"""Production mode: batches, burn-in, floor, stopping rule, reproducible weights, drift-proof statistics."""

from __future__ import annotations

import numpy as np
import pytest

from splitlab.bandits import (
    POLICIES,
    BatchedBandit,
    BernoulliThompson,
    EpsilonGreedy,
    ProductionSettings,
    decide_weights,
    make_policy,
)
from splitlab.stats.statistics import MeanStatistic

MEANS = np.array([0.30, 0.45, 0.35])


def run(bandit: BatchedBandit, units: int, seed: int = 0, means: np.ndarray = MEANS) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(units // 50):
        arms = bandit.choose(rng, size=50)
        bandit.update_batch(arms, (rng.random(50) < means[arms]).astype(float))


@pytest.mark.parametrize("name", POLICIES)
def test_weights_sum_to_one_and_respect_the_floor(name: str) -> None:
    bandit = BatchedBandit(make_policy(name, 3), batch_size=100, floor=0.04, draws=500, seed=1)
    run(bandit, 3000)
    assert len(bandit.decisions) == 30
    for weights in bandit.period_weights:
        assert sum(weights) == pytest.approx(1.0, abs=1e-12)
        assert min(weights) >= 0.04 - 1e-12
    assert max(bandit.weights) > 0.45  # and yet it shifts traffic (top-two keeps about half for the leader)


def test_burn_in_allocates_equally() -> None:
    bandit = BatchedBandit(BernoulliThompson(3), batch_size=100, burn_in=300, floor=0.0, draws=500)
    run(bandit, 600)
    phases = [d.phase for d in bandit.decisions]
    assert phases[:2] == ["burn-in", "burn-in"]
    assert phases[2:] == ["adaptive"] * 4
    assert bandit.period_weights[1] == bandit.period_weights[2] == (1 / 3, 1 / 3, 1 / 3)
    assert bandit.period_weights[3] != (1 / 3, 1 / 3, 1 / 3)


def test_stopping_at_p_best_hands_the_winner_everything_for_good() -> None:
    bandit = BatchedBandit(BernoulliThompson(3), batch_size=200, floor=0.05, stop_p_best=0.99, draws=2000, seed=4)
    run(bandit, 6000, means=np.array([0.2, 0.6, 0.3]))
    stops = [i for i, d in enumerate(bandit.decisions) if d.phase == "stopped"]
    assert stops
    first = bandit.decisions[stops[0]]
    assert first.winner == 1
    assert max(first.p_best) >= 0.99
    assert stops == list(range(stops[0], len(bandit.decisions)))  # permanent
    assert bandit.weights == (0.0, 1.0, 0.0)
    assert set(bandit.choose(np.random.default_rng(0), size=1000).tolist()) == {1}


def test_stopping_at_an_expected_loss_bound() -> None:
    bandit = BatchedBandit(BernoulliThompson(2), batch_size=200, stop_expected_loss=0.001, draws=2000, seed=2)
    run(bandit, 4000, means=np.array([0.5, 0.3]))
    assert bandit.winner == 0
    stop = next(d for d in bandit.decisions if d.phase == "stopped")
    assert stop.expected_loss[0] <= 0.001


def test_weights_are_reproducible_from_the_seed_and_the_period() -> None:
    one = BatchedBandit(BernoulliThompson(3), batch_size=100, seed=9, draws=1000)
    two = BatchedBandit(BernoulliThompson(3), batch_size=100, seed=9, draws=1000)
    other = BatchedBandit(BernoulliThompson(3), batch_size=100, seed=10, draws=1000)
    for bandit in (one, two, other):
        run(bandit, 500, seed=3)
    assert one.decisions == two.decisions
    assert one.decisions != other.decisions
    stats = np.array([[[s.n, s.sum, s.sum_sq] for s in period] for period in one.period_statistics[:3]])
    n, sums, sums_sq = np.moveaxis(stats, -1, 0)
    weights, *_ = decide_weights(BernoulliThompson(3), n, sums, sums_sq, one.settings, np.random.default_rng((9, 3)))
    assert tuple(weights.tolist()) == one.period_weights[3]


def test_batches_split_at_their_boundary_and_late_rewards_go_to_their_period() -> None:
    bandit = BatchedBandit(EpsilonGreedy(2), batch_size=100, floor=0.0)
    decisions = bandit.update_batch(np.zeros(250, dtype=int), np.ones(250))
    assert [d.period for d in decisions] == [1, 2]
    assert [s[0].n for s in bandit.period_statistics] == [100, 100, 50]
    assert bandit.update(1, 0.0, period=0) is None
    assert bandit.period_statistics[0][1] == MeanStatistic(1, 0.0, 0.0)
    assert bandit.period == 2
    decision = bandit.update_statistics([MeanStatistic(40, 10.0, 10.0), MeanStatistic(10, 1.0, 1.0)])
    assert decision is not None
    assert decision.period == 3


def test_time_based_periods() -> None:
    bandit = BatchedBandit(BernoulliThompson(2), interval=3600.0, start=1000.0, draws=500)
    bandit.update_batch([0, 1, 1], [1.0, 0.0, 1.0])
    assert bandit.advance(4000.0) is None
    decision = bandit.advance(4600.0)
    assert decision is not None
    assert decision.period == 1
    assert bandit.advance(8199.0) is None
    assert bandit.advance(8200.0) is not None


def test_estimates_use_the_periods() -> None:
    bandit = BatchedBandit(BernoulliThompson(3), batch_size=100, floor=0.1, draws=500)
    run(bandit, 2000, seed=5)
    for estimator in ("period-weighted", "ipw", "naive"):
        estimates = bandit.estimates(estimator=estimator)
        assert [e.estimator for e in estimates] == [estimator] * 3
        assert all(abs(e.mean - m) < 5 * e.standard_error for e, m in zip(estimates, MEANS, strict=True))


def drifting_periods() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Conversion rises over six periods while traffic moves to arm 1, worse by 0.05 in every period."""
    base = np.linspace(0.10, 0.40, 6)
    share = np.linspace(0.1, 0.9, 6)
    n = np.column_stack([1000 * (1 - share), 1000 * share])
    sums = n * np.column_stack([base, base - 0.05])
    return n, sums, sums


def test_within_period_statistics_are_not_fooled_by_drift() -> None:
    n, sums, sums_sq = drifting_periods()
    policy = BernoulliThompson(2)
    p_best = {}
    for method in ("pooled", "within-period", "period-weighted"):
        settings = ProductionSettings(floor=0.0, draws=20_000, statistics=method)
        _, _, _, p_best[method], _ = decide_weights(policy, n, sums, sums_sq, settings, np.random.default_rng(0))
    assert p_best["pooled"][1] > 0.99  # pooled sums credit arm 1 for arriving late
    assert p_best["within-period"][0] > 0.99
    assert p_best["period-weighted"][0] > 0.95


def test_decisions_vectorise_over_replications() -> None:
    n, sums, sums_sq = drifting_periods()
    settings = ProductionSettings(floor=0.02, draws=1000)
    weights, phase, winner, p_best, loss = decide_weights(
        BernoulliThompson(2), np.stack([n, n]), np.stack([sums, sums]), np.stack([sums_sq, sums_sq]), settings,
        np.random.default_rng(1),
    )  # fmt: skip
    assert weights.shape == p_best.shape == loss.shape == (2, 2)
    assert phase.tolist() == [1, 1]
    assert winner.tolist() == [-1, -1]


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: BatchedBandit(BernoulliThompson(3), floor=0.4), ValueError, r"floor == 0.4, must be <= 1 / n_arms"),
        (lambda: BatchedBandit(BernoulliThompson(3), stop_p_best=1.0), ValueError, "stop_p_best == 1.0"),
        (lambda: BatchedBandit(BernoulliThompson(3), stop_expected_loss=-1.0), ValueError, "stop_expected_loss"),
        (lambda: BatchedBandit(BernoulliThompson(3), draws=10), ValueError, "draws == 10"),
        (lambda: BatchedBandit(BernoulliThompson(3), burn_in=-5), ValueError, "burn_in == -5"),
        (lambda: BatchedBandit(BernoulliThompson(3), statistics="median"), ValueError, "statistics == 'median'"),
        (lambda: BatchedBandit(BernoulliThompson(3), batch_size=0), ValueError, "batch_size == 0"),
        (lambda: BatchedBandit(BernoulliThompson(3), interval=0.0), ValueError, "interval"),
        (lambda: BatchedBandit(BernoulliThompson(3), colour="red"), ValueError, "invalid production option"),
        (lambda: BatchedBandit("thompson"), TypeError, "must be a context-free Policy"),  # type: ignore[arg-type]
        (
            lambda: BatchedBandit(BernoulliThompson(3), settings=ProductionSettings(), floor=0.1),
            ValueError,
            "give settings or its fields",
        ),
        (lambda: BatchedBandit(BernoulliThompson(3)).advance(10.0), ValueError, "interval is None"),
        (lambda: BatchedBandit(BernoulliThompson(3)).update(0, 1.0, period=1), ValueError, r"period == 1"),
        (lambda: BatchedBandit(BernoulliThompson(3)).estimates(estimator="mle"), ValueError, "estimator == 'mle'"),
    ],
)
def test_bad_settings_are_refused(build: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        build()  # type: ignore[operator]
