"""Calibration by seeded simulation: A/A false positive rate, CI coverage and power.

Each check draws the sufficient statistics of many replications at once with numpy, runs the
test on each, and compares the rate with its nominal value within 3 binomial standard errors of
the simulation itself (``3 * sqrt(p (1 - p) / reps)``), so a test that is off by more than the
simulation can explain fails.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import pytest

from splitlab.stats.frequentist import means_test, proportions_test, ratio_test
from splitlab.stats.power import sample_size_means, sample_size_proportions
from splitlab.stats.results import EffectResult
from splitlab.stats.statistics import MeanStatistic, ProportionStatistic, RatioStatistic

ALPHA = 0.05
REPS = 3000


def _tolerance(p: float, reps: int = REPS) -> float:
    return 3 * math.sqrt(p * (1 - p) / reps)


def _proportion_pairs(rng: np.random.Generator, n: int, p_c: float, p_t: float) -> list[tuple[object, object]]:
    c, t = rng.binomial(n, p_c, REPS), rng.binomial(n, p_t, REPS)
    return [(ProportionStatistic(n, float(a)), ProportionStatistic(n, float(b))) for a, b in zip(c, t, strict=True)]


def _mean_pairs(rng: np.random.Generator, n: int, shift: float) -> list[tuple[object, object]]:
    """Skewed (lognormal) values, unequal variances: Welch's setting."""
    c = rng.lognormal(0.0, 0.6, (REPS, n))
    t = rng.lognormal(0.0, 0.8, (REPS, n))
    t = t - np.exp(0.8**2 / 2) + np.exp(0.6**2 / 2) + shift  # same mean as control, plus shift
    return [
        (MeanStatistic(n, float(a.sum()), float(a @ a)), MeanStatistic(n, float(b.sum()), float(b @ b)))
        for a, b in zip(c, t, strict=True)
    ]


def _ratio_pairs(rng: np.random.Generator, n: int, p_c: float, p_t: float) -> list[tuple[object, object]]:
    def draw(p: float) -> list[RatioStatistic]:
        den = rng.poisson(3.0, (REPS, n)) + 1
        num = rng.binomial(den, p)
        return [
            RatioStatistic(
                MeanStatistic(n, float(a.sum()), float(a @ a)),
                MeanStatistic(n, float(d.sum()), float(d @ d)),
                float(a @ d),
            )
            for a, d in zip(num.astype(float), den.astype(float), strict=True)
        ]

    return list(zip(draw(p_c), draw(p_t), strict=True))


Runner = Callable[[object, object], EffectResult]

CASES: list[tuple[str, Callable[[np.random.Generator, float], list[tuple[object, object]]], Runner, float]] = [
    ("pooled-z", lambda rng, d: _proportion_pairs(rng, 2000, 0.10, 0.10 + d), proportions_test, 0.02),
    ("wald-z", lambda rng, d: _proportion_pairs(rng, 2000, 0.10, 0.10 + d),
     functools.partial(proportions_test, test="wald-z"), 0.02),
    ("welch-t", lambda rng, d: _mean_pairs(rng, 300, d), means_test, 0.1),
    ("z", lambda rng, d: _mean_pairs(rng, 300, d), functools.partial(means_test, test="z"), 0.1),
    ("delta-z", lambda rng, d: _ratio_pairs(rng, 400, 0.2, 0.2 + d), ratio_test, 0.02),
]  # fmt: skip


@pytest.mark.parametrize(("name", "draw", "run", "effect"), CASES, ids=[c[0] for c in CASES])
def test_aa_false_positive_rate(name: str, draw: Callable, run: Runner, effect: float) -> None:
    rng = np.random.default_rng(sum(map(ord, name)))
    rejections = np.mean([run(c, t).p_value < ALPHA for c, t in draw(rng, 0.0)])
    assert abs(rejections - ALPHA) < _tolerance(ALPHA), f"{name}: A/A rejection rate {rejections:.4f}"


@pytest.mark.parametrize(("name", "draw", "run", "effect"), CASES, ids=[c[0] for c in CASES])
def test_absolute_ci_coverage(name: str, draw: Callable, run: Runner, effect: float) -> None:
    rng = np.random.default_rng(1000 + sum(map(ord, name)))
    intervals = [run(c, t).absolute_ci for c, t in draw(rng, effect)]
    covered = np.mean([low <= effect <= high for low, high in intervals])
    assert abs(covered - (1 - ALPHA)) < _tolerance(ALPHA), f"{name}: coverage {covered:.4f}"


@pytest.mark.parametrize("method", ["delta", "log"])
def test_relative_ci_coverage(method: str) -> None:
    rng = np.random.default_rng(77)
    p_c, p_t = 0.10, 0.115
    truth = p_t / p_c - 1
    results = [proportions_test(c, t, relative_ci=method) for c, t in _proportion_pairs(rng, 4000, p_c, p_t)]
    covered = np.mean([r.relative_ci[0] <= truth <= r.relative_ci[1] for r in results])
    assert abs(covered - (1 - ALPHA)) < _tolerance(ALPHA), f"{method}: coverage {covered:.4f}"


def test_fisher_exact_is_conservative_at_small_counts() -> None:
    rng = np.random.default_rng(5)
    rates = [
        proportions_test(c, t, test="fisher-exact").p_value < ALPHA for c, t in _proportion_pairs(rng, 40, 0.2, 0.2)
    ]
    assert np.mean(rates) <= ALPHA + _tolerance(ALPHA)


def test_one_sided_non_inferiority_rejects_at_alpha_on_the_margin_boundary() -> None:
    """With the true effect exactly -margin (the edge of H0), rejection happens at rate alpha."""
    rng = np.random.default_rng(9)
    rejections = np.mean(
        [
            proportions_test(c, t, test="wald-z", alternative="greater", margin=0.01).p_value < ALPHA
            for c, t in _proportion_pairs(rng, 5000, 0.20, 0.19)
        ]
    )
    assert abs(rejections - ALPHA) < _tolerance(ALPHA)


def test_power_at_planned_size_for_proportions_and_means() -> None:
    rng = np.random.default_rng(2026)
    plan = sample_size_proportions(0.08, 0.25)  # +25 % relative on 8 %
    n = plan.per_variant
    pairs = [(ProportionStatistic(n, float(a)), ProportionStatistic(n, float(b)))
             for a, b in zip(rng.binomial(n, 0.08, REPS), rng.binomial(n, 0.10, REPS), strict=True)]  # fmt: skip
    power = np.mean([proportions_test(c, t).p_value < ALPHA for c, t in pairs])
    assert abs(power - 0.8) < _tolerance(0.8), f"proportions: power {power:.4f} at n = {n}"

    plan_means = sample_size_means(0.5, 2.0)  # absolute MDE 0.5 with sd 2
    n = plan_means.per_variant
    c = rng.normal(10.0, 2.0, (REPS, n))
    t = rng.normal(10.5, 2.0, (REPS, n))
    power = np.mean(
        [
            means_test(
                MeanStatistic(n, float(a.sum()), float(a @ a)), MeanStatistic(n, float(b.sum()), float(b @ b))
            ).p_value
            < ALPHA
            for a, b in zip(c, t, strict=True)
        ]
    )
    assert abs(power - 0.8) < _tolerance(0.8), f"means: power {power:.4f} at n = {n}"


def test_tolerance_detects_a_miscalibrated_level() -> None:
    """The tolerance has teeth: a test at alpha = 0.08 is caught as miscalibrated."""
    rng = np.random.default_rng(3)
    rejections = np.mean([proportions_test(c, t).p_value < 0.08 for c, t in _proportion_pairs(rng, 2000, 0.1, 0.1)])
    assert abs(rejections - ALPHA) > _tolerance(ALPHA)
