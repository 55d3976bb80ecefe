"""Mann-Whitney, bootstrap and quantile tests: cross-checks, golden values, bad input, calibration."""

from __future__ import annotations

import itertools
import math
import tracemalloc

import numpy as np
import pandas as pd
import polars as pl
import pytest
from scipy import stats as sps
from statsmodels.stats.nonparametric import rank_compare_2indep

from splitlab.stats import nonparametric
from splitlab.stats.nonparametric import (
    _leave_one_out,
    _quantile_and_se,
    _u_null_counts,
    bootstrap_effect,
    mann_whitney,
    quantile_test,
)
from splitlab.stats.results import EffectResult, ErrorCode

REL = 1e-9
ALTERNATIVES = ["two-sided", "greater", "less"]
Z975 = float(sps.norm.ppf(0.975))


def _binomial_band(p: float, reps: int) -> float:
    """Three binomial standard errors of a simulated rate around ``p``."""
    return 3 * math.sqrt(p * (1 - p) / reps)


# --------------------------------------------------------------------------------------------
# Mann-Whitney
# --------------------------------------------------------------------------------------------


def _samples(seed: int, n_c: int, n_t: int, *, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    c, t = rng.normal(0.0, 1.0, n_c), rng.normal(0.4, 1.2, n_t)
    if ties:
        c, t = np.round(c * 2) / 2, np.round(t * 2) / 2
    return c, t


@pytest.mark.parametrize("continuity", [True, False])
@pytest.mark.parametrize("alternative", ALTERNATIVES)
@pytest.mark.parametrize(
    ("method", "sizes", "ties"),
    [
        ("asymptotic", (40, 55), False),
        ("asymptotic", (40, 55), True),
        ("asymptotic", (6, 9), True),
        ("exact", (7, 11), False),
        ("exact", (3, 20), False),
        ("auto", (5, 8), False),
        ("auto", (30, 25), True),
        ("auto", (6, 40), True),
    ],
)
def test_mann_whitney_matches_scipy(
    method: str, sizes: tuple[int, int], ties: bool, alternative: str, continuity: bool
) -> None:
    for seed in range(3):
        c, t = _samples(seed, *sizes, ties=ties)
        result = mann_whitney(c, t, alternative=alternative, method=method, continuity=continuity)
        reference = sps.mannwhitneyu(t, c, alternative=alternative, method=method, use_continuity=continuity)
        assert result.error_code is None
        assert result.u_statistic == reference.statistic
        assert result.p_value == pytest.approx(reference.pvalue, rel=REL)
        expected_method = (
            "exact" if method == "exact" or (method == "auto" and min(sizes) <= 8 and not ties) else "asymptotic"
        )
        assert result.method == expected_method


@pytest.mark.parametrize("alternative", ALTERNATIVES)
@pytest.mark.parametrize(("n_c", "n_t"), [(6, 7), (9, 5), (4, 10)])
def test_exact_with_ties_matches_exhaustive_permutation_test(n_c: int, n_t: int, alternative: str) -> None:
    """With ties the exact p-value conditions on them; scipy's exhaustive permutation test agrees."""
    c, t = _samples(n_c * 10 + n_t, n_c, n_t, ties=True)
    assert np.unique(np.r_[c, t]).size < n_c + n_t

    def u_statistic(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
        return sps.mannwhitneyu(y, x, axis=axis, method="asymptotic").statistic

    reference = sps.permutation_test(
        (c, t), u_statistic, permutation_type="independent", n_resamples=np.inf, alternative=alternative,
        vectorized=True,
    )  # fmt: skip
    result = mann_whitney(c, t, alternative=alternative, method="exact")
    assert result.method == "exact"
    assert result.p_value == pytest.approx(reference.pvalue, rel=REL)
    assert math.isnan(result.z_statistic)


@pytest.mark.parametrize(("m", "n"), [(1, 1), (2, 3), (4, 4), (3, 7), (6, 5)])
def test_null_counts_match_enumeration(m: int, n: int) -> None:
    brute = np.zeros(m * n + 1, dtype=np.int64)
    for chosen in itertools.combinations(range(m + n), m):
        brute[sum(rank - i for i, rank in enumerate(chosen))] += 1
    np.testing.assert_array_equal(_u_null_counts(m, n), brute)
    np.testing.assert_array_equal(_u_null_counts(n, m), brute)


def test_null_counts_exact_in_python_integers() -> None:
    counts = _u_null_counts(40, 45)
    assert counts.dtype == object
    assert sum(counts) == math.comb(85, 40)
    assert list(counts) == list(counts[::-1])
    assert counts[0] == 1
    assert counts[1] == 1
    assert counts[2] == 2


def test_auto_and_fallback_rules() -> None:
    rng = np.random.default_rng(0)
    assert mann_whitney(rng.normal(size=8), rng.normal(size=500)).method == "exact"
    assert mann_whitney(rng.normal(size=9), rng.normal(size=9)).method == "asymptotic"
    assert mann_whitney([1.0, 2.0, 2.0], [3.0, 4.0]).method == "asymptotic"
    # Exact for 8 x 300,000 would need ~5e9 cell operations: the normal approximation is used.
    c, t = rng.normal(size=8), rng.normal(size=300_000)
    big = mann_whitney(c, t, method="exact")
    assert big.method == "asymptotic"
    assert big.p_value == pytest.approx(sps.mannwhitneyu(t, c, method="asymptotic").pvalue, rel=REL)
    tied_c, tied_t = np.round(rng.normal(size=300)), np.round(rng.normal(size=300))
    tied = mann_whitney(tied_c, tied_t, method="exact", alternative="less")
    assert tied.method == "asymptotic"
    assert tied.p_value == pytest.approx(
        sps.mannwhitneyu(tied_t, tied_c, method="asymptotic", alternative="less").pvalue, rel=REL
    )


def test_probability_of_superiority_matches_statsmodels_and_brute_force() -> None:
    rng = np.random.default_rng(5)
    c, t = np.round(rng.normal(0, 1, 60), 1), np.round(rng.normal(0.3, 1, 45), 1)
    result = mann_whitney(c, t, alpha=0.1)
    diff = t[:, None] - c[None, :]
    assert result.probability_of_superiority == pytest.approx(np.mean((diff > 0) + 0.5 * (diff == 0)), rel=REL)
    reference = rank_compare_2indep(t, c, use_t=False)
    assert result.probability_of_superiority == pytest.approx(reference.prob1, rel=REL)
    low, high = reference.conf_int(alpha=0.1)
    assert 0 < low < high < 1
    assert result.probability_of_superiority_ci[0] == pytest.approx(low, rel=REL)
    assert result.probability_of_superiority_ci[1] == pytest.approx(high, rel=REL)


def test_probability_of_superiority_one_sided_and_clipped() -> None:
    rng = np.random.default_rng(6)
    c, t = rng.normal(0, 1, 80), rng.normal(0.2, 1, 90)
    two = mann_whitney(c, t, alpha=0.1)
    greater = mann_whitney(c, t, alternative="greater", alpha=0.05)
    less = mann_whitney(c, t, alternative="less", alpha=0.05)
    assert greater.probability_of_superiority_ci == pytest.approx((two.probability_of_superiority_ci[0], 1.0))
    assert less.probability_of_superiority_ci == pytest.approx((0.0, two.probability_of_superiority_ci[1]))
    separated = mann_whitney([1.0, 2.0, 3.0, 4.0], [3.5, 5.0, 6.0, 7.0, 8.0])
    assert separated.probability_of_superiority_ci[1] == 1.0


def test_mann_whitney_golden_values() -> None:
    control = [12.1, 15.3, 9.8, 11.0, 14.2, 10.5, 13.3, 12.8, 9.9, 16.0, 11.7]
    treatment = [14.9, 17.2, 12.6, 15.5, 18.1, 13.9, 16.4, 12.1, 19.0, 15.0]
    result = mann_whitney(control, treatment)
    assert result.method == "asymptotic"
    assert result.u_statistic == 91.5  # counted by hand: 9 + 11 + 6 + 10 + 11 + 8 + 11 + 5.5 + 11 + 9
    assert result.p_value == pytest.approx(0.011216929011244027, rel=REL)
    assert result.z_statistic == pytest.approx(2.535867111969667, rel=REL)
    assert result.probability_of_superiority == pytest.approx(91.5 / 110, rel=REL)
    assert result.probability_of_superiority_ci[0] == pytest.approx(0.6579583630589377, rel=REL)
    assert result.probability_of_superiority_ci[1] == 1.0
    exact = mann_whitney([1.1, 2.3, 2.9, 4.0], [3.5, 4.2, 5.0, 6.1, 7.3], alternative="greater")
    assert exact.p_value == pytest.approx(2 / math.comb(9, 4), rel=REL)


def test_mann_whitney_degenerate_data() -> None:
    empty = mann_whitney([], [1.0, 2.0])
    assert empty.error_code is ErrorCode.EMPTY_GROUP
    assert math.isnan(empty.p_value)
    assert math.isnan(empty.u_statistic)
    equal = mann_whitney([2.0] * 5, [2.0] * 7)
    assert equal.error_code is ErrorCode.ZERO_VARIANCE
    assert math.isnan(equal.p_value)
    assert equal.probability_of_superiority == 0.5
    assert not equal.significant
    only_nan = mann_whitney([math.nan, math.nan], [1.0])
    assert only_nan.error_code is ErrorCode.EMPTY_GROUP
    assert only_nan.control_dropped == 2
    single = mann_whitney([1.0], [2.0, 3.0, 0.5])
    assert single.error_code is None
    assert math.isnan(single.probability_of_superiority_ci[0])


def test_mann_whitney_drops_nan_from_frames_and_counts_them() -> None:
    c = [1.0, 3.5, math.nan, 2.2, 0.4, 5.1]
    t = [2.0, math.nan, 4.4, math.nan, 6.3, 3.1, 7.0]
    clean = mann_whitney([x for x in c if not math.isnan(x)], [x for x in t if not math.isnan(x)])
    for control, treatment in [(c, t), (pd.Series(c), pd.Series(t)), (pl.Series(c), pl.Series(t))]:
        result = mann_whitney(control, treatment)
        assert (result.control_dropped, result.treatment_dropped) == (1, 2)
        assert (result.control_n, result.treatment_n) == (5, 5)
        assert result.p_value == clean.p_value
    nulls = mann_whitney(pl.Series([1.0, None, 2.0]), pd.Series([3.0, None, 4.0], dtype="Float64"))
    assert (nulls.control_dropped, nulls.treatment_dropped) == (1, 1)
    with_inf = mann_whitney([1.0, 2.0, -math.inf], [3.0, math.inf, 2.5])
    assert with_inf.error_code is None
    assert with_inf.u_statistic == 9.0
    data = clean.to_dict()
    assert data["method"] == "exact"
    assert isinstance(data["probability_of_superiority_ci"], list)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"alternative": "bigger"}, "alternative"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": 0.0}, "alpha"),
        ({"method": "permutation"}, "method"),
        ({"continuity": 1}, "continuity"),
    ],
)
def test_mann_whitney_invalid_parameters(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        mann_whitney([1.0, 2.0], [3.0, 4.0], **kwargs)  # type: ignore[arg-type]


def test_mann_whitney_rejects_two_dimensional_values() -> None:
    with pytest.raises(ValueError, match="control"):
        mann_whitney(np.ones((2, 2)), [1.0])


# --------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------


def _scipy_effect(quantile: float | None, relative: bool):  # type: ignore[no-untyped-def]
    def statistic(c: np.ndarray, t: np.ndarray, axis: int) -> np.ndarray:
        if quantile is None:
            tv, cv = np.mean(t, axis=axis), np.mean(c, axis=axis)
        else:
            tv, cv = np.quantile(t, quantile, axis=axis), np.quantile(c, quantile, axis=axis)
        return tv / cv - 1 if relative else tv - cv

    return statistic


@pytest.mark.parametrize("method", ["bca", "percentile"])
@pytest.mark.parametrize("relative", [False, True])
@pytest.mark.parametrize("statistic", ["mean", "median", 0.9])
def test_bootstrap_matches_scipy_with_the_same_draws(statistic: str | float, relative: bool, method: str) -> None:
    """Same generator, same draw order (control block then treatment block): scipy's CI to 1e-9.

    This relies on scipy drawing ``rng.integers(0, n, (batch, n))`` per sample per batch, as
    scipy 1.11-1.17 do; the independent-seed test below does not.
    """
    rng = np.random.default_rng(11)
    c, t = rng.lognormal(0, 1, 150), rng.lognormal(0.2, 1, 120)
    quantile = None if statistic == "mean" else 0.5 if statistic == "median" else 0.9
    result = bootstrap_effect(c, t, statistic=statistic, relative=relative, method=method, n_resamples=3000, seed=42)
    reference = sps.bootstrap(
        (c, t), _scipy_effect(quantile, relative), n_resamples=3000, method="BCa" if method == "bca" else method,
        rng=np.random.default_rng(42), vectorized=True, paired=False,
    )  # fmt: skip
    assert result.error_code is None
    assert result.ci[0] == pytest.approx(reference.confidence_interval.low, rel=REL)
    assert result.ci[1] == pytest.approx(reference.confidence_interval.high, rel=REL)
    assert result.standard_error == pytest.approx(reference.standard_error, rel=REL)


def test_bootstrap_chunks_follow_the_same_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(12)
    c, t = rng.exponential(1, 130), rng.exponential(1.4, 140)
    monkeypatch.setattr(nonparametric, "_CHUNK_CELLS", 18 * 270)
    result = bootstrap_effect(c, t, n_resamples=1000, seed=3)
    reference = sps.bootstrap(
        (c, t), _scipy_effect(None, False), n_resamples=1000, batch=18, method="BCa", rng=np.random.default_rng(3),
        vectorized=True,
    )  # fmt: skip
    assert result.ci[0] == pytest.approx(reference.confidence_interval.low, rel=REL)
    assert result.ci[1] == pytest.approx(reference.confidence_interval.high, rel=REL)


@pytest.mark.parametrize("method", ["bca", "percentile"])
def test_bootstrap_agrees_with_scipy_within_monte_carlo_error(method: str) -> None:
    """Independent draws: endpoints differ only by Monte Carlo error.

    The Monte Carlo SE of an endpoint at level p is read off scipy's own replicates as half the
    spread between the replicate quantiles at ``p ± sqrt(p (1 - p) / B)`` (the order-statistic SE
    of a sample quantile). The two runs are independent, so their difference has sqrt(2) times
    that SE; BCa's levels carry the extra noise of the estimated ``z0`` (about as much again, so
    another sqrt(2)). We allow 5 of those SEs: about 0.01 on an interval 0.4 wide at B = 20,000.
    """
    rng = np.random.default_rng(8)
    c, t = rng.exponential(1, 300), rng.exponential(1.5, 300)
    n_resamples = 20_000
    result = bootstrap_effect(c, t, method=method, n_resamples=n_resamples, seed=2)
    reference = sps.bootstrap(
        (c, t), _scipy_effect(None, False), n_resamples=n_resamples, method="BCa" if method == "bca" else method,
        rng=np.random.default_rng(1), vectorized=True,
    )  # fmt: skip
    replicates = reference.bootstrap_distribution
    inflation = math.sqrt(2) * (math.sqrt(2) if method == "bca" else 1.0)
    for ours, theirs, level in zip(
        result.ci, (reference.confidence_interval.low, reference.confidence_interval.high), (0.025, 0.975), strict=True
    ):
        spread = math.sqrt(level * (1 - level) / n_resamples)
        mc_se = (np.quantile(replicates, level + spread) - np.quantile(replicates, level - spread)) / 2
        assert abs(ours - theirs) <= 5 * inflation * mc_se
    assert result.ci[0] != reference.confidence_interval.low


def test_bootstrap_is_seeded() -> None:
    rng = np.random.default_rng(13)
    c, t = rng.lognormal(0, 1, 200), rng.lognormal(0, 1, 210)
    first = bootstrap_effect(c, t, statistic=0.75, n_resamples=500, seed=9)
    assert bootstrap_effect(c, t, statistic=0.75, n_resamples=500, seed=9) == first
    assert bootstrap_effect(c, t, statistic=0.75, n_resamples=500, seed=np.random.default_rng(9)).ci == first.ci
    assert bootstrap_effect(c, t, statistic=0.75, n_resamples=500, seed=10).ci != first.ci


@pytest.mark.parametrize("n", [2, 3, 4, 7, 50])
@pytest.mark.parametrize("quantile", [None, 0.01, 0.25, 0.5, 0.9, 0.99])
def test_leave_one_out_matches_brute_force(quantile: float | None, n: int) -> None:
    rng = np.random.default_rng(n)
    values = np.round(rng.exponential(1, n), 1)
    brute = [np.delete(values, i) for i in range(n)]
    expected = np.sort([x.mean() if quantile is None else np.quantile(x, quantile) for x in brute])
    np.testing.assert_allclose(np.sort(_leave_one_out(values, quantile)), expected, rtol=REL, atol=1e-15)


def test_bootstrap_memory_is_chunked_for_large_samples() -> None:
    """200,000 units a group: one full index matrix would be ~320 MB; chunks keep it well under 200 MB."""
    rng = np.random.default_rng(14)
    c, t = rng.lognormal(0, 1, 200_000), rng.lognormal(0.01, 1, 200_000)
    tracemalloc.start()
    try:
        result = bootstrap_effect(c, t, statistic="median", n_resamples=50, seed=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.error_code is None
    assert peak < 200 * 2**20


def test_bootstrap_result_fields() -> None:
    rng = np.random.default_rng(15)
    c, t = rng.exponential(2.0, 300), rng.exponential(2.4, 300)
    absolute = bootstrap_effect(c, t, statistic="median", n_resamples=1000)
    relative = bootstrap_effect(c, t, statistic="median", relative=True, n_resamples=1000)
    assert absolute.statistic == "median"
    assert absolute.control_value == pytest.approx(np.median(c), rel=REL)
    assert absolute.effect == pytest.approx(np.median(t) - np.median(c), rel=REL)
    assert relative.effect == pytest.approx(np.median(t) / np.median(c) - 1, rel=REL)
    assert absolute.ci[0] < absolute.effect < absolute.ci[1]
    assert math.isfinite(absolute.acceleration)
    assert math.isfinite(absolute.bias_correction)
    percentile = bootstrap_effect(c, t, statistic=0.9, method="percentile", n_resamples=1000)
    assert percentile.statistic == "quantile-0.9"
    assert math.isnan(percentile.acceleration)
    data = absolute.to_dict()
    assert data["ci"] == list(absolute.ci)
    assert data["error_code"] is None


def test_bootstrap_degenerate_data() -> None:
    empty = bootstrap_effect([], [1.0, 2.0], n_resamples=10)
    assert empty.error_code is ErrorCode.EMPTY_GROUP
    assert math.isnan(empty.ci[0])
    one = bootstrap_effect([1.0], [1.0, 2.0], n_resamples=10)
    assert one.error_code is ErrorCode.TOO_FEW_UNITS
    equal = bootstrap_effect([3.0] * 10, [3.0] * 12, n_resamples=10)
    assert equal.error_code is ErrorCode.ZERO_VARIANCE
    assert equal.effect == 0.0
    assert math.isnan(equal.ci[1])
    zero = bootstrap_effect([0.0, 0.0, 0.0, 1.0, 2.0], [1.0, 2.0, 3.0], statistic="median", relative=True)
    assert zero.error_code is ErrorCode.ZERO_CONTROL_MEAN
    sometimes_zero = bootstrap_effect([0.0, 0.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0], statistic="median", relative=True)
    assert sometimes_zero.error_code is ErrorCode.ZERO_DENOMINATOR
    assert sometimes_zero.effect == 1.0
    # One continuous replicate never equals the estimate, so BCa's z0 = Phi^-1(0 or 1) is infinite.
    rng = np.random.default_rng(16)
    outside = bootstrap_effect(rng.normal(size=20), rng.normal(size=20), n_resamples=1)
    assert outside.error_code is ErrorCode.TOO_FEW_UNITS
    assert math.isnan(outside.ci[0])
    assert (
        bootstrap_effect(rng.normal(size=20), rng.normal(size=20), n_resamples=1, method="percentile").error_code
        is None
    )
    dropped = bootstrap_effect([1.0, math.nan, 2.0, math.inf, 3.0], [2.0, 3.0, -math.inf, 4.0], n_resamples=100)
    assert (dropped.control_dropped, dropped.treatment_dropped) == (2, 1)
    assert (dropped.control_n, dropped.treatment_n) == (3, 3)
    assert dropped.error_code is None


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"statistic": "mode"}, "statistic"),
        ({"statistic": 1.0}, "statistic"),
        ({"statistic": True}, "statistic"),
        ({"relative": "yes"}, "relative"),
        ({"method": "basic"}, "method"),
        ({"n_resamples": 0}, "n_resamples"),
        ({"n_resamples": 10.5}, "n_resamples"),
        ({"alpha": 1.0}, "alpha"),
        ({"seed": -1}, "seed"),
        ({"seed": "abc"}, "seed"),
    ],
)
def test_bootstrap_invalid_parameters(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        bootstrap_effect([1.0, 2.0], [3.0, 4.0], **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_bootstrap_coverage_of_mean_difference_on_skewed_data(method: str) -> None:
    """Coverage of the 95% CI for a mean difference of exponential samples (n = 100, B = 1,000).

    Bootstrap intervals have an O(1/n) coverage error (Efron & Tibshirani 1993, ch. 22): on skewed
    data at n = 100 they undercover by a point or two (a separate 2,000-replication run of this
    design gave 0.935 for percentile and 0.936 for BCa). The documented tolerance is therefore
    ``0.95 - 0.025 - 3 SE <= coverage <= 0.95 + 3 SE`` with the binomial SE of 500 replications;
    a systematic error in the interval (a wrong acceleration, swapped levels) falls outside it.
    """
    reps, n = 500, 100
    rng = np.random.default_rng(21)
    control, treatment = rng.exponential(1.0, (reps, n)), rng.exponential(2.0, (reps, n))
    true_difference = 1.0
    covered = 0
    for i in range(reps):
        low, high = bootstrap_effect(control[i], treatment[i], method=method, n_resamples=1000, seed=i).ci
        covered += low <= true_difference <= high
    coverage = covered / reps
    band = _binomial_band(0.95, reps)
    assert 0.95 - 0.025 - band <= coverage <= 0.95 + band


# --------------------------------------------------------------------------------------------
# Quantile test
# --------------------------------------------------------------------------------------------


def _linear_quantile(values: np.ndarray, p: float) -> float:
    """Hyndman & Fan definition 7 by hand on the sorted sample."""
    ordered = np.sort(values)
    h = (ordered.size - 1) * p
    j = math.floor(h)
    upper = ordered[min(j + 1, ordered.size - 1)]
    return float(ordered[j] + (h - j) * (upper - ordered[j]))


def _reference_se(values: np.ndarray, q: float) -> float:
    spread = Z975 * math.sqrt(q * (1 - q) / values.size)
    return (_linear_quantile(values, q + spread) - _linear_quantile(values, q - spread)) / (2 * Z975)


@pytest.mark.parametrize("alternative", ALTERNATIVES)
@pytest.mark.parametrize("quantile", [0.5, 0.9, 0.25])
def test_quantile_test_matches_direct_computation(quantile: float, alternative: str) -> None:
    rng = np.random.default_rng(31)
    c, t = rng.lognormal(0, 1, 900), rng.lognormal(0.1, 1, 1100)
    result = quantile_test(c, t, quantile=quantile, alternative=alternative, alpha=0.1)
    qc, qt = _linear_quantile(c, quantile), _linear_quantile(t, quantile)
    se_c, se_t = _reference_se(c, quantile), _reference_se(t, quantile)
    se = math.hypot(se_c, se_t)
    crit = sps.norm.ppf(0.95 if alternative == "two-sided" else 0.9)
    assert isinstance(result, EffectResult)
    assert result.test == f"quantile-{quantile:g}"
    assert result.control_mean == pytest.approx(qc, rel=REL)
    assert result.treatment_mean == pytest.approx(qt, rel=REL)
    assert result.absolute_effect == pytest.approx(qt - qc, rel=REL)
    assert result.statistic == pytest.approx((qt - qc) / se, rel=REL)
    p = {"two-sided": 2 * sps.norm.sf(abs(qt - qc) / se), "greater": sps.norm.sf((qt - qc) / se)}
    p["less"] = sps.norm.cdf((qt - qc) / se)
    assert result.p_value == pytest.approx(p[alternative], rel=REL)
    expected_low = qt - qc - crit * se if alternative != "less" else -math.inf
    expected_high = qt - qc + crit * se if alternative != "greater" else math.inf
    assert result.absolute_ci == pytest.approx((expected_low, expected_high), rel=REL)
    relative_se = math.sqrt(se_t**2 / qc**2 + qt**2 * se_c**2 / qc**4)
    assert result.relative_effect == pytest.approx(qt / qc - 1, rel=REL)
    if alternative == "two-sided":
        rel_ci = (qt / qc - 1 - crit * relative_se, qt / qc - 1 + crit * relative_se)
        assert result.relative_ci == pytest.approx(rel_ci, rel=REL)
    relative = quantile_test(c, t, quantile=quantile, alternative=alternative, alpha=0.1, relative=True)
    assert relative.statistic == pytest.approx((qt / qc - 1) / relative_se, rel=REL)
    assert relative.absolute_ci == result.absolute_ci


def test_quantile_p_value_agrees_with_the_interval() -> None:
    rng = np.random.default_rng(32)
    checked = 0
    for i in range(60):
        c, t = rng.exponential(1.0, 400), rng.exponential(1.0 + 0.004 * i, 400)
        for alternative in ALTERNATIVES:
            for relative in (False, True):
                r = quantile_test(c, t, quantile=0.75, alternative=alternative, relative=relative)
                low, high = r.relative_ci if relative else r.absolute_ci
                assert r.significant == (low > 0 or high < 0)
                checked += r.significant
    assert 0 < checked < 360


def test_quantile_standard_error_matches_the_asymptotic_formula() -> None:
    """For Exp(1) the median's SE is sqrt(q (1 - q) / n) / f(ln 2) = 1 / sqrt(n).

    At n = 10^6 the 95% order-statistic window holds ~2,000 observations, so the spacing
    estimate has a relative SE near 2%; 6% is three of those.
    """
    n = 1_000_000
    values = np.random.default_rng(33).exponential(1.0, n)
    _, se = _quantile_and_se(values, 0.5)
    assert float(se) == pytest.approx(1 / math.sqrt(n), rel=0.06)
    _, se90 = _quantile_and_se(values, 0.9)
    assert float(se90) == pytest.approx(math.sqrt(0.09 / n) / 0.1, rel=0.06)


def test_quantile_golden_values() -> None:
    rng = np.random.default_rng(34)
    c, t = rng.lognormal(0, 1, 500), rng.lognormal(0.15, 1, 500)
    result = quantile_test(c, t, quantile=0.9)
    assert result.control_mean == pytest.approx(3.0388716473626554, rel=REL)
    assert result.treatment_mean == pytest.approx(4.116361083252029, rel=REL)
    assert result.absolute_ci == pytest.approx((0.16067686344475707, 1.9943020083339897), rel=REL)
    assert result.p_value == pytest.approx(0.021253012028210057, rel=REL)
    assert result.relative_ci == pytest.approx((0.012813357663674696, 0.6963244809314459), rel=REL)


def test_quantile_degenerate_data() -> None:
    empty = quantile_test([], [1.0, 2.0])
    assert empty.error_code is ErrorCode.EMPTY_GROUP
    assert math.isnan(empty.p_value)
    few = quantile_test(np.arange(100.0), np.arange(100.0), quantile=0.99)
    assert few.error_code is ErrorCode.TOO_FEW_UNITS
    assert "381" in (few.error_message or "")
    assert quantile_test(np.arange(381.0), np.arange(381.0) + 1, quantile=0.99).error_code is None
    assert quantile_test(np.arange(380.0), np.arange(381.0) + 1, quantile=0.99).error_code is ErrorCode.TOO_FEW_UNITS
    equal = quantile_test([5.0] * 50, [5.0] * 60)
    assert equal.error_code is ErrorCode.ZERO_VARIANCE
    assert math.isnan(equal.p_value)
    zero = quantile_test([0.0] * 30 + [1.0] * 10, np.linspace(0, 2, 40), relative=True)
    assert zero.error_code is ErrorCode.ZERO_CONTROL_MEAN
    assert math.isnan(zero.p_value)
    assert math.isfinite(quantile_test([0.0] * 30 + [1.0] * 10, np.linspace(0, 2, 40)).p_value)
    dropped = quantile_test([1.0, 2.0, math.nan, 3.0, math.inf, 4.0], [2.0, 3.0, 4.0, 5.0, None])  # type: ignore[list-item]
    assert (dropped.control_dropped, dropped.treatment_dropped) == (2, 1)
    assert (dropped.control_n, dropped.treatment_n) == (4, 4)
    assert dropped.to_dict()["control_dropped"] == 2


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"quantile": 0.0}, "quantile"),
        ({"quantile": 1.0}, "quantile"),
        ({"quantile": math.nan}, "quantile"),
        ({"alpha": -0.1}, "alpha"),
        ({"alternative": "up"}, "alternative"),
        ({"relative": None}, "relative"),
    ],
)
def test_quantile_invalid_parameters(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        quantile_test([1.0, 2.0, 3.0], [3.0, 4.0, 5.0], **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Calibration: quantile CI coverage, A/A false positive rates
# --------------------------------------------------------------------------------------------

QUANTILE_DESIGNS = [
    # (name, control sampler, treatment sampler, true quantile function of each, n per group)
    ("lognormal", lambda g, s: g.lognormal(0.0, 1.0, s), lambda g, s: g.lognormal(0.1, 1.0, s),
     lambda q: math.exp(sps.norm.ppf(q)), lambda q: math.exp(0.1 + sps.norm.ppf(q)), 500),
    ("exponential", lambda g, s: g.exponential(1.0, s), lambda g, s: g.exponential(1.1, s),
     lambda q: -math.log(1 - q), lambda q: -1.1 * math.log(1 - q), 2000),
]  # fmt: skip


@pytest.mark.parametrize("design", QUANTILE_DESIGNS, ids=[d[0] for d in QUANTILE_DESIGNS])
def test_quantile_ci_coverage(design: tuple) -> None:  # type: ignore[type-arg]
    """2,000 replications, vectorised: the 95% CI of the median and p90 difference covers the truth.

    Rounding the order-statistic ranks outwards to integers (the textbook form) over-covered here
    (~0.97 at p90, n = 500, outside 3 SE); the interpolated ranks used now are on target.
    """
    _, draw_c, draw_t, true_c, true_t, n = design
    reps, alpha = 2000, 0.05
    rng = np.random.default_rng(41)
    control, treatment = draw_c(rng, (reps, n)), draw_t(rng, (reps, n))
    for q in (0.5, 0.9):
        est_c, se_c = _quantile_and_se(control, q)
        est_t, se_t = _quantile_and_se(treatment, q)
        low = est_t - est_c - Z975 * np.hypot(se_c, se_t)
        high = est_t - est_c + Z975 * np.hypot(se_c, se_t)
        for i in range(5):  # the vectorised core is what quantile_test computes
            assert quantile_test(control[i], treatment[i], quantile=q).absolute_ci == pytest.approx((low[i], high[i]))
        truth = true_t(q) - true_c(q)
        coverage = float(np.mean((low <= truth) & (truth <= high)))
        assert abs(coverage - (1 - alpha)) <= _binomial_band(1 - alpha, reps), (q, coverage)


@pytest.mark.parametrize("sigma", [1.0, 1.5])
def test_quantile_test_false_positive_rate(sigma: float) -> None:
    """A/A false positive rate of the median and p90 tests, 2,000 replications, vectorised.

    Lognormal(0, 1): within 3 binomial SE of alpha. Lognormal(0, 1.5) is heavier-tailed: there
    the quantile function is so convex across the 95% order-statistic window that the spacing
    overstates the p90 standard error and the test is conservative (FPR ~0.042 at n = 800 in a
    10,000-replication run, ~0.032 at n = 200); only "not above alpha + 3 SE" is asserted.
    """
    reps, n, alpha = 2000, 800, 0.05
    rng = np.random.default_rng(42)
    control, treatment = rng.lognormal(0, sigma, (reps, n)), rng.lognormal(0, sigma, (reps, n))
    for q in (0.5, 0.9):
        est_c, se_c = _quantile_and_se(control, q)
        est_t, se_t = _quantile_and_se(treatment, q)
        p_values = 2 * sps.norm.sf(np.abs(est_t - est_c) / np.hypot(se_c, se_t))
        for i in range(5):
            assert quantile_test(control[i], treatment[i], quantile=q).p_value == pytest.approx(p_values[i], rel=REL)
        fpr = float(np.mean(p_values < alpha))
        band = _binomial_band(alpha, reps)
        assert fpr <= alpha + band, (q, fpr)
        if sigma == 1.0 or q == 0.5:
            assert fpr >= alpha - band, (q, fpr)


@pytest.mark.parametrize("kind", ["continuous", "ties"])
def test_mann_whitney_false_positive_rate(kind: str) -> None:
    reps, n, alpha = 2000, 60, 0.05
    rng = np.random.default_rng(43)
    if kind == "continuous":
        control, treatment = rng.lognormal(0, 1, (reps, n)), rng.lognormal(0, 1, (reps, n))
    else:
        control, treatment = rng.poisson(1.5, (reps, n)), rng.poisson(1.5, (reps, n))
    rejected = sum(mann_whitney(control[i], treatment[i]).p_value < alpha for i in range(reps))
    assert abs(rejected / reps - alpha) <= _binomial_band(alpha, reps)
