"""Tests of splitlab.stats.sequential.group_sequential.

Golden values: Jennison & Turnbull (2000) Tables 2.1-2.4, 2.7, 2.8 and 7.2 (as reproduced by the
gsDesign unit tests), gsDesign's printed designs, rpact's published example, SAS PROC SEQDESIGN
example 3. Cross-checks: scipy's multivariate normal CDF (Genz), a seeded Monte Carlo of the
canonical process, and scalar-vs-vectorised agreement. Calibration: A/A false positive rates under
30 and 1,000 looks (means with estimated variance, proportions) against the naive test, and power
and expected sample size of an O'Brien-Fleming design with no inflation.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import integrate, special, stats

from splitlab.stats.frequentist import GroupEstimate, compare_estimates, estimate
from splitlab.stats.power import sample_size_means, sample_size_proportions
from splitlab.stats.results import ErrorCode
from splitlab.stats.sequential.group_sequential import (
    DECISIONS,
    NO_NEW_INFORMATION,
    classical_design,
    crossing_probabilities,
    design_drift,
    inflation_factor,
    operating_characteristics,
    repeated_confidence_intervals,
    sequential_decisions,
    sequential_look,
    sequential_sample_size,
    spending_design,
    spending_function,
    stagewise_inference,
    t_to_z,
    update_design,
    welch_df,
)
from splitlab.stats.statistics import MeanStatistic, ProportionStatistic

Z975 = stats.norm.ppf(0.975)
Z80 = stats.norm.ppf(0.8)
EQUAL5 = np.arange(1, 6) / 5


def _sf_obf(t: float, alpha: float) -> float:
    return 2 - 2 * stats.norm.cdf(stats.norm.ppf(1 - alpha / 2) / math.sqrt(t))


# ---------------------------------------------------------------------------------------------
# Golden values
# ---------------------------------------------------------------------------------------------


def test_lan_demets_obrien_fleming_k5_two_sided() -> None:
    # gsDesign(k=5, test.type=2, sfu=sfLDOF) / rpact asOF / ldbounds, two-sided alpha 0.05.
    d = spending_design(EQUAL5)
    assert np.round(d.efficacy_bounds, 3).tolist() == [4.877, 3.357, 2.680, 2.290, 2.031]
    assert d.alpha_spent[-1] == pytest.approx(0.05, rel=1e-12)


def test_lan_demets_pocock_k5_two_sided() -> None:
    # rpact asP / gsDesign sfLDPocock, two-sided alpha 0.05.
    d = spending_design(EQUAL5, spending="pocock")
    assert np.round(d.efficacy_bounds, 3).tolist() == [2.438, 2.427, 2.410, 2.397, 2.386]


def test_classical_constants_jennison_turnbull_tables_2_1_and_2_3() -> None:
    pocock = classical_design(5, kind="pocock")
    obf = classical_design(5, kind="obrien-fleming")
    assert round(pocock.efficacy_bounds[0], 3) == 2.413  # C_P(5, 0.05)
    assert round(obf.efficacy_bounds[-1], 3) == 2.040  # C_B(5, 0.05)
    assert obf.efficacy_bounds[0] == pytest.approx(obf.efficacy_bounds[-1] * math.sqrt(5), rel=1e-12)
    # gsDesign(k=4, test.type=2, sfu="OF"): 4.05, 2.86, 2.34, 2.02
    assert np.round(classical_design(4, kind="obrien-fleming").efficacy_bounds, 2).tolist() == [4.05, 2.86, 2.34, 2.02]
    assert pocock.alpha_spent[-1] == pytest.approx(0.05, abs=1e-10)


def test_inflation_factors_jennison_turnbull_tables_2_2_and_2_4() -> None:
    pocock = classical_design(5, kind="pocock")
    obf = classical_design(5, kind="obrien-fleming")
    assert round(inflation_factor(pocock, power=0.8), 3) == 1.229
    assert round(inflation_factor(pocock, power=0.9), 3) == 1.207
    assert round(inflation_factor(obf, power=0.8), 3) == 1.028
    assert round(inflation_factor(obf, power=0.9), 3) == 1.026


@pytest.mark.parametrize(
    ("design", "power", "max_n", "expected_n"),
    [
        # J&T Table 2.7 (Pocock): max and E[N] at theta = delta * (0, 0.5, 1, 1.5), in % of fixed.
        (("pocock", 4), 0.8, 120.2, [117.5, 108.8, 80.5, 52.2]),
        (("pocock", 15), 0.9, 130.5, [126.4, 111.2, 66.4, 35.4]),
        # J&T Table 2.8 (O'Brien-Fleming).
        (("obrien-fleming", 5), 0.8, 102.8, [102.1]),
        (("obrien-fleming", 20), 0.9, 104.5, [103.4]),
    ],
)
def test_classical_sample_sizes_jennison_turnbull(
    design: tuple[str, int], power: float, max_n: float, expected_n: list[float]
) -> None:
    d = classical_design(design[1], kind=design[0], power=power)
    ratio = inflation_factor(d)
    eta = design_drift(d)
    assert round(100 * ratio, 1) == max_n
    got = [round(100 * ratio * operating_characteristics(d, m * eta).expected_fraction, 1) for m in (0, 0.5, 1, 1.5)]
    assert got[: len(expected_n)] == expected_n


@pytest.mark.parametrize(
    ("looks", "rho", "max_n", "expected_n"),
    [
        (3, 1.0, 111.7, [109.9, 103.4, 81.2, 56.5]),
        (10, 2.0, 108.1, [106.6, 99.7, 76.2, 51.0]),
        (2, 3.0, 101.0, [100.7, 98.9, 89.5, 70.7]),
    ],
)
def test_kim_demets_spending_jennison_turnbull_table_7_2(
    looks: int, rho: float, max_n: float, expected_n: list[float]
) -> None:
    d = spending_design(np.arange(1, looks + 1) / looks, spending="kim-demets", parameter=rho)
    s = sequential_sample_size(d, 100.0)
    assert round(s.max_n_exact, 1) == max_n
    got = [
        round(s.max_n_exact * operating_characteristics(d, m * s.drift).expected_fraction, 1) for m in (0, 0.5, 1, 1.5)
    ]
    assert got == expected_n


def test_sas_seqdesign_pocock_example() -> None:
    # SAS PROC SEQDESIGN example "Two-Sided Pocock": K=4, alpha 0.05, power 0.9:
    # max information 118.3143 %, null ASN 115.6074 %, alternative ASN 69.74805 % of fixed.
    s = sequential_sample_size(classical_design(4, kind="pocock", power=0.9), 100.0)
    assert s.max_n_exact == pytest.approx(118.3143, abs=2e-4)
    assert s.expected_n_null == pytest.approx(115.6074, abs=2e-4)
    assert s.expected_n_alternative == pytest.approx(69.74805, abs=2e-4)
    assert s.max_n == 119


def test_gsdesign_hsd_one_sided_and_symmetric() -> None:
    # gsDesign(k=5, test.type=1 / 2, alpha=0.025, beta=0.1, sfu=sfHSD, sfupar=-4) printout.
    one = spending_design(EQUAL5, alpha=0.025, power=0.9, alternative="greater", spending="hsd")
    two = spending_design(EQUAL5, alpha=0.05, power=0.9, spending="hsd")
    assert np.round(one.efficacy_bounds, 2).tolist() == [3.25, 2.99, 2.69, 2.37, 2.03]
    assert np.round(two.efficacy_bounds, 2).tolist() == [3.25, 2.99, 2.69, 2.37, 2.03]
    s1, s2 = sequential_sample_size(one, 1.0), sequential_sample_size(two, 1.0)
    assert round(s1.max_n_exact, 3) == 1.023
    assert round(s1.expected_n_null, 4) == 1.0197
    assert round(s1.expected_n_alternative, 4) == 0.7366
    assert round(s2.expected_n_null, 4) == 1.0160
    oc = operating_characteristics(one, s1.drift)
    assert np.round(oc.efficacy, 4).tolist() == [0.0370, 0.1512, 0.2647, 0.2699, 0.1771]


def test_gsdesign_non_binding_beta_spending_futility() -> None:
    # gsDesign(k=5, test.type=4, alpha=0.025, beta=0.1, sfu=sfHSD(-4), sfl=sfHSD(-2)) printout.
    d = spending_design(
        EQUAL5, alpha=0.025, power=0.9, alternative="greater", spending="hsd", futility="hsd", futility_parameter=-2
    )
    assert d.futility_bounds is not None
    assert np.round(d.futility_bounds, 2).tolist() == [-0.90, -0.04, 0.69, 1.36, 2.03]
    assert d.futility_bounds[-1] == d.efficacy_bounds[-1]
    null = operating_characteristics(d, 0.0)
    assert np.round(null.efficacy, 4).tolist() == [0.0006, 0.0013, 0.0028, 0.0062, 0.0117]
    assert np.round(null.futility, 4).tolist() == [0.1836, 0.3201, 0.2700, 0.1477, 0.0559]
    assert d.futility_drift is not None
    alt = operating_characteristics(d, d.futility_drift)
    assert np.round(alt.efficacy, 4).tolist() == [0.0417, 0.1679, 0.2806, 0.2654, 0.1444]
    assert np.round(alt.futility, 4).tolist() == [0.0077, 0.0115, 0.0171, 0.0256, 0.0381]
    assert alt.power == pytest.approx(0.9, abs=1e-7)
    assert math.ceil(800 * inflation_factor(d)) == 882  # N at the final analysis for n.fix = 800


def test_rpact_non_binding_fixed_futility_example() -> None:
    # rpact: asOF, one-sided alpha 0.025, power 0.8, t = (0.3, 0.6, 1), futility bounds (0, -Inf):
    # inflation factor 1.0718, ASN H1 0.8826, ASN H0 0.695.
    d = spending_design([0.3, 0.6, 1.0], alpha=0.025, alternative="greater")
    custom = dataclasses.replace(d, futility_bounds=(0.0, -math.inf, d.efficacy_bounds[-1]))
    s = sequential_sample_size(custom, 1.0)
    assert round(s.inflation_factor, 4) == 1.0718
    assert round(s.expected_n_alternative, 4) == 0.8826
    assert round(s.expected_n_null, 3) == 0.695
    assert d.alpha_spent[1] == pytest.approx(0.0038, abs=5e-5)


def test_naive_repeated_testing_type_one_error_gsdesign_deming() -> None:
    # gsDesign unit test "Deming": upper crossing of +-1.96 at K equally spaced looks.
    got = []
    for k in (2, 4, 10, 20):
        bound = np.full(k, Z975)
        got.append(round(crossing_probabilities(np.arange(1, k + 1) / k, bound, -bound).upper.sum(), 3))
    assert got == [0.042, 0.063, 0.097, 0.124]


def test_spending_functions_closed_forms() -> None:
    t = np.array([0.0, 0.1, 0.5, 1.0, 1.5])
    alpha = 0.05
    obf = spending_function(t, alpha=alpha)
    assert obf[0] == 0
    assert obf[2] == pytest.approx(_sf_obf(0.5, alpha), rel=1e-12)
    assert obf[-1] == pytest.approx(alpha, rel=1e-12)
    poc = spending_function(t, alpha=alpha, kind="pocock")
    assert poc[1] == pytest.approx(alpha * math.log(1 + (math.e - 1) * 0.1), rel=1e-12)
    hsd = spending_function(t, alpha=alpha, kind="hsd", parameter=-4)
    assert hsd[2] == pytest.approx(alpha * (1 - math.exp(2)) / (1 - math.exp(4)), rel=1e-12)
    assert spending_function(0.3, alpha=alpha, kind="hsd", parameter=0)[()] == pytest.approx(0.015, rel=1e-12)
    kd = spending_function(t, alpha=alpha, kind="kim-demets", parameter=2)
    assert kd[2] == pytest.approx(alpha * 0.25, rel=1e-12)
    for values in (obf, poc, hsd, kd):
        assert values[-1] == pytest.approx(alpha, rel=1e-12)
        assert np.all(np.diff(values) >= 0)


# ---------------------------------------------------------------------------------------------
# Cross-checks of the numerical integration
# ---------------------------------------------------------------------------------------------


def _canonical_cov(t: np.ndarray) -> np.ndarray:
    return np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))


@pytest.mark.parametrize(("fractions", "drift"), [([0.4, 1.0], 0.0), ([0.3, 0.7], 1.7), ([0.25, 0.6, 1.0], 2.2)])
def test_crossing_probabilities_match_scipy_multivariate_normal(fractions: list[float], drift: float) -> None:
    t = np.array(fractions)
    upper = np.array([2.6, 2.3, 2.1][: t.size])
    lower = np.array([-2.9, -0.5, 0.3][: t.size])
    default = crossing_probabilities(t, upper, lower, drift=drift)
    fine = crossing_probabilities(t, upper, lower, drift=drift, r=128)
    mean = drift * np.sqrt(t)
    cov = _canonical_cov(t)
    rng = np.random.default_rng(0)

    def rectangle(low: np.ndarray, high: np.ndarray, k: int) -> float:
        return float(
            stats.multivariate_normal.cdf(
                high, mean=mean[: k + 1], cov=cov[: k + 1, : k + 1], lower_limit=low, abseps=1e-13, releps=1e-13,
                maxpts=10**7, rng=rng,
            )
        )  # fmt: skip

    for k in range(t.size):
        # First exit at look k: inside (lower_j, upper_j) for j < k, then beyond a bound at k.
        expected_up = rectangle(np.append(lower[:k], upper[k]), np.append(upper[:k], np.inf), k)
        expected_low = rectangle(np.append(lower[:k], -np.inf), np.append(upper[:k], lower[k]), k)
        # J&T's default grid (r = 18) is accurate to ~1e-7; a finer grid converges to Genz's value.
        assert default.upper[k] == pytest.approx(expected_up, abs=1e-7)
        assert default.lower[k] == pytest.approx(expected_low, abs=1e-7)
        assert fine.upper[k] == pytest.approx(expected_up, rel=1e-9, abs=5e-11)
        assert fine.lower[k] == pytest.approx(expected_low, rel=1e-9, abs=5e-11)


def test_crossing_probabilities_match_monte_carlo() -> None:
    rng = np.random.default_rng(20240601)
    t = np.array([0.15, 0.35, 0.55, 0.8, 1.0])
    drift = 1.5
    d = spending_design(t)
    upper = np.asarray(d.efficacy_bounds)
    got = crossing_probabilities(t, upper, -upper, drift=drift)
    reps = 2_000_000
    increments = rng.standard_normal((reps, t.size)) * np.sqrt(np.diff(t, prepend=0.0)) + drift * np.diff(t, prepend=0)
    z = np.cumsum(increments, axis=1) / np.sqrt(t)
    out = np.abs(z) >= upper
    first = np.where(out.any(axis=1), np.argmax(out, axis=1), -1)
    sign = np.sign(z[np.arange(reps), np.maximum(first, 0)])
    for k in range(t.size):
        mc_up = np.mean((first == k) & (sign > 0))
        mc_low = np.mean((first == k) & (sign < 0))
        for exact, mc in ((got.upper[k], mc_up), (got.lower[k], mc_low)):
            se = math.sqrt(max(exact * (1 - exact), 1e-12) / reps)
            assert abs(mc - exact) < min(1e-3, 4 * se + 1e-6)
    assert got.total == pytest.approx(operating_characteristics(d, drift).power + sum(got.lower), rel=1e-12)


def test_many_looks_converge_and_stay_fast_enough() -> None:
    t = np.arange(1, 1001) / 1000
    d = spending_design(t, spending="pocock")
    assert d.efficacy_bounds[-1] == pytest.approx(2.6467, abs=5e-4)
    got = crossing_probabilities(t, d.efficacy_bounds, -np.asarray(d.efficacy_bounds))
    assert got.total == pytest.approx(0.05, rel=1e-9)
    assert np.all(got.upper >= 0)
    assert np.allclose(got.upper, got.lower, rtol=1e-12, atol=0)  # the grid is symmetric


def test_operating_characteristics_match_vectorised_decisions_by_monte_carlo() -> None:
    # Two-sided design with an inner-wedge futility region: integration vs simulated decisions.
    rng = np.random.default_rng(11)
    d = spending_design(EQUAL5, futility="obrien-fleming")
    assert d.futility_drift is not None
    drift = 0.6 * d.futility_drift
    oc = operating_characteristics(d, drift)
    reps = 400_000
    t = np.asarray(d.fractions)
    s = np.cumsum(rng.standard_normal((reps, 5)) * np.sqrt(np.diff(t, prepend=0)) + drift * np.diff(t, prepend=0), 1)
    paths = sequential_decisions(s / np.sqrt(t), np.ones((reps, 5)), d)
    for code, probabilities in ((1, oc.efficacy), (2, oc.futility), (3, oc.harm)):
        for k in range(5):
            mc = np.mean((paths.decision == code) & (paths.stop_look == k))
            se = math.sqrt(max(probabilities[k] * (1 - probabilities[k]), 1e-9) / reps)
            assert abs(mc - probabilities[k]) < 4 * se + 1e-6
    assert np.mean(paths.stop_fraction) == pytest.approx(oc.expected_fraction, abs=4 * 0.3 / math.sqrt(reps))


def test_futility_design_power_and_non_binding_type_one_error() -> None:
    d = spending_design(EQUAL5, futility="obrien-fleming")
    assert d.futility_drift is not None
    assert operating_characteristics(d, d.futility_drift).power == pytest.approx(0.8, abs=1e-6)
    assert design_drift(d) == d.futility_drift
    no_futility = dataclasses.replace(d, futility_bounds=None)
    null = operating_characteristics(no_futility, 0.0)
    assert sum(null.efficacy) + sum(null.harm) == pytest.approx(0.05, rel=1e-9)
    with_futility = operating_characteristics(d, 0.0)
    assert sum(with_futility.efficacy) + sum(with_futility.harm) < 0.05


def test_unplanned_looks_depend_only_on_the_past_and_spend_alpha() -> None:
    d = spending_design(EQUAL5)
    early = update_design(d, [0.13, 0.41])
    later = update_design(d, [0.13, 0.41, 0.66, 0.9, 1.0])
    assert later.efficacy_bounds[:2] == early.efficacy_bounds
    assert not early.final
    assert later.final
    crossing = crossing_probabilities(later.fractions, later.efficacy_bounds, -np.asarray(later.efficacy_bounds))
    assert crossing.total == pytest.approx(0.05, rel=1e-9)
    short = update_design(d, [0.2, 0.5, 0.85], final=True)
    assert short.alpha_spent[-1] == pytest.approx(0.05, rel=1e-12)
    assert np.cumsum(
        crossing_probabilities(short.fractions, short.efficacy_bounds, -np.asarray(short.efficacy_bounds)).upper * 2
    )[-1] == pytest.approx(0.05, rel=1e-9)


def test_stagewise_inference_matches_direct_quadrature() -> None:
    d = spending_design([1 / 3, 2 / 3, 1.0])
    z, se = 2.9, 0.7
    result = stagewise_inference(d, look=2, estimate=z * se, standard_error=se, r=160)
    default = stagewise_inference(d, look=2, estimate=z * se, standard_error=se)
    t1, t2 = d.fractions[:2]
    b = d.efficacy_bounds[0]

    def p_upper(theta: float) -> float:
        # P(Z_1 >= b) + P(|Z_1| < b, Z_2 >= z) with E[Z_j] = eta sqrt(t_j), eta = theta / (se sqrt(t_2)).
        eta = theta / (se * math.sqrt(t2))

        def integrand(x: float) -> float:
            shift = (z * math.sqrt(t2) - x * math.sqrt(t1) - eta * (t2 - t1)) / math.sqrt(t2 - t1)
            return float(stats.norm.pdf(x - eta * math.sqrt(t1)) * stats.norm.sf(shift))

        inside = integrate.quad(integrand, -b, b, epsabs=1e-15, epsrel=1e-13)[0]
        return float(stats.norm.sf(b - eta * math.sqrt(t1)) + inside)

    assert result.p_value == pytest.approx(2 * p_upper(0.0), rel=1e-9)
    assert default.p_value == pytest.approx(2 * p_upper(0.0), rel=1e-5)
    assert p_upper(result.ci[0]) == pytest.approx(0.025, rel=1e-8)
    assert p_upper(result.ci[1]) == pytest.approx(0.975, rel=1e-9)
    assert p_upper(result.median_estimate) == pytest.approx(0.5, rel=1e-9)
    assert p_upper(default.ci[0]) == pytest.approx(0.025, rel=1e-5)
    assert result.ci[0] < result.median_estimate < z * se < result.ci[1]


def test_stagewise_inference_single_look_is_the_fixed_test() -> None:
    d = spending_design([1.0])
    result = stagewise_inference(d, look=1, estimate=2.5, standard_error=1.2)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(2.5 / 1.2), rel=1e-9)
    assert result.ci[0] == pytest.approx(2.5 - Z975 * 1.2, rel=1e-7)
    assert result.ci[1] == pytest.approx(2.5 + Z975 * 1.2, rel=1e-7)
    assert result.median_estimate == pytest.approx(2.5, rel=1e-7)
    less = stagewise_inference(spending_design([1.0], alpha=0.025, alternative="less"), look=1, estimate=-2.5,
                               standard_error=1.2)  # fmt: skip
    assert less.p_value == pytest.approx(stats.norm.cdf(-2.5 / 1.2), rel=1e-9)
    assert less.ci[0] == -math.inf
    assert less.ci[1] == pytest.approx(-2.5 + Z975 * 1.2, rel=1e-7)


def test_repeated_confidence_intervals_and_their_simultaneous_coverage() -> None:
    rng = np.random.default_rng(5)
    d = spending_design(np.arange(1, 31) / 30)
    reps, theta = 20_000, 0.3
    t = np.asarray(d.fractions)
    variances = np.broadcast_to(0.04 / t, (reps, 30))
    s = np.cumsum(rng.standard_normal((reps, 30)) * np.sqrt(np.diff(t, prepend=0)), 1)
    effects = theta + s / t * 0.2  # theta_hat_k = theta + S_k / (t_k sqrt(I_max)) with I_max = 25
    low, high = repeated_confidence_intervals(effects, variances, d)
    assert low[0, 3] == pytest.approx(effects[0, 3] - d.efficacy_bounds[3] * math.sqrt(variances[0, 3]), rel=1e-12)
    covered = np.all((low < theta) & (theta < high), axis=1).mean()
    se = math.sqrt(0.05 * 0.95 / reps)
    assert abs(covered - 0.95) < 3 * se
    one = spending_design(t, alpha=0.025, alternative="greater")
    low1, high1 = repeated_confidence_intervals(effects, variances, one)
    assert np.all(np.isinf(high1))
    assert np.all(low1 < high)


# ---------------------------------------------------------------------------------------------
# Calibration by simulation
# ---------------------------------------------------------------------------------------------


def _mean_paths(
    rng: np.random.Generator, reps: int, looks: int, batch: int, effect: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative difference of means and its estimated variance; exact sufficient statistics of N(mu, 1) batches."""

    def arm(mu: float) -> tuple[np.ndarray, np.ndarray]:
        sums = rng.normal(batch * mu, math.sqrt(batch), size=(reps, looks))
        sum_sq = rng.chisquare(batch - 1, size=(reps, looks)) + sums * sums / batch
        n = batch * np.arange(1, looks + 1)
        total, total_sq = np.cumsum(sums, axis=1), np.cumsum(sum_sq, axis=1)
        return total / n, (total_sq - total * total / n) / (n - 1) / n

    mean_c, var_c = arm(0.0)
    mean_t, var_t = arm(effect)
    return mean_t - mean_c, var_c + var_t


def _proportion_paths(
    rng: np.random.Generator, reps: int, looks: int, batch: int, rate: float
) -> tuple[np.ndarray, np.ndarray]:
    n = batch * np.arange(1, looks + 1)
    c = np.cumsum(rng.binomial(batch, rate, size=(reps, looks)), axis=1) / n
    t = np.cumsum(rng.binomial(batch, rate, size=(reps, looks)), axis=1) / n
    return t - c, c * (1 - c) / n + t * (1 - t) / n


@pytest.mark.slow
@pytest.mark.parametrize(("looks", "reps"), [(30, 20_000), (1000, 5_000)])
@pytest.mark.parametrize("metric", ["mean", "proportion"])
def test_aa_false_positive_rate_under_peeking(looks: int, reps: int, metric: str) -> None:
    rng = np.random.default_rng(1000 * looks + len(metric))
    if metric == "mean":
        effects, variances = _mean_paths(rng, reps, looks, batch=50)
    else:
        effects, variances = _proportion_paths(rng, reps, looks, batch=100, rate=0.2)
    fractions = np.arange(1, looks + 1) / looks  # n_k / N_max
    limit = 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)
    naive = np.mean(np.any(np.abs(effects) / np.sqrt(variances) >= Z975, axis=1))
    assert naive > 0.2  # the same looks inflate the naive test
    assert naive > limit
    for spending in ("obrien-fleming", "pocock"):
        design = spending_design(fractions, spending=spending)
        paths = sequential_decisions(effects, variances, design)
        assert paths.rejected.mean() <= limit
        assert np.all(paths.stop_look >= 0)  # the final look stops every path


@pytest.mark.slow
def test_obrien_fleming_thirty_looks_without_inflation_power_and_expected_n() -> None:
    # Fixed-horizon plan: 80 % power at the MDE with N per arm; the sequential test uses the same N.
    batch, looks = 50, 30
    n_fixed = batch * looks
    mde = (Z975 + Z80) * math.sqrt(2 / n_fixed)
    plan = sample_size_means(mde, 1.0)
    assert plan.per_variant_exact == pytest.approx(n_fixed, rel=1e-9)
    design = spending_design(np.arange(1, looks + 1) / looks)

    # Analytically: drift at max N = fixed N is z_{alpha/2} + z_beta.
    oc = operating_characteristics(design, Z975 + Z80)
    assert oc.power >= 0.77
    assert oc.expected_fraction <= 0.77
    assert round(oc.power, 4) == 0.7806
    assert round(oc.expected_fraction, 4) == 0.7508

    # By simulation (means with estimated variance).
    rng = np.random.default_rng(77)
    reps = 20_000
    effects, variances = _mean_paths(rng, reps, looks, batch, effect=mde)
    paths = sequential_decisions(effects, variances, design)
    fixed_power = np.mean(effects[:, -1] / np.sqrt(variances[:, -1]) >= Z975)
    se = math.sqrt(0.8 * 0.2 / reps)
    assert abs(fixed_power - 0.8) < 3 * se
    power = np.mean(paths.decision == 1)
    assert abs(power - oc.power) < 3 * se
    assert power >= 0.77
    expected_fraction = paths.stop_fraction.mean()
    assert abs(expected_fraction - oc.expected_fraction) < 3 * paths.stop_fraction.std() / math.sqrt(reps)
    assert expected_fraction <= 0.77


def test_sequential_sample_size_from_a_power_plan() -> None:
    plan = sample_size_proportions(0.15, 0.10)
    design = spending_design(EQUAL5)
    s = sequential_sample_size(design, plan)
    ratio = inflation_factor(design)
    assert s.fixed_n == plan.total_exact
    assert s.max_n_exact == pytest.approx(ratio * plan.total_exact, rel=1e-12)
    assert s.max_n == math.ceil(s.max_n_exact)
    assert s.expected_n_alternative < plan.total_exact < s.expected_n_null < s.max_n_exact
    assert s.to_dict()["power"] == 0.8


# ---------------------------------------------------------------------------------------------
# Scalar API
# ---------------------------------------------------------------------------------------------


def test_scalar_looks_agree_with_vectorised_decisions() -> None:
    rng = np.random.default_rng(9)
    looks, batch, reps = 6, 40, 25
    effects, variances = _mean_paths(rng, reps, looks, batch, effect=0.25)
    design = spending_design(np.arange(1, looks + 1) / looks, spending="pocock", futility="obrien-fleming")
    # Equal groups with equal variances: the scalar look's Welch df is 2 (n - 1).
    df = 2.0 * (batch * np.arange(1, looks + 1) - 1)
    paths = sequential_decisions(effects, variances, design, df=df)
    max_n = 2 * batch * looks
    for i in range(reps):
        previous: list[float] = []
        for k in range(looks):
            n = batch * (k + 1)
            control = GroupEstimate(0.0, variances[i, k] / 2, n)
            treatment = GroupEstimate(effects[i, k], variances[i, k] / 2, n)
            look = sequential_look(control, treatment, design=design, previous_fractions=previous, max_n=max_n)
            expected = float(t_to_z(effects[i, k] / math.sqrt(variances[i, k]), df[k]))
            assert look.statistic == pytest.approx(expected, rel=1e-12)
            assert look.efficacy_bound == pytest.approx(design.efficacy_bounds[k], rel=1e-9)
            if look.stopped:
                assert k == paths.stop_look[i]
                assert look.decision == DECISIONS[paths.decision[i]]
                break
            previous.append(look.information_fraction)
        else:
            pytest.fail("the final look must stop")


def test_scalar_look_from_statistics_relative_and_variance_fraction() -> None:
    control = MeanStatistic.from_values(np.random.default_rng(1).normal(10.0, 2.0, 400))
    treatment = MeanStatistic.from_values(np.random.default_rng(2).normal(10.6, 2.0, 400))
    design = spending_design(EQUAL5)
    reference = compare_estimates(
        GroupEstimate(control.mean, control.variance / 400, 400),
        GroupEstimate(treatment.mean, treatment.variance / 400, 400),
        test="z",
        use_t=False,
    )
    se = (reference.relative_ci[1] - reference.relative_effect) / Z975
    look = sequential_look(control, treatment, design=design, final_variance=0.4 * se**2, relative=True)
    assert look.effect == pytest.approx(reference.relative_effect, rel=1e-12)
    assert look.standard_error == pytest.approx(se, rel=1e-9)
    assert look.information_fraction == pytest.approx(0.4, rel=1e-9)
    bound = update_design(design, [look.information_fraction]).efficacy_bounds[0]
    assert look.efficacy_bound == pytest.approx(bound, rel=1e-12)
    df = welch_df(estimate(control), estimate(treatment), relative=True)
    half = float(special.stdtrit(df, special.ndtr(bound))) * se  # the bound on the t scale
    assert look.repeated_ci == pytest.approx((look.effect - half, look.effect + half), rel=1e-12)
    assert look.decision == "efficacy"
    assert look.p_value < 0.05
    assert look.ci[0] < look.median_estimate < look.ci[1]
    data = look.to_dict()
    assert data["decision"] == "efficacy"
    assert isinstance(data["ci"], list)


def test_scalar_look_harm_futility_final_and_less() -> None:
    design = spending_design([0.5, 1.0])
    c = ProportionStatistic(5000, 600)
    harm = sequential_look(c, ProportionStatistic(5000, 500), design=design, max_n=20_000)
    assert harm.decision == "harm"
    assert harm.p_value < 0.05
    assert harm.ci[1] < 0
    final = sequential_look(c, ProportionStatistic(5000, 610), design=design, max_n=20_000, previous_fractions=[0.4],
                            final=True)  # fmt: skip
    assert final.decision == "futility"
    assert final.alpha_spent == pytest.approx(0.05, rel=1e-12)
    cont = sequential_look(c, ProportionStatistic(5000, 610), design=design, max_n=20_000)
    assert cont.decision == "continue"
    assert math.isnan(cont.p_value)
    less = spending_design([0.5, 1.0], alpha=0.025, alternative="less")
    good = sequential_look(c, ProportionStatistic(5000, 500), design=less, max_n=20_000)
    assert good.decision == "efficacy"
    assert good.repeated_ci[0] == -math.inf
    assert good.ci[1] < 0
    one_sided_futility = spending_design(EQUAL5, alpha=0.025, alternative="greater", futility="pocock")
    bad = sequential_look(c, ProportionStatistic(5000, 560), design=one_sided_futility, max_n=50_000)
    assert bad.decision == "futility"
    assert bad.futility_bound > bad.statistic


def test_scalar_look_classical_design_uses_look_number() -> None:
    design = classical_design(3, kind="obrien-fleming")
    c, t = ProportionStatistic(1000, 100), ProportionStatistic(1000, 115)
    look = sequential_look(c, t, design=design, max_n=6000, previous_fractions=[0.2])
    assert look.look == 2
    assert look.efficacy_bound == design.efficacy_bounds[1]
    with pytest.raises(ValueError, match="classical design has only 3"):
        sequential_look(c, t, design=design, max_n=6000, previous_fractions=[0.1, 0.2, 0.3])


def test_scalar_look_degenerate_data_gives_error_codes() -> None:
    design = spending_design(EQUAL5)
    empty = sequential_look(ProportionStatistic(0, 0), ProportionStatistic(10, 2), design=design, max_n=100)
    assert empty.error_code == ErrorCode.EMPTY_GROUP
    assert empty.decision == "continue"
    flat = sequential_look(ProportionStatistic(10, 0), ProportionStatistic(10, 0), design=design, max_n=100)
    assert flat.error_code == ErrorCode.ZERO_VARIANCE
    tiny = sequential_look(MeanStatistic(1, 1.0, 1.0), MeanStatistic(1, 2.0, 4.0), design=design, max_n=100)
    assert tiny.error_code == ErrorCode.TOO_FEW_UNITS
    zero = sequential_look(ProportionStatistic(10, 0), ProportionStatistic(10, 2), design=design, max_n=100,
                           relative=True)  # fmt: skip
    assert zero.error_code == ErrorCode.ZERO_CONTROL_MEAN
    stale = sequential_look(ProportionStatistic(10, 1), ProportionStatistic(10, 2), design=design, max_n=100,
                            previous_fractions=[0.2, 0.3])  # fmt: skip
    assert stale.error_code == NO_NEW_INFORMATION
    assert stale.to_dict()["error_code"] == NO_NEW_INFORMATION
    assert math.isnan(stale.efficacy_bound)


def test_design_records_serialise() -> None:
    d = spending_design(EQUAL5, futility="hsd")
    data = d.to_dict()
    assert data["efficacy_bounds"] == list(d.efficacy_bounds)
    assert data["futility"] == "hsd"
    assert data["parameter"] is None
    assert data["futility_parameter"] == -4.0
    assert operating_characteristics(d, 1.0).to_dict()["drift"] == 1.0
    assert crossing_probabilities([1.0], [1.96]).to_dict()["upper"] == pytest.approx([0.025], rel=1e-4)
    assert stagewise_inference(d, look=5, estimate=1.0, standard_error=0.4).to_dict()["look"] == 5


# ---------------------------------------------------------------------------------------------
# Invalid input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 1.5}, "alpha"),
        ({"power": 0.0}, "power"),
        ({"power": 0.02}, "power"),
        ({"alternative": "both"}, "alternative"),
        ({"spending": "haybittle"}, "spending"),
        ({"spending": "kim-demets", "parameter": -1.0}, "parameter"),
        ({"spending": "obrien-fleming", "parameter": 2.0}, "parameter"),
        ({"futility": "nope"}, "futility"),
        ({"futility_parameter": 1.0}, "futility_parameter"),
        ({"r": 2}, "r =="),
    ],
)
def test_spending_design_rejects_bad_options(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        spending_design(EQUAL5, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fractions", "match"),
    [
        ([], "non-empty"),
        ([[0.5, 1.0]], "one-dimensional"),
        ([0.0, 1.0], r"fractions\[0\]"),
        ([0.5, 1.2], r"fractions\[1\] == 1.2, must be in \(0, 1\]"),
        ([0.5, 0.5], r"fractions\[1\] == 0.5, must be > fractions\[0\]"),
        ([0.5, math.nan], r"fractions\[1\]"),
    ],
)
def test_fractions_are_validated(fractions: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        spending_design(fractions)


def test_other_invalid_inputs() -> None:
    d = spending_design(EQUAL5)
    with pytest.raises(ValueError, match="upper must hold 2"):
        crossing_probabilities([0.5, 1.0], [2.0])
    with pytest.raises(ValueError, match=r"lower\[1\]"):
        crossing_probabilities([0.5, 1.0], [2.0, 2.0], [-2.0, 2.5])
    with pytest.raises(ValueError, match="drift"):
        crossing_probabilities([1.0], [2.0], drift=math.nan)
    with pytest.raises(ValueError, match="looks"):
        classical_design(0)
    with pytest.raises(ValueError, match="kind"):
        classical_design(3, kind="haybittle")
    with pytest.raises(ValueError, match="t =="):
        spending_function([-0.1], alpha=0.05)
    with pytest.raises(ValueError, match="alpha"):
        spending_function([0.5], alpha=0.0)
    with pytest.raises(ValueError, match="look"):
        stagewise_inference(d, look=6, estimate=1.0, standard_error=1.0)
    with pytest.raises(ValueError, match="standard_error"):
        stagewise_inference(d, look=1, estimate=1.0, standard_error=0.0)
    with pytest.raises(ValueError, match="estimate"):
        stagewise_inference(d, look=1, estimate=math.inf, standard_error=1.0)
    with pytest.raises(ValueError, match="drift"):
        operating_characteristics(d, math.inf)
    with pytest.raises(ValueError, match="power"):
        design_drift(d, power=0.01)
    with pytest.raises(ValueError, match="fixed_n"):
        sequential_sample_size(d, -5.0)
    with pytest.raises(ValueError, match="must match"):
        sequential_sample_size(d, sample_size_proportions(0.15, 0.10, alpha=0.1))
    with pytest.raises(ValueError, match="plan's power"):
        sequential_sample_size(d, sample_size_proportions(0.15, 0.10), power=0.9)
    with pytest.raises(ValueError, match="last axis"):
        sequential_decisions(np.zeros((3, 4)), np.ones((3, 4)), d)
    with pytest.raises(ValueError, match="must match"):
        repeated_confidence_intervals(np.zeros((3, 5)), np.ones((2, 5)), d)
    with pytest.raises(TypeError, match="GroupSequentialDesign"):
        operating_characteristics("design", 0.0)  # type: ignore[arg-type]


def test_scalar_look_invalid_inputs() -> None:
    d = spending_design(EQUAL5)
    c, t = ProportionStatistic(100, 10), ProportionStatistic(100, 12)
    with pytest.raises(ValueError, match="exactly one of final_variance and max_n"):
        sequential_look(c, t, design=d)
    with pytest.raises(ValueError, match="exactly one of final_variance and max_n"):
        sequential_look(c, t, design=d, max_n=1000, final_variance=0.1)
    with pytest.raises(ValueError, match="max_n"):
        sequential_look(c, t, design=d, max_n=-1)
    with pytest.raises(ValueError, match="final analysis has already happened"):
        sequential_look(c, t, design=d, max_n=1000, previous_fractions=[0.5, 1.0])
    with pytest.raises(ValueError, match="previous_fractions"):
        sequential_look(c, t, design=d, max_n=1000, previous_fractions=[0.5, 0.4])
    with pytest.raises(TypeError, match="control"):
        sequential_look(0.1, t, design=d, max_n=1000)  # type: ignore[arg-type]


def test_t_to_z_matches_scipy_and_keeps_known_variance_statistics() -> None:
    from scipy import stats as sps

    t = np.array([-8.0, -2.5, -0.3, 0.0, 0.7, 2.1, 6.0])
    for df in (3.0, 12.0, 400.0):
        expected = sps.norm.ppf(sps.t.cdf(t, df))
        np.testing.assert_allclose(t_to_z(t, df), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(t_to_z(t, np.inf), t)
    assert np.isnan(t_to_z(np.nan, 5.0))


@pytest.mark.slow
def test_pocock_with_small_early_looks_and_estimated_variance_holds_alpha() -> None:
    """1,000 looks with 6 units per group per look: the t-to-z map keeps the FPR at alpha."""
    rng = np.random.default_rng(31)
    reps, looks, batch = 6000, 1000, 6
    effects, variances = _mean_paths(rng, reps, looks, batch)
    n = batch * np.arange(1, looks + 1)
    df = 2.0 * (n - 1)  # equal groups, equal true variances: Welch df ~ pooled df
    design = spending_design(np.arange(1, looks + 1) / looks, spending="pocock")
    limit = 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)
    mapped = sequential_decisions(effects, variances, design, df=df).rejected.mean()
    assert mapped <= limit
    raw = sequential_decisions(effects, variances, design).rejected.mean()
    assert raw > mapped  # without the map the small early looks reject more often
