"""to_plan compiles a spec into the assignment engine's frozen records."""

from __future__ import annotations

from pathlib import Path

import pytest

from splitlab.assignment import config
from splitlab.specs import ExperimentSpec, load_spec, to_plan

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_full_plan() -> None:
    spec = ExperimentSpec.model_validate(
        {
            "key": "exp",
            "variants": [{"key": "a", "weight": 0.2, "payload": {"m": "v1"}}, {"key": "b", "weight": 0.8}],
            "coverage": 0.4,
            "targeting": {
                "include": [{"attribute": "country", "operator": "in", "value": ["US"]}],
                "exclude": [{"attribute": "bot", "operator": "exists"}],
            },
            "namespace": {"name": "layer", "range": [0.25, 0.75]},
            "holdout": {"seed": "hold", "share": 0.05},
            "allocation": {"method": "attributes", "attributes": ["device", "country"]},
            "seed": "s",
            "bucket_version": 2,
        }
    )
    plan = to_plan(spec, forced={"qa-1": "b"}, active=False)
    assert plan == config.ExperimentPlan(
        key="exp",
        seed="s",
        variants=(config.Variant("a", 0.2, {"m": "v1"}), config.Variant("b", 0.8, None)),
        coverage=0.4,
        hash_version="1",
        bucket_version=2,
        hash_attributes=("device", "country"),
        allocation="attributes",
        targeting=config.Targeting(
            include=(config.Condition("country", "in", ["US"]),), exclude=(config.Condition("bot", "exists", True),)
        ),
        namespace=config.Namespace("layer", 0.25, 0.75),
        holdout=config.Holdout("hold", 0.05),
        forced={"qa-1": "b"},
        active=False,
    )


def test_defaults_hash_the_unit() -> None:
    spec = ExperimentSpec(key="x", variants=[{"key": "a"}, {"key": "b"}], unit="device_id")
    plan = to_plan(spec)
    assert (plan.seed, plan.hash_attributes, plan.allocation, plan.active) == ("x", ("unit_id",), "hash", True)
    assert plan.namespace is None
    assert plan.holdout is None
    assert plan.targeting == config.Targeting()
    assert dict(plan.forced) == {}


@pytest.mark.parametrize("method", ["random", "bandit"])
def test_non_hash_allocations_keep_unit_id(method: str) -> None:
    allocation = {"method": method, **({"bandit": {"policy": "thompson"}} if method == "bandit" else {})}
    plan = to_plan(ExperimentSpec(key="x", variants=[{"key": "a"}, {"key": "b"}], allocation=allocation))
    assert (plan.allocation, plan.hash_attributes) == (method, ("unit_id",))


def test_growthbook_mode_keeps_variant_order() -> None:
    spec = ExperimentSpec(key="gb", hash_version="growthbook-v2", variants=[{"key": "z"}, {"key": "a"}, {"key": "m"}])
    plan = to_plan(spec)
    assert plan.hash_version == "growthbook-v2"
    assert [v.key for v in plan.variants] == ["z", "a", "m"]


def test_forced_variant_must_exist() -> None:
    spec = ExperimentSpec(key="x", variants=[{"key": "a"}, {"key": "b"}])
    with pytest.raises(ValueError, match=r"forced\['qa'\] == 'c', must be one of the variant keys \['a', 'b'\]"):
        to_plan(spec, forced={"qa": "c"})


def test_forced_mapping_is_copied() -> None:
    forced = {"qa": "a"}
    plan = to_plan(ExperimentSpec(key="x", variants=[{"key": "a"}, {"key": "b"}]), forced=forced)
    forced["other"] = "b"
    assert dict(plan.forced) == {"qa": "a"}


@pytest.mark.parametrize("name", ["free_shipping.yaml", "checkout_simplification.yaml", "recommendations.yaml"])
def test_examples_compile(name: str) -> None:
    spec = load_spec(EXAMPLES / name)
    plan = to_plan(spec)
    assert plan.key == spec.key
    assert sum(plan.weights) == pytest.approx(1, abs=1e-12)
    assert len(plan.targeting.include) + len(plan.targeting.exclude) == len(spec.targeting.include) + len(
        spec.targeting.exclude
    )


def test_rerandomisation_moves_units_in_both_hash_versions() -> None:
    import splitlab
    from splitlab.specs.plan import effective_seed

    for version in ("1", "growthbook-v2"):
        text = f"key: ramp\nhash_version: '{version}'\nvariants: [{{key: a}}, {{key: b}}]\n"
        first = splitlab.load_spec(text)
        second = splitlab.load_spec(text + "bucket_version: 2\n")
        buckets = [(splitlab.assign(first, f"u{i}").bucket, splitlab.assign(second, f"u{i}").bucket) for i in range(50)]
        assert sum(a != b for a, b in buckets) >= 45, version
    gb = splitlab.load_spec("key: g\nhash_version: growthbook-v2\nbucket_version: 3\nvariants: [{key: a}, {key: b}]\n")
    assert effective_seed(gb) == "g:v3"
