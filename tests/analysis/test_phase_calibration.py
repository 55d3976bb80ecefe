"""Calibration of the period-weighted comparison: its 95 % CI covers the true effect 95 % of the time.

Two situations pull the variance estimate of :func:`splitlab.analysis.comparison.period_weighted` in
opposite directions, so both are simulated with fixed seeds and judged by the coverage of the
absolute effect's 95 % CI, within 3 standard errors of the simulation (``sqrt(0.95 * 0.05 / R)``):

* a ramp over a drifting baseline: two large phases whose ``p (1 - p)`` differ (an arm's variance
  pooled across phases, as for the bandits' own estimates, overstates it: coverage 0.975);
* many small bandit windows with adaptive shares: an arm at its floor has a handful of units in a
  window (each group's own variance in each window understates it: coverage 0.889 for a proportion,
  0.583 for a mean, where a unit alone in its window makes the whole variance NaN; the arm's
  variance pooled across windows mixes the drifting levels: 0.906 and 0.859).

The moderated variance of :func:`splitlab.analysis.comparison.period_weighted` covers 0.949, 0.946
and 0.944 on the three.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from splitlab.analysis.comparison import Options, Statistic, compare_phases
from splitlab.stats.statistics import MeanStatistic, ProportionStatistic

LEVEL = 0.95

Phase = tuple[Statistic, Statistic, int]


def _coverage(cells: list[list[Phase]], truth: float) -> float:
    covered = 0
    for parts in cells:
        result = compare_phases(parts, options=Options(alpha=1 - LEVEL), metric="m", kind="k", variant="b",
                                control="a")  # fmt: skip
        low, high = result.effect.absolute_ci
        covered += low <= truth <= high
    return covered / len(cells)


def _assert_nominal(coverage: float, replications: int) -> None:
    tolerance = 3 * math.sqrt(LEVEL * (1 - LEVEL) / replications)
    assert abs(coverage - LEVEL) <= tolerance, f"coverage {coverage:.4f}, must be within {tolerance:.4f} of {LEVEL}"


def test_a_ramp_over_a_drifting_baseline_has_nominal_coverage() -> None:
    """10/90 -> 50/50, baseline 10 % -> 20 %, 4,000 units per phase, treatment +1 point."""
    replications, units, effect = 3000, 4000, 0.01
    rng = np.random.default_rng(20261210)
    cells: list[list[Phase]] = []
    for _ in range(replications):
        parts: list[Phase] = []
        for share, baseline in ((0.1, 0.10), (0.5, 0.20)):
            control = int(rng.binomial(units, share))
            parts.append((
                ProportionStatistic(control, int(rng.binomial(control, baseline))),
                ProportionStatistic(units - control, int(rng.binomial(units - control, baseline + effect))),
                units,
            ))  # fmt: skip
        cells.append(parts)
    _assert_nominal(_coverage(cells, effect), replications)


def _bandit(rng: np.random.Generator, *, windows: int, per_window: int, effect: float, binary: bool) -> list[Phase]:
    """One adaptive run: each window's treatment share is the chance it is better given the earlier windows.

    Two arms, a 10 % floor, the level drifting from 0.10 to 0.50 over the windows; the share is the
    normal approximation of Thompson sampling's ``P(best)`` on the pooled data so far (so it reacts
    to the rewards, like the real bandit); a mean metric's values are exponential around the level.
    """
    parts: list[Phase] = []
    pooled = [MeanStatistic(0, 0.0, 0.0), MeanStatistic(0, 0.0, 0.0)]
    share = 0.5
    for window in range(windows):
        level = 0.10 + 0.40 * window / (windows - 1)
        treated = int(rng.binomial(per_window, share))
        groups: list[Statistic] = []
        for arm, n in enumerate((per_window - treated, treated)):
            mean = level + effect * arm
            values = (rng.random(n) < mean).astype(float) if binary else rng.exponential(mean, n)
            stat = MeanStatistic.from_values(values)
            pooled[arm] = pooled[arm] + stat
            groups.append(ProportionStatistic(n, float(values.sum())) if binary else stat)
        parts.append((groups[0], groups[1], per_window))
        means = [(p.sum + 1) / (p.n + 2) for p in pooled]
        variances = [max(p.sum_sq / max(p.n, 1) - (p.sum / max(p.n, 1)) ** 2, 1e-3) / (p.n + 2) for p in pooled]
        p_best = float(sps.norm.cdf((means[1] - means[0]) / math.sqrt(sum(variances))))
        share = 0.1 + 0.8 * p_best
    return parts


def _group_sizes(cells: list[list[Phase]]) -> set[int]:
    return {
        g.n
        for parts in cells
        for c, t, _ in parts
        for g in (c, t)
        if isinstance(g, MeanStatistic | ProportionStatistic)
    }


def test_many_small_adaptive_windows_have_nominal_coverage() -> None:
    """12 windows of 40 units, conversion 10 % -> 50 %, treatment +5 points; arms at the floor get ~4 units."""
    replications = 2000
    rng = np.random.default_rng(20261211)
    cells: list[list[Phase]] = [
        _bandit(rng, windows=12, per_window=40, effect=0.05, binary=True) for _ in range(replications)
    ]
    assert 1 in _group_sizes(cells)  # the windows are small indeed
    _assert_nominal(_coverage(cells, 0.05), replications)


def test_a_mean_metric_with_single_units_in_windows_has_nominal_coverage() -> None:
    """The same windows for a skewed mean metric: a unit alone in its window has no variance of its own."""
    replications = 2000
    rng = np.random.default_rng(20261212)
    cells: list[list[Phase]] = [
        _bandit(rng, windows=12, per_window=40, effect=0.05, binary=False) for _ in range(replications)
    ]
    assert 1 in _group_sizes(cells)
    _assert_nominal(_coverage(cells, 0.05), replications)
