"""assign(): order of checks, forced and sticky units, ramps, namespaces, holdouts, allocations, GrowthBook parity."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from scipy import stats

from splitlab.assignment import (
    REASONS,
    CompiledPlan,
    Condition,
    ExperimentPlan,
    Holdout,
    Namespace,
    Targeting,
    Variant,
    assign,
    assign_batch,
    bucket_ranges,
    compile_plan,
    unit_hash,
    unit_hash_batch,
)
from splitlab.assignment.engine import growthbook_hash_text, v1_hash_text

THREE = (Variant("control", 0.5, {"algo": "v1"}), Variant("pop", 0.25, {"algo": "v2"}), Variant("ml", 0.25, None))
PLAN = ExperimentPlan(key="rec-algo", seed="rec-algo", variants=THREE)
IDS = [f"user-{i}" for i in range(20_000)]


def plan(**changes: object) -> ExperimentPlan:
    return replace(PLAN, **changes)  # type: ignore[arg-type]


# --- the basic rule -----------------------------------------------------------------------------


def test_bucket_is_the_unit_hash_and_the_variant_its_range() -> None:
    p = plan(bucket_version=3, coverage=0.9)
    ranges = bucket_ranges(p.weights, 0.9)
    for unit in IDS[:2000]:
        a = assign(p, unit)
        assert a.bucket == unit_hash(unit, "rec-algo", bucket_version=3)
        inside = [i for i, (s, e) in enumerate(ranges) if s <= a.bucket < e]
        if inside:
            assert (a.enrolled, a.reason, a.variation_index) == (True, "enrolled", inside[0])
            assert a.variant == THREE[inside[0]].key
            assert a.payload == THREE[inside[0]].payload
        else:
            assert not a.enrolled
            assert (a.reason, a.variant, a.variation_index, a.payload) == ("coverage", None, None, None)


def test_shares_follow_the_weights_and_the_coverage() -> None:
    p = plan(coverage=0.4)
    result = assign_batch(p, [f"u{i}" for i in range(200_000)])
    counts = np.array(list(result.counts().values()))
    n = len(result)
    assert abs(counts.sum() / n - 0.4) < 4 * math.sqrt(0.4 * 0.6 / n)
    assert stats.chisquare(counts, counts.sum() * np.array(p.weights)).pvalue > 0.001


def test_assign_is_a_pure_function() -> None:
    p = plan(coverage=0.7)
    assert [assign(p, u) for u in IDS[:500]] == [assign(p, u) for u in IDS[:500]]
    twin = plan(coverage=0.7)  # an equal plan, another object
    assert [assign(twin, u) for u in IDS[:500]] == [assign(p, u) for u in IDS[:500]]


# --- order of checks ----------------------------------------------------------------------------


def test_reason_codes_keep_their_numbers_and_new_reasons_come_last() -> None:
    # a reason's position is its code in batch results: the first eight are in check order, and
    # rolled_out (checked second) was appended so that no earlier code moved
    assert REASONS[:4] == ("forced", "inactive", "sticky", "not_targeted")
    assert REASONS[4:] == ("namespace", "holdout", "coverage", "enrolled", "rolled_out")


def test_each_check_wins_over_the_ones_after_it() -> None:
    needs_country = Targeting(include=(Condition("country", "eq", "US"),))
    no_one = {
        "coverage": 0.0,
        "holdout": Holdout("global-holdout", 1.0),
        "namespace": Namespace("layer", 0.0, 1e-9),
        "targeting": needs_country,
        "active": False,
        "forced": {"qa-1": "ml"},
    }
    unit = "user-7"
    p = plan(**no_one, rolled_out="pop")
    assert assign(p, "qa-1").reason == "forced"
    assert assign(p, unit, sticky="ml").reason == "rolled_out"
    p = plan(**no_one)
    assert assign(p, "qa-1").reason == "forced"
    assert assign(p, unit, sticky="pop").reason == "inactive"
    p = plan(**{**no_one, "active": True})
    assert assign(p, unit, sticky="pop").reason == "sticky"
    assert assign(p, unit, {"country": "FR"}).reason == "not_targeted"
    assert assign(p, unit, {"country": "US"}).reason == "namespace"
    p = plan(**{**no_one, "active": True, "namespace": None})
    assert assign(p, unit, {"country": "US"}).reason == "holdout"
    p = plan(**{**no_one, "active": True, "namespace": None, "holdout": None})
    assert assign(p, unit, {"country": "US"}).reason == "coverage"
    p = plan(**{**no_one, "active": True, "namespace": None, "holdout": None, "coverage": 1.0})
    a = assign(p, unit, {"country": "US"})
    assert (a.reason, a.enrolled) == ("enrolled", True)


def test_forced_units_get_their_variant_whatever_else_holds() -> None:
    p = plan(forced={"qa-ml": "ml", "qa-control": "control"}, active=False, coverage=0.0)
    a = assign(p, "qa-ml")
    assert (a.variant, a.variation_index, a.enrolled, a.reason, a.payload) == ("ml", 2, True, "forced", None)
    assert assign(p, "qa-control").variant == "control"
    assert assign(p, "someone-else").reason == "inactive"


def test_a_rolled_out_experiment_serves_its_variant_to_every_unit_but_forced_ones() -> None:
    no_one = {
        "coverage": 0.0,
        "holdout": Holdout("global-holdout", 1.0),
        "namespace": Namespace("layer", 0.0, 1e-9),
        "targeting": Targeting(include=(Condition("country", "eq", "US"),)),
        "forced": {"qa-1": "ml"},
    }
    for active in (False, True):
        p = plan(**no_one, active=active, rolled_out="pop")
        for unit, attributes, sticky in [
            ("user-1", {"country": "US"}, None),
            ("user-2", {"country": "FR"}, "control"),  # untargeted, and sticky elsewhere
            ("user-3", None, "retired"),
            ("", None, None),  # nothing to hash
        ]:
            a = assign(p, unit, attributes, sticky=sticky)
            assert (a.variant, a.variation_index, a.payload) == ("pop", 1, {"algo": "v2"})
            assert (a.enrolled, a.reason) == (False, "rolled_out")
            assert a.bucket == (unit_hash(unit, "rec-algo") if unit else None)
        forced = assign(p, "qa-1")
        assert (forced.variant, forced.enrolled, forced.reason) == ("ml", True, "forced")


def test_a_rolled_out_variant_must_be_a_variant() -> None:
    with pytest.raises(ValueError, match=r"rolled_out == 'gone', must be one of the variant keys"):
        compile_plan(plan(rolled_out="gone"))


def test_an_inactive_experiment_enrols_nobody() -> None:
    p = plan(active=False)
    reasons = {assign(p, u).reason for u in IDS[:1000]}
    assert reasons == {"inactive"}
    assert all(assign(p, u).bucket == unit_hash(u, "rec-algo") for u in IDS[:100])


# --- stickiness ---------------------------------------------------------------------------------


def test_a_sticky_variant_survives_weight_changes() -> None:
    before = plan()
    after = plan(variants=(Variant("control", 0.1), Variant("pop", 0.1), Variant("ml", 0.8)))
    first = {u: assign(before, u).variant for u in IDS[:5000]}
    moved = [u for u in first if assign(after, u).variant != first[u]]
    assert len(moved) > 1000  # weights moved many units ...
    for u in moved:
        a = assign(after, u, sticky=first[u])
        assert (a.variant, a.reason, a.enrolled) == (first[u], "sticky", True)  # ... stickiness keeps them
        assert a.variation_index == [v.key for v in after.variants].index(str(first[u]))


def test_a_sticky_variant_bypasses_targeting_namespace_holdout_and_coverage() -> None:
    p = plan(
        coverage=0.0,
        targeting=Targeting(include=(Condition("country", "eq", "US"),)),
        namespace=Namespace("layer", 0.0, 1e-9),
        holdout=Holdout("h", 1.0),
    )
    assert assign(p, "user-1", {"country": "FR"}, sticky="pop").variant == "pop"


def test_a_sticky_key_that_no_longer_exists_is_ignored() -> None:
    assert assign(PLAN, "user-1", sticky="retired") == assign(PLAN, "user-1")


# --- ramps --------------------------------------------------------------------------------------


def test_raising_coverage_never_moves_an_enrolled_unit() -> None:
    """Property: for random weights and coverages c1 < c2, enrolled at c1 implies the same variant at c2."""
    rng = np.random.default_rng(2024)
    for hash_version in ("1", "growthbook-v2"):
        for _ in range(12):
            k = int(rng.integers(2, 6))
            weights = rng.dirichlet(np.ones(k)).round(4)
            weights[-1] = round(1 - weights[:-1].sum(), 4)
            if weights[-1] < 0:
                continue
            variants = tuple(Variant(f"v{i}", float(w)) for i, w in enumerate(weights))
            c1, c2 = sorted(rng.random(2).tolist())
            low = ExperimentPlan(key="ramp", seed="ramp", variants=variants, coverage=c1, hash_version=hash_version)
            high = replace(low, coverage=c2)
            a, b = assign_batch(low, IDS).variation_index, assign_batch(high, IDS).variation_index
            in_low = a >= 0
            assert np.array_equal(a[in_low], b[in_low])
            assert (b >= 0).sum() >= in_low.sum()
            for u in IDS[:300]:  # and the scalar path agrees
                x = assign(low, u)
                if x.enrolled:
                    assert assign(high, u).variant == x.variant


def test_the_ramp_check_can_fail() -> None:
    # Scaling ranges proportionally (a naive ramp) moves enrolled units: the same check catches it.
    buckets = unit_hash_batch(IDS, "ramp")
    starts_low = np.array([0.0, 0.25])  # coverage 0.5 squeezed into [0, 0.5)
    starts_high = np.array([0.0, 0.5])
    a = np.searchsorted(starts_low, buckets[buckets < 0.5], side="right") - 1
    b = np.searchsorted(starts_high, buckets[buckets < 0.5], side="right") - 1
    assert not np.array_equal(a, b)


# --- namespaces and holdouts --------------------------------------------------------------------


def test_experiments_in_one_namespace_are_mutually_exclusive() -> None:
    left = plan(key="exp-a", seed="exp-a", namespace=Namespace("checkout-layer", 0.0, 0.4))
    right = plan(key="exp-b", seed="exp-b", namespace=Namespace("checkout-layer", 0.4, 1.0))
    a, b = assign_batch(left, IDS), assign_batch(right, IDS)
    assert not (a.enrolled & b.enrolled).any()
    assert (a.enrolled | b.enrolled).all()
    n = len(IDS)
    assert abs(a.enrolled.mean() - 0.4) < 4 * math.sqrt(0.24 / n)
    for u in IDS[:500]:
        assert not (assign(left, u).enrolled and assign(right, u).enrolled)


def test_layers_and_experiments_are_independent() -> None:
    ids = [f"u{i}" for i in range(300_000)]
    layer_a = unit_hash_batch(ids, "__layer-a")
    layer_b = unit_hash_batch(ids, "__layer-b")
    bucket = unit_hash_batch(ids, "rec-algo")
    for x, y in ((layer_a, layer_b), (layer_a, bucket)):
        table = np.histogram2d(x, y, bins=8, range=[[0, 1], [0, 1]])[0]
        assert stats.chi2_contingency(table).pvalue > 0.001
    # so the variant mix inside a namespace slice matches the weights
    p = plan(namespace=Namespace("layer-a", 0.0, 0.5))
    counts = np.array(list(assign_batch(p, ids).counts().values()))
    assert stats.chisquare(counts, counts.sum() * np.array(p.weights)).pvalue > 0.001


def test_the_namespace_hash_is_documented_one() -> None:
    p = plan(namespace=Namespace("layer", 0.3, 0.6))
    for u in IDS[:2000]:
        inside = 0.3 <= unit_hash(u, "__layer", bucket_version=1) < 0.6
        assert (assign(p, u).reason != "namespace") is inside


def test_holdout_share_and_sharing_across_experiments() -> None:
    holdout = Holdout("holdout-2025", 0.05)
    one = plan(holdout=holdout)
    two = plan(key="other", seed="other", holdout=holdout, bucket_version=4)
    ids = [f"u{i}" for i in range(200_000)]
    a, b = assign_batch(one, ids), assign_batch(two, ids)
    held_a = a.reason == REASONS.index("holdout")
    held_b = b.reason == REASONS.index("holdout")
    assert np.array_equal(held_a, held_b)  # the same units are held out of every experiment
    assert abs(held_a.mean() - 0.05) < 4 * math.sqrt(0.05 * 0.95 / len(ids))
    for u in IDS[:1000]:
        assert (assign(one, u).reason == "holdout") is (unit_hash(u, "holdout-2025") < 0.05)
    # and the held-out units are not a slice of any variant
    enrolled_if_not_held = assign_batch(replace(one, holdout=None), ids)
    mix = np.bincount(enrolled_if_not_held.variation_index[held_a], minlength=3)
    assert stats.chisquare(mix, mix.sum() * np.array(one.weights)).pvalue > 0.001


# --- allocations --------------------------------------------------------------------------------


def test_attribute_allocation_hashes_the_joined_attributes() -> None:
    p = plan(allocation="attributes", hash_attributes=("store_id", "week"))
    a = assign(p, "anyone", {"store_id": 17, "week": "2025-W01"})
    assert a.bucket == unit_hash("17\x1f2025-W01", "rec-algo")
    same = assign(p, "someone-else", {"store_id": 17.0, "week": "2025-W01"})
    assert same.variant == a.variant  # every unit of a cluster shares its variant
    missing = assign(p, "anyone", {"store_id": 17})
    assert (missing.reason, missing.bucket, missing.variant) == ("not_targeted", None, None)
    with_unit = plan(allocation="attributes", hash_attributes=("unit_id", "day"))
    assert assign(with_unit, "u1", {"day": "mon"}).bucket == unit_hash("u1\x1fmon", "rec-algo")


def test_hash_texts() -> None:
    assert [v1_hash_text(v) for v in ("a", "", 2, 2.0, 0, True, None, float("nan"), [1])] == [
        "a", None, "2", "2", "0", "true", None, None, None,
    ]  # fmt: skip
    texts = [growthbook_hash_text(v) for v in ("a", "", 2, 2.5, 0, True, None)]
    assert texts == ["a", None, "2", "2.5", None, None, None]


def test_random_allocation_draws_from_the_given_generator() -> None:
    p = plan(allocation="random")
    first = [assign(p, u, rng=np.random.default_rng(9)).bucket for u in IDS[:3]]
    assert first == [np.random.default_rng(9).random()] * 3
    rng = np.random.default_rng(1)
    draws = [assign(p, u, rng=rng) for u in IDS[:5000]]
    assert [d.bucket for d in draws] == np.random.default_rng(1).random(5000).tolist()
    batch = assign_batch(p, IDS[:5000], rng=np.random.default_rng(1))
    assert batch.variation_index.tolist() == [d.variation_index for d in draws]
    with pytest.raises(ValueError, match="rng is None"):
        assign(p, "u")
    with pytest.raises(ValueError, match="only allocation 'random'"):
        assign(PLAN, "u", rng=np.random.default_rng(1))


def test_bandit_weights_override_the_plan_per_call() -> None:
    p = plan(allocation="bandit")
    assert assign(p, "user-1") == assign(plan(), "user-1")
    greedy = [assign(p, u, weights=[0.0, 0.0, 1.0]).variant for u in IDS[:500]]
    assert set(greedy) == {"ml"}
    shifted = plan(variants=(Variant("control", 0.2), Variant("pop", 0.2), Variant("ml", 0.6)))
    for u in IDS[:500]:
        assert assign(p, u, weights=[0.2, 0.2, 0.6]).variation_index == assign(shifted, u).variation_index
    with pytest.raises(ValueError, match=r"sum\(weights\)"):
        assign(p, "u", weights=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match=r"len\(weights\) == 2"):
        assign(p, "u", weights=[0.5, 0.5])
    with pytest.raises(ValueError, match=r"weights\[1\] == -0.1"):
        assign(p, "u", weights=[0.6, -0.1, 0.5])
    with pytest.raises(ValueError, match="only allocation 'bandit'"):
        assign(PLAN, "u", weights=[0.2, 0.2, 0.6])


# --- GrowthBook parity --------------------------------------------------------------------------

GB_CONFIGS = [
    {"weights": [0.5, 0.25, 0.25], "coverage": 1.0},
    {"weights": [0.2, 0.3, 0.5], "coverage": 0.6},
    {"weights": [1 / 3, 1 / 3, 1 / 3], "coverage": 0.9, "namespace": ("layer-a", 0.25, 0.75)},
    {"weights": [0.3334, 0.3333, 0.3333], "coverage": 0.5, "namespace": ("pricing", 0.0, 0.5), "seed": "custom-seed"},
    {"weights": [0.1, 0.2, 0.7], "coverage": 0.8, "targeted": True},
]


@pytest.mark.parametrize("config", GB_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_growthbook_mode_equals_the_growthbook_sdk_run(config: dict[str, Any]) -> None:
    growthbook = pytest.importorskip("growthbook")
    rng = np.random.default_rng(17)
    ids = [f"user-{i}" for i in range(10_000)]
    ids[:4] = ["", "ünïcödé", "👩‍🔬", "123"]
    countries = rng.choice(["US", "CA", "FR"], len(ids)).tolist()
    versions = rng.choice(["2.0.9", "2.1.0", "2.10.3", "3.0.0"], len(ids)).tolist()
    key = "gb-parity"
    condition = (
        {"country": {"$in": ["US", "CA"]}, "app_version": {"$vgte": "2.1.0"}} if config.get("targeted") else None
    )
    experiment = growthbook.Experiment(
        key=key,
        variations=[0, 1, 2],
        weights=config["weights"],
        coverage=config["coverage"],
        namespace=config.get("namespace"),
        seed=config.get("seed"),
        hashVersion=2,
        condition=condition,
    )
    targeting = Targeting(
        include=(Condition("country", "in", ["US", "CA"]), Condition("app_version", "version_gte", "2.1.0"))
        if config.get("targeted")
        else ()
    )
    ns = config.get("namespace")
    ours = ExperimentPlan(
        key=key,
        seed=config.get("seed") or key,
        variants=tuple(Variant(f"v{i}", w) for i, w in enumerate(config["weights"])),
        coverage=config["coverage"],
        hash_version="growthbook-v2",
        namespace=Namespace(*ns) if ns else None,
        targeting=targeting,
    )
    client = growthbook.GrowthBook(attributes={})
    batch = assign_batch(ours, ids, {"country": countries, "app_version": versions})
    enrolled = 0
    for j, (unit, country, version) in enumerate(zip(ids, countries, versions, strict=True)):
        attributes = {"id": unit, "country": country, "app_version": version}
        client.set_attributes(attributes)
        theirs = client.run(experiment)
        mine = assign(ours, unit, attributes)
        assert mine.enrolled is theirs.inExperiment, unit
        if theirs.inExperiment:
            enrolled += 1
            assert mine.variation_index == theirs.variationId
            assert mine.bucket == theirs.bucket
        assert batch.variation_index[j] == (theirs.variationId if theirs.inExperiment else -1)
    client.destroy()
    assert 1000 < enrolled < len(ids)


def test_growthbook_mode_on_a_single_hash_attribute_equals_the_sdk() -> None:
    growthbook = pytest.importorskip("growthbook")
    experiment = growthbook.Experiment(key="dev", variations=[0, 1], hashAttribute="device", hashVersion=2)
    ours = ExperimentPlan(
        key="dev",
        seed="dev",
        variants=(Variant("a", 0.5), Variant("b", 0.5)),
        hash_version="growthbook-v2",
        allocation="attributes",
        hash_attributes=("device",),
    )
    client = growthbook.GrowthBook(attributes={})
    for device in ["d-1", "d-2", 123, 45.5, 0, "", True, None, 7.0]:
        client.set_attributes({"id": "someone", "device": device})
        theirs = client.run(experiment)
        mine = assign(ours, "someone", {"device": device})
        assert mine.enrolled is theirs.inExperiment, device
        assert (mine.variation_index if mine.enrolled else 0) == theirs.variationId
    client.destroy()


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hash_version": "2"}, "hash_version == '2'"),
        ({"allocation": "thompson"}, "allocation == 'thompson'"),
        ({"bucket_version": -1}, "bucket_version == -1"),
        ({"variants": (Variant("a", 1.0),)}, r"len\(variants\) == 1, must be >= 2"),
        ({"variants": (Variant("a", 0.5), Variant("a", 0.5))}, "duplicate keys"),
        ({"variants": (Variant("a", 0.5), Variant("b", 0.6))}, r"sum\(weights\) == 1.1"),
        ({"variants": (Variant("a", 1.2), Variant("b", -0.2))}, r"weights\[1\] == -0.2"),
        ({"variants": (Variant("a", 0.5), Variant("b", float("nan")))}, r"weights\[1\] == nan"),
        ({"variants": (Variant("a", 0.5), Variant("b", 0.48)), "hash_version": "growthbook-v2"}, "within"),
        ({"coverage": 1.5}, "coverage == 1.5, must be in"),
        ({"coverage": -0.1}, "coverage == -0.1"),
        ({"namespace": Namespace("ns", 0.5, 0.5)}, r"namespace range == \[0.5, 0.5\)"),
        ({"namespace": Namespace("ns", -0.1, 0.5)}, "namespace range"),
        ({"namespace": Namespace("", 0.0, 0.5)}, "namespace.name"),
        ({"namespace": Namespace("x", 0.0, 0.5), "seed": "__x"}, "must differ from the namespace seed"),
        ({"holdout": Holdout("h", 1.5)}, "holdout.share == 1.5"),
        ({"holdout": Holdout("rec-algo", 0.1)}, "holdout.seed == 'rec-algo', must differ"),
        ({"holdout": Holdout("", 0.1)}, "holdout.seed == ''"),
        ({"forced": {"qa": "gone"}}, r"forced\['qa'\] == 'gone'"),
        ({"hash_attributes": ("device",)}, "only allocation 'attributes' reads it"),
        ({"allocation": "attributes", "hash_attributes": ()}, "hash_attributes == ()"),
        ({"allocation": "attributes", "hash_attributes": ("a", "a")}, "distinct"),
        (
            {"allocation": "attributes", "hash_attributes": ("a", "b"), "hash_version": "growthbook-v2"},
            "exactly one attribute",
        ),
        ({"targeting": Targeting(include=(Condition("a", "contains", "x"),))}, "operator == 'contains'"),
    ],
)
def test_invalid_plans_raise_on_first_use(changes: dict[str, Any], message: str) -> None:
    bad = plan(**changes)
    with pytest.raises(ValueError, match=message):
        compile_plan(bad)
    with pytest.raises(ValueError, match=message):
        assign(bad, "u")
    with pytest.raises(ValueError, match=message):
        assign_batch(bad, ["u"])


def test_a_non_string_seed_or_unit_raises_type_error() -> None:
    with pytest.raises(TypeError, match="seed == 5"):
        compile_plan(plan(seed=5))
    with pytest.raises(TypeError, match="unit_id == 42"):
        assign(PLAN, 42)  # type: ignore[arg-type]


def test_an_empty_unit_id_has_nothing_to_hash() -> None:
    for version in ("1", "growthbook-v2"):
        a = assign(plan(hash_version=version), "")
        assert (a.reason, a.bucket, a.variant) == ("not_targeted", None, None)


def test_compiled_plans_are_cached_and_accepted() -> None:
    p = plan(coverage=0.5)
    compiled = compile_plan(p)
    assert isinstance(compiled, CompiledPlan)
    assert compile_plan(p) is compiled
    assert compile_plan(compiled) is compiled
    assert assign(compiled, "user-3") == assign(p, "user-3") == compiled.assign("user-3")
