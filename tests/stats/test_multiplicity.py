"""Multiple-testing corrections: statsmodels cross-checks, golden values, CI policy, calibration."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from splitlab.stats.cuped import cuped_test
from splitlab.stats.frequentist import means_test, proportions_test, ratio_test
from splitlab.stats.multiplicity import METHODS, adjust_p_values, adjust_results, ci_alpha, reject
from splitlab.stats.results import EffectResult
from splitlab.stats.statistics import CovariateStatistic, MeanStatistic, ProportionStatistic, RatioStatistic

STATSMODELS = {
    "bonferroni": "bonferroni",
    "holm": "holm",
    "hochberg": "simes-hochberg",
    "benjamini-hochberg": "fdr_bh",
    "benjamini-yekutieli": "fdr_by",
}
CORRECTING = tuple(STATSMODELS)


def _p_vectors() -> list[np.ndarray]:
    rng = np.random.default_rng(20240501)
    vectors = [np.array([0.3]), np.array([0.04, 0.01])]
    for m in (5, 12, 50, 200):
        p = rng.beta(0.4, 1.0, m)  # many small p-values, so that the corrections have work to do
        vectors.append(p)
        vectors.append(np.round(p, 2))  # ties, and rounded to exactly 0 and 1
        edge = p.copy()
        edge[: m // 5 + 1] = 0.0
        edge[-(m // 5 + 1) :] = 1.0
        vectors.append(rng.permutation(edge))
    vectors.append(np.full(6, 0.02))
    return vectors


@pytest.mark.parametrize("method", CORRECTING)
def test_adjusted_p_values_match_statsmodels(method: str) -> None:
    for p in _p_vectors():
        ours = adjust_p_values(p, method=method)
        _, theirs, _, _ = multipletests(p, alpha=0.05, method=STATSMODELS[method])
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
        assert np.all((ours >= p) & (ours <= 1))


@pytest.mark.parametrize("method", CORRECTING)
@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.2])
def test_reject_matches_statsmodels(method: str, alpha: float) -> None:
    # Continuous p-values: no adjusted value sits exactly on alpha, where statsmodels uses <=.
    rng = np.random.default_rng(7)
    for m in (3, 20, 100):
        p = np.concatenate([rng.beta(0.3, 4.0, m // 2), rng.random(m - m // 2)])
        theirs, _, _, _ = multipletests(p, alpha=alpha, method=STATSMODELS[method])
        np.testing.assert_array_equal(reject(p, method=method, alpha=alpha), theirs)


def test_golden_benjamini_hochberg_1995_example() -> None:
    # The 15 p-values of Benjamini & Hochberg (1995, section 4): BH rejects 4, Bonferroni and Holm 3.
    p = [
        0.0001,
        0.0004,
        0.0019,
        0.0095,
        0.0201,
        0.0278,
        0.0298,
        0.0344,
        0.0459,
        0.3240,
        0.4262,
        0.5719,
        0.6528,
        0.7590,
        1.0000,
    ]
    assert reject(p, method="benjamini-hochberg", alpha=0.05).sum() == 4
    assert reject(p, method="bonferroni", alpha=0.05).sum() == 3
    assert reject(p, method="holm", alpha=0.05).sum() == 3
    assert reject(p, method="hochberg", alpha=0.05).sum() == 3
    assert reject(p, method="none", alpha=0.05).sum() == 9


def test_golden_hand_computed_values() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005, 0.01, 0.03, 0.04 (original positions 3, 0, 2, 1)
    expected = {
        "bonferroni": [0.04, 0.16, 0.12, 0.02],
        "holm": [0.03, 0.06, 0.06, 0.02],  # 4*.005, 3*.01, max(.03, 2*.03), max(.06, .04)
        "hochberg": [0.03, 0.04, 0.04, 0.02],  # min over later of (4*.005, 3*.01, 2*.03, .04)
        "benjamini-hochberg": [0.02, 0.04, 0.04, 0.02],  # 4/1*.005, 4/2*.01, 4/3*.03, 4/4*.04
        "none": p,
    }
    for method, values in expected.items():
        np.testing.assert_allclose(adjust_p_values(p, method=method), values, rtol=1e-12)
    c = 1 + 1 / 2 + 1 / 3 + 1 / 4
    np.testing.assert_allclose(
        adjust_p_values(p, method="benjamini-yekutieli"),
        np.minimum(1, np.array([0.02, 0.04, 0.04, 0.02]) * c),
        rtol=1e-12,
    )


@pytest.mark.parametrize("method", METHODS)
def test_nan_is_passed_through_and_not_counted(method: str) -> None:
    rng = np.random.default_rng(3)
    p = rng.beta(0.5, 1.0, 30)
    holes = p.copy()
    missing = rng.choice(30, 7, replace=False)
    holes[missing] = np.nan
    ours = adjust_p_values(holes, method=method)
    present = ~np.isnan(holes)
    assert np.isnan(ours[missing]).all()
    np.testing.assert_allclose(ours[present], adjust_p_values(p[present], method=method), rtol=1e-15)
    assert not reject(holes, method=method, alpha=0.999)[missing].any()
    assert np.isnan(adjust_p_values([np.nan, np.nan], method=method)).all()


@pytest.mark.parametrize("method", METHODS)
def test_families_along_the_last_axis(method: str) -> None:
    rng = np.random.default_rng(5)
    p = rng.beta(0.5, 1.0, (4, 3, 9))
    p[0, 0, :4] = np.nan
    p[1, 2, ::2] = np.nan
    p[2, 1, 3:5] = 0.125  # ties
    batched = adjust_p_values(p, method=method)
    assert batched.shape == p.shape
    for index in np.ndindex(p.shape[:-1]):
        np.testing.assert_array_equal(batched[index], adjust_p_values(p[index], method=method))


def test_input_is_not_modified_and_empty_is_allowed() -> None:
    p = np.array([0.2, 0.01, 0.04])
    before = p.copy()
    for method in METHODS:
        out = adjust_p_values(p, method=method)
        out[:] = 0
    np.testing.assert_array_equal(p, before)
    assert adjust_p_values([], method="holm").shape == (0,)


@pytest.mark.parametrize(
    ("p_values", "match"),
    [
        ([0.1, 1.5], r"p_values contains 1.5, must be in \[0, 1\]"),
        ([-0.01], "p_values"),
        ([0.2, math.inf], "p_values"),
        (0.3, "p_values"),
        (["a", 0.3], "p_values"),
    ],
)
def test_invalid_p_values_raise(p_values: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        adjust_p_values(p_values)
    with pytest.raises(ValueError, match=match):
        reject(p_values, method="holm", alpha=0.05)


@pytest.mark.parametrize("method", ["fdr_bh", "bh", "BH", "Holm", "sidak", ""])
def test_unknown_method_raises(method: str) -> None:
    with pytest.raises(ValueError, match="method"):
        adjust_p_values([0.1], method=method)
    with pytest.raises(ValueError, match="method"):
        ci_alpha(method, alpha=0.05, m=3, rejections=1)
    with pytest.raises(ValueError, match="method"):
        adjust_results([], method=method)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 1.5, math.nan])
def test_invalid_alpha_raises(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        reject([0.1], method="holm", alpha=alpha)
    with pytest.raises(ValueError, match="alpha"):
        ci_alpha("holm", alpha=alpha, m=3, rejections=0)


def test_ci_alpha_policy() -> None:
    for method in ("bonferroni", "holm", "hochberg"):
        assert ci_alpha(method, alpha=0.05, m=5, rejections=3) == pytest.approx(0.01, rel=1e-15)
    assert ci_alpha("none", alpha=0.05, m=5, rejections=3) == 0.05
    assert ci_alpha("benjamini-hochberg", alpha=0.05, m=10, rejections=4) == pytest.approx(0.02, rel=1e-15)
    assert ci_alpha("benjamini-hochberg", alpha=0.05, m=10, rejections=0) == pytest.approx(0.005, rel=1e-15)
    assert ci_alpha("benjamini-hochberg", alpha=0.05, m=10, rejections=10) == pytest.approx(0.05, rel=1e-15)
    c4 = 1 + 1 / 2 + 1 / 3 + 1 / 4
    assert ci_alpha("benjamini-yekutieli", alpha=0.1, m=4, rejections=2) == pytest.approx(2 * 0.1 / (4 * c4), rel=1e-15)
    assert ci_alpha("benjamini-yekutieli", alpha=0.1, m=4, rejections=0) == pytest.approx(0.1 / (4 * c4), rel=1e-15)


@pytest.mark.parametrize(
    ("m", "rejections", "match"),
    [(0, 0, "m == 0"), (2.0, 0, "m == 2.0"), (3, 4, "rejections == 4"), (3, -1, "rejections"), (3, True, "rejections")],
)
def test_ci_alpha_invalid_counts_raise(m: Any, rejections: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ci_alpha("holm", alpha=0.05, m=m, rejections=rejections)


# --- adjust_results: CIs rebuilt at ci_alpha equal a fresh computation at that level ---------------


def _family(seed: int) -> list[tuple[Any, tuple[Any, Any], dict[str, Any]]]:
    """(test function, (control, treatment), options) for a mixed family of comparisons."""
    rng = np.random.default_rng(seed)

    def means(shift: float, n: int = 400) -> tuple[MeanStatistic, MeanStatistic]:
        return (
            MeanStatistic.from_values(rng.lognormal(1.0, 0.8, n)),
            MeanStatistic.from_values(rng.lognormal(1.0 + shift, 0.8, n + 37)),
        )

    def props(rate: float, lift: float, n: int) -> tuple[ProportionStatistic, ProportionStatistic]:
        return (
            ProportionStatistic(n, int(rng.binomial(n, rate))),
            ProportionStatistic(n + 11, int(rng.binomial(n + 11, rate * (1 + lift)))),
        )

    def ratios(shift: float, n: int = 300) -> tuple[RatioStatistic, RatioStatistic]:
        d_c, d_t = rng.poisson(3.0, n) + 1.0, rng.poisson(3.0, n) + 1.0
        return (
            RatioStatistic.from_values(d_c * rng.gamma(2.0, 1.0, n), d_c),
            RatioStatistic.from_values(d_t * rng.gamma(2.0, 1.0 + shift, n), d_t),
        )

    def covariates(shift: float, n: int) -> tuple[CovariateStatistic, CovariateStatistic]:
        x_c, x_t = rng.gamma(2.0, 1.0, n), rng.gamma(2.0, 1.0, n + 23)
        return (
            CovariateStatistic.from_values(0.8 * x_c + rng.normal(0.0, 1.0, n), x_c),
            CovariateStatistic.from_values(0.8 * x_t + rng.normal(shift, 2.0, n + 23), x_t),
        )

    return [
        (means_test, means(0.25), {}),
        (means_test, means(0.02), {"alternative": "greater"}),
        (means_test, means(-0.2), {"alternative": "less", "relative_ci": "log"}),
        (means_test, means(0.15), {"test": "z", "relative_ci": "log"}),
        (means_test, means(0.3), {"test": "z", "alternative": "greater", "relative_ci": "log"}),
        (means_test, means(0.01, 60), {"alternative": "greater", "margin": 0.5}),
        (means_test, means(0.05, 40), {"alternative": "greater", "margin": 0.1, "relative_margin": True}),
        (
            means_test,
            means(-0.05, 25),
            {"alternative": "less", "margin": 0.1, "relative_margin": True, "relative_ci": "log"},
        ),
        (proportions_test, props(0.1, 0.3, 3000), {}),
        (proportions_test, props(0.2, 0.02, 2000), {"test": "wald-z", "relative_ci": "log"}),
        (proportions_test, props(0.05, 0.5, 1500), {"test": "fisher-exact"}),
        (proportions_test, props(0.05, 0.1, 900), {"test": "fisher-exact", "alternative": "greater"}),
        (proportions_test, props(0.3, -0.1, 2500), {"alternative": "less", "relative_ci": "log"}),
        (ratio_test, ratios(0.2), {}),
        (cuped_test, covariates(0.4, 80), {}),
        (cuped_test, covariates(0.1, 50), {"alternative": "greater", "relative_ci": "log"}),
        (ratio_test, ratios(0.0), {"test": "delta-welch-t", "relative_ci": "log"}),
    ]


def _close(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return all(x == pytest.approx(y, rel=1e-9, abs=1e-12) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", [1, 2])
def test_adjusted_cis_equal_a_fresh_computation_at_ci_alpha(method: str, seed: int) -> None:
    family = _family(seed)
    original = [test(*groups, **options) for test, groups, options in family]
    adjusted = adjust_results(original, method=method)
    raw = np.array([r.p_value for r in original])
    expected_p = adjust_p_values(raw, method=method)
    level = ci_alpha(method, alpha=0.05, m=len(raw), rejections=int(reject(raw, method=method, alpha=0.05).sum()))
    if method in ("benjamini-hochberg", "bonferroni"):
        assert level < 0.05
    for (test, groups, options), before, after, p in zip(family, original, adjusted, expected_p, strict=True):
        fresh = test(*groups, alpha=level, **options)
        assert _close(after.absolute_ci, fresh.absolute_ci), (before.test, options, after.absolute_ci)
        assert _close(after.relative_ci, fresh.relative_ci), (before.test, options, after.relative_ci)
        assert after.p_value == pytest.approx(p, rel=1e-15)
        assert after.unadjusted_p_value == before.p_value
        assert after.correction == method
        assert after.alpha == 0.05
        assert after.significant == (p < 0.05)
        # Everything else is carried over.
        assert (
            replace(
                after,
                absolute_ci=before.absolute_ci,
                relative_ci=before.relative_ci,
                p_value=before.p_value,
                unadjusted_p_value=None,
                correction=None,
            )
            == before
        )


@pytest.mark.parametrize("seed", range(40))
def test_welch_cis_are_rebuilt_exactly_for_small_unequal_groups(seed: int) -> None:
    # Welch t gives the relative CI its own df, recorded as result.relative_df.
    rng = np.random.default_rng(1000 + seed)
    n_c, n_t = (int(n) for n in rng.integers(3, 40, 2))
    control = MeanStatistic.from_values(rng.gamma(2.0, rng.uniform(0.5, 3.0), n_c))
    treatment = MeanStatistic.from_values(rng.gamma(2.0, rng.uniform(0.5, 3.0), n_t))
    options: dict[str, Any] = {
        "alternative": ["two-sided", "greater", "less"][seed % 3],
        "relative_ci": ["delta", "log"][seed % 2],
    }
    if seed % 4 == 0 and options["alternative"] != "two-sided":
        options |= {"margin": 0.2, "relative_margin": bool(seed % 8)}
    original = means_test(control, treatment, alpha=float(rng.uniform(0.01, 0.3)), **options)
    level = float(rng.uniform(0.001, 0.2))
    rebuilt = adjust_results([original], method="none", alpha=level)[0]
    fresh = means_test(control, treatment, alpha=level, **options)
    assert _close(rebuilt.absolute_ci, fresh.absolute_ci), (rebuilt.absolute_ci, fresh.absolute_ci)
    assert _close(rebuilt.relative_ci, fresh.relative_ci), (rebuilt.relative_ci, fresh.relative_ci)


@pytest.mark.parametrize("relative_ci", ["delta", "log"])
def test_welch_cis_are_rebuilt_when_the_df_is_at_its_maximum(relative_ci: str) -> None:
    # Equal n and equal variances: the two roots coincide (zero discriminant).
    values = np.random.default_rng(5).gamma(2.0, 1.0, 25)
    control, treatment = MeanStatistic.from_values(values), MeanStatistic.from_values(values + 0.7)
    original = means_test(control, treatment, relative_ci=relative_ci)
    assert original.df == pytest.approx(48.0, rel=1e-12)
    rebuilt = adjust_results([original], method="none", alpha=0.003)[0]
    fresh = means_test(control, treatment, alpha=0.003, relative_ci=relative_ci)
    assert _close(rebuilt.absolute_ci, fresh.absolute_ci)
    assert _close(rebuilt.relative_ci, fresh.relative_ci)


def test_some_of_the_family_is_rejected_under_fdr() -> None:
    # Guards the previous test: R >= 2 makes the FCR level differ from the Bonferroni one.
    original = [test(*groups, **options) for test, groups, options in _family(1)]
    assert reject([r.p_value for r in original], method="benjamini-hochberg", alpha=0.05).sum() >= 2


def test_explicit_alpha_and_method_none_rebuild_at_that_alpha() -> None:
    family = _family(3)
    original = [test(*groups, **options) for test, groups, options in family]
    adjusted = adjust_results(original, method="none", alpha=0.1)
    for (test, groups, options), after in zip(family, adjusted, strict=True):
        fresh = test(*groups, alpha=0.1, **options)
        assert _close(after.absolute_ci, fresh.absolute_ci)
        assert _close(after.relative_ci, fresh.relative_ci)
        assert after.p_value == fresh.p_value
        assert after.alpha == 0.1


def _z_family(seed: int, m: int = 12) -> list[EffectResult]:
    rng = np.random.default_rng(seed)
    shifts = np.where(np.arange(m) < m // 3, 0.25, 0.0)
    return [
        means_test(
            MeanStatistic.from_values(rng.normal(0, 1, 300)),
            MeanStatistic.from_values(rng.normal(shift, 1, 300)),
            test="z",
        )
        for shift in shifts
    ]


@pytest.mark.parametrize("seed", range(4))
def test_ci_agreement_with_rejection(seed: int) -> None:
    family = _z_family(seed)
    for method in ("bonferroni", "benjamini-hochberg", "benjamini-yekutieli"):
        for r in adjust_results(family, method=method):
            excludes_zero = r.absolute_ci[0] > 0 or r.absolute_ci[1] < 0
            assert excludes_zero == r.significant, (method, r.p_value, r.absolute_ci)
    for method in ("holm", "hochberg"):
        for r in adjust_results(family, method=method):
            if r.absolute_ci[0] > 0 or r.absolute_ci[1] < 0:
                assert r.significant


def test_nan_results_pass_through_and_do_not_count() -> None:
    family = _z_family(9, m=5)
    empty = means_test(MeanStatistic(0, 0.0, 0.0), MeanStatistic.from_values([1.0, 2.0, 3.0]))
    assert math.isnan(empty.p_value)
    adjusted = adjust_results([family[0], empty, *family[1:]], method="holm")
    assert adjusted[1] == replace(empty, correction="holm")
    others = [adjusted[0], *adjusted[2:]]
    expected = adjust_p_values([r.p_value for r in family], method="holm")
    assert [r.p_value for r in others] == pytest.approx(expected.tolist(), rel=1e-15)
    fresh = means_test(MeanStatistic.from_values([0.0]), MeanStatistic.from_values([0.0]))  # zero variance: NaN p
    assert adjust_results([fresh], method="holm") == [replace(fresh, correction="holm")]


def test_adjust_results_invalid_input_raises() -> None:
    a = _z_family(1, m=2)
    assert adjust_results([], method="holm") == []
    with pytest.raises(ValueError, match="alpha is None but the results have different alpha"):
        adjust_results([a[0], replace(a[1], alpha=0.1)], method="holm")
    assert adjust_results([a[0], replace(a[1], alpha=0.1)], method="holm", alpha=0.05)[1].alpha == 0.05
    with pytest.raises(ValueError, match="alpha"):
        adjust_results(a, method="holm", alpha=1.2)
    with pytest.raises(ValueError, match=r"results\[0\].correction == 'holm', must be None"):
        adjust_results(adjust_results(a, method="holm"), method="holm")
    with pytest.raises(ValueError, match="p_values"):
        adjust_results([replace(a[0], p_value=1.5)], method="holm")


# --- calibration (independent p-values, seeded, vectorised over replications) ---------------------

REPS = 20_000
M = 10


def test_calibration_fwer_under_the_global_null() -> None:
    alpha = 0.05
    p = np.random.default_rng(101).random((REPS, M))
    se = math.sqrt(alpha * (1 - alpha) / REPS)
    holm = reject(p, method="holm", alpha=alpha)
    hochberg = reject(p, method="hochberg", alpha=alpha)
    bonferroni = reject(p, method="bonferroni", alpha=alpha)
    fwer = {
        name: float(r.any(axis=1).mean())
        for name, r in (("holm", holm), ("hochberg", hochberg), ("bonferroni", bonferroni))
    }
    assert fwer["holm"] <= alpha + 3 * se
    assert fwer["hochberg"] <= alpha + 3 * se
    # Under the global null Holm rejects anything iff min p < alpha / m: FWER = 1 - (1 - alpha / m)^m.
    assert fwer["holm"] == pytest.approx(1 - (1 - alpha / M) ** M, abs=3 * se)
    assert fwer["bonferroni"] == fwer["holm"]
    # Step-up rejects a superset of step-down, which rejects a superset of single-step.
    assert np.all(hochberg >= holm)
    assert np.all(holm >= bonferroni)
    assert reject(p, method="none", alpha=alpha).any(axis=1).mean() > 0.35  # 1 - 0.95^10 = 0.40


def _fdp(rejected: np.ndarray, null: np.ndarray) -> np.ndarray:
    false = (rejected & null).sum(axis=1)
    return false / np.maximum(rejected.sum(axis=1), 1)


def test_calibration_fdr_with_20_percent_true_effects() -> None:
    q = 0.1
    rng = np.random.default_rng(202)
    null = np.arange(M) >= M // 5  # 2 of 10 hypotheses carry an effect
    z = rng.standard_normal((REPS, M)) + np.where(null, 0.0, 3.0)
    p = 2 * sps.norm.sf(np.abs(z))
    bh = _fdp(reject(p, method="benjamini-hochberg", alpha=q), null)
    by = _fdp(reject(p, method="benjamini-yekutieli", alpha=q), null)
    bh_fdr, bh_se = bh.mean(), bh.std(ddof=1) / math.sqrt(REPS)
    by_fdr, by_se = by.mean(), by.std(ddof=1) / math.sqrt(REPS)
    assert bh_fdr <= q + 3 * bh_se
    # Under independence with continuous p-values the BH bound (m0 / m) q is attained exactly.
    assert bh_fdr == pytest.approx(0.8 * q, abs=3 * bh_se)
    assert by_fdr <= q + 3 * by_se
    assert by_fdr < bh_fdr
    # The uncorrected procedure does not control FDR here: the check above can fail.
    assert _fdp(reject(p, method="none", alpha=q), null).mean() > q + 3 * bh_se


def test_calibration_fcr_of_bh_selected_intervals() -> None:
    q = 0.1
    rng = np.random.default_rng(303)
    theta = np.where(np.arange(M) < M // 5, 3.0, 0.0)
    z = rng.standard_normal((REPS, M)) + theta
    p = 2 * sps.norm.sf(np.abs(z))
    rejected = reject(p, method="benjamini-hochberg", alpha=q)
    counts = rejected.sum(axis=1)
    levels = np.array([ci_alpha("benjamini-hochberg", alpha=q, m=M, rejections=int(r)) for r in counts])
    misses = np.abs(z - theta) > sps.norm.isf(levels / 2)[:, None]
    fcp = (misses & rejected).sum(axis=1) / np.maximum(counts, 1)
    fcr, se = fcp.mean(), fcp.std(ddof=1) / math.sqrt(REPS)
    assert fcr <= q + 3 * se
    naive = ((np.abs(z - theta) > sps.norm.isf(q / 2)) & rejected).sum(axis=1) / np.maximum(counts, 1)
    assert naive.mean() > q + 3 * se  # unadjusted intervals after selection do not hold FCR
