"""Regret simulations: far below uniform allocation, reproducible, and production mode close to online."""

from __future__ import annotations

import numpy as np
import pytest

from splitlab.bandits import BernoulliThompson, GaussianThompson, ProductionSettings, simulate

ARMS = [0.70, 0.85, 0.75]
ROUNDS = 3000
UNIFORM_REGRET = ROUNDS * (0.85 - np.mean(ARMS))  # 250: what an equal split loses


@pytest.mark.parametrize(
    ("policy", "options", "share"),
    [
        ("thompson", {}, 0.12),
        ("ucb1-tuned", {}, 0.2),
        ("epsilon-greedy", {"epsilon": 0.05}, 0.3),
        ("epsilon-greedy", {"epsilon": 1.0, "decay": 10.0}, 0.15),
        ("ucb1", {"alpha": 0.5}, 0.4),
    ],
)
def test_regret_is_far_below_uniform_allocation(policy: str, options: dict[str, float], share: float) -> None:
    result = simulate(policy, ARMS, rounds=ROUNDS, replications=100, seed=3, **options)
    assert result.mean_regret < share * UNIFORM_REGRET
    assert result.regret_ci[0] < result.mean_regret < result.regret_ci[1]
    assert result.median_regret <= result.p90_regret


def test_top_two_thompson_identifies_the_best_arm() -> None:
    """Top-two sampling spends about half the traffic on challengers: it earns less, but it finds the best arm."""
    rounds = 600
    top_two = simulate("top-two-thompson", ARMS, rounds=rounds, replications=100, seed=3)
    thompson = simulate("thompson", ARMS, rounds=rounds, replications=100, seed=3)
    assert top_two.p_best_found >= 0.85
    assert thompson.mean_regret < top_two.mean_regret < rounds * (0.85 - np.mean(ARMS))


def test_thompson_finds_the_best_arm() -> None:
    result = simulate("thompson", ARMS, rounds=ROUNDS, replications=200, seed=1)
    assert result.p_best_found >= 0.97
    assert result.mean_regret < 0.1 * UNIFORM_REGRET
    assert result.summary().keys() == {"mean_regret", "regret_ci", "median_regret", "p90_regret", "p_best_found"}


def test_gaussian_thompson_on_continuous_rewards() -> None:
    means = [10.0, 12.0, 11.0]
    result = simulate(GaussianThompson(3), means, rounds=1500, replications=100, seed=4, noise_sd=5.0)
    assert result.mean_regret < 0.15 * 1500 * (12.0 - 11.0)
    assert result.p_best_found > 0.8


def test_identical_seeds_identical_results() -> None:
    first = simulate("thompson", ARMS, rounds=500, replications=30, seed=8)
    assert first == simulate("thompson", ARMS, rounds=500, replications=30, seed=8)
    assert first != simulate("thompson", ARMS, rounds=500, replications=30, seed=9)
    batched = {"batch_size": 50, "settings": ProductionSettings(floor=0.01, draws=200)}
    assert simulate("thompson", ARMS, rounds=500, replications=30, seed=8, **batched) == simulate(
        "thompson", ARMS, rounds=500, replications=30, seed=8, **batched
    )


def test_production_mode_stays_close_to_online_thompson() -> None:
    online = simulate("thompson", ARMS, rounds=ROUNDS, replications=150, seed=5)
    settings = ProductionSettings(floor=0.01, stop_expected_loss=1e-4, draws=300)
    batched = simulate("thompson", ARMS, rounds=ROUNDS, replications=150, seed=5, batch_size=30, settings=settings)
    assert batched.mean_regret <= 1.5 * online.mean_regret
    assert batched.p_best_found >= 0.97


def test_a_reward_table_is_the_environment() -> None:
    table = np.zeros((20, 200, 2))
    table[..., 0] = 1.0  # arm 0 always pays, although the means say arm 1 is better
    result = simulate(BernoulliThompson(2), [0.4, 0.6], rounds=200, replications=20, seed=0, rewards=table)
    assert result.p_best_found == 0.0  # it learned the table, not the means
    assert result.mean_regret > 0.2 * 200 * 0.9


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"arm_means": [0.5]}, "at least 2 finite means"),
        ({"arm_means": [0.5, 1.5]}, r"must be in \[0, 1\] for Bernoulli rewards"),
        ({"rounds": 0}, "rounds == 0"),
        ({"replications": 1}, "replications == 1"),
        ({"policy": "softmax"}, "policy == 'softmax'"),
        ({"policy": BernoulliThompson(4)}, "a Policy over 3 arms"),
        ({"rewards": np.zeros((2, 3, 3))}, r"rewards has shape \(2, 3, 3\)"),
        ({"batch_size": 0}, "batch_size == 0"),
        ({"alpha": 0.0}, "alpha == 0.0"),
        ({"noise_sd": -1.0}, "noise_sd"),
        ({"settings": ProductionSettings()}, "give batch_size too"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], match: str) -> None:
    arguments: dict[str, object] = {"policy": "thompson", "arm_means": ARMS, "rounds": 10, "replications": 5}
    with pytest.raises(ValueError, match=match):
        simulate(**(arguments | kwargs))  # type: ignore[arg-type]
