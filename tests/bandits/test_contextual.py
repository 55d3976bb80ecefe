"""Contextual policies: ridge estimates, exact allocation, and a problem where the best arm depends on the context."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from splitlab.bandits import ContextualPolicy, LinearThompson, LinUCB, make_contextual_policy


def data(seed: int = 0, m: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.column_stack([np.ones(m), rng.uniform(-1, 1, m), rng.normal(size=m)])
    arms = rng.integers(0, 3, m)
    theta = np.array([[0.5, 0.3, 0.0], [0.5, -0.3, 0.1], [0.4, 0.0, 0.2]])
    rewards = (x * theta[arms]).sum(axis=1) + rng.normal(0, 0.5, m)
    return x, arms, rewards


@pytest.mark.parametrize("cls", [LinUCB, LinearThompson])
def test_coefficients_are_ridge_regressions_per_arm(cls: type[ContextualPolicy]) -> None:
    x, arms, rewards = data()
    policy = cls(3, 3, l2=2.0)
    policy.update_batch(arms, rewards, x)
    for arm in range(3):
        xa, ya = x[arms == arm], rewards[arms == arm]
        expected = np.linalg.solve(xa.T @ xa + 2.0 * np.eye(3), xa.T @ ya)
        np.testing.assert_allclose(policy.coefficients[arm], expected, rtol=1e-9)


def test_single_updates_batches_and_sufficient_statistics_agree() -> None:
    x, arms, rewards = data(1, 60)
    one, batch, stats = LinUCB(3, 3), LinUCB(3, 3), LinUCB(3, 3)
    for arm, reward, context in zip(arms, rewards, x, strict=True):
        one.update(int(arm), float(reward), context)
    batch.update_batch(arms, rewards, x)
    for arm in range(3):
        xa, ya = x[arms == arm], rewards[arms == arm]
        stats.update_statistics(arm, n=len(ya), xtx=xa.T @ xa, xty=xa.T @ ya)
    for other in (batch, stats):
        np.testing.assert_allclose(other.coefficients, one.coefficients, rtol=1e-9)
        np.testing.assert_array_equal(other.counts, one.counts)
    stats.reset()
    np.testing.assert_array_equal(stats.coefficients, np.zeros((3, 3)))


def test_linucb_scores_by_hand() -> None:
    x, arms, rewards = data(2, 50)
    policy = LinUCB(3, 3, alpha=0.7)
    policy.update_batch(arms, rewards, x)
    context = np.array([1.0, 0.4, -0.2])
    scores = []
    for arm in range(3):
        xa, ya = x[arms == arm], rewards[arms == arm]
        gram = xa.T @ xa + np.eye(3)
        theta = np.linalg.solve(gram, xa.T @ ya)
        scores.append(context @ theta + 0.7 * math.sqrt(context @ np.linalg.solve(gram, context)))
    assert policy.choose(context, np.random.default_rng(0)) == int(np.argmax(scores))
    np.testing.assert_array_equal(policy.weights(context), np.eye(3)[int(np.argmax(scores))])


def test_linear_thompson_weights_are_exact_and_followed() -> None:
    x, arms, rewards = data(3, 30)
    policy = LinearThompson(3, 3, scale=0.5)
    policy.update_batch(arms, rewards, x)
    contexts = np.array([[1.0, 0.5, 0.0], [1.0, -0.5, 1.0]])
    exact = policy.weights(contexts)
    assert exact.shape == (2, 3)
    np.testing.assert_allclose(exact.sum(axis=1), 1.0, atol=1e-12)
    draws = 200_000
    monte_carlo = policy.weights(contexts, np.random.default_rng(4), draws=draws)
    se = np.sqrt(exact * (1 - exact) / draws)
    assert np.all(np.abs(monte_carlo - exact) <= 4.5 * se + 1e-9)
    # Two arms: P(arm 1 best) = Phi((m1 - m0) / sqrt(s0^2 + s1^2)) for one context.
    two = LinearThompson(2, 3, scale=0.5)
    two.update_batch(arms[arms < 2], rewards[arms < 2], x[arms < 2])
    mean, width = two._moments(contexts[:1])
    sd = 0.5 * width[0]
    expected = sps.norm.cdf((mean[0, 1] - mean[0, 0]) / math.hypot(*sd))
    assert two.weights(contexts[0])[1] == pytest.approx(expected, rel=1e-9)
    choices = policy.choose(np.repeat(contexts[:1], draws, axis=0), np.random.default_rng(5))
    share = np.bincount(choices, minlength=3) / draws
    assert np.all(np.abs(share - exact[0]) <= 4.5 * np.sqrt(exact[0] * (1 - exact[0]) / draws) + 1e-9)


@pytest.mark.parametrize("name", ["linucb", "linear-thompson"])
def test_contextual_policy_beats_the_best_context_free_arm(name: str) -> None:
    """Arm 0 is best for x > 0, arm 1 for x < 0; each is worth 0.5 on average, the context is worth 0.65."""
    rounds = 3000
    rng = np.random.default_rng(21)
    policy = make_contextual_policy(name, 2, 2, **({"alpha": 0.5} if name == "linucb" else {"scale": 0.3}))
    signal = rng.uniform(-1, 1, rounds)
    contexts = np.column_stack([np.ones(rounds), signal])
    means = np.column_stack([0.5 + 0.3 * signal, 0.5 - 0.3 * signal])
    rewards = rng.random((rounds, 2)) < means
    earned = 0.0
    for t in range(rounds):
        arm = policy.choose(contexts[t], rng)
        policy.update(arm, float(rewards[t, arm]), contexts[t])
        earned += means[t, arm]
    best_fixed = means.sum(axis=0).max()
    oracle = means.max(axis=1).sum()
    assert earned > best_fixed + 0.9 * (oracle - best_fixed)
    assert np.sign(policy.weights(np.array([1.0, 0.8]), np.random.default_rng(0), draws=1000)[0] - 0.5) == 1


def test_identical_seeds_identical_choices() -> None:
    x, arms, rewards = data(4, 80)
    policy = LinearThompson(3, 3)
    policy.update_batch(arms, rewards, x)
    first = policy.choose(x, np.random.default_rng(8))
    again = policy.choose(x, np.random.default_rng(8))
    assert isinstance(first, np.ndarray)
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: LinUCB(3, 0), ValueError, "n_features == 0, must be an integer >= 1"),
        (lambda: LinUCB(3, 2, alpha=-1.0), ValueError, "alpha"),
        (lambda: LinearThompson(3, 2, l2=0.0), ValueError, "l2"),
        (lambda: LinUCB(3, 2).update(0, 1.0, [1.0, 2.0, 3.0]), ValueError, r"context has shape \(3,\), must be"),
        (lambda: LinUCB(3, 2).update(0, 1.0, [1.0, math.nan]), ValueError, "context contains NaN"),
        (lambda: LinUCB(3, 2).update_batch([0, 1], [1.0, 0.0], [[1.0, 0.0]]), ValueError, "contexts has 1 rows"),
        (lambda: LinUCB(3, 2).update_statistics(0, n=1, xtx=np.eye(3), xty=np.zeros(2)), ValueError, "xtx and xty"),
        (lambda: LinUCB(3, 2).choose([1.0, 0.0], None), TypeError, "rng == None"),  # type: ignore[arg-type]
        (lambda: make_contextual_policy("linear", 3, 2), ValueError, "policy == 'linear', must be one of"),
        (lambda: make_contextual_policy("linucb", 3, 2, scale=1.0), ValueError, "invalid option"),
    ],
)
def test_bad_input_is_refused(call: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()  # type: ignore[operator]
