"""Tests of splitlab.stats.bayesian: exact Beta computations, the Gaussian effect model, ranking."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special
from scipy import stats as sps

from splitlab.stats import bayesian
from splitlab.stats.bayesian import (
    BayesianResult,
    ProbabilityBest,
    beta_binomial,
    gaussian,
    gaussian_from_statistics,
    probability_best,
)
from splitlab.stats.frequentist import GroupEstimate, estimate, two_sample_test
from splitlab.stats.results import ErrorCode
from splitlab.stats.statistics import MeanStatistic, ProportionStatistic, RatioStatistic

MC_DRAWS = 2_000_000


# ------------------------------------------------------------------------------------------
# Independent references: scipy.stats densities and plain QUADPACK over [0, 1].


def _quad(func, low: float, high: float, **options) -> float:
    """QUADPACK without IntegrationWarning (full_output); the tolerances below are what is checked."""
    options = {"epsabs": 1e-14, "epsrel": 1e-12, "limit": 500} | options
    return integrate.quad(func, low, high, full_output=1, **options)[0]


def _posterior(stat: ProportionStatistic, prior: tuple[float, float]) -> tuple[float, float]:
    return prior[0] + stat.successes, prior[1] + stat.n - stat.successes


def _window(a: float, b: float) -> tuple[float, float, float]:
    """Mean +- 40 sd clipped to [0, 1]: where a Beta density is not negligible."""
    mean = a / (a + b)
    sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    return max(0.0, mean - 40 * sd), mean, min(1.0, mean + 40 * sd)


def _quad_prob_greater(a1: float, b1: float, a2: float, b2: float) -> float:
    """P(X1 > X2) = int f_1(x) F_2(x) dx with scipy.stats and QUADPACK."""
    low, mean, high = _window(a1, b1)
    return _quad(lambda x: sps.beta.pdf(x, a1, b1) * sps.beta.cdf(x, a2, b2), low, high, points=[mean])


def _pdf(a: float, b: float):
    log_norm = special.betaln(a, b)
    return lambda x: math.exp(special.xlogy(a - 1, x) + special.xlog1py(b - 1, -x) - log_norm)


def _nested_loss(a_x: float, b_x: float, a_y: float, b_y: float, *, relative: bool = False) -> float:
    """E[max(X - Y, 0)] (or E[max(X / Y - 1, 0)]) as a double integral over {x > y}."""
    f_x, f_y = _pdf(a_x, b_x), _pdf(a_y, b_y)
    low, _, high = _window(a_y, b_y)
    x_high = _window(a_x, b_x)[2]

    def inner(y: float) -> float:
        if y >= x_high:
            return 0.0
        gain = (lambda x: x / y - 1) if relative else (lambda x: x - y)
        return _quad(lambda x: gain(x) * f_x(x), y, x_high, epsrel=1e-11, limit=200)

    return _quad(lambda y: f_y(y) * inner(y), low, high, epsrel=1e-11, limit=200)


def _quad_effect_cdf(a_c: float, b_c: float, a_t: float, b_t: float, x: float, *, relative: bool) -> float:
    """P(T - C <= x) or P(T / C - 1 <= x) as int f_C(c) F_T(.) dc with scipy.stats."""
    low, mean, high = _window(a_c, b_c)
    shift = (lambda c: (1 + x) * c) if relative else (lambda c: c + x)
    return _quad(
        lambda c: sps.beta.pdf(c, a_c, b_c) * sps.beta.cdf(min(max(shift(c), 0.0), 1.0), a_t, b_t),
        low,
        high,
        points=[mean],
    )


def _beta_draws(a: float, b: float, seed: int, size: int = MC_DRAWS) -> np.ndarray:
    return np.random.default_rng(seed).beta(a, b, size=size)


def _within(estimate_: float, target: float, sd: float, draws: int, k: float = 4.0) -> bool:
    return abs(estimate_ - target) <= k * sd / math.sqrt(draws)


# ------------------------------------------------------------------------------------------
# Beta-binomial: chance to win


PAIRS = [
    (ProportionStatistic(120, 14), ProportionStatistic(115, 22)),
    (ProportionStatistic(1000, 100), ProportionStatistic(1000, 130)),
    (ProportionStatistic(5000, 260), ProportionStatistic(4800, 241)),
    (ProportionStatistic(40, 0), ProportionStatistic(45, 3)),
    (ProportionStatistic(300, 299), ProportionStatistic(310, 310)),
]
PRIORS = [(1.0, 1.0), (0.5, 0.5), (2.5, 7.0)]


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize(("control", "treatment"), PAIRS)
def test_chance_to_win_matches_quadrature(control, treatment, prior):
    a_c, b_c = _posterior(control, prior)
    a_t, b_t = _posterior(treatment, prior)
    result = beta_binomial(control, treatment, prior=prior)
    assert result.chance_to_win == pytest.approx(_quad_prob_greater(a_t, b_t, a_c, b_c), abs=1e-9)


@pytest.mark.parametrize(
    ("control", "treatment"),
    [
        (ProportionStatistic(10**6, 10**5 - 500), ProportionStatistic(10**6, 10**5)),
        (ProportionStatistic(2 * 10**6, 41_000), ProportionStatistic(10**6, 20_300)),
    ],
)
@pytest.mark.parametrize("prior", ["uniform", "jeffreys"])
def test_chance_to_win_large_counts(control, treatment, prior):
    params = bayesian.BETA_PRIORS[prior]
    a_c, b_c = _posterior(control, params)
    a_t, b_t = _posterior(treatment, params)
    result = beta_binomial(control, treatment, prior=prior)
    assert result.chance_to_win == pytest.approx(_quad_prob_greater(a_t, b_t, a_c, b_c), abs=1e-9)


def test_closed_form_and_quadrature_agree():
    """Miller's four summation forms and the quadrature path give one number (integer parameters)."""
    for a1, b1, a2, b2 in [(31, 270, 21, 280), (130, 871, 101, 901), (4, 9, 6, 3), (1, 41, 4, 42)]:
        quad = bayesian._prob_greater_quad(a1, b1, a2, b2)
        forms = [
            bayesian._miller_sum(a1, b1, a2, b2),
            1 - bayesian._miller_sum(a2, b2, a1, b1),
            1 - bayesian._miller_sum(b1, a1, b2, a2),
            bayesian._miller_sum(b2, a2, b1, a1),
        ]
        assert forms == pytest.approx([quad] * 4, abs=1e-11)


def test_log_beta_is_accurate_where_betaln_is_not():
    # log B(1e5, 9e5) = -325087.758234547098442277865... (mpmath, 30 digits); betaln is ~1.5e-9 off.
    reference = -325087.7582345471
    value = bayesian._scalar_log_beta(1e5, 9e5)
    assert abs(value - reference) <= 2 * math.ulp(reference)
    # mpmath references, 30 digits.
    pinned = {
        (0.5, 0.5): 1.1447298858494002,
        (1.0, 7.0): -1.9459101490553132,
        (3.5, 40.25): -11.838000375748027,
        (0.5, 1e5): -5.184096539560414,
        (2000.5, 30000.5): -7485.600910490773,
    }
    for (a, b), expected in pinned.items():
        assert bayesian._scalar_log_beta(a, b) == pytest.approx(expected, rel=1e-14, abs=1e-14)


@pytest.mark.parametrize(
    ("control", "treatment", "prior", "seed"),
    [
        (ProportionStatistic(1000, 100), ProportionStatistic(1000, 118), "uniform", 1),
        (ProportionStatistic(60, 2), ProportionStatistic(70, 5), "jeffreys", 2),
        (ProportionStatistic(10**6, 10**5 - 300), ProportionStatistic(10**6, 10**5), "jeffreys", 3),
        # All but one unit converted: posterior mass within ~1e-6 of 1, singular at 1 under Jeffreys.
        (ProportionStatistic(10**6, 10**6), ProportionStatistic(10**6, 10**6 - 1), "jeffreys", 4),
    ],
)
def test_chance_to_win_matches_monte_carlo(control, treatment, prior, seed):
    params = bayesian.BETA_PRIORS[prior]
    c = _beta_draws(*_posterior(control, params), seed)
    t = _beta_draws(*_posterior(treatment, params), seed + 100)
    p = beta_binomial(control, treatment, prior=prior).chance_to_win
    assert _within(float(np.mean(t > c)), p, math.sqrt(p * (1 - p)), MC_DRAWS)


def test_chance_to_win_direction_and_symmetry():
    control, treatment = ProportionStatistic(400, 40), ProportionStatistic(400, 52)
    up = beta_binomial(control, treatment)
    down = beta_binomial(control, treatment, higher_is_better=False)
    swapped = beta_binomial(treatment, control)
    assert down.chance_to_win == pytest.approx(1 - up.chance_to_win, abs=1e-14)
    assert swapped.chance_to_win == pytest.approx(1 - up.chance_to_win, abs=1e-12)
    assert beta_binomial(control, control).chance_to_win == pytest.approx(0.5, abs=1e-12)


# ------------------------------------------------------------------------------------------
# Beta-binomial: expected loss


@pytest.mark.parametrize(
    ("control", "treatment", "prior"),
    [
        (ProportionStatistic(200, 30), ProportionStatistic(210, 41), (1.0, 1.0)),
        (ProportionStatistic(90, 4), ProportionStatistic(80, 2), (0.5, 0.5)),
    ],
)
def test_expected_loss_matches_double_integral(control, treatment, prior):
    a_c, b_c = _posterior(control, prior)
    a_t, b_t = _posterior(treatment, prior)
    result = beta_binomial(control, treatment, prior=prior)
    assert result.expected_loss_treatment == pytest.approx(_nested_loss(a_c, b_c, a_t, b_t), abs=1e-10)
    assert result.expected_loss_control == pytest.approx(_nested_loss(a_t, b_t, a_c, b_c), abs=1e-10)
    relative = beta_binomial(control, treatment, prior=prior, relative=True)
    # E[max(1 - T/C, 0)] = E[max(C - T, 0) / C]; E[max(T/C - 1, 0)] as a double integral directly.
    f_c, f_t = _pdf(a_c, b_c), _pdf(a_t, b_t)
    downside = _quad(lambda c: f_c(c) * _quad(lambda t: (1 - t / c) * f_t(t), 0, c, limit=200), 0, 1, limit=200)
    assert relative.expected_loss_treatment == pytest.approx(downside, abs=1e-9)
    assert relative.expected_loss_control == pytest.approx(_nested_loss(a_t, b_t, a_c, b_c, relative=True), rel=1e-8)


@pytest.mark.parametrize(
    ("control", "treatment", "prior"),
    [
        (ProportionStatistic(1000, 100), ProportionStatistic(1000, 108), "uniform"),
        (ProportionStatistic(10**6, 10**5), ProportionStatistic(10**6, 10**5 + 250), "jeffreys"),
        (ProportionStatistic(10**5, 10**5 - 9), ProportionStatistic(10**5, 10**5 - 2), "jeffreys"),
    ],
)
def test_expected_loss_matches_monte_carlo(control, treatment, prior):
    params = bayesian.BETA_PRIORS[prior]
    c = _beta_draws(*_posterior(control, params), 7)
    t = _beta_draws(*_posterior(treatment, params), 8)
    absolute = beta_binomial(control, treatment, prior=prior)
    relative = beta_binomial(control, treatment, prior=prior, relative=True)
    for draws, result in ((t - c, absolute), (t / c - 1, relative)):
        for sample, value in (
            (np.maximum(-draws, 0), result.expected_loss_treatment),
            (np.maximum(draws, 0), result.expected_loss_control),
        ):
            assert _within(float(sample.mean()), value, float(sample.std()), MC_DRAWS)
        assert _within(float(draws.mean()), result.effect, float(draws.std()), MC_DRAWS)


@pytest.mark.parametrize("relative", [False, True])
@pytest.mark.parametrize("higher_is_better", [True, False])
def test_expected_losses_differ_by_the_effect(relative, higher_is_better):
    result = beta_binomial(
        ProportionStatistic(700, 61), ProportionStatistic(650, 70), relative=relative, higher_is_better=higher_is_better
    )
    difference = result.expected_loss_control - result.expected_loss_treatment
    assert difference == pytest.approx(result.effect if higher_is_better else -result.effect, abs=1e-12)
    # Exact posterior means: m_T - m_C, and m_T E[1 / p_C] - 1 = m_T (a_C + b_C - 1) / (a_C - 1) - 1.
    a_c, b_c, a_t, b_t = 62, 640, 71, 581
    expected = (
        a_t / (a_t + b_t) * (a_c + b_c - 1) / (a_c - 1) - 1 if relative else a_t / (a_t + b_t) - a_c / (a_c + b_c)
    )
    assert result.effect == pytest.approx(expected, rel=1e-13)


def test_lower_is_better_swaps_the_losses():
    control, treatment = ProportionStatistic(500, 60), ProportionStatistic(500, 45)
    up = beta_binomial(control, treatment)
    down = beta_binomial(control, treatment, higher_is_better=False)
    assert (down.expected_loss_treatment, down.expected_loss_control) == (
        up.expected_loss_control,
        up.expected_loss_treatment,
    )
    assert down.credible_interval == up.credible_interval
    assert down.chance_to_win > 0.9


# ------------------------------------------------------------------------------------------
# Beta-binomial: credible interval


@pytest.mark.parametrize(
    ("control", "treatment", "prior", "relative"),
    [
        (ProportionStatistic(1000, 100), ProportionStatistic(1000, 130), "uniform", False),
        (ProportionStatistic(1000, 100), ProportionStatistic(1000, 130), "uniform", True),
        (ProportionStatistic(50, 1), ProportionStatistic(50, 4), "jeffreys", False),
        (ProportionStatistic(50, 1), ProportionStatistic(50, 4), "jeffreys", True),
        (ProportionStatistic(10**6, 10**5), ProportionStatistic(10**6, 10**5 + 400), "uniform", True),
        (ProportionStatistic(10**5, 10**5 - 2), ProportionStatistic(10**5, 10**5 - 9), "jeffreys", False),
        (ProportionStatistic(10**5, 10**5 - 2), ProportionStatistic(10**5, 10**5 - 9), "jeffreys", True),
    ],
)
def test_credible_interval_is_exact(control, treatment, prior, relative):
    params = bayesian.BETA_PRIORS[prior]
    a_c, b_c = _posterior(control, params)
    a_t, b_t = _posterior(treatment, params)
    alpha = 0.1
    low, high = beta_binomial(control, treatment, prior=prior, relative=relative, alpha=alpha).credible_interval
    assert _quad_effect_cdf(a_c, b_c, a_t, b_t, low, relative=relative) == pytest.approx(alpha / 2, abs=1e-9)
    assert _quad_effect_cdf(a_c, b_c, a_t, b_t, high, relative=relative) == pytest.approx(1 - alpha / 2, abs=1e-9)
    # Monte Carlo: the share of draws below each bound is alpha/2 within 4 binomial standard errors.
    c, t = _beta_draws(a_c, b_c, 11), _beta_draws(a_t, b_t, 12)
    effect = t / c - 1 if relative else t - c
    se = math.sqrt(alpha / 2 * (1 - alpha / 2))
    assert _within(float(np.mean(effect <= low)), alpha / 2, se, MC_DRAWS)
    assert _within(float(np.mean(effect > high)), alpha / 2, se, MC_DRAWS)


def test_credible_interval_quantiles_match_monte_carlo():
    alpha = 0.05
    result = beta_binomial(ProportionStatistic(2000, 200), ProportionStatistic(2000, 236), alpha=alpha)
    c, t = _beta_draws(201, 1801, 21), _beta_draws(237, 1765, 22)
    quantiles = np.quantile(t - c, [alpha / 2, 1 - alpha / 2])
    width = result.credible_interval[1] - result.credible_interval[0]
    assert np.allclose(quantiles, result.credible_interval, rtol=0, atol=1e-3 * width)


# ------------------------------------------------------------------------------------------
# Beta-binomial: degenerate data, golden values, calibration


def test_empty_group_gives_error_code():
    result = beta_binomial(ProportionStatistic(0, 0), ProportionStatistic(10, 3))
    assert result.error_code is ErrorCode.EMPTY_GROUP
    assert math.isnan(result.chance_to_win)
    assert math.isnan(result.effect)
    assert all(math.isnan(x) for x in result.credible_interval)


@pytest.mark.parametrize("prior", ["uniform", "jeffreys"])
def test_no_control_conversions_relative(prior):
    """a_C <= 1: E[p_T / p_C] is infinite; chance to win and the interval stay defined."""
    control, treatment = ProportionStatistic(50, 0), ProportionStatistic(50, 2)
    result = beta_binomial(control, treatment, relative=True, prior=prior)
    assert result.error_code is ErrorCode.ZERO_CONTROL_MEAN
    assert math.isnan(result.effect)
    assert math.isnan(result.expected_loss_treatment)
    assert 0.5 < result.chance_to_win < 1
    assert all(math.isfinite(x) for x in result.credible_interval)
    absolute = beta_binomial(control, treatment, prior=prior)
    assert absolute.error_code is None
    assert absolute.chance_to_win == result.chance_to_win
    informative = beta_binomial(control, treatment, relative=True, prior=(2.0, 20.0))
    assert informative.error_code is None
    assert math.isfinite(informative.effect)


def test_beta_binomial_golden_values():
    result = beta_binomial(ProportionStatistic(1000, 100), ProportionStatistic(1000, 130))
    assert result.test == "beta-binomial"
    assert result.prior == "beta(1, 1)"
    assert result.chance_to_win == pytest.approx(0.9821650661163519, rel=1e-10)
    assert result.effect == pytest.approx(30 / 1002, rel=1e-12)
    assert result.expected_loss_treatment == pytest.approx(9.237449150468384e-05, rel=1e-8)
    assert result.credible_interval == pytest.approx((0.002008521661732278, 0.05797928988783452), rel=1e-8)
    large = beta_binomial(ProportionStatistic(10**6, 10**5 - 500), ProportionStatistic(10**6, 10**5))
    # 40-digit reference by Miller's sum in mpmath.
    assert large.chance_to_win == pytest.approx(0.8809642561127061, abs=1e-12)


def test_beta_binomial_calibration_under_aa():
    """A/A, flat prior: P(chance_to_win > 0.95) is 0.05 within 3 binomial standard errors."""
    reps, n, rate = 4000, 1000, 0.1
    rng = np.random.default_rng(2024)
    control, treatment = rng.binomial(n, rate, size=reps), rng.binomial(n, rate, size=reps)
    # The same exact routine beta_binomial reports as chance_to_win (the interval is skipped for speed).
    wins = np.array(
        [bayesian._prob_greater(1 + t, 1 + n - t, 1 + c, 1 + n - c) for c, t in zip(control, treatment, strict=True)]
    )
    se = math.sqrt(0.05 * 0.95 / reps)
    assert abs(float(np.mean(wins > 0.95)) - 0.05) <= 3 * se
    first = beta_binomial(ProportionStatistic(n, int(control[0])), ProportionStatistic(n, int(treatment[0])))
    assert first.chance_to_win == wins[0]


# ------------------------------------------------------------------------------------------
# Gaussian effect model


def _hand_gaussian(lift: float, var: float, prior: tuple[float, float] | None, alpha: float):
    if prior is None:
        mu, sigma = lift, math.sqrt(var)
    else:
        m, tau2 = prior
        post_var = 1 / (1 / var + 1 / tau2)
        mu, sigma = post_var * (lift / var + m / tau2), math.sqrt(post_var)
    phi = math.exp(-0.5 * (mu / sigma) ** 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * math.erfc(-mu / sigma / math.sqrt(2))
    z = sps.norm.isf(alpha / 2)
    return {
        "mu": mu,
        "ci": (mu - z * sigma, mu + z * sigma),
        "win": cdf,
        "up": mu * cdf + sigma * phi,
        "down": -mu * (1 - cdf) + sigma * phi,
    }


@pytest.mark.parametrize("relative", [True, False])
@pytest.mark.parametrize("prior", [None, (0.0, 0.01), (0.02, 0.0004)])
def test_gaussian_matches_hand_computation(relative, prior):
    control = GroupEstimate(mean=4.0, variance=0.0225, n=900)
    treatment = GroupEstimate(mean=4.3, variance=0.0256, n=880)
    if relative:
        lift, var = 4.3 / 4.0 - 1, 0.0256 / 16 + 4.3**2 * 0.0225 / 4**4
    else:
        lift, var = 0.3, 0.0256 + 0.0225
    options = {} if prior is None else {"prior_mean": prior[0], "prior_variance": prior[1]}
    result = gaussian(control, treatment, relative=relative, alpha=0.1, **options)
    hand = _hand_gaussian(lift, var, prior, 0.1)
    assert result.effect == pytest.approx(hand["mu"], rel=1e-12)
    assert result.credible_interval == pytest.approx(hand["ci"], rel=1e-12)
    assert result.chance_to_win == pytest.approx(hand["win"], rel=1e-12)
    assert result.expected_loss_control == pytest.approx(hand["up"], rel=1e-10)
    assert result.expected_loss_treatment == pytest.approx(hand["down"], rel=1e-10, abs=1e-300)
    assert result.prior == ("flat" if prior is None else f"normal({prior[0]:g}, {prior[1]:g})")


def test_gaussian_conjugate_update_matches_numerical_posterior():
    """Posterior mean, P(lift > 0) and risk from prior x likelihood integrated numerically."""
    control = GroupEstimate(mean=10.0, variance=0.09, n=500)
    treatment = GroupEstimate(mean=10.3, variance=0.1, n=500)
    prior_mean, prior_variance = -0.01, 0.0009
    result = gaussian(control, treatment, prior_mean=prior_mean, prior_variance=prior_variance)
    lift = 0.03
    se = math.sqrt(0.1 / 100 + 10.3**2 * 0.09 / 10**4)

    def unnormalized(theta: float) -> float:
        return sps.norm.pdf(lift, theta, se) * sps.norm.pdf(theta, prior_mean, math.sqrt(prior_variance))

    bounds = (-0.5, 0.5)
    mass = _quad(unnormalized, *bounds, points=[0.0, lift])
    mean = _quad(lambda x: x * unnormalized(x), *bounds, points=[0.0, lift])
    positive = _quad(unnormalized, 0.0, bounds[1], points=[lift])
    downside = _quad(lambda x: -x * unnormalized(x), bounds[0], 0.0, epsabs=1e-16)
    assert result.effect == pytest.approx(mean / mass, rel=1e-9)
    assert result.chance_to_win == pytest.approx(positive / mass, rel=1e-9)
    assert result.expected_loss_treatment == pytest.approx(downside / mass, rel=1e-7)


def test_flat_prior_interval_equals_the_delta_method_z_interval():
    rng = np.random.default_rng(3)
    control = MeanStatistic.from_values(rng.exponential(2.0, 400))
    treatment = MeanStatistic.from_values(rng.exponential(2.3, 420))
    frequentist = two_sample_test(control, treatment, test="z")
    relative = gaussian_from_statistics(control, treatment)
    absolute = gaussian_from_statistics(control, treatment, relative=False)
    assert relative.credible_interval == pytest.approx(frequentist.relative_ci, rel=1e-12)
    assert absolute.credible_interval == pytest.approx(frequentist.absolute_ci, rel=1e-12)
    assert absolute.chance_to_win == pytest.approx(1 - frequentist.p_value / 2, rel=1e-12)


def test_gaussian_from_statistics_uses_the_delta_method_estimates():
    rng = np.random.default_rng(4)
    n = rng.poisson(3.0, 300) + 1
    control = RatioStatistic.from_values(rng.binomial(n, 0.2), n)
    n_t = rng.poisson(3.0, 310) + 1
    treatment = RatioStatistic.from_values(rng.binomial(n_t, 0.23), n_t)
    assert gaussian_from_statistics(control, treatment, prior_variance=0.05) == gaussian(
        estimate(control), estimate(treatment), prior_variance=0.05
    )
    proportions = gaussian_from_statistics(ProportionStatistic(500, 50), ProportionStatistic(500, 65))
    assert proportions.effect == pytest.approx(0.3, rel=1e-12)
    with pytest.raises(TypeError, match="same kind"):
        gaussian_from_statistics(ProportionStatistic(500, 50), control)  # type: ignore[arg-type]


def test_gaussian_lower_is_better():
    control, treatment = GroupEstimate(2.0, 0.01, 100), GroupEstimate(1.8, 0.01, 100)
    up = gaussian(control, treatment, relative=False)
    down = gaussian(control, treatment, relative=False, higher_is_better=False)
    assert down.chance_to_win == pytest.approx(1 - up.chance_to_win, abs=1e-15)
    assert (down.expected_loss_treatment, down.expected_loss_control) == (
        up.expected_loss_control,
        up.expected_loss_treatment,
    )
    assert down.chance_to_win == pytest.approx(sps.norm.cdf(0.2 / math.sqrt(0.02)), rel=1e-12)


def test_gaussian_golden_values():
    result = gaussian(GroupEstimate(10.0, 0.04, 1000), GroupEstimate(10.5, 0.04, 1000), relative=False)
    assert result.chance_to_win == pytest.approx(0.9614500641282292, rel=1e-12)
    assert result.credible_interval == pytest.approx((-0.054361529739871295, 1.0543615297398712), rel=1e-12)
    assert result.expected_loss_treatment == pytest.approx(0.0043771443088436515, rel=1e-10)
    assert result.expected_loss_control == pytest.approx(0.5043771443088437, rel=1e-12)


@pytest.mark.parametrize(
    ("control", "treatment", "relative", "code"),
    [
        (GroupEstimate(0.0, math.nan, 0), GroupEstimate(1.0, 0.1, 10), True, ErrorCode.EMPTY_GROUP),
        (GroupEstimate(math.nan, math.nan, 10), GroupEstimate(1.0, 0.1, 10), True, ErrorCode.ZERO_DENOMINATOR),
        (GroupEstimate(1.0, math.nan, 1), GroupEstimate(1.0, 0.1, 10), False, ErrorCode.TOO_FEW_UNITS),
        (GroupEstimate(0.0, 0.1, 10), GroupEstimate(1.0, 0.1, 10), True, ErrorCode.ZERO_CONTROL_MEAN),
        (GroupEstimate(1.0, 0.0, 10), GroupEstimate(1.0, 0.0, 10), False, ErrorCode.ZERO_VARIANCE),
    ],
)
def test_gaussian_degenerate_data(control, treatment, relative, code):
    result = gaussian(control, treatment, relative=relative)
    assert result.error_code is code
    assert result.error_message
    assert math.isnan(result.chance_to_win)
    assert math.isnan(result.effect)
    assert math.isnan(result.credible_interval[0])


def test_gaussian_degenerate_statistics():
    assert gaussian_from_statistics(ProportionStatistic(100, 0), ProportionStatistic(100, 5)).error_code is (
        ErrorCode.ZERO_CONTROL_MEAN
    )
    absolute = gaussian_from_statistics(ProportionStatistic(100, 0), ProportionStatistic(100, 5), relative=False)
    assert absolute.error_code is None
    zero = gaussian_from_statistics(ProportionStatistic(100, 0), ProportionStatistic(100, 0), relative=False)
    assert zero.error_code is ErrorCode.ZERO_VARIANCE
    one = gaussian_from_statistics(MeanStatistic.from_values([1.0]), MeanStatistic.from_values([1.0, 2.0]))
    assert one.error_code is ErrorCode.TOO_FEW_UNITS


def test_gaussian_interval_coverage_under_flat_prior():
    """Flat prior: the 95% credible interval covers the true relative lift 95% +- 3 SE of the time."""
    reps, n = 3000, 1000
    rng = np.random.default_rng(99)
    control = rng.exponential(2.0, size=(reps, n))
    treatment = rng.exponential(2.1, size=(reps, n))
    true_lift = 2.1 / 2.0 - 1
    covered = []
    for c, t in zip(control, treatment, strict=True):
        result = gaussian_from_statistics(MeanStatistic.from_values(c), MeanStatistic.from_values(t))
        low, high = result.credible_interval
        covered.append(low <= true_lift <= high)
    se = math.sqrt(0.05 * 0.95 / reps)
    assert abs(float(np.mean(covered)) - 0.95) <= 3 * se


# ------------------------------------------------------------------------------------------
# probability_best


def test_probability_best_two_variants_matches_exact():
    control, treatment = ProportionStatistic(1000, 100), ProportionStatistic(1000, 115)
    exact = beta_binomial(control, treatment)
    draws = 400_000
    ranking = probability_best([control, treatment], draws=draws, seed=5)
    p = exact.chance_to_win
    assert ranking.distribution == "beta"
    assert _within(ranking.p_best[1], p, math.sqrt(p * (1 - p)), draws)
    assert sum(ranking.p_best) == pytest.approx(1.0, abs=1e-12)
    # expected_loss[i] = E[max - theta_i]: for treatment that is E[max(C - T, 0)].
    c, t = _beta_draws(101, 901, 6, draws), _beta_draws(116, 886, 7, draws)
    sd = float(np.maximum(c - t, 0).std())
    assert _within(ranking.expected_loss[1], exact.expected_loss_treatment, 2 * sd, draws)
    assert _within(ranking.expected_loss[0], exact.expected_loss_control, 2 * float(np.maximum(t - c, 0).std()), draws)


def test_probability_best_normal_two_variants():
    a, b = GroupEstimate(1.0, 0.0004, 1000), GroupEstimate(1.03, 0.0005, 1000)
    draws = 200_000
    ranking = probability_best([a, b], draws=draws, seed=8)
    p = float(sps.norm.cdf(0.03 / math.sqrt(0.0009)))
    assert ranking.distribution == "normal"
    assert _within(ranking.p_best[1], p, math.sqrt(p * (1 - p)), draws)
    exact = gaussian(a, b, relative=False)
    sd = 0.03  # loose bound on the standard deviation of max(C - T, 0)
    assert _within(ranking.expected_loss[1], exact.expected_loss_treatment, sd, draws)
    lower = probability_best([a, b], draws=draws, seed=8, higher_is_better=False)
    assert _within(lower.p_best[0], p, math.sqrt(p * (1 - p)), draws)
    assert _within(lower.expected_loss[0], exact.expected_loss_treatment, sd, draws)


def test_probability_best_is_reproducible_and_chunked():
    arms = [ProportionStatistic(900, 90), ProportionStatistic(900, 99), ProportionStatistic(900, 95)]
    first = probability_best(arms, draws=30_000, seed=42)
    assert first == probability_best(arms, draws=30_000, seed=42)
    assert first != probability_best(arms, draws=30_000, seed=43)
    assert first == probability_best(arms, draws=30_000, seed=np.random.default_rng(42))
    assert sum(first.p_best) == pytest.approx(1.0, abs=1e-12)
    assert first.p_best.index(max(first.p_best)) == 1


def test_probability_best_chunks_continue_one_stream(monkeypatch):
    arms = [GroupEstimate(1.0, 0.01, 100), GroupEstimate(1.05, 0.01, 100), GroupEstimate(0.98, 0.02, 100)]
    whole = probability_best(arms, draws=10_000, seed=3)
    monkeypatch.setattr(bayesian, "_CHUNK", 3 * 1_001)
    chunked = probability_best(arms, draws=10_000, seed=3)
    assert chunked.p_best == whole.p_best
    assert chunked.expected_loss == pytest.approx(whole.expected_loss, rel=1e-12)
    # Brute force on the same draws.
    theta = np.random.default_rng(3).normal([1.0, 1.05, 0.98], np.sqrt([0.01, 0.01, 0.02]), size=(10_000, 3))
    assert whole.p_best == tuple(np.bincount(theta.argmax(axis=1), minlength=3) / 10_000)
    assert whole.expected_loss == pytest.approx(tuple((theta.max(axis=1)[:, None] - theta).mean(axis=0)), rel=1e-12)


def test_probability_best_prior_and_degenerate_data():
    arms = [ProportionStatistic(10, 1), ProportionStatistic(10, 2)]
    assert probability_best(arms, prior="jeffreys", seed=1) != probability_best(arms, seed=1)
    empty = probability_best([ProportionStatistic(0, 0), ProportionStatistic(10, 2)])
    assert empty.error_code is ErrorCode.EMPTY_GROUP
    assert all(math.isnan(p) for p in empty.p_best)
    flat = probability_best([GroupEstimate(1.0, 0.0, 10), GroupEstimate(1.0, 0.1, 10)])
    assert flat.error_code is ErrorCode.ZERO_VARIANCE
    assert isinstance(flat, ProbabilityBest)
    data = probability_best(arms, draws=1000).to_dict()
    assert isinstance(data["p_best"], list)
    assert data["error_code"] is None


# ------------------------------------------------------------------------------------------
# Records and invalid input


def test_result_to_dict():
    result = beta_binomial(ProportionStatistic(0, 0), ProportionStatistic(10, 2))
    data = result.to_dict()
    assert isinstance(result, BayesianResult)
    assert data["error_code"] == "EMPTY_GROUP"
    assert isinstance(data["credible_interval"], list)
    assert set(data) >= {
        "test", "control_mean", "treatment_mean", "control_n", "treatment_n", "effect", "credible_interval",
        "relative", "chance_to_win", "expected_loss_treatment", "expected_loss_control", "alpha",
        "error_code", "error_message",
    }  # fmt: skip
    with pytest.raises(AttributeError):
        result.effect = 1.0  # type: ignore[misc]


P1, P2 = ProportionStatistic(100, 10), ProportionStatistic(100, 12)
G1, G2 = GroupEstimate(1.0, 0.01, 100), GroupEstimate(1.1, 0.01, 100)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: beta_binomial(P1, P2, alpha=0.0), "alpha"),
        (lambda: beta_binomial(P1, P2, alpha=1.5), "alpha"),
        (lambda: beta_binomial(P1, P2, prior="flat"), "prior"),
        (lambda: beta_binomial(P1, P2, prior=(0.0, 1.0)), r"prior\[0\]"),
        (lambda: beta_binomial(P1, P2, prior=(1.0, -2.0)), r"prior\[1\]"),
        (lambda: beta_binomial(P1, P2, prior=(1.0,)), "prior"),  # type: ignore[arg-type]
        (lambda: beta_binomial(P1, ProportionStatistic(10, 11)), "treatment.successes"),
        (lambda: gaussian(G1, G2, alpha=1.0), "alpha"),
        (lambda: gaussian(G1, G2, prior_variance=0.0), "prior_variance"),
        (lambda: gaussian(G1, G2, prior_variance=-1.0), "prior_variance"),
        (lambda: gaussian(G1, G2, prior_mean=math.nan), "prior_mean"),
        (lambda: probability_best([P1]), "posteriors"),
        (lambda: probability_best([P1, G1]), "posteriors"),  # type: ignore[list-item]
        (lambda: probability_best([P1, P2], draws=999), "draws"),
        (lambda: probability_best([P1, P2], draws=2000.0), "draws"),  # type: ignore[arg-type]
        (lambda: probability_best([P1, P2], seed=-1), "seed"),
        (lambda: probability_best([P1, P2], prior="haldane"), "prior"),
        (lambda: probability_best([P1, ProportionStatistic(5, 6)]), r"posteriors\[1\]"),
    ],
)
def test_invalid_input_raises(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_wrong_statistic_type_raises():
    with pytest.raises(TypeError, match="control"):
        beta_binomial(MeanStatistic(10, 5.0, 5.0), P2)  # type: ignore[arg-type]
