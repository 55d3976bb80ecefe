"""Sequential SRM check: golden values, cross-checks, validation parity with srm_test, calibration."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import special
from scipy import stats as sps

from splitlab.stats.results import ErrorCode
from splitlab.stats.sequential.srm import (
    DEFAULT_CONCENTRATION,
    SequentialSrmResult,
    sequential_srm_log_bayes_factor,
    sequential_srm_p_values,
    sequential_srm_test,
)
from splitlab.stats.srm import srm_test


def _hand_log_bf(counts: list[int], weights: list[float], concentration: float) -> float:
    """The Bayes factor written out term by term with math.lgamma (no numpy, no scipy)."""
    prior = [concentration * w for w in weights]
    n = sum(counts)
    value = math.lgamma(sum(prior)) - math.lgamma(sum(prior) + n)
    for a, x, w in zip(prior, counts, weights, strict=True):
        value += math.lgamma(a + x) - math.lgamma(a) - x * math.log(w)
    return value


def _rising_log_bf(counts: list[int], weights: list[float], concentration: float) -> float:
    """The same with each Gamma ratio as a rising factorial, Gamma(a + x) / Gamma(a) = prod_{j<x} (a + j),
    summed exactly rounded by math.fsum: free of the cancellation between large log-gammas (error ~1e-13)."""
    terms = []
    for x, w in zip(counts, weights, strict=True):
        terms += [math.log(concentration * w + j) for j in range(x)]
        terms.append(-x * math.log(w))
    terms += [-math.log(concentration + j) for j in range(sum(counts))]
    return math.fsum(terms)


# ----------------------------------------------------------------------------- golden values


def test_golden_52_48_split_of_20000() -> None:
    # The log-gammas are ~2e5 and cancel to ~10, so 1e-9 relative is the floor of double precision.
    r = sequential_srm_test([10_400, 9_600], [0.5, 0.5])
    assert r.log_bayes_factor == pytest.approx(_hand_log_bf([10_400, 9_600], [0.5, 0.5], 10_000.0), rel=1e-9)
    assert r.log_bayes_factor == pytest.approx(_rising_log_bf([10_400, 9_600], [0.5, 0.5], 10_000.0), rel=1e-9)
    assert r.log_bayes_factor == pytest.approx(10.118964102869041, rel=1e-9)
    assert r.p_value == pytest.approx(math.exp(-10.118964102869041), rel=1e-9)
    assert r.p_value == pytest.approx(4.0307858707e-05, rel=1e-8)
    assert r.flag
    assert r.concentration == DEFAULT_CONCENTRATION == 10_000.0
    # The fixed chi-square check has p = 1.5e-8 here: the always-valid p-value pays for validity.
    assert srm_test([10_400, 9_600]).p_value < r.p_value


def test_golden_near_miss_and_three_variants() -> None:
    near = sequential_srm_test({"control": 10_300, "treatment": 9_700})
    assert near.log_bayes_factor == pytest.approx(_hand_log_bf([10_300, 9_700], [0.5, 0.5], 1e4), rel=1e-9)
    assert near.log_bayes_factor == pytest.approx(5.451277297468973, rel=1e-9)
    assert near.p_value == pytest.approx(math.exp(-5.451277297468973), rel=1e-8)
    assert not near.flag
    assert near.variants == ("control", "treatment")
    assert near.observed_shares == pytest.approx((0.515, 0.485), rel=1e-15)
    three = sequential_srm_test([5_150, 2_400, 2_450], [0.5, 0.25, 0.25], concentration=100.0)
    expected = _rising_log_bf([5_150, 2_400, 2_450], [0.5, 0.25, 0.25], 100.0)
    assert three.log_bayes_factor == pytest.approx(
        _hand_log_bf([5_150, 2_400, 2_450], [0.5, 0.25, 0.25], 100.0), rel=1e-9
    )
    assert three.log_bayes_factor == pytest.approx(expected, rel=1e-9)
    assert three.p_value == pytest.approx(min(1.0, math.exp(-expected)), rel=1e-8)


def test_p_value_is_capped_at_one() -> None:
    r = sequential_srm_test([5_000, 5_000])
    assert r.log_bayes_factor < 0
    assert r.p_value == 1.0
    assert not r.flag


# ----------------------------------------------------------------------------- cross-checks


@pytest.mark.parametrize("seed", range(6))
def test_matches_scipy_dirichlet_multinomial_over_multinomial(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 7))
    weights = rng.dirichlet(np.full(k, 4.0))
    weights /= weights.sum()
    concentration = float(rng.choice([1.0, 100.0, 10_000.0]))
    counts = rng.multinomial(int(rng.integers(10, 50_000)), rng.dirichlet(np.full(k, 50.0)))
    n = int(counts.sum())
    marginal = sps.dirichlet_multinomial.logpmf(counts, concentration * weights, np.array([n]))
    reference = float(np.ravel(marginal)[0]) - sps.multinomial.logpmf(counts, n, weights)
    assert float(sequential_srm_log_bayes_factor(counts, weights, concentration=concentration)) == pytest.approx(
        float(reference), rel=1e-9, abs=1e-9
    )
    scalar = sequential_srm_test(counts.tolist(), weights.tolist(), concentration=concentration)
    assert scalar.log_bayes_factor == pytest.approx(float(reference), rel=1e-9, abs=1e-9)


def test_bayes_factor_is_the_product_of_unit_by_unit_predictive_ratios() -> None:
    # Polya-urn form: each unit multiplies BF by (a_j + x_j) / (A + n) / p_j, so BF depends on the
    # cumulative counts only, however the units were batched into looks.
    rng = np.random.default_rng(7)
    weights = np.array([0.6, 0.3, 0.1])
    prior = 50.0 * weights
    stream = rng.choice(3, size=3_000, p=[0.55, 0.33, 0.12])
    counts = np.zeros(3)
    log_bf = 0.0
    cumulative = []
    for arm in stream:
        log_bf += math.log((prior[arm] + counts[arm]) / (prior.sum() + counts.sum()) / weights[arm])
        counts[arm] += 1
        cumulative.append(counts.copy())
    direct = sequential_srm_log_bayes_factor(np.array(cumulative[-1]), weights, concentration=50.0)
    assert float(direct) == pytest.approx(log_bf, rel=1e-9)
    path = sequential_srm_log_bayes_factor(np.array(cumulative), weights, concentration=50.0)
    assert path.shape == (3_000,)


def test_vectorised_core_matches_chained_scalar_looks() -> None:
    rng = np.random.default_rng(8)
    weights = [0.5, 0.3, 0.2]
    batches = rng.multinomial(400, [0.49, 0.31, 0.20], size=(5, 40))
    cumulative = np.cumsum(batches, axis=1)
    p_values, log_bf = sequential_srm_p_values(cumulative, weights, concentration=500.0)
    assert p_values.shape == log_bf.shape == (5, 40)
    for path in range(5):
        previous = None
        for look in range(40):
            r = sequential_srm_test(
                cumulative[path, look].tolist(), weights, concentration=500.0, previous_p_value=previous
            )
            assert r.log_bayes_factor == pytest.approx(log_bf[path, look], rel=1e-12, abs=1e-12)
            assert r.p_value == pytest.approx(p_values[path, look], rel=1e-12)
            previous = r.p_value
    assert (np.diff(p_values, axis=-1) <= 0).all()  # a running minimum never rises


def test_previous_p_value_keeps_the_flag_raised() -> None:
    first = sequential_srm_test([10_400, 9_600])
    assert first.flag
    later = sequential_srm_test([20_400, 19_600], previous_p_value=first.p_value)
    assert sequential_srm_test([20_400, 19_600]).p_value > first.p_value  # the evidence alone faded
    assert later.p_value == first.p_value
    assert later.flag


def test_mapping_weights_are_matched_by_key() -> None:
    by_key = sequential_srm_test({"a": 7_000, "b": 3_000}, {"b": 0.3, "a": 0.7})
    by_order = sequential_srm_test([7_000, 3_000], [0.7, 0.3])
    assert by_key.log_bayes_factor == pytest.approx(by_order.log_bayes_factor, rel=1e-15)
    assert by_key.expected_shares == (0.7, 0.3)


def test_empty_counts_carry_an_error_code_and_keep_the_previous_p_value() -> None:
    first = sequential_srm_test({"a": 0, "b": 0})
    assert (first.error_code, first.p_value, first.log_bayes_factor, first.flag) == (
        ErrorCode.EMPTY_GROUP,
        1.0,
        0.0,
        False,
    )
    assert first.error_message
    assert all(math.isnan(s) for s in first.observed_shares)
    again = sequential_srm_test([0, 0], previous_p_value=0.0005)
    assert (again.p_value, again.flag) == (0.0005, True)


def test_result_is_frozen_and_serialisable() -> None:
    r = sequential_srm_test({"a": 10, "b": 12})
    assert isinstance(r, SequentialSrmResult)
    with pytest.raises(AttributeError):
        r.flag = True  # type: ignore[misc]
    data = r.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["counts"] == [10, 12]
    assert data["variants"] == ["a", "b"]
    assert data["error_code"] is None
    assert sequential_srm_test([0, 0]).to_dict()["error_code"] == "EMPTY_GROUP"


# ----------------------------------------------------------------------------- invalid input


@pytest.mark.parametrize(
    ("counts", "weights"),
    [
        ([100, -1], None),
        ([100, 10.5], None),
        ([100, True], None),
        ([100, math.nan], None),
        ({"a": 5, "b": "7"}, None),
        ([100], None),
        ([], None),
        ("ab", None),
        (100, None),
        ([100, 100], [0.5, 0.3, 0.2]),
        ([100, 100], [0.6, 0.6]),
        ([100, 100], [0.5, 0.5 + 2e-6]),
        ([100, 100, 100], [1.0, 0.0, 0.0]),
        ([100, 100], [1.5, -0.5]),
        ([100, 100], [0.5, math.nan]),
        ([100, 100], {0: 0.5, 1: 0.5}),
        ({"a": 1, "b": 2}, [0.5, 0.5]),
        ({"a": 1, "b": 2}, {"a": 0.5, "c": 0.5}),
    ],
)
def test_invalid_counts_and_weights_raise_the_same_message_as_srm_test(counts: object, weights: object) -> None:
    with pytest.raises(ValueError) as fixed:  # the message is compared below
        srm_test(counts, weights)  # type: ignore[arg-type]
    with pytest.raises(ValueError) as sequential:
        sequential_srm_test(counts, weights)  # type: ignore[arg-type]
    assert str(sequential.value) == str(fixed.value)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 1.0}, "threshold"),
        ({"threshold": math.nan}, "threshold"),
        ({"concentration": 0.0}, "concentration"),
        ({"concentration": -5.0}, "concentration"),
        ({"concentration": math.inf}, "concentration"),
        ({"previous_p_value": 0.0}, "previous_p_value"),
        ({"previous_p_value": 1.5}, "previous_p_value"),
        ({"previous_p_value": math.nan}, "previous_p_value"),
    ],
)
def test_invalid_options_raise(options: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sequential_srm_test([10, 12], **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("counts", "match"),
    [
        ([[10, 10], [9, 12]], "cumulative"),
        ([[10, -1]], "non-negative integers"),
        ([[10, 1.5]], "non-negative integers"),
        ([[10, np.nan]], "non-negative integers"),
        ([[True, False]], "non-negative integers"),
        ([["a", "b"]], "non-negative integers"),
        ([10, 10], r"shape \(\.\.\., looks, k\)"),
        ([[10], [12]], "at least 2 variants"),
    ],
)
def test_invalid_core_input_raises(counts: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sequential_srm_p_values(counts)
    with pytest.raises(ValueError, match="concentration"):
        sequential_srm_p_values([[10, 10]], concentration=0.0)
    with pytest.raises(ValueError, match="weights has 3 entries"):
        sequential_srm_log_bayes_factor([10, 10], [0.5, 0.3, 0.2])


# ----------------------------------------------------------------------------- calibration

LOOKS = 1000
THIRTY = np.arange(1, 31) * LOOKS // 30 - 1
THRESHOLD = 0.05  # measurable in a simulation; the default 0.001 has the same guarantee


def _se(p: float, reps: int) -> float:
    return math.sqrt(p * (1 - p) / reps)


def _chi_square_p_values(cumulative: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """srm_test's Pearson statistic and p-value, vectorised over (reps, looks).

    The chi-square survival function in closed form (df 1: erfc(sqrt(x / 2)); df 2: exp(-x / 2)),
    which is exact and far faster than the incomplete gamma over millions of values; the callers
    check it against srm_test itself.
    """
    expected = cumulative.sum(axis=-1, keepdims=True) * weights
    statistic = np.sum((cumulative - expected) ** 2 / expected, axis=-1)
    closed_forms = {1: lambda x: special.erfc(np.sqrt(x / 2)), 2: lambda x: np.exp(-x / 2)}
    return np.asarray(closed_forms[weights.size - 1](statistic))


def test_false_alarms_under_the_configured_split_with_1000_and_30_looks() -> None:
    # 50/50, a batch of 100 units between looks (100,000 units at the last look).
    rng = np.random.default_rng(31)
    reps, chunk, m = 8_000, 2_000, 100
    weights = np.array([0.5, 0.5])
    hits = {"sequential_1000": 0, "sequential_30": 0, "chi2_1000": 0, "chi2_30": 0}
    checked = 0
    for _ in range(reps // chunk):
        first = np.cumsum(rng.binomial(m, 0.5, size=(chunk, LOOKS)), axis=1)
        cumulative = np.stack([first, m * np.arange(1, LOOKS + 1) - first], axis=-1)
        p_values, _ = sequential_srm_p_values(cumulative, weights)
        p_thirty, _ = sequential_srm_p_values(cumulative[:, THIRTY], weights)
        hits["sequential_1000"] += int((p_values < THRESHOLD).any(axis=1).sum())
        hits["sequential_30"] += int((p_thirty < THRESHOLD).any(axis=1).sum())
        fixed = _chi_square_p_values(cumulative.astype(float), weights)
        for rep, look in zip(rng.integers(0, chunk, 25), rng.integers(0, LOOKS, 25), strict=True):
            assert fixed[rep, look] == pytest.approx(srm_test(cumulative[rep, look].tolist()).p_value, rel=1e-9)
            checked += 1
        hits["chi2_1000"] += int((fixed < THRESHOLD).any(axis=1).sum())
        hits["chi2_30"] += int((fixed[:, THIRTY] < THRESHOLD).any(axis=1).sum())
    rates = {name: count / reps for name, count in hits.items()}
    bound = THRESHOLD + 3 * _se(THRESHOLD, reps)
    assert rates["sequential_1000"] <= bound, rates
    assert rates["sequential_30"] <= bound, rates
    # The fixed chi-square check repeated at every look raises false alarms far above 5%.
    assert rates["chi2_30"] > THRESHOLD + 20 * _se(THRESHOLD, reps), rates
    assert rates["chi2_1000"] > rates["chi2_30"]
    assert checked == 100


def test_false_alarms_with_three_unequal_variants_and_30_daily_looks() -> None:
    rng = np.random.default_rng(32)
    reps, weights = 4_000, np.array([0.5, 0.3, 0.2])
    cumulative = np.cumsum(rng.multinomial(2_000, weights, size=(reps, 30)), axis=1)
    p_values, _ = sequential_srm_p_values(cumulative, weights)
    fixed = _chi_square_p_values(cumulative.astype(float), weights)
    for rep, look in zip(rng.integers(0, reps, 25), rng.integers(0, 30, 25), strict=True):
        reference = srm_test(cumulative[rep, look].tolist(), weights.tolist()).p_value
        assert fixed[rep, look] == pytest.approx(reference, rel=1e-9)
    assert (p_values < THRESHOLD).any(axis=1).mean() <= THRESHOLD + 3 * _se(THRESHOLD, reps)
    assert (fixed < THRESHOLD).any(axis=1).mean() > THRESHOLD + 20 * _se(THRESHOLD, reps)


def test_a_52_48_mismatch_is_flagged_within_a_reasonable_number_of_units() -> None:
    # Configured 50/50, true 52/48; looks every 100 units, default threshold 0.001.
    rng = np.random.default_rng(33)
    reps, m, looks = 2_000, 100, 500
    first = np.cumsum(rng.binomial(m, 0.52, size=(reps, looks)), axis=1)
    cumulative = np.stack([first, m * np.arange(1, looks + 1) - first], axis=-1)
    p_values, _ = sequential_srm_p_values(cumulative, [0.5, 0.5])
    flagged = p_values < 0.001
    assert flagged.any(axis=1).mean() >= 0.995  # within 50,000 units
    units = (np.argmax(flagged, axis=1) + 1) * m
    # Measured with this seed: median 14,900 units, 90th percentile 21,700 (a fixed-horizon chi-square
    # test at 0.001 with 80% power needs about 10,700 units, but may be looked at only once).
    assert 11_000 <= np.median(units) <= 18_000
    assert np.percentile(units, 90) <= 26_000
