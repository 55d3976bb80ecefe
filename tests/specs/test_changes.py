"""diff on the JSON form of specs, and which updates a run experiment may take."""

from __future__ import annotations

from typing import Any

import pytest

from splitlab.specs import PROTECTED, Change, ExperimentSpec, check_update, diff


def _spec(**changes: Any) -> ExperimentSpec:
    base: dict[str, Any] = {
        "key": "exp",
        "variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5, "payload": {"v": 1}}],
        "metrics": {"goal": ["conversion"], "guardrails": [{"metric": "aov", "max_degradation": 0.05}]},
    }
    base.update(changes)
    return ExperimentSpec.model_validate(base)


def _variants(*items: tuple[str, float]) -> list[dict[str, Any]]:
    return [{"key": key, "weight": weight} for key, weight in items]


# --- diff ---------------------------------------------------------------------------------


def test_no_change() -> None:
    assert diff(_spec(), _spec()) == []


def test_scalar_and_nested_changes_have_dotted_paths() -> None:
    old = _spec()
    new = _spec(
        coverage=0.3,
        owner="me",
        schedule={"min_duration_days": 7},
        hypothesis={"primary_metric": "conversion", "direction": "increase", "mde": 0.1},
    )
    assert diff(old, new) == [
        Change("owner", "", "me"),
        Change(
            "hypothesis",
            None,
            {
                "primary_metric": "conversion",
                "direction": "increase",
                "mde": 0.1,
                "mde_type": "relative",
                "alpha": 0.05,
                "power": 0.8,
                "baseline": None,
                "statement": "",
            },
        ),
        Change("coverage", 1.0, 0.3),
        Change("schedule.min_duration_days", None, 7),
    ]


def test_variants_are_matched_by_key() -> None:
    old = _spec()
    new = _spec(variants=[{"key": "control", "weight": 0.4}, {"key": "treatment", "weight": 0.6, "payload": {"v": 2}}])
    assert diff(old, new) == [
        Change("variants.control.weight", 0.5, 0.4),
        Change("variants.treatment.weight", 0.5, 0.6),
        Change("variants.treatment.payload.v", 1, 2),
    ]


def test_added_removed_and_reordered_variants() -> None:
    old = _spec(variants=_variants(("a", 0.5), ("b", 0.25), ("c", 0.25)))
    new = _spec(variants=_variants(("c", 0.25), ("a", 0.5), ("d", 0.25)))
    assert diff(old, new) == [
        Change("variants", ["a", "b", "c"], ["c", "a", "d"]),
        Change("variants.b", {"key": "b", "weight": 0.25, "payload": None}, None),
        Change("variants.d", None, {"key": "d", "weight": 0.25, "payload": None}),
    ]


def test_added_variant_alone_is_not_a_reordering() -> None:
    old = _spec(variants=_variants(("a", 0.5), ("b", 0.5)))
    new = _spec(variants=_variants(("a", 0.5), ("b", 0.25), ("c", 0.25)))
    assert [c.path for c in diff(old, new)] == ["variants.b.weight", "variants.c"]


def test_guardrails_are_matched_by_metric_and_other_lists_compared_whole() -> None:
    old = _spec()
    new = _spec(
        metrics={
            "goal": ["conversion", "revenue"],
            "guardrails": [{"metric": "aov", "max_degradation": 0.1}, {"metric": "latency", "max_degradation": 0.2}],
        },
        targeting={"exclude": [{"attribute": "vip", "operator": "eq", "value": True}]},
    )
    assert diff(old, new) == [
        Change("targeting.exclude", [], [{"attribute": "vip", "operator": "eq", "value": True}]),
        Change("metrics.goal", ["conversion"], ["conversion", "revenue"]),
        Change("metrics.guardrails.aov.max_degradation", 0.05, 0.1),
        Change("metrics.guardrails.latency", None, {"metric": "latency", "max_degradation": 0.2}),
    ]


# --- check_update -------------------------------------------------------------------------


def test_anything_goes_before_the_experiment_has_run() -> None:
    new = _spec(unit="device_id", seed="other", variants=_variants(("x", 0.5), ("y", 0.5)))
    assert check_update(_spec(), new, has_run=False) is new


@pytest.mark.parametrize(
    "changes",
    [
        {"coverage": 0.2},
        {"variants": [{"key": "control", "weight": 0.2}, {"key": "treatment", "weight": 0.8, "payload": {"v": 1}}]},
        {"variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5, "payload": {"v": 9}}]},
        {"targeting": {"include": [{"attribute": "country", "operator": "eq", "value": "US"}]}},
        {"description": "now with more words", "owner": "someone"},
        {"schedule": {"max_duration_days": 60}},
        {"analysis": {"method": "bayesian"}},
        {"namespace": {"name": "layer", "range": [0, 0.5]}},
        {"holdout": {"seed": "h", "share": 0.1}},
        {"stratify_by": ["device"]},
    ],
)
def test_allowed_changes_after_run(changes: dict[str, Any]) -> None:
    new = _spec(**changes)
    assert diff(_spec(), new)
    assert check_update(_spec(), new, has_run=True) is new


def test_namespace_range_may_change_but_not_its_name() -> None:
    old = _spec(namespace={"name": "layer", "range": [0, 0.5]})
    wider = _spec(namespace={"name": "layer", "range": [0, 0.8]})
    assert check_update(old, wider, has_run=True) is wider
    with pytest.raises(ValueError, match=r"namespace\.name \('layer' -> 'other'\)"):
        check_update(old, _spec(namespace={"name": "other", "range": [0, 0.5]}), has_run=True)


def test_holdout_share_may_change_but_not_its_seed() -> None:
    old = _spec(holdout={"seed": "h", "share": 0.05})
    assert check_update(old, _spec(holdout={"seed": "h", "share": 0.1}), has_run=True)
    with pytest.raises(ValueError, match=r"holdout\.seed \('h' -> 'h2'\)"):
        check_update(old, _spec(holdout={"seed": "h2", "share": 0.05}), has_run=True)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"unit": "device_id"}, r"unit \('user_id' -> 'device_id'\)"),
        (
            {"variants": _variants(("control", 0.5), ("variant_b", 0.5))},
            r"variant keys \(\['control', 'treatment'\] -> \['control', 'variant_b'\]\)",
        ),
        ({"variants": _variants(("control", 0.4), ("treatment", 0.3), ("extra", 0.3))}, r"variant keys \("),
        (
            {"variants": _variants(("treatment", 0.5), ("control", 0.5))},
            r"variant order \(\['control', 'treatment'\] -> \['treatment', 'control'\]\)",
        ),
        ({"seed": "new-seed"}, r"seed \('exp' -> 'new-seed'\)"),
        ({"hash_version": "growthbook-v2"}, r"hash_version \('1' -> 'growthbook-v2'\)"),
        ({"bucket_version": 2}, r"bucket_version \(1 -> 2\)"),
        ({"allocation": {"method": "random"}}, r"allocation\.method \('hash' -> 'random'\)"),
    ],
)
def test_protected_changes_after_run_are_refused(changes: dict[str, Any], named: str) -> None:
    old, new = _spec(), _spec(**changes)
    with pytest.raises(ValueError, match=rf"experiment 'exp' has run, so changing {named}.*--rerandomize"):
        check_update(old, new, has_run=True)
    assert check_update(old, new, has_run=False) is new


def test_hash_attribute_changes_are_refused() -> None:
    old = _spec(allocation={"method": "attributes", "attributes": ["country"]})
    new = _spec(allocation={"method": "attributes", "attributes": ["country", "device"]})
    with pytest.raises(ValueError, match=r"allocation\.attributes \(\['country'\] -> \['country', 'device'\]\)"):
        check_update(old, new, has_run=True)


def test_every_protected_field_is_named_at_once() -> None:
    new = _spec(unit="device_id", seed="s2")
    with pytest.raises(
        ValueError, match=r"changing unit \('user_id' -> 'device_id'\), seed \('exp' -> 's2'\) would move"
    ):
        check_update(_spec(), new, has_run=True)


def test_rerandomize_bumps_the_bucket_version() -> None:
    old = _spec(bucket_version=3)
    new = _spec(unit="device_id", variants=_variants(("a", 0.5), ("b", 0.5)), bucket_version=3)
    with pytest.raises(ValueError, match="apply with --rerandomize to start bucket version 4"):
        check_update(old, new, has_run=True)
    updated = check_update(old, new, has_run=True, rerandomize=True)
    assert updated.bucket_version == 4
    assert updated.unit == "device_id"
    assert updated.model_dump(exclude={"bucket_version"}) == new.model_dump(exclude={"bucket_version"})


def test_rerandomize_is_a_permission_used_only_where_a_change_needs_it() -> None:
    # Nothing protected changed: no unit would move, so the bucket version stays.
    assert check_update(_spec(), _spec(), has_run=True, rerandomize=True).bucket_version == 1
    ramp = _spec(coverage=0.5)
    assert check_update(_spec(), ramp, has_run=True, rerandomize=True).bucket_version == 1
    # A draft has assigned nobody: a protected change needs no new bucket version.
    reseeded = _spec(seed="s2")
    assert check_update(_spec(), reseeded, has_run=False, rerandomize=True).bucket_version == 1
    assert check_update(_spec(), reseeded, has_run=True, rerandomize=True).bucket_version == 2


def test_key_cannot_change() -> None:
    with pytest.raises(ValueError, match=r"key == 'exp2' differs from 'exp'"):
        check_update(_spec(), _spec(key="exp2"), has_run=False, rerandomize=True)


def test_protected_field_list() -> None:
    assert set(PROTECTED) == {
        "unit",
        "variant keys",
        "variant order",
        "seed",
        "hash_version",
        "bucket_version",
        "allocation.method",
        "allocation.attributes",
        "namespace.name",
        "holdout.seed",
    }


def test_plan_update_decides_create_unchanged_update_and_rerandomisation() -> None:
    from splitlab.specs import load_spec, plan_update

    base = load_spec("key: p\nvariants: [{key: a}, {key: b}]\n")
    assert plan_update(None, base, has_run=False).action == "create"
    assert plan_update(base, base, has_run=True).action == "unchanged"
    ramp = base.model_copy(update={"coverage": 0.5})
    plan = plan_update(base, ramp, has_run=True)
    assert (plan.action, [c.path for c in plan.changes], plan.rerandomized) == ("update", ["coverage"], False)
    renamed = load_spec("key: p\nvariants: [{key: a}, {key: c}]\n")
    with pytest.raises(ValueError, match="rerandomize"):
        plan_update(base, renamed, has_run=True)
    forced = plan_update(base, renamed, has_run=True, rerandomize=True)
    assert forced.rerandomized
    assert forced.spec.bucket_version == 2
