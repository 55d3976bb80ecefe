"""assign_batch and unit_hash_batch give exactly the scalar answers; stratified assignment balances strata."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from splitlab.assignment import (
    REASONS,
    Condition,
    ExperimentPlan,
    Holdout,
    Namespace,
    Targeting,
    Variant,
    assign,
    assign_batch,
    stratified_assignment,
    unit_hash,
    unit_hash_batch,
)


def make_ids(n: int, seed: int = 0) -> list[str]:
    """n distinct ids: ASCII, Latin-1, CJK, astral emoji and ZWJ sequences, empty and long ones."""
    rng = np.random.default_rng(seed)
    pieces = ["user-", "dev_", "ü", "é", "日本", "😀", "👩‍🔬", "ß", "Ω", "a\u0301", "\u0000", "-", ":", "x" * 40]
    ids = {""}
    while len(ids) < n:
        parts = rng.choice(pieces, size=int(rng.integers(1, 4))).tolist()
        ids.add("".join(parts) + str(int(rng.integers(0, 10**9))))
    out = sorted(ids)
    rng.shuffle(out)
    return out


IDS = make_ids(100_000)


@pytest.mark.parametrize(
    ("version", "seed"),
    [
        ("1", "checkout"),
        ("1", ""),
        ("1", "ñandú-ü"),
        ("1", "🚀:seed"),
        ("growthbook-v2", ""),
        ("growthbook-v2", "🚀:ñ"),
    ],
)
def test_unit_hash_batch_equals_unit_hash_on_100k_ids(version: str, seed: str) -> None:
    got = unit_hash_batch(IDS, seed, version=version, bucket_version=2)
    expected = [unit_hash(u, seed, version=version, bucket_version=2) for u in IDS]
    assert got.dtype == np.float64
    assert got.tolist() == expected


def test_unit_hash_batch_takes_numpy_arrays_and_empty_input() -> None:
    assert unit_hash_batch(np.array(IDS[:100]), "s").tolist() == unit_hash_batch(IDS[:100], "s").tolist()
    assert unit_hash_batch([], "s").shape == (0,)
    assert unit_hash_batch([], "s", version="growthbook-v2").shape == (0,)


RNG = np.random.default_rng(4)
COUNTRY = RNG.choice(["US", "CA", "FR", "GB"], len(IDS))
VERSION = RNG.choice(["2.0.9", "2.1", "2.10.1", "3.0.0-rc.1", "beta"], len(IDS))
ACCOUNT = RNG.choice(np.array(["vip", "standard", None], dtype=object), len(IDS))
STORE = RNG.integers(1, 50, len(IDS))
ATTRIBUTES = {"country": COUNTRY, "app_version": VERSION.tolist(), "account": ACCOUNT, "store": STORE}
BASE = ExperimentPlan(
    key="batch",
    seed="batch",
    variants=(Variant("a", 0.5, "A"), Variant("b", 0.3, "B"), Variant("c", 0.2, "C")),
)
PLANS = {
    "plain": BASE,
    "full": replace(
        BASE,
        coverage=0.7,
        targeting=Targeting(
            include=(Condition("country", "in", ["US", "CA", "GB"]), Condition("app_version", "version_gte", "2.1")),
            exclude=(Condition("account", "eq", "vip"),),
        ),
        namespace=Namespace("layer", 0.1, 0.8),
        holdout=Holdout("holdout-2025", 0.1),
        forced={IDS[0]: "c", IDS[1]: "a", "not-in-batch": "b"},
    ),
    "inactive": replace(BASE, active=False, forced={IDS[2]: "b"}),
    "rolled-out": replace(
        BASE,
        coverage=0.7,
        targeting=Targeting(include=(Condition("country", "in", ["US", "CA"]),)),
        holdout=Holdout("holdout-2025", 0.1),
        active=False,
        forced={IDS[0]: "c"},
        rolled_out="b",
    ),
    "by-store": replace(BASE, allocation="attributes", hash_attributes=("store", "country")),
    "bandit": replace(BASE, allocation="bandit", coverage=0.5),
}


def scalar_rows(n: int) -> list[dict[str, Any]]:
    return [
        {"country": str(COUNTRY[i]), "app_version": str(VERSION[i]), "account": ACCOUNT[i], "store": int(STORE[i])}
        for i in range(n)
    ]


ROWS = scalar_rows(len(IDS))
STICKY = {IDS[5]: "b", IDS[6]: "retired", IDS[7]: "a"}


@pytest.mark.parametrize("name", list(PLANS))
@pytest.mark.parametrize("version", ["1", "growthbook-v2"])
def test_assign_batch_equals_assign_on_100k_ids(name: str, version: str) -> None:
    plan = replace(PLANS[name], hash_version=version)
    if version == "growthbook-v2" and plan.allocation == "attributes":
        plan = replace(plan, hash_attributes=("store",))
    weights = [0.2, 0.2, 0.6] if plan.allocation == "bandit" else None
    n = len(IDS) if version == "1" else 30_000  # GrowthBook's scalar FNV runs in pure Python: keep the file fast
    ids, rows = IDS[:n], ROWS[:n]
    batch = assign_batch(plan, ids, {k: v[:n] for k, v in ATTRIBUTES.items()}, sticky=STICKY, weights=weights)
    assert len(batch) == n
    scalar = [
        assign(plan, unit, row, sticky=STICKY.get(unit), weights=weights) for unit, row in zip(ids, rows, strict=True)
    ]
    # Compared as whole columns of Python values (element by element through NumPy took 2 s a plan).
    found = {
        "reason": [REASONS[code] for code in batch.reason.tolist()],
        "variation_index": batch.variation_index.tolist(),
        "enrolled": batch.enrolled.tolist(),
        "bucket": [None if math.isnan(bucket) else bucket for bucket in batch.bucket.tolist()],
    }
    expected = {
        "reason": [a.reason for a in scalar],
        "variation_index": [-1 if a.variation_index is None else a.variation_index for a in scalar],
        "enrolled": [a.enrolled for a in scalar],
        "bucket": [a.bucket for a in scalar],
    }
    for field, column in found.items():
        if column != expected[field]:
            j = next(j for j, (got, want) in enumerate(zip(column, expected[field], strict=True)) if got != want)
            pytest.fail(f"{field} of {ids[j]!r}: assign_batch {column[j]!r}, assign {expected[field][j]!r}")
    reasons = batch.reason_counts()
    assert sum(reasons.values()) == n
    if name == "full":
        assert all(reasons[r] > 0 for r in ("forced", "sticky", "not_targeted", "namespace", "holdout", "coverage"))
    if name == "rolled-out":
        assert reasons == {**dict.fromkeys(REASONS, 0), "forced": 1, "rolled_out": n - 1}


def test_attributes_may_come_as_rows_columns_or_a_dataframe() -> None:
    plan = PLANS["full"]
    n = 3000
    by_columns = assign_batch(plan, IDS[:n], {k: v[:n] for k, v in ATTRIBUTES.items()})
    by_rows = assign_batch(plan, IDS[:n], ROWS[:n])
    frame = pd.DataFrame(ROWS[:n])
    by_frame = assign_batch(plan, np.array(IDS[:n], dtype=object), {c: frame[c] for c in frame.columns})
    for other in (by_rows, by_frame):
        assert np.array_equal(by_columns.variation_index, other.variation_index)
        assert np.array_equal(by_columns.reason, other.reason)


def test_batch_result_helpers() -> None:
    result = assign_batch(PLANS["full"], IDS[:2000], {k: v[:2000] for k, v in ATTRIBUTES.items()})
    variants = result.variants()
    assert variants[0] == "c"  # forced
    assert all((v is None) == (i < 0) for v, i in zip(variants, result.variation_index, strict=True))
    assert result.counts() == {k: variants.count(k) for k in ("a", "b", "c")}
    assert int(result.enrolled.sum()) == sum(result.counts().values())
    assert result.variant_keys == ("a", "b", "c")


def test_units_served_a_rolled_out_variant_get_it_without_being_enrolled() -> None:
    result = assign_batch(PLANS["rolled-out"], IDS[:2000], ROWS[:2000], sticky=STICKY)
    assert result.variants() == ["c"] + ["b"] * 1999  # the first is forced
    assert result.enrolled.tolist() == [True] + [False] * 1999
    assert result.counts() == {"a": 0, "b": 0, "c": 1}


def test_batch_input_errors() -> None:
    with pytest.raises(ValueError, match=r"len\(attributes\['country'\]\) == 2, must equal len\(unit_ids\) \(3\)"):
        assign_batch(PLANS["full"], ["a", "b", "c"], {"country": ["US", "CA"]})
    with pytest.raises(ValueError, match=r"len\(attributes\) == 1"):
        assign_batch(PLANS["full"], ["a", "b"], [{"country": "US"}])
    with pytest.raises(TypeError, match="every id must be a str"):
        assign_batch(BASE, ["a", None])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="rng is None"):
        assign_batch(replace(BASE, allocation="random"), ["a"])
    with pytest.raises(ValueError, match="only allocation 'random'"):
        assign_batch(BASE, ["a"], rng=np.random.default_rng(0))


# --- stratified assignment ----------------------------------------------------------------------


@pytest.mark.parametrize("weights", [[0.5, 0.5], [0.2, 0.3, 0.5], [1 / 3] * 3, [0.1, 0.0, 0.9], [1.0]])
def test_stratified_counts_are_within_one_of_the_weights(weights: list[float]) -> None:
    rng = np.random.default_rng(8)
    n = 20_000
    strata = [(d, c) for d, c in zip(rng.choice(["ios", "android", "web"], n), rng.integers(0, 40, n), strict=True)]
    strata = [(str(d), int(c)) for d, c in strata]
    ids = [f"u{i}" for i in range(n)]
    result = stratified_assignment(ids, strata, weights=weights, seed="free-shipping")
    assert result.dtype == np.int64
    members: dict[tuple[str, int], list[int]] = {}
    for s, v in zip(strata, result.tolist(), strict=True):
        members.setdefault(s, []).append(v)
    for arms in members.values():
        m = len(arms)
        counts = np.bincount(arms, minlength=len(weights))
        assert np.all(np.abs(counts - np.array(weights) * m) < 1 + 1e-9), (m, counts)


def test_stratified_assignment_is_deterministic_and_ignores_input_order() -> None:
    ids = [f"u{i}" for i in range(5000)]
    strata = [i % 7 for i in range(5000)]
    first = stratified_assignment(ids, strata, weights=[0.5, 0.5], seed=42)
    again = stratified_assignment(ids, np.array(strata), weights=[0.5, 0.5], seed=42)
    assert np.array_equal(first, again)
    order = np.random.default_rng(0).permutation(5000)
    shuffled = stratified_assignment([ids[i] for i in order], [strata[i] for i in order], weights=[0.5, 0.5], seed=42)
    assert np.array_equal(shuffled, first[order])
    other_seed = stratified_assignment(ids, strata, weights=[0.5, 0.5], seed=43)
    assert 0.3 < np.mean(other_seed != first) < 0.7


def test_leftover_units_do_not_always_go_to_the_first_variant() -> None:
    ids = [f"u{i}" for i in range(3000)]
    strata = [i // 3 for i in range(3000)]  # 1000 strata of 3 units, weights 50/50: one leftover each
    result = stratified_assignment(ids, strata, weights=[0.5, 0.5], seed="x")
    zeros = int(np.sum(result == 0))  # 1000 + Binomial(1000, 1/2) when leftovers are drawn fairly; 2000 if not
    assert abs(zeros - 1500) < 4 * np.sqrt(1000 * 0.25)


def test_the_within_stratum_permutation_is_random() -> None:
    ids = [f"u{i}" for i in range(10_000)]
    result = stratified_assignment(ids, ["all"] * 10_000, weights=[0.5, 0.5], seed="x")
    assert np.bincount(result).tolist() == [5000, 5000]
    runs = 1 + int(np.sum(result[1:] != result[:-1]))  # a block layout would give 2 runs
    assert 4800 < runs < 5200
    assert Counter(result[:1000].tolist())[0] > 400


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"unit_ids": ["a", "a"], "strata": [1, 2]}, ValueError, "duplicates"),
        ({"unit_ids": ["a", "b"], "strata": [1]}, ValueError, r"len\(strata\) == 1"),
        ({"weights": [0.6, 0.6]}, ValueError, r"sum\(weights\) == 1.2"),
        ({"weights": [1.5, -0.5]}, ValueError, r"weights\[1\] == -0.5"),
        ({"weights": []}, ValueError, r"len\(weights\) == 0"),
        ({"unit_ids": ["a", 1], "strata": [1, 2]}, TypeError, "every id must be a str"),
    ],
)
def test_stratified_input_errors(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    arguments = {"unit_ids": ["a", "b"], "strata": [1, 1], "weights": [0.5, 0.5], "seed": 1, **kwargs}
    with pytest.raises(error, match=message):
        stratified_assignment(**arguments)
