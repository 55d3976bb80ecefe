"""Always-valid inference: mSPRT, the hybrid design and GrowthBook's confidence sequence.

Cross-checks: GrowthBook's formulas written out here from gbstats/frequentist/tests.py (golden
values pinned), the mixture likelihood ratio by numerical integration over the effect, the
crossing-probability recursion against closed forms. Calibration: seeded A/A simulations of
cumulative sufficient statistics under 30 and 1,000 looks (means with estimated variance,
proportions), coverage of the whole confidence sequence, power at the planned size. Tolerances
are three binomial standard errors of each simulation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, optimize, special
from scipy import stats as sps

from splitlab.stats.frequentist import GroupEstimate, estimate
from splitlab.stats.results import ErrorCode
from splitlab.stats.sequential import always_valid as av
from splitlab.stats.sequential.always_valid import (
    confidence_sequence,
    confidence_sequence_path,
    msprt,
    msprt_path,
    optimal_mixture_ratio,
)
from splitlab.stats.statistics import MeanStatistic, ProportionStatistic, RatioStatistic

ALPHA = 0.05
REPS = 4000


def _bound(p: float = ALPHA, reps: int = REPS) -> float:
    return p + 3 * math.sqrt(p * (1 - p) / reps)


# ----------------------------------------------------------------------------------------------
# GrowthBook's formulas, written from gbstats/frequentist/tests.py (sequential_rho,
# sequential_interval_halfwidth, sequential_interval_halfwidth_one_sided,
# SequentialTwoSidedTTest.p_value, SequentialOneSidedTreatment*TTest.compute_p_value).


def gb_rho(alpha: float, n_star: float, two_sided: bool = True) -> float:
    a = alpha if two_sided else 2 * alpha
    return math.sqrt((-2 * math.log(a) + math.log(-2 * math.log(a) + 1)) / n_star)


def gb_halfwidth(s2: float, n: float, alpha: float, rho: float) -> float:
    return math.sqrt(s2) * math.sqrt(
        2 * (n * rho**2 + 1) * math.log(math.sqrt(n * rho**2 + 1) / alpha) / (n * rho) ** 2
    )


def gb_halfwidth_one_sided(s2: float, n: float, alpha: float, rho: float) -> float:
    part2 = 2 * (n * rho**2 + 1) / (n * rho) ** 2
    part3 = math.log(1 + math.sqrt(n * rho**2 + 1) / (2 * alpha))
    return math.sqrt(s2 * part2 * part3)


def gb_p_two_sided(point: float, se: float, n: float, rho: float) -> float:
    st2 = point**2 * n / se**2
    tr2p1 = n * rho**2 + 1
    evalue = math.exp(rho**2 * st2 / (2 * tr2p1)) / math.sqrt(tr2p1)
    return min(1 / evalue, 1)


def gb_p_one_sided(point: float, se: float, n: float, rho: float, lesser: bool) -> float:
    """GrowthBook's bisection on alpha for the level at which the one-sided bound touches 0."""
    s2 = se**2 * n

    def bound(a: float) -> float:
        half = gb_halfwidth_one_sided(s2, n, a, rho)
        return point + half if lesser else point - half

    low, high = 1e-5, 0.4999
    a = 0.5 * (low + high)
    for _ in range(100):
        diff = bound(a)
        if (diff > 0) == lesser:
            low = a
        else:
            high = a
        a = 0.5 * (low + high)
        if abs(diff) < 1e-6:
            break
    return a


def gb_moments(control: GroupEstimate, treatment: GroupEstimate, relative: bool) -> tuple[float, float]:
    """(point estimate, standard error) as gbstats computes them; variances of the unit values."""
    ma, mb = control.mean, treatment.mean
    va, vb = control.variance * control.n, treatment.variance * treatment.n
    if relative:
        return (mb - ma) / ma, math.sqrt(vb / (ma**2 * treatment.n) + va * mb**2 / (ma**4 * control.n))
    return mb - ma, math.sqrt(vb / treatment.n + va / control.n)


def test_growthbook_formula_golden_values() -> None:
    # Pinned once from the formulas above; they catch a change to either side.
    assert gb_rho(0.05, 5000) == pytest.approx(0.03984006677137368, rel=1e-14)
    assert gb_rho(0.05, 5000, two_sided=False) == pytest.approx(0.03557768852889753, rel=1e-14)
    assert gb_halfwidth(1.0, 10000, 0.05, gb_rho(0.05, 5000)) == pytest.approx(0.030614772188674165, rel=1e-14)
    half = gb_halfwidth_one_sided(1.0, 10000, 0.05, gb_rho(0.05, 5000, two_sided=False))
    assert half == pytest.approx(0.028013307238473714, rel=1e-14)
    assert gb_p_two_sided(0.05, 0.02, 10000, gb_rho(0.05, 5000)) == pytest.approx(0.2171974575076885, rel=1e-14)
    path = confidence_sequence_path([[0.05]], [[0.02**2]], [10000])
    assert path.p_value[0, 0] == pytest.approx(0.2171974575076885, rel=1e-12)
    path = confidence_sequence_path([[0.0]], [[1.0 / 10000]], [10000])
    assert path.upper[0, 0] == pytest.approx(0.030614772188674165, rel=1e-12)


GB_CASES = [
    (ProportionStatistic(10000, 1000), ProportionStatistic(10000, 1100)),
    (ProportionStatistic(3000, 240), ProportionStatistic(3100, 230)),
    (MeanStatistic(2000, 2000.0, 4000.0), MeanStatistic(2000, 2150.0, 4460.0)),
    (MeanStatistic(800, 4100.0, 31000.0), MeanStatistic(820, 4400.0, 33500.0)),
]


@pytest.mark.parametrize(("control", "treatment"), GB_CASES)
@pytest.mark.parametrize("relative", [True, False])
@pytest.mark.parametrize(("alpha", "n_star"), [(0.05, 5000.0), (0.1, 20000.0)])
def test_confidence_sequence_matches_growthbook(control, treatment, relative, alpha, n_star) -> None:
    c, t = estimate(control), estimate(treatment)
    point, se = gb_moments(c, t, relative)
    n = control.n + treatment.n
    s2 = se**2 * n
    rho = gb_rho(alpha, n_star)
    half = gb_halfwidth(s2, n, alpha, rho)
    result = confidence_sequence(control, treatment, alpha=alpha, relative=relative, tuning=n_star)
    assert result.effect == pytest.approx(point, rel=1e-12)
    assert result.ci[0] == pytest.approx(point - half, rel=1e-12)
    assert result.ci[1] == pytest.approx(point + half, rel=1e-12)
    assert result.p_value == pytest.approx(gb_p_two_sided(point, se, n, rho), rel=1e-12)
    assert result.tau2 == pytest.approx(rho**2 * s2, rel=1e-12)

    rho1 = gb_rho(alpha, n_star, two_sided=False)
    half1 = gb_halfwidth_one_sided(s2, n, alpha, rho1)
    greater = confidence_sequence(control, treatment, alpha=alpha, alternative="greater", relative=relative,
                                  tuning=n_star)  # fmt: skip
    less = confidence_sequence(control, treatment, alpha=alpha, alternative="less", relative=relative, tuning=n_star)
    assert greater.ci == (pytest.approx(point - half1, rel=1e-12), math.inf)
    assert less.ci == (-math.inf, pytest.approx(point + half1, rel=1e-12))
    for res, lesser in ((greater, False), (less, True)):
        if (point < 0) != lesser:
            assert res.p_value == 1.0
            continue

        def bound(a: float, lesser: bool = lesser) -> float:
            half = gb_halfwidth_one_sided(s2, n, a, rho1)
            return point + half if lesser else point - half

        # The level at which GrowthBook's one-sided bound touches 0, exactly; its bisection
        # (tolerance 1e-6 on the bound, clamped to [1e-5, 0.4999]) lands near it.
        root = optimize.brentq(bound, 1e-300, 1e6, xtol=1e-300, rtol=1e-14)
        assert res.p_value == pytest.approx(min(1.0, root), rel=1e-9)
        bisected = gb_p_one_sided(point, se, n, rho1, lesser)
        assert bisected == pytest.approx(min(max(res.p_value, 1e-5), 0.4999), rel=0.02, abs=1e-5)


def test_confidence_sequence_golden_scalar() -> None:
    result = confidence_sequence(ProportionStatistic(10000, 1000), ProportionStatistic(10000, 1100), relative=True)
    assert result.effect == pytest.approx(0.1, rel=1e-12)
    # Pinned from GrowthBook's formulas above (relative lift, N* = 5000, alpha = 0.05).
    assert result.ci[0] == pytest.approx(-0.04220635376208545, rel=1e-11)
    assert result.ci[1] == pytest.approx(0.24220635376208535, rel=1e-11)
    assert result.p_value == pytest.approx(0.5490379443452079, rel=1e-11)
    assert result.method == "gaussian-mixture-cs"
    assert result.tuning == 5000.0


def test_growthbook_is_msprt_with_tau2_rho2_s2() -> None:
    rng = np.random.default_rng(1)
    rho = gb_rho(ALPHA, 8000)
    for effect, variance, n in zip(rng.normal(0, 0.05, 6), rng.uniform(1e-4, 4e-4, 6), [900, 3000, 8000, 2e4, 5e4, 1e5],
                                   strict=True):  # fmt: skip
        gb = confidence_sequence_path([[effect]], [[variance]], [n], tuning=8000)
        mix = msprt_path([[effect]], [[variance]], mode="always-valid", tau2=rho**2 * variance * n)
        assert gb.lower[0, 0] == pytest.approx(mix.lower[0, 0], rel=1e-12)
        assert gb.upper[0, 0] == pytest.approx(mix.upper[0, 0], rel=1e-12)
        assert gb.p_value[0, 0] == pytest.approx(mix.p_value[0, 0], rel=1e-12)
        assert gb.log_likelihood_ratio[0, 0] == pytest.approx(mix.log_likelihood_ratio[0, 0], rel=1e-12)


# ----------------------------------------------------------------------------------------------
# mSPRT: the mixture likelihood ratio by numerical integration over the effect.


def _mixture_lr(theta: float, variance: float, tau2: float, half: bool) -> float:
    def integrand(delta: float) -> float:
        prior = math.exp(-0.5 * delta**2 / tau2) / math.sqrt(2 * math.pi * tau2)
        return prior * math.exp(delta * theta / variance - 0.5 * delta**2 / variance)

    scale = math.sqrt(tau2)
    if half:
        return 2 * integrate.quad(integrand, 0, 60 * scale, epsabs=0, epsrel=1e-13, limit=200)[0]
    return integrate.quad(integrand, -60 * scale, 60 * scale, epsabs=0, epsrel=1e-13, limit=200)[0]


@pytest.mark.parametrize(("theta", "variance", "tau2"), [(0.03, 1e-4, 4e-4), (-0.02, 2e-4, 1e-3), (0.001, 1e-4, 1e-5)])
def test_msprt_likelihood_ratio_matches_integration(theta, variance, tau2) -> None:
    two = msprt_path([[theta]], [[variance]], mode="always-valid", tau2=tau2)
    assert math.exp(two.log_likelihood_ratio[0, 0]) == pytest.approx(_mixture_lr(theta, variance, tau2, False),
                                                                     rel=1e-9)  # fmt: skip
    assert two.p_value[0, 0] == pytest.approx(min(1.0, 1 / _mixture_lr(theta, variance, tau2, False)), rel=1e-9)
    greater = msprt_path([[theta]], [[variance]], alternative="greater", mode="always-valid", tau2=tau2)
    lr = _mixture_lr(theta, variance, tau2, True)
    assert math.exp(greater.log_likelihood_ratio[0, 0]) == pytest.approx(lr, rel=1e-9)
    less = msprt_path([[theta]], [[variance]], alternative="less", mode="always-valid", tau2=tau2)
    assert math.exp(less.log_likelihood_ratio[0, 0]) == pytest.approx(_mixture_lr(-theta, variance, tau2, True),
                                                                      rel=1e-9)  # fmt: skip


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_msprt_interval_ends_where_the_likelihood_ratio_reaches_one_over_alpha(alternative) -> None:
    theta, variance, tau2 = 0.02, 1e-4, 3e-4
    path = msprt_path([[theta]], [[variance]], alternative=alternative, mode="always-valid", tau2=tau2)
    half = alternative != "two-sided"
    if alternative != "less":
        # The null value theta - (theta - lower) sits on the boundary: Lambda(theta - lower) = 1 / alpha.
        assert _mixture_lr(theta - path.lower[0, 0], variance, tau2, half) == pytest.approx(1 / ALPHA, rel=1e-9)
    if alternative != "greater":
        assert _mixture_lr(path.upper[0, 0] - theta, variance, tau2, half) == pytest.approx(1 / ALPHA, rel=1e-9)


def test_half_normal_root_matches_brentq() -> None:
    targets = np.array([0.3, 1.0, 3.0, 8.0, 25.0])
    roots = av._half_normal_root(targets)
    for target, root in zip(targets, roots, strict=True):

        def equation(w: float, level: float = float(target)) -> float:
            return math.log(2) + float(special.log_ndtr(w)) + 0.5 * w * w - level

        assert root == pytest.approx(optimize.brentq(equation, -5, 20, xtol=1e-15), rel=1e-10)


def test_optimal_mixture_ratio_minimises_the_boundary_at_the_planned_size() -> None:
    for alpha in (0.01, 0.05, 0.2):
        x = optimal_mixture_ratio(alpha)
        assert x == pytest.approx(math.log1p(x) - 2 * math.log(alpha), rel=1e-12)

        def boundary(log_x: float, a: float = alpha) -> float:
            ratio = math.exp(log_x)
            return (1 + ratio) / ratio * (math.log1p(ratio) - 2 * math.log(a))

        found = optimize.minimize_scalar(boundary, bounds=(-5, 8), method="bounded", options={"xatol": 1e-10})
        assert x == pytest.approx(math.exp(found.x), rel=1e-5)
        # GrowthBook's eq. 161 is one fixed-point step from x = -2 log alpha.
        c = -2 * math.log(alpha)
        assert gb_rho(alpha, 1.0) ** 2 == pytest.approx(c + math.log1p(c), rel=1e-12)
    one_sided = optimal_mixture_ratio(0.05, alternative="greater")
    grid = np.exp(np.linspace(math.log(1.0), math.log(40.0), 4001))
    z = [
        optimize.brentq(lambda w, k=k: math.log(2) + float(special.log_ndtr(w)) + 0.5 * w * w - k, -5, 20)
        for k in 0.5 * np.log1p(grid) - math.log(0.05)
    ]
    best = grid[int(np.argmin(np.array(z) ** 2 * (1 + grid) / grid))]
    assert one_sided == pytest.approx(best, rel=2e-3)


# ----------------------------------------------------------------------------------------------
# Hybrid: the crossing-probability recursion and its tables.


def test_crossing_recursion_matches_closed_forms() -> None:
    b = 2.0
    flat = np.full(av._STEPS + 1, b)
    two_sided = 1 - sum(
        (-1) ** k * (sps.norm.cdf((2 * k + 1) * b) - sps.norm.cdf((2 * k - 1) * b)) for k in range(-30, 31)
    )
    assert av._crossing(flat, True)[0] == pytest.approx(two_sided, rel=1e-4)
    assert av._crossing(flat, False)[0] == pytest.approx(2 * sps.norm.sf(b), rel=1e-4)  # reflection principle
    a, slope = 1.5, 1.0
    line = a + slope * np.linspace(0, 1, av._STEPS + 1)
    exact = sps.norm.sf(a + slope) + math.exp(-2 * a * slope) * sps.norm.cdf(slope - a)  # Siegmund (1985), 3.15
    assert av._crossing(line, False)[0] == pytest.approx(exact, rel=1e-4)
    probability, tail = av._crossing(flat, True)
    survivors = 1 - probability
    assert tail(0.0) == pytest.approx(survivors, rel=1e-5)


def test_hybrid_tables_reproduce() -> None:
    for index, two_sided in ((6, True), (30, False)):
        u = float(av._LOG_LAMBDA[index])
        table = av._LOG_G_TWO if two_sided else av._LOG_G_ONE
        assert math.log(av._crossing(av._hybrid_boundary(u), two_sided)[0]) == pytest.approx(table[index], rel=1e-8)
    level = float(np.exp(av._LOG_LEVELS[30]))
    assert av._final_critical_exact(level, True) == pytest.approx(av._C_TWO[30], rel=1e-8)
    # c(alpha) sits where the final p-value crosses alpha.
    c = av._final_critical(ALPHA, True)
    assert av._final_p_value(np.array([c]), True)[0] == pytest.approx(ALPHA, rel=1e-6)


def test_hybrid_stages_final_look_and_closed_looks() -> None:
    effect = np.array([[0.01, 0.02, 0.05, 0.0, 0.9]])
    variance = np.array([[4e-4, 2e-4, 1e-4, 8e-5, 7e-5]])
    n = np.array([100, 200, 400, 500, 600])
    path = msprt_path(effect, variance, n, planned_n=400)
    final_p = av._final_p_value(np.array([0.05 / 0.01]), True)[0]
    assert path.p_value[0, 2] == pytest.approx(min(path.p_value[0, 1], final_p), rel=1e-12)
    c = av._final_critical(ALPHA, True)
    assert path.lower[0, 2] == pytest.approx(max(path.lower[0, 1], 0.05 - c * 0.01), rel=1e-12)
    # Looks after the final one repeat it, whatever the data say.
    np.testing.assert_array_equal(path.p_value[0, 2:], path.p_value[0, 2])
    np.testing.assert_array_equal(path.lower[0, 2:], path.lower[0, 2])
    stages = [msprt(GroupEstimate(0.0, v / 2, k // 2), GroupEstimate(e, v / 2, k // 2), planned_n=400).stage
              for e, v, k in zip(effect[0], variance[0], n, strict=True)]  # fmt: skip
    assert stages == ["interim", "interim", "final", "final", "final"]
    previous = None
    for e, v, k in zip(effect[0], variance[0], n, strict=True):
        previous = msprt(GroupEstimate(0.0, v / 2, int(k) // 2), GroupEstimate(float(e), v / 2, int(k) // 2),
                         planned_n=400, previous=previous)  # fmt: skip
    assert previous is not None
    assert previous.stage == "closed"
    assert previous.p_value == pytest.approx(path.p_value[0, -1], rel=1e-12)


# ----------------------------------------------------------------------------------------------
# Scalar API against the vectorised cores, results, errors.


def _looks(seed: int) -> list[tuple[MeanStatistic, MeanStatistic]]:
    rng = np.random.default_rng(seed)
    c, t = rng.normal(1.0, 1.0, 1200), rng.normal(1.08, 1.2, 1200)
    return [(MeanStatistic.from_values(c[:k]), MeanStatistic.from_values(t[:k])) for k in (150, 300, 600, 900, 1200)]


OPTIONS = [
    {"planned_n": 2400},
    {"planned_n": 2400, "alternative": "greater"},
    {"planned_n": 2400, "alternative": "less", "relative": True},
    {"mode": "always-valid", "planned_n": 2400},
    {"mode": "always-valid", "tau2": 0.01, "alternative": "greater"},
]


@pytest.mark.parametrize("options", OPTIONS)
def test_scalar_msprt_chained_equals_path(options) -> None:
    looks = _looks(3)
    relative = options.get("relative", False)
    previous = None
    results = []
    for control, treatment in looks:
        previous = msprt(control, treatment, previous=previous, **options)
        results.append(previous)
    effects, variances = [], []
    for control, treatment in looks:
        c, t = estimate(control), estimate(treatment)
        if relative:
            effects.append(t.mean / c.mean - 1)
            variances.append(t.mean**2 * c.variance / c.mean**4 + t.variance / c.mean**2)
        else:
            effects.append(t.mean - c.mean)
            variances.append(c.variance + t.variance)
    n = [c.n + t.n for c, t in looks]
    path_options = {k: v for k, v in options.items() if k != "relative"}
    path = msprt_path([effects], [variances], n, **path_options)
    for j, result in enumerate(results):
        assert result.p_value == pytest.approx(path.p_value[0, j], rel=1e-12)
        assert result.ci == (pytest.approx(path.lower[0, j], rel=1e-12), pytest.approx(path.upper[0, j], rel=1e-12))
        assert result.effect == pytest.approx(effects[j], rel=1e-12)
    assert results[-1].stage == ("final" if options.get("mode", "hybrid") == "hybrid" else "interim")


def test_scalar_confidence_sequence_chained_equals_path() -> None:
    looks = _looks(4)
    previous = None
    for control, treatment in looks:
        previous = confidence_sequence(control, treatment, planned_n=2400, previous=previous)
    effects = [t.mean - c.mean for c, t in looks]
    variances = [c.variance / c.n + t.variance / t.n for c, t in looks]
    path = confidence_sequence_path([effects], [variances], [c.n + t.n for c, t in looks], planned_n=2400)
    assert previous is not None
    assert previous.p_value == pytest.approx(path.p_value[0, -1], rel=1e-12)
    assert previous.ci[0] == pytest.approx(path.lower[0, -1], rel=1e-12)
    assert previous.tuning == 2400


def test_result_record() -> None:
    control, treatment = _looks(5)[-1]
    result = msprt(control, treatment, planned_n=2400)
    data = result.to_dict()
    assert data["method"] == "msprt-hybrid"
    assert isinstance(data["ci"], list)
    assert data["error_code"] is None
    assert result.significant == (result.p_value <= ALPHA)
    assert result.statistic == pytest.approx(result.effect / math.sqrt(result.variance))
    with pytest.raises(AttributeError):
        result.p_value = 0.0  # type: ignore[misc]
    assert result.tau2 == pytest.approx(result.variance * result.n / 2400)


def test_degenerate_data_give_error_codes() -> None:
    good = MeanStatistic.from_values([1.0, 2.0, 4.0])
    cases = [
        (MeanStatistic(0, 0.0, 0.0), good, ErrorCode.EMPTY_GROUP, False),
        (MeanStatistic.from_values([1.0]), good, ErrorCode.TOO_FEW_UNITS, False),
        (MeanStatistic.from_values([2.0, 2.0]), MeanStatistic.from_values([2.0, 2.0, 2.0]), ErrorCode.ZERO_VARIANCE,
         False),
        (MeanStatistic.from_values([0.0, 0.0]), good, ErrorCode.ZERO_CONTROL_MEAN, True),
        (RatioStatistic.from_values([1.0, 2.0], [0.0, 0.0]), RatioStatistic.from_values([1.0, 2.0], [1.0, 2.0]),
         ErrorCode.ZERO_DENOMINATOR, False),
        (ProportionStatistic(100, 0), ProportionStatistic(100, 0), ErrorCode.ZERO_VARIANCE, False),
    ]  # fmt: skip
    for control, treatment, code, relative in cases:
        for result in (
            msprt(control, treatment, planned_n=1000, relative=relative),
            msprt(control, treatment, mode="always-valid", tau2=0.1, relative=relative),
            confidence_sequence(control, treatment, relative=relative),
        ):
            assert result.error_code == code
            assert math.isnan(result.p_value)
            assert result.error_message
    first = msprt(*_looks(6)[0], planned_n=2400)
    carried = msprt(MeanStatistic(200, 0.0, 0.0), MeanStatistic(200, 0.0, 0.0), planned_n=2400, previous=first)
    assert carried.error_code == ErrorCode.ZERO_VARIANCE
    assert carried.p_value == first.p_value
    assert carried.ci == first.ci


def test_degenerate_looks_in_paths_keep_the_running_values() -> None:
    path = msprt_path([[0.1, np.nan, 0.1]], [[0.01, 0.01, 0.0]], [10, 20, 30], planned_n=100)
    assert np.isnan(path.log_likelihood_ratio[0, 1:]).all()
    assert path.p_value[0, 2] == path.p_value[0, 0]
    assert path.lower[0, 2] == path.lower[0, 0]
    gb = confidence_sequence_path([[np.inf, 0.1]], [[0.01, -1.0]], [0, 10])
    assert gb.p_value.tolist() == [[1.0, 1.0]]
    assert gb.lower.tolist() == [[-math.inf, -math.inf]]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s: msprt(*s, alpha=1.5, planned_n=10), "alpha"),
        (lambda s: msprt(*s, alpha=0.0, planned_n=10), "alpha"),
        (lambda s: msprt(*s, alternative="both", planned_n=10), "alternative"),
        (lambda s: msprt(*s, mode="truncated", planned_n=10), "mode"),
        (lambda s: msprt(*s), "planned_n"),
        (lambda s: msprt(*s, planned_n=-5), "planned_n"),
        (lambda s: msprt(*s, planned_n=10, tau2=1.0), "tau2"),
        (lambda s: msprt(*s, alpha=0.6, planned_n=10), "alpha"),
        (lambda s: msprt(*s, mode="always-valid"), "tau2"),
        (lambda s: msprt(*s, mode="always-valid", tau2=1.0, planned_n=10), "tau2"),
        (lambda s: msprt(*s, mode="always-valid", tau2=0.0), "tau2"),
        (lambda s: confidence_sequence(*s, tuning=0.0), "tuning"),
        (lambda s: confidence_sequence(*s, planned_n=math.inf), "planned_n"),
        (lambda s: confidence_sequence(*s, alpha=0.5, alternative="greater"), "alpha"),
        (lambda s: confidence_sequence(*s, previous=msprt(*s, planned_n=10)), "previous.method"),
        (lambda s: msprt(*s, planned_n=10, previous=msprt(*s, planned_n=10, alpha=0.1)), "previous.alpha"),
        (lambda s: msprt(*s, planned_n=10, previous=msprt(*s, planned_n=20)), "previous.tuning"),
        (lambda s: msprt_path([0.1], [0.01], mode="always-valid", planned_n=10), "n"),
        (lambda s: msprt_path([0.1], [0.01], [-1], planned_n=10), "n"),
        (lambda s: msprt_path([0.1, 0.2], [0.01, 0.01], [1, 2, 3], planned_n=10), "n"),
        (lambda s: msprt_path(0.1, 0.01, [1], planned_n=10), "effect"),
        (lambda s: confidence_sequence_path([0.1], [0.01], None), "n"),
    ],
)
def test_invalid_parameters_raise(call, match) -> None:
    statistics = (MeanStatistic.from_values([1.0, 2.0, 3.0]), MeanStatistic.from_values([2.0, 3.0, 5.0]))
    with pytest.raises(ValueError, match=match):
        call(statistics)


def test_previous_must_not_come_from_a_larger_look() -> None:
    looks = _looks(7)
    later = msprt(*looks[-1], planned_n=2400)
    with pytest.raises(ValueError, match=r"previous\.n"):
        msprt(*looks[0], planned_n=2400, previous=later)
    with pytest.raises(TypeError, match="previous"):
        msprt(*looks[0], planned_n=2400, previous="p")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# Calibration by simulation of cumulative sufficient statistics.


def _means(rng: np.random.Generator, looks: int, per_look: int, shift: float = 0.0):
    """Effect, its estimated variance and total units per look; exact draws of (sum, sum of squares)."""
    arms = []
    for mu, sigma in ((0.0, 1.0), (shift, 1.3)):
        s = rng.normal(per_look * mu, math.sqrt(per_look) * sigma, (REPS, looks))
        ss = sigma**2 * rng.chisquare(per_look - 1, (REPS, looks)) + s * s / per_look
        arms.append((np.cumsum(s, axis=1), np.cumsum(ss, axis=1)))
    n = per_look * np.arange(1, looks + 1)
    (sc, ssc), (st, sst) = arms
    var_c, var_t = (ssc - sc * sc / n) / (n - 1), (sst - st * st / n) / (n - 1)
    return st / n - sc / n, var_c / n + var_t / n, 2.0 * n


def _proportions(rng: np.random.Generator, looks: int, per_look: int):
    n = per_look * np.arange(1, looks + 1)
    c = np.cumsum(rng.binomial(per_look, 0.05, (REPS, looks)), axis=1) / n
    t = np.cumsum(rng.binomial(per_look, 0.05, (REPS, looks)), axis=1) / n
    return t - c, c * (1 - c) / n + t * (1 - t) / n, 2.0 * n


def _paths(effect, variance, n, alternative="two-sided"):
    """Every method on the same data; the fixed-tau2 mSPRT (per-entry boundary roots) two-sided only, for time."""
    planned = float(n[-1])
    fixed_tau2 = optimal_mixture_ratio(ALPHA) * float(np.median(variance[:, -1]))
    paths = {
        "hybrid": msprt_path(effect, variance, n, alternative=alternative, planned_n=planned),
        "msprt-planned": msprt_path(effect, variance, n, alternative=alternative, mode="always-valid",
                                    planned_n=planned),
        "gb-5000": confidence_sequence_path(effect, variance, n, alternative=alternative),
        "gb-planned": confidence_sequence_path(effect, variance, n, alternative=alternative, planned_n=planned),
    }  # fmt: skip
    if alternative == "two-sided":
        paths["msprt-tau2"] = msprt_path(effect, variance, n, mode="always-valid", tau2=fixed_tau2)
    return paths


SEEDS = {("means", 30): 11, ("means", 1000): 12, ("proportions", 30): 13, ("proportions", 1000): 14}


@pytest.fixture(scope="module")
def null_means_1000():
    return _means(np.random.default_rng(20240601), 1000, 10)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "looks"), [("means", 30), ("means", 1000), ("proportions", 30), ("proportions", 1000)]
)
def test_aa_false_positive_rate_under_peeking(kind, looks, null_means_1000) -> None:
    rng = np.random.default_rng(SEEDS[kind, looks])
    if kind == "means" and looks == 1000:
        effect, variance, n = null_means_1000
    elif kind == "means":
        effect, variance, n = _means(rng, looks, 400)
    else:
        effect, variance, n = _proportions(rng, looks, 12000 // looks)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = effect / np.sqrt(variance)
    naive = np.any(np.abs(z) >= sps.norm.ppf(1 - ALPHA / 2), axis=1).mean()
    fixed = (np.abs(z[:, -1]) >= sps.norm.ppf(1 - ALPHA / 2)).mean()
    assert naive > _bound(), "peeking at a fixed-horizon test must inflate the error in this simulation"
    assert fixed <= _bound()
    for name, path in _paths(effect, variance, n).items():
        rate = path.rejected[:, -1].mean()
        assert rate <= _bound(), f"{name}: {rate}"
        # Rejection and the interval excluding 0 are the same event, look by look.
        excluded = (path.lower > 0) | (path.upper < 0)
        np.testing.assert_array_equal(path.rejected, excluded, err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_aa_one_sided_false_positive_rate(alternative, null_means_1000) -> None:
    effect, variance, n = null_means_1000
    for name, path in _paths(effect, variance, n, alternative).items():
        assert path.rejected[:, -1].mean() <= _bound(), name


@pytest.fixture(scope="module")
def effect_1000():
    per_look = 10
    planned = 2 * per_look * 1000
    sd = math.sqrt((1.0 + 1.3**2) / (planned / 2))
    shift = (sps.norm.ppf(1 - ALPHA / 2) + sps.norm.ppf(0.8)) * sd  # the fixed test has 80% power at N
    return _means(np.random.default_rng(7), 1000, per_look, shift), shift


@pytest.mark.slow
def test_confidence_sequences_cover_the_true_effect(effect_1000) -> None:
    (effect, variance, n), shift = effect_1000
    for alternative in ("two-sided", "greater", "less"):
        for name, path in _paths(effect, variance, n, alternative).items():
            covered = ((path.lower <= shift) & (shift <= path.upper)).all(axis=1).mean()
            assert covered >= 1 - _bound(), f"{name} {alternative}: {covered}"


@pytest.mark.slow
def test_power_at_the_planned_size(effect_1000) -> None:
    (effect, variance, n), _ = effect_1000
    fixed = (np.abs(effect[:, -1] / np.sqrt(variance[:, -1])) >= sps.norm.ppf(1 - ALPHA / 2)).mean()
    assert 0.76 <= fixed <= 0.84
    paths = _paths(effect, variance, n)
    power = {name: path.rejected[:, -1].mean() for name, path in paths.items()}
    assert power["hybrid"] >= 0.65
    assert power["hybrid"] >= fixed - 0.05
    # The untruncated always-valid tests pay for their infinite horizon.
    for name in ("msprt-planned", "gb-5000", "gb-planned"):
        assert power[name] < power["hybrid"] - 0.15, (name, power)
    stop = np.where(paths["hybrid"].rejected.any(axis=1), paths["hybrid"].rejected.argmax(axis=1), n.size - 1)
    assert (n[stop] / n[-1]).mean() < 0.85  # it stops early when the effect is real


def test_paths_take_any_leading_shape() -> None:
    rng = np.random.default_rng(8)
    effect, variance = rng.normal(0, 0.03, (2, 3, 6)), rng.uniform(1e-4, 3e-4, (2, 3, 6))
    n = np.arange(1, 7) * 400.0
    for run in (
        lambda e, v: msprt_path(e, v, n, planned_n=2400, alternative="less"),
        lambda e, v: msprt_path(e, v, n, mode="always-valid", planned_n=2400),
        lambda e, v: confidence_sequence_path(e, v, n),
    ):
        whole = run(effect, variance)
        rows = run(effect.reshape(6, 6), variance.reshape(6, 6))
        np.testing.assert_allclose(whole.p_value.reshape(6, 6), rows.p_value, rtol=1e-13)
        np.testing.assert_allclose(whole.upper.reshape(6, 6), rows.upper, rtol=1e-13)
        assert whole.p_value.shape == (2, 3, 6)
        assert np.all(np.diff(whole.p_value, axis=-1) <= 0)
