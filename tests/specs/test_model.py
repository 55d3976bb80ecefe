"""Every validation rule of the spec and metric models, each failing with the field's path in the message."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from pydantic import ValidationError

from splitlab.assignment import config
from splitlab.bandits import CONTEXTUAL_POLICIES, POLICIES, ProductionSettings
from splitlab.specs import (
    Bandit,
    DecisionOptions,
    ExperimentSpec,
    MetricDefinition,
    check_metric_references,
    metric_references,
)
from splitlab.specs.model import (
    ALLOCATION_METHODS,
    CORRECTIONS,
    HASH_VERSIONS,
    WEIGHT_TOLERANCE,
    Condition,
)


def _spec(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "key": "exp-1",
        "hypothesis": {"primary_metric": "conversion", "direction": "increase", "mde": 0.05},
        "variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}],
        "metrics": {"goal": ["conversion"]},
    }
    base.update(changes)
    return base


def _invalid(data: dict[str, Any], *patterns: str, context: dict[str, Any] | None = None) -> str:
    """Validate ``data``, expect failure, and check every pattern (regex, DOTALL) against the message."""
    with pytest.raises(ValidationError) as info:
        ExperimentSpec.model_validate(data, context=context)
    text = str(info.value)
    for pattern in patterns:
        assert re.search(pattern, text, flags=re.DOTALL), f"{pattern!r} not in {text}"
    return text


def test_minimal_spec_fills_defaults() -> None:
    spec = ExperimentSpec(key="exp", variants=[{"key": "a", "weight": 0.25}, {"key": "b", "weight": 0.75}])
    assert (spec.name, spec.seed, spec.unit, spec.coverage, spec.hash_version, spec.bucket_version) == (
        "exp",
        "exp",
        "user_id",
        1.0,
        "1",
        1,
    )
    assert spec.allocation.method == "hash"
    assert spec.analysis.method == "frequentist"
    assert spec.analysis.correction == "holm"
    assert spec.alpha == 0.05


def test_explicit_seed_and_name_are_kept() -> None:
    spec = ExperimentSpec.model_validate(_spec(seed="s-2024", name="Exp one"))
    assert (spec.seed, spec.name) == ("s-2024", "Exp one")


def test_equal_split_when_no_weight_is_given() -> None:
    spec = ExperimentSpec(key="x", variants=[{"key": "a"}, {"key": "b"}, {"key": "c"}])
    assert [v.weight for v in spec.variants] == [1 / 3] * 3


def test_integer_hash_version_is_read_as_string() -> None:
    assert ExperimentSpec.model_validate(_spec(hash_version=1)).hash_version == "1"


def test_spec_is_frozen() -> None:
    spec = ExperimentSpec.model_validate(_spec())
    with pytest.raises(ValidationError, match="frozen"):
        spec.coverage = 0.5  # type: ignore[misc]


def test_choice_lists_match_the_assignment_and_stats_modules() -> None:
    from splitlab.stats.multiplicity import METHODS

    assert HASH_VERSIONS == config.HASH_VERSIONS
    assert ALLOCATION_METHODS == config.ALLOCATIONS
    assert CORRECTIONS == METHODS


# --- unknown keys -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "path"),
    [
        (_spec(colour="blue"), r"colour\n\s+Extra inputs are not permitted"),
        (
            _spec(variants=[{"key": "a", "weight": 0.5, "wieght": 1}, {"key": "b", "weight": 0.5}]),
            r"variants\.0\.wieght",
        ),
        (
            _spec(hypothesis={"primary_metric": "conversion", "direction": "increase", "mde": 0.1, "mdee": 1}),
            r"hypothesis\.mdee",
        ),
        (
            _spec(targeting={"include": [{"attribute": "a", "operator": "eq", "value": 1, "op": "x"}]}),
            r"targeting\.include\.0\.op\n",
        ),
        (_spec(schedule={"min_days": 3}), r"schedule\.min_days"),
        (
            _spec(metrics={"goal": ["conversion"], "guardrails": [{"metric": "m", "max_degradation": 0.1, "x": 1}]}),
            r"metrics\.guardrails\.0\.x",
        ),
    ],
)
def test_unknown_keys_are_refused_with_their_path(data: dict[str, Any], path: str) -> None:
    _invalid(data, path, "Extra inputs are not permitted")


# --- key, unit, variants ------------------------------------------------------------------


@pytest.mark.parametrize("key", ["Free-Shipping", "free shipping", "-lead", "", "a/b"])
def test_key_must_be_a_slug(key: str) -> None:
    _invalid(_spec(key=key), r"^.*\nkey\n", "slug" if key else "slug|at least")


@pytest.mark.parametrize("key", ["a", "free-shipping_2", "0day"])
def test_slug_keys_are_accepted(key: str) -> None:
    assert ExperimentSpec.model_validate(_spec(key=key)).key == key


def test_unit_must_not_be_empty() -> None:
    _invalid(_spec(unit=""), r"\nunit\n")


def test_weights_must_sum_to_one_and_the_sum_is_shown() -> None:
    variants = [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.4}]
    _invalid(_spec(variants=variants), r"\nvariants\n", r"weights sum to 0\.9, must sum to 1 \(tolerance 1e-06\)")


def test_weight_tolerance_is_one_in_a_million() -> None:
    inside = [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5 + 0.9 * WEIGHT_TOLERANCE}]
    assert ExperimentSpec.model_validate(_spec(variants=inside))
    outside = [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5 + 1.1 * WEIGHT_TOLERANCE}]
    _invalid(_spec(variants=outside), r"variants.*sum to 1\.0000011")


def test_negative_and_non_numeric_weights_name_the_variant() -> None:
    _invalid(_spec(variants=[{"key": "a", "weight": -0.5}, {"key": "b", "weight": 1.5}]), r"variants\.0\.weight")
    _invalid(_spec(variants=[{"key": "a", "weight": "0.5"}, {"key": "b", "weight": 0.5}]), r"variants\.0\.weight")


def test_partial_weights_name_the_variant_missing_one() -> None:
    _invalid(_spec(variants=[{"key": "a", "weight": 1.0}, {"key": "b"}]), r"variants\.1\.weight\n\s+Field required")


def test_duplicate_variant_keys_are_refused() -> None:
    variants = [{"key": "a", "weight": 0.4}, {"key": "b", "weight": 0.3}, {"key": "a", "weight": 0.3}]
    _invalid(_spec(variants=variants), r"\nvariants\n", "duplicate variant key.*'a'")


@pytest.mark.parametrize("variants", [[], [{"key": "only", "weight": 1.0}]])
def test_fewer_than_two_variants_are_refused(variants: list[dict[str, Any]]) -> None:
    _invalid(_spec(variants=variants), r"\nvariants\n", f"at least 2 variants are needed, got {len(variants)}")


def test_variants_are_required() -> None:
    _invalid({"key": "x"}, r"\nvariants\n\s+Field required")


def test_variant_key_format() -> None:
    _invalid(_spec(variants=[{"key": "a b", "weight": 0.5}, {"key": "b", "weight": 0.5}]), r"variants\.0\.key")


def test_payload_takes_any_json() -> None:
    payload = {"model": "two-tower", "version": "1.4.0", "layers": [256, 128], "beta": 0.5, "on": True, "x": None}
    spec = ExperimentSpec.model_validate(
        _spec(variants=[{"key": "a", "weight": 0.5, "payload": payload}, {"key": "b", "weight": 0.5, "payload": 3}])
    )
    assert spec.variants[0].payload == payload
    assert spec.variants[1].payload == 3


def test_payload_must_be_json() -> None:
    _invalid(
        _spec(variants=[{"key": "a", "weight": 0.5, "payload": {1, 2}}, {"key": "b", "weight": 0.5}]),
        r"variants\.0\.payload",
    )


@pytest.mark.parametrize("coverage", [-0.1, 1.01, float("nan")])
def test_coverage_in_unit_interval(coverage: float) -> None:
    _invalid(_spec(coverage=coverage), r"\ncoverage\n")


def test_coverage_bounds_are_allowed() -> None:
    assert ExperimentSpec.model_validate(_spec(coverage=0)).coverage == 0
    assert ExperimentSpec.model_validate(_spec(coverage=1)).coverage == 1


# --- hypothesis ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("mde", 0), ("mde", -0.1), ("alpha", 1.5), ("alpha", 0), ("power", 1), ("direction", "up"), ("mde_type", "pct")],
)
def test_hypothesis_fields(field: str, value: object) -> None:
    hypothesis = {"primary_metric": "conversion", "direction": "increase", "mde": 0.05, field: value}
    _invalid(_spec(hypothesis=hypothesis), rf"hypothesis\.{field}\n")


def test_relative_decrease_of_100_percent_is_refused() -> None:
    hypothesis = {"primary_metric": "conversion", "direction": "decrease", "mde": 1.0}
    _invalid(_spec(hypothesis=hypothesis), r"\nhypothesis\n", r"mde == 1\.0, must be < 1 for a relative decrease")
    hypothesis["mde_type"] = "absolute"
    assert ExperimentSpec.model_validate(_spec(hypothesis=hypothesis))


def test_relative_mde_needs_a_non_zero_baseline() -> None:
    hypothesis = {"primary_metric": "conversion", "direction": "increase", "mde": 0.1, "baseline": 0}
    _invalid(_spec(hypothesis=hypothesis), r"\nhypothesis\n", "baseline == 0")


def test_primary_metric_must_be_a_goal_metric() -> None:
    _invalid(
        _spec(metrics={"goal": ["revenue"], "secondary": ["conversion"]}),
        r"hypothesis\.primary_metric == 'conversion' is not in metrics\.goal \['revenue'\]",
    )
    _invalid(_spec(metrics={}), r"hypothesis\.primary_metric == 'conversion' is not in metrics\.goal \[\]")


def test_spec_without_hypothesis_needs_no_goal() -> None:
    data = _spec(metrics={})
    del data["hypothesis"]
    assert ExperimentSpec.model_validate(data).hypothesis is None


# --- targeting ----------------------------------------------------------------------------


def _condition(operator: str, value: object = None, **extra: object) -> dict[str, Any]:
    return _spec(targeting={"include": [{"attribute": "attr", "operator": operator, "value": value, **extra}]})


@pytest.mark.parametrize(
    ("operator", "value"),
    [
        ("eq", "vip"),
        ("ne", 3),
        ("eq", True),
        ("in", ["US", "CA"]),
        ("not_in", [1, 2]),
        ("gt", 10),
        ("lte", 2.5),
        ("gte", "2024-01-01"),
        ("regex", r"^.+@shop\.com$"),
        ("version_gte", "1.10.2"),
        ("version_lt", "v2.0.0-beta.1"),
        ("version_eq", "4"),
        ("exists", True),
        ("exists", False),
    ],
)
def test_valid_conditions(operator: str, value: object) -> None:
    spec = ExperimentSpec.model_validate(_condition(operator, value))
    assert spec.targeting.include[0] == Condition(attribute="attr", operator=operator, value=value)


def test_exists_without_value_means_true() -> None:
    data = _spec(targeting={"exclude": [{"attribute": "is_bot", "operator": "exists"}]})
    assert ExperimentSpec.model_validate(data).targeting.exclude[0].value is True


def test_every_assignment_operator_is_accepted_and_nothing_else() -> None:
    samples = {"in": ["a"], "not_in": ["a"], "regex": "a", "exists": True}
    for operator in config.OPERATORS:
        value = samples.get(operator, "1.0" if operator.startswith("version_") else 1)
        assert ExperimentSpec.model_validate(_condition(operator, value))
    _invalid(
        _condition("contains", "x"), r"targeting\.include\.0\.operator\n", "operator == 'contains', must be one of"
    )


@pytest.mark.parametrize(
    ("operator", "value", "message"),
    [
        ("eq", ["a"], "must be a string, number or boolean"),
        ("eq", None, "must be a string, number or boolean"),
        ("in", "US", "must be a non-empty list"),
        ("in", [], "must be a non-empty list"),
        ("not_in", [["a"]], "must be a non-empty list"),
        ("gt", True, "must be a number or a string"),
        ("lt", [1], "must be a number or a string"),
        ("regex", "([a-z", "is not a valid regular expression"),
        ("regex", 5, "must be a regular expression string"),
        ("version_gte", 1.1, "must be a quoted version string"),
        ("version_lt", "1.x", "is not a version string"),
        ("version_eq", "", "is not a version string"),
        ("version_eq", "1.0-rc..1", "is not a version string"),
        ("exists", "yes", "must be true or false"),
    ],
)
def test_invalid_condition_values_name_the_condition(operator: str, value: object, message: str) -> None:
    _invalid(_condition(operator, value), r"targeting\.include\.0\n", "value == ", re.escape(message))


def test_exclude_conditions_are_checked_too() -> None:
    data = _spec(
        targeting={
            "exclude": [
                {"attribute": "a", "operator": "eq", "value": 1},
                {"attribute": "", "operator": "eq", "value": 1},
            ]
        }
    )
    _invalid(data, r"targeting\.exclude\.1\.attribute\n")


# --- namespace and holdout ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("range_", "message"),
    [
        ([0.5, 0.5], r"range == \[0\.5, 0\.5\) is empty or reversed"),
        ([0.6, 0.2], r"range == \[0\.6, 0\.2\) is empty or reversed"),
        ([-0.1, 0.5], r"must lie within \[0, 1\]"),
        ([0.5, 1.2], r"must lie within \[0, 1\]"),
    ],
)
def test_namespace_range(range_: list[float], message: str) -> None:
    _invalid(_spec(namespace={"name": "checkout", "range": range_}), r"namespace\.range\n", message)


def test_namespace_range_needs_two_numbers() -> None:
    _invalid(_spec(namespace={"name": "checkout", "range": [0.5]}), r"namespace\.range")
    _invalid(_spec(namespace={"name": "checkout", "range": ["0", 1]}), r"namespace\.range\.0")


def test_full_namespace_is_allowed() -> None:
    spec = ExperimentSpec.model_validate(_spec(namespace={"name": "n", "range": [0, 1]}))
    assert spec.namespace is not None
    assert spec.namespace.range == (0, 1)


@pytest.mark.parametrize("share", [0, 1, -0.1])
def test_holdout_share(share: float) -> None:
    _invalid(_spec(holdout={"seed": "h", "share": share}), r"holdout\.share\n")


def test_holdout_needs_a_seed() -> None:
    _invalid(_spec(holdout={"share": 0.05}), r"holdout\.seed\n\s+Field required")


# --- allocation, hashing ------------------------------------------------------------------


def test_attribute_allocation_needs_attributes() -> None:
    _invalid(_spec(allocation={"method": "attributes"}), r"\nallocation\n", "attributes is required")
    spec = ExperimentSpec.model_validate(_spec(allocation={"method": "attributes", "attributes": ["country", "tier"]}))
    assert spec.allocation.attributes == ("country", "tier")


def test_attributes_only_with_attribute_allocation() -> None:
    _invalid(
        _spec(allocation={"method": "hash", "attributes": ["x"]}),
        r"\nallocation\n",
        "attributes is only used with method 'attributes'",
    )


def test_duplicate_hash_attributes() -> None:
    _invalid(
        _spec(allocation={"method": "attributes", "attributes": ["x", "x"]}), r"\nallocation\n", "'x' more than once"
    )


def _errors(data: dict[str, Any]) -> dict[str, str]:
    """Validate ``data``, expect failure: message by dotted field path."""
    with pytest.raises(ValidationError) as info:
        ExperimentSpec.model_validate(data)
    return {".".join(map(str, e["loc"])): e["msg"] for e in info.value.errors()}


def _bandit(variants: int = 2, **bandit: Any) -> dict[str, Any]:
    return _spec(
        variants=[{"key": f"v{i}"} for i in range(variants)],
        allocation={"method": "bandit", "bandit": {"policy": "thompson", **bandit}},
    )


def test_bandit_needs_a_policy() -> None:
    _invalid(_spec(allocation={"method": "bandit"}), r"\nallocation\n", r"bandit is required when method is 'bandit'")
    assert _errors(_spec(allocation={"method": "bandit", "bandit": {"arms": 3}})) == {
        "allocation.bandit.policy": "Field required",
        "allocation.bandit.arms": "Extra inputs are not permitted",
    }


def test_bandit_settings_are_typed() -> None:
    spec = ExperimentSpec.model_validate(_bandit(burn_in=1000, floor=0, update_every=50, options={"prior": [2, 3]}))
    bandit = spec.allocation.bandit
    assert bandit is not None
    assert (bandit.policy, bandit.burn_in, bandit.floor, bandit.update_every, bandit.seed) == (
        "thompson",
        1000,
        0.0,
        50,
        0,
    )
    assert bandit.production_options() == {"burn_in": 1000, "floor": 0.0}
    assert set(Bandit.model_fields) - {
        "policy",
        "context",
        "options",
        "metric",
        "update_minutes",
        "update_every",
        "seed",
        "reward_range",
    } == {f.name for f in dataclasses.fields(ProductionSettings)}


@pytest.mark.parametrize(
    ("bandit", "field", "message"),
    [
        ({"colour": "red"}, "allocation.bandit.colour", "Extra inputs are not permitted"),
        ({"policy": "linucb"}, "allocation.bandit", "policy 'linucb' is contextual: context must name the unit"),
        ({"context": ["age"]}, "allocation.bandit", r"context == \['age'\], only a contextual policy"),
        ({"policy": "linucb", "context": ["x", "x"]}, "allocation.bandit", "names an attribute more than once"),
        (
            {"policy": "linear-thompson", "context": ["x"], "options": {"scale": -1}},
            "allocation.bandit.options.scale",
            "scale == -1",
        ),
        ({"policy": "ucb"}, "allocation.bandit.policy", r"policy == 'ucb', must be one of thompson, "),
        ({"update_minutes": 5, "update_every": 10}, "allocation.bandit", "both set, give one of them"),
        ({"update_every": 0}, "allocation.bandit.update_every", "greater than or equal to 1"),
        ({"update_every": 1.5}, "allocation.bandit.update_every", "valid integer"),
        ({"update_minutes": -1}, "allocation.bandit.update_minutes", "greater than 0"),
        ({"seed": -3}, "allocation.bandit.seed", "greater than or equal to 0"),
        ({"metric": ""}, "allocation.bandit.metric", "at least 1 character"),
        ({"floor": 5}, "allocation.bandit.floor", r"floor == 5.0, must be in \[0, 1\]"),
        ({"burn_in": -1}, "allocation.bandit.burn_in", "burn_in == -1, must be an integer >= 0"),
        ({"stop_p_best": 1}, "allocation.bandit.stop_p_best", "stop_p_best == 1.0, must be in"),
        ({"stop_expected_loss": -0.1}, "allocation.bandit.stop_expected_loss", "stop_expected_loss == -0.1"),
        ({"draws": 99}, "allocation.bandit.draws", "draws == 99, must be an integer >= 100"),
        ({"statistics": "mean"}, "allocation.bandit.statistics", "statistics == 'mean', must be one of within-period"),
        ({"options": [1]}, "allocation.bandit.options", "valid dictionary"),
        ({"options": {"alpha": 1}}, "allocation.bandit.options.alpha", "unexpected keyword argument 'alpha'"),
        ({"options": {"prior": [1, -1]}}, "allocation.bandit.options.prior", r"prior\[1\] == -1"),
        ({"options": {"prior": "flat"}}, "allocation.bandit.options.prior", "prior == 'flat', must be a pair"),
        (
            {"policy": "top-two-thompson", "options": {"likelihood": "gaussian", "noise_sd": -1}},
            "allocation.bandit.options.noise_sd",
            "noise_sd == -1",
        ),
        (
            {"policy": "epsilon-greedy", "options": {"epsilon": "x"}},
            "allocation.bandit.options.epsilon",
            "must be a number",
        ),
    ],
)
def test_bad_bandit_settings_name_the_field(bandit: dict[str, Any], field: str, message: str) -> None:
    errors = _errors(_bandit(**bandit))
    assert list(errors) == [field]
    assert re.search(message, errors[field]), errors[field]


def test_bandit_floor_fits_the_variants() -> None:
    assert _errors(_bandit(3, floor=0.5)) == {
        "allocation.bandit.floor": (
            "Value error, floor == 0.5, must be <= 1/3 for 3 variants (every variant keeps at least the floor)"
        )
    }
    ExperimentSpec.model_validate(_bandit(3, floor=1 / 3))
    # The default floor (0.01) leaves room for 100 variants.
    ExperimentSpec.model_validate(_bandit(100))
    assert "floor == 0.01 (the default), must be <= 1/101" in _errors(_bandit(101))["allocation.bandit.floor"]


def test_bandit_policies_are_those_the_store_runs() -> None:
    for policy in POLICIES:
        ExperimentSpec.model_validate(_bandit(policy=policy))
    for policy in CONTEXTUAL_POLICIES:
        assert "allocation.bandit" in _errors(_bandit(policy=policy))  # no context named
        ExperimentSpec.model_validate(_bandit(policy=policy, context=["age", "tenure"]))


def test_bandit_options_only_with_bandit_allocation() -> None:
    _invalid(
        _spec(allocation={"method": "random", "bandit": {"policy": "thompson"}}), "bandit is only used with method"
    )


def test_unknown_allocation_method() -> None:
    _invalid(_spec(allocation={"method": "round-robin"}), r"allocation\.method\n")


@pytest.mark.parametrize("version", ["2", "growthbook-v1", 2])
def test_hash_version(version: object) -> None:
    _invalid(_spec(hash_version=version), r"\nhash_version\n")


def test_growthbook_hashes_one_attribute() -> None:
    _invalid(
        _spec(hash_version="growthbook-v2", allocation={"method": "attributes", "attributes": ["a", "b"]}),
        r"allocation\.attributes has 2 attributes, but hash_version 'growthbook-v2'",
    )
    one = _spec(hash_version="growthbook-v2", allocation={"method": "attributes", "attributes": ["device_id"]})
    assert ExperimentSpec.model_validate(one).hash_version == "growthbook-v2"


@pytest.mark.parametrize("version", [0, -1, 1.5, True])
def test_bucket_version(version: object) -> None:
    _invalid(_spec(bucket_version=version), r"\nbucket_version\n")


def test_stratify_by_unique() -> None:
    _invalid(_spec(stratify_by=["device", "device"]), r"\nstratify_by\n", "'device' more than once")


# --- metrics, analysis, schedule ----------------------------------------------------------


def test_duplicate_metrics_in_one_list() -> None:
    _invalid(_spec(metrics={"goal": ["conversion", "conversion"]}), r"\nmetrics\n", r"goal lists 'conversion'")
    guardrails = [{"metric": "aov", "max_degradation": 0.05}, {"metric": "aov", "max_degradation": 0.1}]
    _invalid(_spec(metrics={"goal": ["conversion"], "guardrails": guardrails}), r"guardrails lists 'aov'")


def test_metric_in_goal_and_secondary() -> None:
    _invalid(_spec(metrics={"goal": ["conversion"], "secondary": ["conversion"]}), "in both goal and secondary")


def test_guardrail_degradation_not_negative() -> None:
    data = _spec(metrics={"goal": ["conversion"], "guardrails": [{"metric": "aov", "max_degradation": -0.05}]})
    _invalid(data, r"metrics\.guardrails\.0\.max_degradation\n")


def test_metric_names_are_slugs() -> None:
    _invalid(_spec(metrics={"goal": ["conversion", "Revenue Per User"]}), r"metrics\.goal\.1\n")


def test_sequential_analysis_needs_its_method() -> None:
    _invalid(_spec(analysis={"method": "sequential"}), r"\nanalysis\n", "sequential is required")
    _invalid(_spec(analysis={"method": "bayesian", "sequential": "msprt"}), "sequential is only used with")
    _invalid(_spec(analysis={"method": "sequential", "sequential": "sprt"}), r"analysis\.sequential\n")
    spec = ExperimentSpec.model_validate(_spec(analysis={"method": "sequential", "sequential": "gst-pocock"}))
    assert spec.analysis.sequential == "gst-pocock"


def test_correction_and_alpha() -> None:
    _invalid(_spec(analysis={"correction": "sidak"}), r"analysis\.correction\n")
    _invalid(_spec(analysis={"alpha": 1.5}), r"analysis\.alpha\n")


def test_analysis_alpha_must_agree_with_the_hypothesis() -> None:
    _invalid(_spec(analysis={"alpha": 0.1}), r"analysis\.alpha == 0\.1 differs from hypothesis\.alpha == 0\.05")
    spec = ExperimentSpec.model_validate(_spec(analysis={"alpha": 0.05}))
    assert spec.alpha == 0.05
    no_hypothesis = _spec(analysis={"alpha": 0.1})
    del no_hypothesis["hypothesis"]
    assert ExperimentSpec.model_validate(no_hypothesis).alpha == 0.1


def test_decision_options_are_typed() -> None:
    assert _errors(_spec(analysis={"decision": {"alhpa": 0.01, "min_power_for_no_launch": 1.2}})) == {
        "analysis.decision.alhpa": "Extra inputs are not permitted",
        "analysis.decision.min_power_for_no_launch": "Input should be less than 1",
    }
    spec = ExperimentSpec.model_validate(_spec(analysis={"decision": {"min_power_for_no_launch": 0.9}}))
    assert spec.analysis.decision.min_power_for_no_launch == 0.9
    assert spec.analysis.decision.extend_if_days_left_below == 30


def test_decision_options_match_the_decision_engine() -> None:
    from splitlab.analysis.decision import DecisionRules

    rules = {f.name: f.default for f in dataclasses.fields(DecisionRules)}
    # None: decided by analysis.method; the engine's own default is the frequentist one.
    assert {**DecisionOptions().model_dump(), "significance": "p_value"} == rules


# Values that fall on every side of every bound of DecisionRules, and of the wrong types.
_PROBES = (None, True, "x", "p_value", "chance_to_win", -1, 0, 0.3, 0.5, 0.50001, 0.9, 1, 1.5, 45.0)


@pytest.mark.parametrize("field", list(DecisionOptions.model_fields))
def test_decision_options_have_the_engines_bounds(field: str) -> None:
    from splitlab.analysis.decision import DecisionRules

    for value in _PROBES:
        try:
            DecisionRules(**{field: value})  # type: ignore[arg-type]
        except (TypeError, ValueError):
            engine_accepts = False
        else:
            engine_accepts = True
        try:
            DecisionOptions.model_validate({field: value})
        except ValidationError:
            spec_accepts = False
        else:
            spec_accepts = True
        # The spec's significance None defers to analysis.method; the engine wants a name.
        if not (field == "significance" and value is None):
            assert spec_accepts == engine_accepts, (field, value)


def test_schedule_min_after_max() -> None:
    _invalid(
        _spec(schedule={"min_duration_days": 14, "max_duration_days": 7}),
        r"\nschedule\n",
        "min_duration_days == 14, must be <= max_duration_days == 7",
    )
    spec = ExperimentSpec.model_validate(_spec(schedule={"min_duration_days": 7, "max_duration_days": 7}))
    assert spec.schedule.max_duration_days == 7


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        ({"min_sample_size": 0}, "min_sample_size"),
        ({"min_duration_days": -1}, "min_duration_days"),
        ({"max_duration_days": 0}, "max_duration_days"),
        ({"min_sample_size": 10.5}, "min_sample_size"),
    ],
)
def test_schedule_bounds(schedule: dict[str, Any], field: str) -> None:
    _invalid(_spec(schedule=schedule), rf"schedule\.{field}\n")


# --- metric references --------------------------------------------------------------------


def test_metric_references_in_order() -> None:
    spec = ExperimentSpec.model_validate(
        _spec(
            metrics={
                "goal": ["conversion"],
                "secondary": ["revenue"],
                "guardrails": [{"metric": "aov", "max_degradation": 0.05}],
            }
        )
    )
    assert metric_references(spec) == [
        ("metrics.goal.0", "conversion"),
        ("metrics.secondary.0", "revenue"),
        ("metrics.guardrails.0.metric", "aov"),
    ]


def test_undefined_metrics_are_refused_against_a_catalog() -> None:
    data = _spec(metrics={"goal": ["conversion"], "guardrails": [{"metric": "aov", "max_degradation": 0.05}]})
    _invalid(
        data, r"metrics\.guardrails\.0\.metric: 'aov' is not a defined metric", context={"metrics": {"conversion"}}
    )
    assert ExperimentSpec.model_validate(data, context={"metrics": {"conversion", "aov"}})
    assert ExperimentSpec.model_validate(data)  # no catalog: not checked
    spec = ExperimentSpec.model_validate(data)
    with pytest.raises(
        ValueError,
        match=r"metrics\.goal\.0: 'conversion' is not a defined metric \(defined: none\); "
        r"metrics\.guardrails\.0\.metric: 'aov' is not a defined metric \(defined: none\)",
    ):
        check_metric_references(spec, set())


# --- metric definitions -------------------------------------------------------------------


def _metric(**fields: Any) -> dict[str, Any]:
    return {"name": "m", **fields}


def _invalid_metric(data: dict[str, Any], *patterns: str) -> None:
    with pytest.raises(ValidationError) as info:
        MetricDefinition.model_validate(data)
    for pattern in patterns:
        assert re.search(pattern, str(info.value), flags=re.DOTALL), f"{pattern!r} not in {info.value}"


@pytest.mark.parametrize(
    "data",
    [
        _metric(kind="binary", event="purchase", window_days=7, covariate={"pre_window_days": 14}),
        _metric(kind="sum", event="purchase", capping={"type": "percentile", "upper": 0.99}, direction="higher"),
        _metric(
            kind="mean", event="latency", capping={"type": "absolute", "lower": 0, "upper": 5000}, direction="lower"
        ),
        _metric(kind="count", event="error", direction="lower", window_days=0.5),
        _metric(
            kind="ratio",
            numerator={"event": "purchase"},
            denominator={"event": "purchase", "aggregation": "count"},
            capping={"type": "absolute", "upper": 1000},
        ),
        _metric(kind="quantile", event="purchase", quantile=0.9),
    ],
)
def test_valid_metric_definitions(data: dict[str, Any]) -> None:
    metric = MetricDefinition.model_validate(data)
    assert metric.kind == data["kind"]
    assert metric.higher_is_better == (data.get("direction", "higher") == "higher")


@pytest.mark.parametrize(
    ("data", "patterns"),
    [
        (_metric(kind="binary"), ["event is required for kind 'binary'"]),
        (_metric(kind="percent", event="e"), [r"\nkind\n"]),
        (_metric(kind="ratio", numerator={"event": "a"}), ["denominator is required for kind 'ratio'"]),
        (_metric(kind="ratio", denominator={"event": "a"}), ["numerator is required for kind 'ratio'"]),
        (
            _metric(kind="ratio", event="x", numerator={"event": "a"}, denominator={"event": "b"}),
            ["event is not used by kind 'ratio'"],
        ),
        (_metric(kind="sum", event="x", numerator={"event": "a"}), ["numerator is only used by kind 'ratio'"]),
        (
            _metric(kind="ratio", numerator={"event": "a", "aggregation": "max"}, denominator={"event": "b"}),
            [r"numerator\.aggregation\n"],
        ),
        (_metric(kind="ratio", numerator={"event": ""}, denominator={"event": "b"}), [r"numerator\.event\n"]),
        (_metric(kind="quantile", event="x"), ["quantile is required for kind 'quantile'"]),
        (_metric(kind="quantile", event="x", quantile=1.0), [r"\nquantile\n"]),
        (_metric(kind="mean", event="x", quantile=0.5), ["quantile is only used by kind 'quantile'"]),
        (_metric(kind="binary", event="x", window_days=0), [r"\nwindow_days\n"]),
        (_metric(kind="sum", event="x", direction="up"), [r"\ndirection\n"]),
        (_metric(kind="sum", event="x", capping={"type": "absolute"}), [r"\ncapping\n", "lower or upper is required"]),
        (
            _metric(kind="sum", event="x", capping={"type": "percentile", "upper": 99}),
            [r"\ncapping\n", r"upper == 99\.0, must be in \(0, 1\)"],
        ),
        (
            _metric(kind="sum", event="x", capping={"type": "absolute", "lower": 10, "upper": 5}),
            [r"lower == 10\.0, must be < upper == 5\.0"],
        ),
        (_metric(kind="sum", event="x", capping={"type": "winsor", "upper": 5}), [r"capping\.type\n"]),
        (
            _metric(kind="binary", event="x", capping={"type": "absolute", "upper": 1}),
            ["capping does not apply to kind 'binary'"],
        ),
        (
            _metric(kind="quantile", event="x", quantile=0.5, capping={"type": "absolute", "upper": 1}),
            ["capping does not apply to kind 'quantile'"],
        ),
        (
            _metric(kind="quantile", event="x", quantile=0.5, covariate={"pre_window_days": 14}),
            ["covariate .CUPED. is not supported for kind 'quantile'"],
        ),
        (_metric(kind="sum", event="x", covariate={"pre_window_days": 0}), [r"covariate\.pre_window_days\n"]),
        (_metric(kind="sum", event="x", covariate={}), [r"covariate\.pre_window_days\n\s+Field required"]),
        ({"name": "Bad Name", "kind": "sum", "event": "x"}, [r"\nname\n"]),
        (_metric(kind="sum", event="x", window=7), [r"\nwindow\n\s+Extra inputs"]),
    ],
)
def test_invalid_metric_definitions(data: dict[str, Any], patterns: list[str]) -> None:
    _invalid_metric(data, *patterns)
