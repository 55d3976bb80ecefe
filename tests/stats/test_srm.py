"""Sample ratio mismatch: cross-checks against scipy, golden values, invalid input, calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from splitlab.stats.results import ErrorCode
from splitlab.stats.srm import SrmResult, srm_test


@pytest.mark.parametrize("seed", range(6))
def test_matches_scipy_chisquare(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 7))
    weights = rng.dirichlet(np.full(k, 3.0))
    counts = rng.multinomial(int(rng.integers(100, 100_000)), weights)
    result = srm_test(counts.tolist(), weights.tolist())
    reference = sps.chisquare(counts, f_exp=counts.sum() * weights)
    assert result.statistic == pytest.approx(reference.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-12)
    assert result.df == k - 1
    assert result.expected == pytest.approx(counts.sum() * weights, rel=1e-12)
    assert result.flag == (reference.pvalue < 0.001)


def test_equal_split_default_matches_scipy() -> None:
    counts = [1013, 987, 1050]
    reference = sps.chisquare(counts)
    result = srm_test(counts)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-12)
    assert result.expected_shares == pytest.approx((1 / 3,) * 3, rel=1e-15)


def test_golden_near_miss_is_not_flagged() -> None:
    # 50/50 split, 10,000 vs 10,400: X^2 = 2 * 200^2 / 10,200 = 7.843..., p = 0.0051.
    result = srm_test({"control": 10_000, "treatment": 10_400}, {"control": 0.5, "treatment": 0.5})
    assert result.statistic == pytest.approx(80_000 / 10_200, rel=1e-12)
    assert result.p_value == pytest.approx(0.005101399646004981, rel=1e-9)
    assert not result.flag
    assert result.variants == ("control", "treatment")
    assert result.counts == (10_000, 10_400)
    assert result.expected == (10_200.0, 10_200.0)
    assert result.observed_shares == pytest.approx((10_000 / 20_400, 10_400 / 20_400), rel=1e-15)
    assert result.error_code is None


def test_golden_52_48_split_of_20000_is_flagged() -> None:
    # X^2 = 2 * 400^2 / 10,000 = 32 on 1 df, p = 1.5417e-8.
    result = srm_test([10_400, 9_600], [0.5, 0.5])
    assert result.statistic == pytest.approx(32.0, rel=1e-12)
    assert result.p_value == pytest.approx(1.5417257900280013e-08, rel=1e-9)
    assert result.flag
    assert result.variants == ("0", "1")


def test_golden_exact_fit_and_unequal_weights() -> None:
    result = srm_test([500, 300, 200], [0.5, 0.3, 0.2])
    assert result.statistic == pytest.approx(0.0, abs=1e-12)
    assert result.p_value == pytest.approx(1.0, rel=1e-12)
    assert not result.flag
    # 90/10 split observed as 880/120: X^2 = 20^2/900 + 20^2/100 = 4.444..., df = 1.
    skewed = srm_test([880, 120], [0.9, 0.1])
    assert skewed.statistic == pytest.approx(400 / 900 + 400 / 100, rel=1e-12)
    assert skewed.p_value == pytest.approx(float(sps.chi2.sf(400 / 900 + 4, 1)), rel=1e-12)


def test_threshold_sets_the_flag() -> None:
    counts = {"a": 10_000, "b": 10_400}
    assert not srm_test(counts, threshold=0.001).flag
    assert srm_test(counts, threshold=0.01).flag
    assert srm_test(counts, threshold=0.01).threshold == 0.01


def test_mapping_weights_are_matched_by_key_not_order() -> None:
    by_key = srm_test({"a": 700, "b": 300}, {"b": 0.3, "a": 0.7})
    assert by_key.statistic == pytest.approx(0.0, abs=1e-12)
    assert by_key.expected_shares == (0.7, 0.3)
    assert srm_test({"a": 700, "b": 300}).flag


def test_integral_floats_and_numpy_integers_are_counts() -> None:
    reference = srm_test([1200, 1100])
    assert srm_test([1200.0, 1100.0]).p_value == reference.p_value
    assert srm_test(np.array([1200, 1100], dtype=np.int64)).p_value == reference.p_value
    assert srm_test(np.array([1200, 1100]), np.array([0.5, 0.5])).p_value == reference.p_value


def test_weights_within_tolerance_are_renormalised() -> None:
    result = srm_test([600, 400], [0.6 + 4e-7, 0.4 + 4e-7])
    assert math.fsum(result.expected_shares) == pytest.approx(1.0, abs=1e-15)
    assert result.expected == pytest.approx((600.0, 400.0), rel=1e-6)


def test_zero_total_carries_an_error_code() -> None:
    result = srm_test({"a": 0, "b": 0, "c": 0})
    assert result.error_code is ErrorCode.EMPTY_GROUP
    assert result.error_message
    assert math.isnan(result.p_value)
    assert math.isnan(result.statistic)
    assert not result.flag
    assert result.df == 2


def test_a_variant_with_no_units_is_tested_not_an_error() -> None:
    result = srm_test([1000, 0])
    assert result.error_code is None
    assert result.flag
    assert result.p_value < 1e-100


def test_result_is_frozen_and_serialisable() -> None:
    result = srm_test({"a": 10, "b": 12})
    assert isinstance(result, SrmResult)
    with pytest.raises(AttributeError):
        result.flag = True  # type: ignore[misc]
    data = result.to_dict()
    assert {"p_value", "counts", "flag", "statistic", "variants", "error_code"} <= set(data)
    assert data["counts"] == [10, 12]
    assert data["variants"] == ["a", "b"]
    assert data["flag"] is False
    assert data["error_code"] is None
    assert srm_test([0, 0]).to_dict()["error_code"] == "EMPTY_GROUP"


@pytest.mark.parametrize(
    ("counts", "weights", "match"),
    [
        ([100, -1], None, r"counts\[1\] == -1, must be a non-negative integer"),
        ([100, 10.5], None, r"counts\[1\] == 10.5"),
        ([100, True], None, "counts"),
        ([100, math.nan], None, "counts"),
        ({"a": 5, "b": "7"}, None, r"counts\['b'\]"),
        ([100], None, "counts has 1 variant"),
        ([], None, "counts has 0 variant"),
        ("ab", None, "counts"),
        (100, None, "counts"),
        ([100, 100], [0.5, 0.3, 0.2], "weights has 3 entries, must have 2"),
        ([100, 100], [0.6, 0.6], r"weights sum to 1.2, must sum to 1 within 1e-06"),
        ([100, 100], [0.5, 0.5 + 2e-6], "weights sum to"),
        ([100, 100, 100], [1.0, 0.0, 0.0], r"weights\[1\] == 0.0, must be > 0"),
        ([100, 100], [1.5, -0.5], r"weights\[1\] == -0.5, must be > 0"),
        ([100, 100], [0.5, math.nan], r"weights\[1\]"),
        ([100, 100], {0: 0.5, 1: 0.5}, "weights must be a sequence"),
        ({"a": 1, "b": 2}, [0.5, 0.5], "weights must be a mapping"),
        ({"a": 1, "b": 2}, {"a": 0.5, "c": 0.5}, "weights must be a mapping with the keys of counts"),
    ],
)
def test_invalid_input_raises(counts: object, weights: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        srm_test(counts, weights)  # type: ignore[arg-type]


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.1, 2.0, math.nan])
def test_invalid_threshold_raises(threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        srm_test([10, 10], threshold=threshold)


@pytest.mark.parametrize(
    ("weights", "n", "seed"),
    [((0.5, 0.5), 2_000, 11), ((0.5, 0.3, 0.2), 3_000, 12), ((0.9, 0.1), 5_000, 13)],
)
def test_calibration_p_values_are_uniform_under_the_configured_split(
    weights: tuple[float, ...], n: int, seed: int
) -> None:
    reps = 20_000
    draws = np.random.default_rng(seed).multinomial(n, weights, size=reps)
    p_values = np.array([srm_test(row, weights).p_value for row in draws.tolist()])
    for alpha in (0.05, 0.01):
        se = math.sqrt(alpha * (1 - alpha) / reps)
        assert abs(np.mean(p_values < alpha) - alpha) <= 3 * se, alpha
    # A misconfigured split (the true one is off by one point) must be detected far more often.
    shifted = np.array(weights) + np.r_[0.01, -0.01, np.zeros(len(weights) - 2)]
    off = np.random.default_rng(seed).multinomial(n * 10, shifted, size=2_000)
    assert np.mean([srm_test(row, weights).p_value < 0.05 for row in off.tolist()]) > 0.5
