"""Wald's SPRT: cross-checks, golden values, invalid input, and operating characteristics by simulation.

The simulations draw the sufficient statistics of each batch exactly (sum ~ N(m mu, m sigma^2),
within-batch sum of squares sigma^2 chi2(m - 1); successes ~ Binomial(m, p)), cumulate them over
the looks with numpy and run the vectorised core on all replications at once. Tolerances are
3 binomial (or Monte Carlo) standard errors of the simulation itself.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from splitlab.stats.frequentist import GroupEstimate, compare_estimates, estimate
from splitlab.stats.results import ErrorCode
from splitlab.stats.sequential.sprt import (
    ACCEPT_H0,
    ACCEPT_H1,
    CONTINUE,
    SprtResult,
    sprt_bounds,
    sprt_expected_information,
    sprt_log_likelihood_ratio,
    sprt_paths,
    sprt_test,
)
from splitlab.stats.statistics import MeanStatistic, ProportionStatistic, RatioStatistic

ALPHA, BETA = 0.05, 0.2
LOOKS = 1000
THIRTY = np.arange(1, 31) * LOOKS // 30 - 1  # 30 equally spaced looks among the 1,000


def _se(p: float, reps: int) -> float:
    return math.sqrt(p * (1 - p) / reps)


# ----------------------------------------------------------------------------- cross-checks


def test_log_likelihood_ratio_is_the_unit_level_wald_product() -> None:
    # Balanced pairs with a known variance: Wald's sum of log f1(x_i)/f0(x_i) over the pair
    # differences equals delta (D - delta/2) / V with V = 2 sigma^2 / n.
    rng = np.random.default_rng(11)
    sigma, delta = 1.7, 0.4
    for n in (1, 7, 250):
        control = rng.normal(3.0, sigma, n)
        treatment = rng.normal(3.2, sigma, n)
        diff = treatment - control
        scale = math.sqrt(2) * sigma
        brute = float(np.sum(sps.norm.logpdf(diff, delta, scale) - sps.norm.logpdf(diff, 0.0, scale)))
        llr = float(sprt_log_likelihood_ratio(diff.mean(), 2 * sigma**2 / n, delta))
        assert llr == pytest.approx(brute, rel=1e-9)


def test_log_likelihood_ratio_matches_scipy_normal_density() -> None:
    rng = np.random.default_rng(12)
    d = rng.normal(0, 1, 50)
    v = rng.uniform(0.01, 2.0, 50)
    for delta in (0.3, -0.8):
        expected = sps.norm.logpdf(d, delta, np.sqrt(v)) - sps.norm.logpdf(d, 0.0, np.sqrt(v))
        np.testing.assert_allclose(sprt_log_likelihood_ratio(d, v, delta), expected, rtol=1e-9)
    bad = sprt_log_likelihood_ratio([1.0, np.nan, 1.0, 1.0], [0.0, 1.0, np.nan, -1.0], 0.5)
    assert np.isnan(bad).all()


def test_mean_statistics_use_the_unpooled_delta_method_variance() -> None:
    rng = np.random.default_rng(13)
    a, b = rng.normal(10, 2, 400), rng.normal(10.3, 3, 300)
    c, t = MeanStatistic.from_values(a), MeanStatistic.from_values(b)
    r = sprt_test(c, t, delta=0.5)
    assert r.effect == pytest.approx(b.mean() - a.mean(), rel=1e-12)
    expected_v = a.var(ddof=1) / 400 + b.var(ddof=1) / 300
    assert r.variance == pytest.approx(expected_v, rel=1e-9)
    assert r.log_likelihood_ratio_greater == pytest.approx(0.5 * (r.effect - 0.25) / expected_v, rel=1e-9)
    assert r.log_likelihood_ratio_less == pytest.approx(-0.5 * (r.effect + 0.25) / expected_v, rel=1e-9)
    assert (r.control_n, r.treatment_n, r.n) == (400, 300, 700)


def test_proportions_use_the_pooled_null_variance() -> None:
    c, t = ProportionStatistic(4000, 400), ProportionStatistic(3000, 345)
    r = sprt_test(c, t, delta=0.01, alternative="greater")
    pooled = 745 / 7000
    assert r.effect == pytest.approx(345 / 3000 - 0.1, rel=1e-12)
    assert r.variance == pytest.approx(pooled * (1 - pooled) * (1 / 4000 + 1 / 3000), rel=1e-12)
    assert math.isnan(r.log_likelihood_ratio_less)
    assert r.arms == ("continue", "inactive")


def test_relative_effect_variance_matches_the_frequentist_delta_method() -> None:
    rng = np.random.default_rng(14)
    c = estimate(MeanStatistic.from_values(rng.normal(20, 5, 500)))
    t = estimate(MeanStatistic.from_values(rng.normal(21, 6, 450)))
    r = sprt_test(c, t, delta=0.05, relative=True)
    reference = compare_estimates(c, t, test="z", use_t=False, alpha=0.05)
    se = (reference.relative_ci[1] - reference.relative_ci[0]) / (2 * sps.norm.ppf(0.975))
    assert r.effect == pytest.approx(reference.relative_effect, rel=1e-12)
    assert r.variance == pytest.approx(se**2, rel=1e-9)
    assert r.relative


def test_ratio_statistics_use_the_delta_method() -> None:
    rng = np.random.default_rng(15)
    den_c, den_t = rng.poisson(3, 300) + 1.0, rng.poisson(3, 320) + 1.0
    c = RatioStatistic.from_values(rng.binomial(den_c.astype(int), 0.2).astype(float), den_c)
    t = RatioStatistic.from_values(rng.binomial(den_t.astype(int), 0.25).astype(float), den_t)
    r = sprt_test(c, t, delta=0.05)
    assert r.variance == pytest.approx(estimate(c).variance + estimate(t).variance, rel=1e-12)
    assert r.effect == pytest.approx(t.mean - c.mean, rel=1e-12)


def _random_looks(rng: np.random.Generator, looks: int, shift: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = np.cumsum(rng.integers(20, 60, looks))
    effect = np.cumsum(rng.normal(shift, 1.0, looks) * 20) / n
    variance = 2.0 / n
    return effect, variance, n


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
@pytest.mark.parametrize("max_n", [None, 300])
def test_scalar_looks_chained_with_previous_match_the_vectorised_core(alternative: str, max_n: int | None) -> None:
    rng = np.random.default_rng(16)
    delta = 0.15
    paths = [_random_looks(rng, 12, shift) for shift in np.tile([0.0, 0.075, 0.15, -0.15], 20)]
    effects = np.array([p[0] for p in paths])
    variances = np.array([p[1] for p in paths])
    ns = np.array([p[2] for p in paths])
    core = sprt_paths(effects, variances, delta=delta, alternative=alternative, n=ns, max_n=max_n)
    for i, (effect, variance, n) in enumerate(paths):
        previous: SprtResult | None = None
        stop = -1
        for look in range(effect.size):
            half = int(n[look]) // 2
            c = GroupEstimate(0.0, variance[look] / 2, half)
            t = GroupEstimate(float(effect[look]), variance[look] / 2, int(n[look]) - half)
            previous = sprt_test(c, t, delta=delta, alternative=alternative, max_n=max_n, previous=previous)
            if previous.decision != "continue":
                stop = look
                break
        assert previous is not None
        assert previous.decision == ("continue", "accept_h0", "accept_h1")[core.decision[i]]
        assert stop == core.stop_look[i]
        assert previous.truncated == core.truncated[i]
        expected_direction = {1: "greater", -1: "less", 0: None}[int(core.direction[i])]
        assert previous.direction == expected_direction
        if stop >= 0:
            assert previous.log_likelihood_ratio == pytest.approx(core.log_likelihood_ratio[i], rel=1e-12)
            assert previous.decided_at_n == n[stop]
    assert set(np.unique(core.decision)) >= {ACCEPT_H0, ACCEPT_H1}
    if max_n is None:
        assert (core.decision == CONTINUE).any()
    else:
        assert (core.decision != CONTINUE).all()
        assert (core.truncated & (core.decision == ACCEPT_H0)).any()
        assert (core.truncated & (core.decision == ACCEPT_H1)).any()


# ----------------------------------------------------------------------------- golden values


def test_golden_bounds() -> None:
    log_b, log_a = sprt_bounds(0.05, 0.2, "two-sided")
    assert log_a == pytest.approx(math.log(32.0), rel=1e-15)
    assert log_b == pytest.approx(math.log(0.2 / 0.975), rel=1e-15)
    assert sprt_bounds(0.05, 0.2, "greater") == pytest.approx((math.log(0.2 / 0.95), math.log(16.0)), rel=1e-15)
    assert sprt_bounds(0.01, 0.1, "less") == pytest.approx((math.log(0.1 / 0.99), math.log(90.0)), rel=1e-15)


def test_golden_expected_information() -> None:
    # Wald: E[I] = [L log B + (1 - L) log A] / E[z], E[z] = -+ delta^2 / 2.
    log_b, log_a = math.log(0.2 / 0.95), math.log(16.0)
    h0 = sprt_expected_information(0.1, hypothesis="h0")
    h1 = sprt_expected_information(0.1, hypothesis="h1")
    assert h0 == pytest.approx((0.95 * log_b + 0.05 * log_a) / -0.005, rel=1e-12)
    assert h1 == pytest.approx((0.2 * log_b + 0.8 * log_a) / 0.005, rel=1e-12)
    assert h1 == pytest.approx(381.2884108365029, rel=1e-12)


def test_golden_proportions_accept_h1() -> None:
    r = sprt_test(ProportionStatistic(5000, 500), ProportionStatistic(5000, 600), delta=0.02)
    variance = 0.11 * 0.89 * 2 / 5000
    assert r.log_likelihood_ratio == pytest.approx(0.02 * 0.01 / variance, rel=1e-12)
    assert r.log_likelihood_ratio == pytest.approx(5.107252298263529, rel=1e-12)
    assert (r.decision, r.direction, r.arms) == ("accept_h1", "greater", ("accept_h1", "accept_h0"))
    assert r.decided_at_n == 10_000
    assert r.bounds == pytest.approx((math.log(0.2 / 0.975), math.log(32.0)), rel=1e-15)


def _look(effect: float, variance: float, n: int = 100) -> tuple[GroupEstimate, GroupEstimate]:
    return GroupEstimate(0.0, variance / 2, n), GroupEstimate(effect, variance / 2, n)


def test_two_sided_arm_that_accepted_h0_stays_frozen() -> None:
    # delta = 1; log B = -1.584, log A = 3.466.
    first = sprt_test(*_look(-0.3, 0.5), delta=1.0)  # +arm: (-0.3 - 0.5) / 0.5 = -1.6 <= log B
    assert (first.decision, first.arms) == ("continue", ("accept_h0", "continue"))
    assert first.log_likelihood_ratio == pytest.approx(-0.4, rel=1e-12)  # the running -arm
    # +arm would now cross log A (5.0), but it is frozen; the -arm accepts H0: the test accepts H0.
    later = sprt_test(*_look(2.0, 0.3, 200), delta=1.0, previous=first)
    assert later.log_likelihood_ratio_greater == pytest.approx(5.0, rel=1e-12)
    assert (later.decision, later.arms, later.direction) == ("accept_h0", ("accept_h0", "accept_h0"), None)
    # Or the running -arm rejects: H1 in the negative direction.
    other = sprt_test(*_look(-2.0, 0.3, 200), delta=1.0, previous=first)
    assert (other.decision, other.direction) == ("accept_h1", "less")
    assert other.log_likelihood_ratio == pytest.approx(5.0, rel=1e-12)


def test_decision_stands_once_taken() -> None:
    decided = sprt_test(*_look(1.0, 0.1), delta=1.0, alternative="greater")
    assert decided.decision == "accept_h1"
    after = sprt_test(*_look(-1.0, 0.05, 300), delta=1.0, alternative="greater", previous=decided)
    assert (after.decision, after.direction, after.decided_at_n, after.n) == ("accept_h1", "greater", 200, 600)
    assert after.log_likelihood_ratio == pytest.approx(-30.0, rel=1e-12)


def test_truncation_decides_by_the_sign_of_the_log_likelihood_ratio() -> None:
    positive = sprt_test(*_look(0.6, 0.5), delta=1.0, max_n=200)  # llr = 0.2
    assert (positive.decision, positive.direction, positive.truncated) == ("accept_h1", "greater", True)
    negative = sprt_test(*_look(0.4, 0.5), delta=1.0, max_n=200)  # llrs -0.2 and -1.8 (the -arm accepts H0)
    assert (negative.decision, negative.truncated) == ("accept_h0", True)
    early = sprt_test(*_look(0.6, 0.5), delta=1.0, max_n=201)
    assert (early.decision, early.truncated) == ("continue", False)
    core = sprt_paths([[0.6], [0.4], [-0.6]], [[0.5]], delta=1.0, n=[[200]], max_n=200)
    assert core.decision.tolist() == [ACCEPT_H1, ACCEPT_H0, ACCEPT_H1]
    assert core.direction.tolist() == [1, 0, -1]
    assert core.truncated.all()


# ----------------------------------------------------------------------------- degenerate data


@pytest.mark.parametrize(
    ("control", "treatment", "relative", "code"),
    [
        (MeanStatistic(0, 0.0, 0.0), MeanStatistic(5, 5.0, 7.0), False, ErrorCode.EMPTY_GROUP),
        (MeanStatistic(1, 2.0, 4.0), MeanStatistic(5, 5.0, 7.0), False, ErrorCode.TOO_FEW_UNITS),
        (MeanStatistic(3, 3.0, 3.0), MeanStatistic(3, 6.0, 12.0), False, ErrorCode.ZERO_VARIANCE),
        (ProportionStatistic(100, 0), ProportionStatistic(100, 0), False, ErrorCode.ZERO_VARIANCE),
        (MeanStatistic(3, 0.0, 2.0), MeanStatistic(3, 6.0, 14.0), True, ErrorCode.ZERO_CONTROL_MEAN),
        (
            RatioStatistic(MeanStatistic(2, 0.0, 0.0), MeanStatistic(2, 0.0, 0.0), 0.0),
            RatioStatistic(MeanStatistic(2, 1.0, 1.0), MeanStatistic(2, 2.0, 2.0), 1.0),
            False,
            ErrorCode.ZERO_DENOMINATOR,
        ),
    ],
)
def test_degenerate_data_continue_with_an_error_code(control, treatment, relative, code) -> None:  # type: ignore[no-untyped-def]
    r = sprt_test(control, treatment, delta=0.1, relative=relative, max_n=1)
    assert (r.decision, r.error_code, r.truncated) == ("continue", code, False)
    assert r.error_message
    assert math.isnan(r.log_likelihood_ratio)


def test_core_skips_looks_without_a_log_likelihood_ratio() -> None:
    out = sprt_paths([[0.5, 0.5, 0.5]], [[0.0, np.nan, 0.01]], delta=0.2, alternative="greater")
    assert (int(out.decision[0]), int(out.stop_look[0])) == (ACCEPT_H1, 2)
    running = sprt_paths([[0.05, 0.05]], [[1.0, 1.0]], delta=0.2)
    assert (int(running.decision[0]), int(running.stop_look[0])) == (CONTINUE, -1)
    assert math.isnan(running.log_likelihood_ratio[0])


def test_to_dict_is_json_ready() -> None:
    r = sprt_test(ProportionStatistic(5000, 500), ProportionStatistic(5000, 600), delta=0.02)
    data = r.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["bounds"] == list(r.bounds)
    assert data["arms"] == ["accept_h1", "accept_h0"]
    assert data["error_code"] is None
    bad = sprt_test(MeanStatistic(0, 0.0, 0.0), MeanStatistic(5, 5.0, 7.0), delta=0.1).to_dict()
    assert bad["error_code"] == "EMPTY_GROUP"


# ----------------------------------------------------------------------------- invalid input

STATS = (MeanStatistic(10, 10.0, 20.0), MeanStatistic(10, 12.0, 25.0))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"delta": 0.0}, "delta"),
        ({"delta": -0.1}, "delta"),
        ({"delta": math.inf}, "delta"),
        ({"delta": 0.1, "alpha": 1.5}, "alpha"),
        ({"delta": 0.1, "alpha": 0.0}, "alpha"),
        ({"delta": 0.1, "beta": 1.0}, "beta"),
        ({"delta": 0.1, "alpha": 0.5, "beta": 0.5}, "alpha \\+ beta"),
        ({"delta": 0.1, "alternative": "both"}, "alternative"),
        ({"delta": 0.1, "max_n": 0}, "max_n"),
        ({"delta": 0.1, "max_n": 10.5}, "max_n"),
        ({"delta": 0.1, "max_n": True}, "max_n"),
    ],
)
def test_invalid_options_raise(options: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sprt_test(*STATS, **options)  # type: ignore[arg-type]


def test_previous_of_another_design_raises() -> None:
    previous = sprt_test(*STATS, delta=0.1)
    with pytest.raises(ValueError, match="previous was computed with alpha"):
        sprt_test(*STATS, delta=0.1, alpha=0.01, previous=previous)
    with pytest.raises(ValueError, match="previous was computed with delta"):
        sprt_test(*STATS, delta=0.2, previous=previous)


def test_invalid_statistics_raise() -> None:
    with pytest.raises(TypeError, match="same kind"):
        sprt_test(MeanStatistic(10, 1.0, 1.0), ProportionStatistic(10, 1), delta=0.1)
    with pytest.raises(ValueError, match=r"treatment\.successes"):
        sprt_test(ProportionStatistic(10, 1), ProportionStatistic(10, 11), delta=0.1)


def test_invalid_core_input_raises() -> None:
    with pytest.raises(ValueError, match="last axis of looks"):
        sprt_paths(0.1, 0.01, delta=0.1)
    with pytest.raises(ValueError, match="n \\(units at each look\\) is required"):
        sprt_paths([0.1], [0.01], delta=0.1, max_n=10)
    with pytest.raises(ValueError, match="max_n"):
        sprt_paths([0.1], [0.01], delta=0.1, n=[5], max_n=-1)
    with pytest.raises(ValueError, match="delta"):
        sprt_paths([0.1], [0.01], delta=0.0)
    with pytest.raises(ValueError, match="hypothesis"):
        sprt_expected_information(0.1, hypothesis="h2")
    with pytest.raises(ValueError, match="delta"):
        sprt_expected_information(-0.1)


# ----------------------------------------------------------------------------- operating characteristics


def _normal_looks(
    rng: np.random.Generator, reps: int, m: int, shift: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative D, its estimated variance and its true variance at LOOKS looks of m units per group (sigma 1)."""
    mu = np.array([0.0, shift])
    sums = rng.normal(m * mu, math.sqrt(m), size=(reps, LOOKS, 2))
    sum_sq = rng.chisquare(m - 1, size=(reps, LOOKS, 2)) + sums**2 / m
    n = m * np.arange(1, LOOKS + 1)[None, :, None]
    total, total_sq = np.cumsum(sums, axis=1), np.cumsum(sum_sq, axis=1)
    unit_var = (total_sq - total**2 / n) / (n - 1)
    effect = (total[..., 1] - total[..., 0]) / n[..., 0]
    estimated = (unit_var[..., 0] + unit_var[..., 1]) / n[..., 0]
    known = np.broadcast_to(2.0 / n[..., 0], effect.shape)
    return effect, estimated, known


def _known_looks(rng: np.random.Generator, reps: int, m: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """D and its (known) variance: only the batch difference of sums is needed, N(m shift, 2m)."""
    n = m * np.arange(1, LOOKS + 1)
    effect = np.cumsum(rng.normal(m * shift, math.sqrt(2 * m), size=(reps, LOOKS)), axis=1) / n
    return effect, np.broadcast_to(2.0 / n, effect.shape)


def test_aa_type_i_error_for_means_with_30_and_1000_looks_and_naive_inflation() -> None:
    # delta = 0.1 sigma, 10 units per group per look: delta^2 I grows by 0.05 per look (50 at the end).
    rng = np.random.default_rng(2024)
    reps, chunk, delta = 12_000, 3_000, 0.1
    hits = {"known_1000": 0, "known_30": 0, "estimated_1000": 0, "estimated_30": 0, "naive_1000": 0, "naive_30": 0}
    running = 0
    for _ in range(reps // chunk):
        effect, estimated, known = _normal_looks(rng, chunk, 10, 0.0)
        for name, variance in (("known", known), ("estimated", estimated)):
            every = sprt_paths(effect, variance, delta=delta)
            hits[f"{name}_1000"] += int(every.accepted_h1.sum())
            hits[f"{name}_30"] += int(sprt_paths(effect[:, THIRTY], variance[:, THIRTY], delta=delta).accepted_h1.sum())
            running += int((every.decision == CONTINUE).sum())
        z = np.abs(effect) / np.sqrt(estimated)
        hits["naive_1000"] += int((z > sps.norm.ppf(0.975)).any(axis=1).sum())
        hits["naive_30"] += int((z[:, THIRTY] > sps.norm.ppf(0.975)).any(axis=1).sum())
    rates = {name: count / reps for name, count in hits.items()}
    bound = ALPHA + 3 * _se(ALPHA, reps)
    for name in ("known_1000", "known_30", "estimated_1000", "estimated_30"):
        assert rates[name] <= bound, rates
    # Overshoot with 30 coarse looks makes Wald's bounds conservative; with 1,000 looks it is nearly exact.
    assert rates["known_30"] < rates["known_1000"]
    assert rates["known_1000"] > ALPHA - 0.015
    # The fixed-horizon z-test repeated at the same looks is far above alpha.
    assert rates["naive_30"] > ALPHA + 20 * _se(ALPHA, reps)
    assert rates["naive_1000"] > rates["naive_30"]
    assert running == 0  # untruncated, but every path decided within the horizon


def _proportion_looks(
    rng: np.random.Generator, reps: int, m: int, p_c: float, p_t: float
) -> tuple[np.ndarray, np.ndarray]:
    successes = np.cumsum(rng.binomial(m, [p_c, p_t], size=(reps, LOOKS, 2)), axis=1).astype(float)
    n = m * np.arange(1, LOOKS + 1)[None, :]
    pooled = successes.sum(axis=-1) / (2 * n)
    effect = (successes[..., 1] - successes[..., 0]) / n
    return effect, pooled * (1 - pooled) * 2 / n


def test_aa_type_i_error_for_proportions_with_30_and_1000_looks_and_naive_inflation() -> None:
    rng = np.random.default_rng(2025)
    reps, chunk, delta = 8_000, 2_000, 0.02
    hits = {"sprt_1000": 0, "sprt_30": 0, "naive_1000": 0, "naive_30": 0}
    for _ in range(reps // chunk):
        effect, variance = _proportion_looks(rng, chunk, 20, 0.1, 0.1)
        hits["sprt_1000"] += int(sprt_paths(effect, variance, delta=delta).accepted_h1.sum())
        hits["sprt_30"] += int(sprt_paths(effect[:, THIRTY], variance[:, THIRTY], delta=delta).accepted_h1.sum())
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.abs(effect) / np.sqrt(variance)
        hits["naive_1000"] += int((z > sps.norm.ppf(0.975)).any(axis=1).sum())
        hits["naive_30"] += int((z[:, THIRTY] > sps.norm.ppf(0.975)).any(axis=1).sum())
    rates = {name: count / reps for name, count in hits.items()}
    bound = ALPHA + 3 * _se(ALPHA, reps)
    assert rates["sprt_1000"] <= bound, rates
    assert rates["sprt_30"] <= bound, rates
    assert rates["naive_30"] > ALPHA + 20 * _se(ALPHA, reps), rates
    assert rates["naive_1000"] > rates["naive_30"]


def test_power_at_delta_for_means_with_estimated_variance_and_for_proportions() -> None:
    rng = np.random.default_rng(2026)
    reps = 4_000
    effect, estimated, _ = _normal_looks(rng, reps, 10, 0.1)
    means = sprt_paths(effect, estimated, delta=0.1)
    effect_p, variance_p = _proportion_looks(rng, reps, 20, 0.10, 0.12)
    proportions = sprt_paths(effect_p, variance_p, delta=0.02)
    floor = 1 - BETA - 3 * _se(1 - BETA, reps)
    for out in (means, proportions):
        power = float(np.mean(out.accepted_h1 & (out.direction == 1)))
        assert power >= floor, power
        assert np.mean(out.direction == -1) < 0.001  # H1 in the wrong direction: essentially never


def _wald_corrected(delta: float, step: float, hypothesis: str) -> tuple[float, float]:
    """Wald's OC/ASN formulas with boundaries moved out by the expected overshoot rho * step.

    rho = -zeta(1/2) / sqrt(2 pi) ~ 0.5826 (Siegmund 1985, Sequential Analysis, ch. X, the
    corrected diffusion approximation). With step -> 0 these are Wald's own approximations.
    Returns (probability of accepting H1, expected information at stopping).
    """
    log_b, log_a = sprt_bounds(ALPHA, BETA, "greater")
    a, b = log_a + 0.5826 * step, log_b - 0.5826 * step
    drift = delta * delta / 2
    if hypothesis == "h0":
        upper = (1 - math.exp(b)) / (math.exp(a) - math.exp(b))  # exp(llr) is a martingale under H0
        return upper, ((1 - upper) * b + upper * a) / -drift
    lower = (1 - math.exp(-a)) / (math.exp(-b) - math.exp(-a))  # exp(-llr) is a martingale under H1
    return 1 - lower, (lower * b + (1 - lower) * a) / drift


@pytest.mark.parametrize("hypothesis", ["h0", "h1"])
def test_average_sample_number_against_wald(hypothesis: str) -> None:
    # One-sided SPRT, known variance, 10 units per group per look: information 5 per look.
    rng = np.random.default_rng(2027 if hypothesis == "h0" else 2028)
    reps, delta, m = 10_000, 0.1, 10
    effect, variance = _known_looks(rng, reps, m, 0.0 if hypothesis == "h0" else delta)
    out = sprt_paths(effect, variance, delta=delta, alternative="greater")
    assert (out.stop_look >= 0).all()
    information = (out.stop_look + 1) * m / 2.0
    asn, asn_se = information.mean(), information.std(ddof=1) / math.sqrt(reps)
    wald = sprt_expected_information(delta, alpha=ALPHA, beta=BETA, alternative="greater", hypothesis=hypothesis)
    accept_h1, corrected = _wald_corrected(delta, delta * math.sqrt(m / 2), hypothesis)
    # Wald neglects the overshoot, so the average exceeds his approximation; the overshoot-corrected
    # approximation matches within the simulation error plus 1% for the approximation itself.
    assert asn > wald + 3 * asn_se
    assert abs(asn - corrected) <= 3 * asn_se + 0.01 * corrected, (asn, corrected, wald)
    rate = float(out.accepted_h1.mean())
    assert abs(rate - accept_h1) <= 3 * _se(accept_h1, reps) + 0.005
    if hypothesis == "h0":
        assert rate <= ALPHA + 3 * _se(ALPHA, reps)
    else:
        assert rate >= 1 - BETA - 3 * _se(1 - BETA, reps)


def test_truncation_raises_type_i_error_by_the_forced_positive_decisions() -> None:
    rng = np.random.default_rng(2029)
    reps, m, delta = 10_000, 10, 0.1
    effect, variance = _known_looks(rng, reps, m, 0.0)
    n = 2 * m * np.arange(1, LOOKS + 1)
    untruncated = sprt_paths(effect, variance, delta=delta)
    asn_units = float(np.mean(n[untruncated.stop_look]))
    for multiple in (2, 4):
        max_n = int(multiple * asn_units)
        out = sprt_paths(effect, variance, delta=delta, n=n, max_n=max_n)
        assert (out.decision != CONTINUE).all()
        last = int(np.argmax(n >= max_n))
        before = untruncated.accepted_h1 & (untruncated.stop_look <= last) & (untruncated.stop_look >= 0)
        forced = out.truncated & out.accepted_h1
        # Every rejection is a boundary crossing by max_n or a positive log-LR forced at max_n.
        np.testing.assert_array_equal(out.accepted_h1, before | forced)
        increase = float(out.accepted_h1.mean() - before.mean())
        assert increase == pytest.approx(float(forced.mean()), abs=1e-12)
        if multiple == 4:
            assert out.accepted_h1.mean() <= ALPHA + 3 * _se(ALPHA, reps)
        else:
            assert forced.mean() > 3 * _se(ALPHA, reps)  # a short horizon costs type I error
