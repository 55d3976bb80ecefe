"""Context-free policies: exact allocation probabilities, decisions that follow them, state updates, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special
from scipy import stats as sps

from splitlab.bandits import (
    POLICIES,
    UCB1,
    BernoulliThompson,
    EpsilonGreedy,
    GaussianThompson,
    Policy,
    TopTwoThompson,
    UCB1Tuned,
    make_policy,
)
from splitlab.bandits.policies import p_best_beta, p_best_normal, top_two_shares
from splitlab.stats.bayesian import probability_best
from splitlab.stats.statistics import MeanStatistic, ProportionStatistic

ARMS = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
REWARDS = [1, 0, 1, 1, 1, 1, 0, 0, 0, 1]


def fitted(policy: Policy) -> Policy:
    policy.update_batch(ARMS, REWARDS)
    return policy


def frequencies(choices: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(choices, minlength=k) / choices.size


def within_binomial_error(observed: np.ndarray, expected: np.ndarray, n: int, sigmas: float = 4.5) -> bool:
    """Every observed share within ``sigmas`` binomial standard errors (plus rounding) of the expected one."""
    se = np.sqrt(np.maximum(expected * (1 - expected), 1e-12) / n)
    return bool(np.all(np.abs(observed - expected) <= sigmas * se + 1e-9))


# ------------------------------------------------------------------------------------------
# Thompson sampling: exact P(best) against independent computations


def miller_prob_greater(a1: float, b1: float, a2: int, b2: float) -> float:
    """P(X2 > X1), X_i ~ Beta(a_i, b_i), by Evan Miller's closed form (a2 an integer)."""
    terms = [
        special.betaln(a1 + i, b1 + b2) - math.log(b2 + i) - special.betaln(1 + i, b2) - special.betaln(a1, b1)
        for i in range(a2)
    ]
    return float(np.exp(terms).sum())


@pytest.mark.parametrize(("a", "b"), [((3, 40), (5, 38)), ((120, 880), (135, 865)), ((1, 1), (2, 1))])
def test_two_arm_beta_weights_equal_millers_closed_form(a: tuple[int, int], b: tuple[int, int]) -> None:
    p = p_best_beta(np.array([a[0], b[0]], dtype=float), np.array([a[1], b[1]], dtype=float))
    expected = miller_prob_greater(a[0], a[1], b[0], b[1])
    assert p[1] == pytest.approx(expected, rel=1e-9)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)


def test_three_arm_beta_weights_equal_density_space_quadrature() -> None:
    a, b = np.array([31.0, 45.0, 40.0]), np.array([71.0, 57.0, 62.0])
    reference = []
    for i in range(3):
        others = [j for j in range(3) if j != i]

        def integrand(x: float, i: int = i, others: list[int] = others) -> float:
            return sps.beta.pdf(x, a[i], b[i]) * np.prod(sps.beta.cdf(x, a[others], b[others]))

        points = list(a / (a + b))
        reference.append(integrate.quad(integrand, 0, 1, points=points, epsabs=1e-14, epsrel=1e-12, limit=500)[0])
    np.testing.assert_allclose(p_best_beta(a, b), reference, rtol=1e-8)


def test_policy_weights_match_the_statistics_engines_monte_carlo() -> None:
    policy = fitted(BernoulliThompson(3))
    draws = 2_000_000
    engine = probability_best(
        [ProportionStatistic(3, 2), ProportionStatistic(4, 3), ProportionStatistic(3, 1)], draws=draws, seed=4
    )
    exact = policy.weights()
    assert within_binomial_error(np.array(engine.p_best), exact, draws)
    monte_carlo = policy.weights(np.random.default_rng(5), draws=200_000)
    assert within_binomial_error(monte_carlo, exact, 200_000)


def test_jeffreys_prior_changes_the_posterior() -> None:
    uniform = fitted(BernoulliThompson(3)).weights()
    jeffreys = fitted(BernoulliThompson(3, prior=(0.5, 0.5))).weights()
    a, b = np.array([2.5, 3.5, 1.5]), np.array([1.5, 1.5, 2.5])
    np.testing.assert_allclose(jeffreys, p_best_beta(a, b), rtol=1e-12)
    assert not np.allclose(uniform, jeffreys, rtol=1e-3)


def test_thompson_choices_follow_the_weights() -> None:
    policy = fitted(BernoulliThompson(3))
    choices = policy.choose(np.random.default_rng(11), size=300_000)
    assert within_binomial_error(frequencies(choices, 3), policy.weights(), 300_000)


def test_gaussian_posterior_follows_the_formula() -> None:
    rewards = np.array([3.0, 5.0, 0.0, 0.0, 0.0, 12.0, 8.0, 10.0])
    arms = np.array([0, 0, 1, 1, 1, 2, 2, 2])
    policy = GaussianThompson(3)
    policy.update_batch(arms, rewards)
    pooled = rewards.var(ddof=1)
    expected_mean, expected_sd = [], []
    for arm in range(3):
        x = rewards[arms == arm]
        variance = (((x - x.mean()) ** 2).sum() + pooled) / x.size
        expected_mean.append(x.mean())
        expected_sd.append(math.sqrt(variance / x.size))
    mean, sd = policy.posterior()
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-12)
    np.testing.assert_allclose(sd, expected_sd, rtol=1e-12)
    assert sd[1] > 0  # only zeros so far, and still uncertain


def test_gaussian_known_noise_and_proper_prior_is_the_conjugate_update() -> None:
    policy = GaussianThompson(2, noise_sd=2.0, prior_mean=1.0, prior_sd=0.5)
    policy.update_batch([0, 0, 0, 1], [2.0, 4.0, 3.0, -1.0])
    precision = 1 / 0.25 + np.array([3, 1]) / 4.0
    expected = (1.0 / 0.25 + np.array([9.0, -1.0]) / 4.0) / precision
    mean, sd = policy.posterior()
    np.testing.assert_allclose(mean, expected, rtol=1e-12)
    np.testing.assert_allclose(sd, 1 / np.sqrt(precision), rtol=1e-12)


def test_two_arm_normal_weights_equal_the_closed_form() -> None:
    means, sds = np.array([1.0, 1.3]), np.array([0.2, 0.35])
    expected = sps.norm.cdf((1.3 - 1.0) / math.hypot(0.2, 0.35))
    assert p_best_normal(means, sds)[1] == pytest.approx(expected, rel=1e-9)


def test_three_arm_normal_weights_match_monte_carlo_and_handle_point_masses() -> None:
    means, sds = np.array([0.0, 0.1, 0.15]), np.array([0.1, 0.05, 0.2])
    draws = 2_000_000
    theta = np.random.default_rng(2).normal(means, sds, size=(draws, 3))
    assert within_binomial_error(frequencies(theta.argmax(axis=1), 3), p_best_normal(means, sds), draws)
    # A point mass at 0.1 against N(0, 0.1^2): P(best) = Phi(1).
    np.testing.assert_allclose(
        p_best_normal(np.array([0.0, 0.1]), np.array([0.1, 0.0])), [1 - sps.norm.cdf(1), sps.norm.cdf(1)], rtol=1e-9
    )
    np.testing.assert_allclose(p_best_normal(np.array([0.2, 0.2]), np.array([0.0, 0.0])), [0.5, 0.5])


def test_untried_gaussian_arms_come_first() -> None:
    policy = GaussianThompson(3)
    policy.update_batch([0, 0, 1], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(policy.weights(), [0, 0, 1])
    assert set(policy.choose(np.random.default_rng(0), size=50).tolist()) == {2}


# ------------------------------------------------------------------------------------------
# Top-two Thompson sampling


def test_top_two_weights_follow_russos_allocation_and_the_choices_follow_them() -> None:
    policy = TopTwoThompson(3, beta=0.5)
    fitted(policy)
    p = policy.base.weights()
    psi = p * (0.5 + 0.5 * np.array([sum(p[j] / (1 - p[j]) for j in range(3) if j != i) for i in range(3)]))
    np.testing.assert_allclose(policy.weights(), psi / psi.sum(), rtol=1e-12)
    choices = policy.choose(np.random.default_rng(3), size=200_000)
    assert within_binomial_error(frequencies(choices, 3), policy.weights(), 200_000)
    assert policy.weights()[1] < p[1]  # the leader gives up traffic to its challengers


def test_top_two_shares_with_a_certain_leader() -> None:
    np.testing.assert_allclose(top_two_shares(np.array([1.0, 0.0, 0.0]), 0.6), [0.6, 0.2, 0.2])
    np.testing.assert_allclose(top_two_shares(np.array([0.0, 1.0, 0.0, 0.0]), 0.5), [1 / 6, 0.5, 1 / 6, 1 / 6])


def test_top_two_shares_state_with_its_base() -> None:
    base = GaussianThompson(2)
    policy = TopTwoThompson(2, base=base, beta=0.7)
    policy.update(0, 1.5)
    assert base.counts.tolist() == [1.0, 0.0]
    policy.reset()
    assert base.counts.tolist() == [0.0, 0.0]


# ------------------------------------------------------------------------------------------
# UCB and epsilon-greedy


def test_ucb1_index_by_hand() -> None:
    policy = UCB1(3, alpha=0.5)
    policy.update_statistics([MeanStatistic(10, 6, 6), MeanStatistic(20, 14, 14), MeanStatistic(5, 2, 2)])
    t = 35
    index = [m + 0.5 * math.sqrt(2 * math.log(t) / n) for m, n in ((0.6, 10), (0.7, 20), (0.4, 5))]
    np.testing.assert_allclose(policy._index(policy._n, policy._sum, policy._sum_sq), index, rtol=1e-12)
    best = int(np.argmax(index))
    assert policy.choose(np.random.default_rng(0)) == best
    np.testing.assert_array_equal(policy.weights(), np.eye(3)[best])


def test_ucb1_tuned_index_by_hand() -> None:
    policy = UCB1Tuned(2)
    policy.update_batch([0, 0, 0, 0, 1, 1], [1, 0, 1, 1, 0.5, 0.25])
    t = 6
    expected = []
    for values in ([1, 0, 1, 1], [0.5, 0.25]):
        x = np.array(values, dtype=float)
        v = x.var() + math.sqrt(2 * math.log(t) / x.size)
        expected.append(x.mean() + math.sqrt(math.log(t) / x.size * min(0.25, v)))
    np.testing.assert_allclose(policy._index(policy._n, policy._sum, policy._sum_sq), expected, rtol=1e-12)


@pytest.mark.parametrize("policy", [UCB1(3), UCB1Tuned(3), EpsilonGreedy(3, epsilon=0.0)])
def test_untried_arms_first_and_ties_shared(policy: Policy) -> None:
    policy.update(1, 0.5)
    np.testing.assert_allclose(policy.weights(), [0.5, 0.0, 0.5])
    choices = policy.choose(np.random.default_rng(1), size=20_000)
    assert set(np.unique(choices).tolist()) == {0, 2}
    assert abs(frequencies(choices, 3)[0] - 0.5) < 0.02


def test_epsilon_greedy_weights_and_choices() -> None:
    policy = fitted(EpsilonGreedy(3, epsilon=0.3))
    np.testing.assert_allclose(policy.weights(), [0.1, 0.8, 0.1])
    choices = policy.choose(np.random.default_rng(9), size=200_000)
    assert within_binomial_error(frequencies(choices, 3), policy.weights(), 200_000)


def test_epsilon_decays_as_auer_et_al() -> None:
    policy = EpsilonGreedy(2, epsilon=0.5, decay=5.0)
    policy.update_batch([0] * 30 + [1] * 9, [1.0] * 30 + [0.0] * 9)
    eps = min(0.5, 5.0 * 2 / (39 + 1))
    np.testing.assert_allclose(policy.weights(), [1 - eps / 2, eps / 2])
    policy.update_batch([1] * 60, [0.0] * 60)
    eps = min(0.5, 5.0 * 2 / (99 + 1))
    np.testing.assert_allclose(policy.weights(), [1 - eps / 2, eps / 2])


# ------------------------------------------------------------------------------------------
# One interface


@pytest.mark.parametrize("name", POLICIES)
def test_every_policy_gives_weights_that_sum_to_one(name: str) -> None:
    policy = fitted(make_policy(name, 3))
    weights = policy.weights()
    assert weights.shape == (3,)
    assert (weights >= 0).all()
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    batch = policy.choose(np.random.default_rng(0), size=1000)
    assert batch.shape == (1000,)
    assert batch.min() >= 0
    assert batch.max() <= 2


@pytest.mark.parametrize("name", POLICIES)
def test_identical_seeds_give_identical_decisions(name: str) -> None:
    def run(seed: int) -> list[int]:
        policy = make_policy(name, 3)
        rng = np.random.default_rng(seed)
        rewards = np.random.default_rng(100).random((300, 3)) < [0.3, 0.5, 0.4]
        chosen = []
        for t in range(300):
            arm = policy.choose(rng)
            policy.update(arm, float(rewards[t, arm]))
            chosen.append(arm)
        return chosen + policy.choose(rng, size=50).tolist()

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_the_three_updates_agree() -> None:
    one, batch, stats = BernoulliThompson(3), BernoulliThompson(3), BernoulliThompson(3)
    for arm, reward in zip(ARMS, REWARDS, strict=True):
        one.update(arm, reward)
    batch.update_batch(np.array(ARMS), np.array(REWARDS, dtype=float))
    stats.update_statistics([MeanStatistic(3, 2, 2), MeanStatistic(4, 3, 3), MeanStatistic(3, 1, 1)])
    assert one.statistics == batch.statistics == stats.statistics
    np.testing.assert_allclose(one.weights(), stats.weights(), rtol=1e-12)
    stats.reset()
    assert stats.statistics == (MeanStatistic(0, 0.0, 0.0),) * 3


def test_make_policy_passes_options() -> None:
    policy = make_policy("top-two-thompson", 4, beta=0.3, likelihood="gaussian", noise_sd=2.0)
    assert isinstance(policy, TopTwoThompson)
    assert isinstance(policy.base, GaussianThompson)
    assert (policy.beta, policy.base.noise_sd) == (0.3, 2.0)
    assert make_policy("thompson", 2, prior=[0.5, 0.5]).prior == (0.5, 0.5)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: BernoulliThompson(1), ValueError, "n_arms == 1, must be an integer >= 2"),
        (lambda: BernoulliThompson(3, prior=(0, 1)), ValueError, "prior"),
        (lambda: GaussianThompson(3, noise_sd=0.0), ValueError, "noise_sd"),
        (lambda: GaussianThompson(3, prior_sd=-1.0), ValueError, "prior_sd"),
        (lambda: TopTwoThompson(3, beta=1.0), ValueError, "beta"),
        (lambda: TopTwoThompson(3, base=BernoulliThompson(2)), ValueError, "base.n_arms == 2"),
        (lambda: TopTwoThompson(3, base=UCB1(3)), TypeError, "must be a Thompson policy"),  # type: ignore[arg-type]
        (lambda: UCB1(3, alpha=0.0), ValueError, "alpha"),
        (lambda: EpsilonGreedy(3, epsilon=1.5), ValueError, r"epsilon == 1.5, must be in \[0, 1\]"),
        (lambda: EpsilonGreedy(3, decay=-1.0), ValueError, "decay"),
        (lambda: make_policy("softmax", 3), ValueError, "policy == 'softmax', must be one of"),
        (lambda: make_policy("ucb1", 3, epsilon=0.1), ValueError, "invalid option for policy 'ucb1'"),
        (lambda: make_policy("top-two-thompson", 3, likelihood="poisson"), ValueError, "likelihood"),
    ],
)
def test_bad_parameters_are_refused(build: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        build()  # type: ignore[operator]


def test_bad_updates_and_calls_are_refused() -> None:
    policy = BernoulliThompson(3)
    with pytest.raises(ValueError, match=r"arm == 3, must be an integer in \[0, 3\)"):
        policy.update(3, 1.0)
    with pytest.raises(ValueError, match=r"reward == 1.5, must be in \[0, 1\]"):
        policy.update(0, 1.5)
    with pytest.raises(ValueError, match="reward == nan, must be a finite number"):
        UCB1(2).update(0, math.nan)
    with pytest.raises(ValueError, match=r"arms contains 5, must be in \[0, 3\)"):
        policy.update_batch([0, 5], [1.0, 0.0])
    with pytest.raises(ValueError, match=r"rewards has shape \(1,\), must be \(2,\)"):
        policy.update_batch([0, 1], [1.0])
    with pytest.raises(ValueError, match=r"statistics\[0\].sum == 4, must be in \[0, n\]"):
        policy.update_statistics([MeanStatistic(3, 4, 4), MeanStatistic(0, 0, 0), MeanStatistic(0, 0, 0)])
    with pytest.raises(ValueError, match="statistics has 2 entries, must have one per arm"):
        policy.update_statistics([MeanStatistic(3, 1, 1)] * 2)
    with pytest.raises(TypeError, match="rng == None, must be a numpy Generator"):
        policy.choose(None)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="size == 0, must be an integer >= 1"):
        policy.choose(np.random.default_rng(0), size=0)
    with pytest.raises(ValueError, match="draws == 10, must be an integer >= 100"):
        policy.weights(np.random.default_rng(0), draws=10)
    with pytest.raises(TypeError, match="rng == None"):
        policy.weights(None, draws=1000)
    assert policy.statistics == (MeanStatistic(0, 0.0, 0.0),) * 3  # nothing half-applied
