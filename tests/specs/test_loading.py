"""YAML in and out: single specs, catalogs from folders, errors with file and line, the bundled examples."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from splitlab.specs import (
    Catalog,
    ExperimentSpec,
    MetricDefinition,
    SpecError,
    dump_metrics,
    dump_spec,
    load_catalog,
    load_spec,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

SPEC = """\
key: checkout
owner: team@example.com
hypothesis:
  primary_metric: conversion
  direction: increase
  mde: 0.05
variants:
  - key: control
    weight: 0.5
  - key: one_page
    weight: 0.5
    payload: {flow: one-page}
metrics:
  goal: [conversion]
"""

METRICS = """\
metrics:
  - {name: conversion, kind: binary, event: purchase, window_days: 7}
  - name: aov
    kind: ratio
    numerator: {event: purchase}
    denominator: {event: purchase, aggregation: count}
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _problems(exc: pytest.ExceptionInfo[SpecError]) -> tuple[str, ...]:
    return exc.value.problems


# --- load_spec ----------------------------------------------------------------------------


def test_load_spec_from_text_and_from_path(tmp_path: Path) -> None:
    from_text = load_spec(SPEC)
    path = _write(tmp_path, "checkout.yaml", SPEC)
    assert load_spec(path) == from_text
    assert load_spec(str(path)) == from_text
    assert load_spec(_write(tmp_path, "checkout.yml", SPEC)) == from_text
    assert from_text.variants[1].payload == {"flow": "one-page"}


def test_load_spec_missing_file_raises_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_spec(str(tmp_path / "nope.yaml"))


def test_spec_error_is_a_value_error() -> None:
    assert issubclass(SpecError, ValueError)


def test_validation_error_names_file_line_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.yaml", SPEC.replace("    weight: 0.5\n    payload", "    weight: -0.5\n    payload"))
    with pytest.raises(SpecError, match=re.escape(f"{path}:11: experiment 'checkout': variants.1.weight: ")) as exc:
        load_spec(path)
    assert "(got -0.5)" in str(exc.value)


def test_unknown_field_suggests_the_close_name() -> None:
    text = SPEC.replace("owner:", "onwer:")
    with pytest.raises(
        SpecError, match=r"<yaml text>:2: experiment 'checkout': onwer: unknown field, did you mean 'owner'\?"
    ):
        load_spec(text)


def test_unknown_field_lists_known_fields_when_nothing_is_close() -> None:
    text = SPEC + "schedule: {zzz: 1}\n"
    with pytest.raises(SpecError, match=r"schedule\.zzz: unknown field \(known: min_sample_size, min_duration_days"):
        load_spec(text)


def test_every_problem_is_reported_at_once() -> None:
    text = SPEC.replace("mde: 0.05", "mde: 0").replace("key: checkout", "key: Checkout")
    with pytest.raises(SpecError) as exc:
        load_spec(text)
    problems = _problems(exc)
    assert len(problems) == 2
    assert problems[0].startswith("<yaml text>:1: experiment 'Checkout': key: 'Checkout' is not a slug")
    assert problems[1].startswith(
        "<yaml text>:6: experiment 'Checkout': hypothesis.mde: Input should be greater than 0"
    )
    assert str(exc.value).startswith("2 problems:\n  <yaml text>:1:")


def test_cross_field_errors_point_at_the_named_field() -> None:
    text = SPEC.replace("goal: [conversion]", "goal: [revenue]")
    with pytest.raises(
        SpecError, match=r"<yaml text>:4: experiment 'checkout': hypothesis\.primary_metric == 'conversion'"
    ):
        load_spec(text)


BANDIT = """key: mab
variants: [{key: a}, {key: b}, {key: c}]
allocation:
  method: bandit
  bandit:
    policy: epsilon-greedy
    floor: 0.25
    options: {epsilon: 0.2}
    update_minutes: 30
"""


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("update_minutes: 30", "colour: red", "9: experiment 'mab': allocation.bandit.colour: unknown field (known: "),
        (
            "update_minutes: 30",
            "update_minutes: 0",
            "9: experiment 'mab': allocation.bandit.update_minutes: Input should",
        ),
        (
            "floor: 0.25",
            "floor: 0.5",
            "7: experiment 'mab': allocation.bandit.floor: floor == 0.5, must be <= 1/3 for 3",
        ),
        (
            "epsilon: 0.2",
            "epsilon: 2",
            "8: experiment 'mab': allocation.bandit.options.epsilon: epsilon == 2, must be in",
        ),
    ],
)
def test_bandit_settings_are_checked_when_loaded(old: str, new: str, problem: str) -> None:
    load_spec(BANDIT)
    with pytest.raises(SpecError) as exc:
        load_spec(BANDIT.replace(old, new))
    problems = _problems(exc)
    assert len(problems) == 1
    assert problems[0].startswith(f"<yaml text>:{problem}"), problems


def test_catalog_names_a_bad_bandit_setting(tmp_path: Path) -> None:
    path = _write(tmp_path, "mab.yaml", BANDIT.replace("update_minutes: 30", "colour: red"))
    with pytest.raises(SpecError, match=re.escape(f"{path}:9: experiment 'mab': allocation.bandit.colour: unknown")):
        load_catalog(tmp_path)


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("key: x\nvariants: [{key: a}, {key: b}\n", "<yaml text>:3:1", "expected ',' or ']'"),
        ("key: x\n  variants: 1\n", "<yaml text>:2:11", "mapping values are not allowed here"),
        ("key: x\nvariants:\n- {key: a}\n - {key: b}\n", "<yaml text>:4:2", "expected <block end>"),
        ("key: 'x\n", "<yaml text>:2:1", "found unexpected end of stream"),
    ],
)
def test_yaml_syntax_errors_have_line_and_column(text: str, where: str, problem: str) -> None:
    with pytest.raises(SpecError, match=re.escape(where) + r": invalid YAML: .*" + re.escape(problem)):
        load_spec(text)


def test_yaml_errors_in_a_file_name_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "broken.yaml", "key: x\nvariants: [\n")
    with pytest.raises(SpecError, match=re.escape(str(path)) + r":3:1: invalid YAML"):
        load_spec(path)


def test_duplicate_yaml_keys_are_refused() -> None:
    text = SPEC + "owner: someone-else\n"
    with pytest.raises(SpecError, match=r"<yaml text>:15: duplicate key 'owner' \(first at line 2\)"):
        load_spec(text)


def test_duplicate_keys_in_nested_mappings_are_refused() -> None:
    with pytest.raises(SpecError, match=r":2: duplicate key 'weight' \(first at line 2\)"):
        load_spec("key: x\nvariants: [{key: a, weight: 0.5, weight: 0.7}, {key: b, weight: 0.5}]\n")


def test_anchors_and_merge_keys_work() -> None:
    text = "key: x\nbase: &base {weight: 0.5}\n"
    with pytest.raises(SpecError, match="base: unknown field"):
        load_spec(text + "variants: [{<<: *base, key: a}, {<<: *base, key: b}]\n")
    spec = load_spec("key: x\nvariants:\n- &v {key: a, weight: 0.5}\n- {<<: *v, key: b}\n")
    assert spec.variant_keys == ("a", "b")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- key: a\n- key: b\n", "expected a mapping of experiment fields, got a list; load a list of experiments"),
        ("experiments/free_shipping", "got a string; a path must end in .yaml or .yml"),
        ("", "expected one experiment, found 0 YAML documents"),
        (SPEC + "---\n" + SPEC, "expected one experiment, found 2 YAML documents"),
    ],
)
def test_load_spec_needs_exactly_one_mapping(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        load_spec(text)


def test_load_spec_checks_metric_references_when_given() -> None:
    text = SPEC.replace(
        "goal: [conversion]", "goal: [conversion]\n  guardrails: [{metric: aov, max_degradation: 0.05}]"
    )
    assert load_spec(text).metrics.guardrails[0].metric == "aov"
    with pytest.raises(
        SpecError,
        match=r"<yaml text>:15: experiment 'checkout': metrics\.guardrails\.0\.metric: "
        r"'aov' is not a defined metric \(defined: conversion\)",
    ):
        load_spec(text, metrics={"conversion"})
    with pytest.raises(SpecError, match=r"'aov' is not a defined metric, did you mean 'aov_usd'\?"):
        load_spec(text, metrics={"conversion", "aov_usd"})


def test_version_strings_must_be_quoted_in_yaml() -> None:
    text = SPEC + "targeting:\n  include:\n    - {attribute: app_version, operator: version_gte, value: 1.10}\n"
    with pytest.raises(
        SpecError, match=r":17: experiment 'checkout': targeting\.include\.0: value == 1\.1 must be a quoted"
    ):
        load_spec(text)
    quoted = load_spec(text.replace("value: 1.10", 'value: "1.10"'))
    assert quoted.targeting.include[0].value == "1.10"


# --- dump_spec ----------------------------------------------------------------------------


def _full_spec() -> ExperimentSpec:
    return ExperimentSpec.model_validate(
        {
            "key": "everything",
            "name": "All the fields",
            "description": "multi\nline",
            "owner": "me",
            "hypothesis": {
                "primary_metric": "conversion",
                "direction": "decrease",
                "mde": 0.01,
                "mde_type": "absolute",
                "alpha": 0.01,
                "power": 0.9,
                "baseline": 0.2,
                "statement": "less is more",
            },
            "unit": "device_id",
            "variants": [
                {"key": "a", "weight": 1 / 3, "payload": {"v": "1.10", "n": None, "on": "yes"}},
                {"key": "b", "weight": 1 / 3, "payload": [1, 2.5, "no"]},
                {"key": "c", "weight": 1 / 3},
            ],
            "coverage": 0.25,
            "targeting": {
                "include": [
                    {"attribute": "app", "operator": "version_gte", "value": "1.10"},
                    {"attribute": "country", "operator": "in", "value": ["US", "NO"]},
                ],
                "exclude": [
                    {"attribute": "bot", "operator": "exists"},
                    {"attribute": "email", "operator": "regex", "value": r"@corp\.com$"},
                ],
            },
            "namespace": {"name": "layer", "range": [0.1, 0.35]},
            "holdout": {"seed": "h", "share": 0.05},
            "allocation": {"method": "attributes", "attributes": ["device_id", "country"]},
            "seed": "custom-seed",
            "bucket_version": 3,
            "stratify_by": ["device", "country"],
            "metrics": {
                "goal": ["conversion"],
                "secondary": ["revenue"],
                "guardrails": [{"metric": "aov", "max_degradation": 0.05}],
            },
            "analysis": {
                "method": "sequential",
                "sequential": "msprt",
                "correction": "benjamini-hochberg",
                "alpha": 0.01,
                "decision": {"min_power_for_no_launch": 0.9, "extend_if_days_left_below": None},
            },
            "schedule": {"min_sample_size": 1000, "min_duration_days": 7, "max_duration_days": 30},
        }
    )


_BANDIT = {"policy": "top-two-thompson", "options": {"likelihood": "gaussian", "noise_sd": 2}, "update_every": 500}


@pytest.mark.parametrize(
    "spec",
    [
        _full_spec(),
        ExperimentSpec(key="min", variants=[{"key": "a", "weight": 0.3}, {"key": "b", "weight": 0.7}]),
        ExperimentSpec(
            key="mab", variants=[{"key": "a"}, {"key": "b"}], allocation={"method": "bandit", "bandit": _BANDIT}
        ),
    ],
)
def test_yaml_round_trip(spec: ExperimentSpec) -> None:
    text = dump_spec(spec)
    assert load_spec(text) == spec
    assert dump_spec(load_spec(text)) == text


def test_dump_leaves_defaults_out_and_keeps_yaml_traps_quoted() -> None:
    minimal = ExperimentSpec(key="min", variants=[{"key": "a", "weight": 0.3}, {"key": "b", "weight": 0.7}])
    assert dump_spec(minimal) == "key: min\nvariants:\n- key: a\n  weight: 0.3\n- key: b\n  weight: 0.7\n"
    text = dump_spec(_full_spec())
    assert "value: '1.10'" in text
    assert "'on': 'yes'" in text
    assert "range: [0.1, 0.35]" in text
    assert "&" not in text  # no anchors
    assert yaml.safe_load(text)["seed"] == "custom-seed"


def test_dump_metrics_round_trip(tmp_path: Path) -> None:
    catalog = load_catalog(_write(tmp_path, "metrics.yaml", METRICS))
    again = load_catalog(_write(tmp_path, "again.yaml", dump_metrics(catalog.metrics.values())))
    assert again.metrics == catalog.metrics


# --- load_catalog -------------------------------------------------------------------------


def test_catalog_from_a_folder(tmp_path: Path) -> None:
    _write(tmp_path, "metrics.yaml", METRICS)
    _write(tmp_path, "checkout.yaml", SPEC)
    second = SPEC.replace("key: checkout", "key: pricing")
    third = SPEC.replace("key: checkout", "key: banner")
    _write(
        tmp_path, "more.yml", f"- {second.replace(chr(10), chr(10) + '  ')}\n- {third.replace(chr(10), chr(10) + '  ')}"
    )
    _write(tmp_path, "README.md", "not yaml: [")
    catalog = load_catalog(tmp_path)
    assert isinstance(catalog, Catalog)
    assert list(catalog.experiments) == ["checkout", "pricing", "banner"]
    assert list(catalog.metrics) == ["conversion", "aov"]
    assert catalog.metrics["aov"].numerator is not None
    assert catalog.experiments["pricing"] == load_spec(second)


def test_catalog_file_with_experiments_and_metrics_and_documents(tmp_path: Path) -> None:
    text = (
        "metrics:\n  conversion: {kind: binary, event: purchase}\n  aov:\n    kind: ratio\n"
        "    numerator: {event: purchase}\n    denominator: {event: purchase, aggregation: count}\n"
        "experiments:\n  - {key: a, variants: [{key: x}, {key: y}],\n"
        "     metrics: {guardrails: [{metric: aov, max_degradation: 0.1}]}}\n"
        "---\n" + SPEC
    )
    catalog = load_catalog(_write(tmp_path, "all.yaml", text))
    assert list(catalog.experiments) == ["a", "checkout"]
    assert catalog.metrics["conversion"] == MetricDefinition(name="conversion", kind="binary", event="purchase")


def test_metric_mapping_name_must_match_its_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "m.yaml", "metrics:\n  conversion: {name: conv, kind: binary, event: purchase}\n")
    with pytest.raises(
        SpecError, match=re.escape(f"{path}:2: metric 'conversion': name == 'conv', must match its key")
    ):
        load_catalog(path)


def test_catalog_reports_problems_of_every_file(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", "key: a\nvariants: [{key: x}]\n")
    _write(tmp_path, "b.yaml", "key: b\nvariants: [\n")
    _write(tmp_path, "c.yaml", "metrics:\n  - {name: m, kind: ratio, numerator: {event: e}}\n")
    _write(tmp_path, "d.yaml", "42\n")
    _write(tmp_path, "e.yaml", "metrics: 3\nexperiments: {key: a}\n")
    with pytest.raises(SpecError) as exc:
        load_catalog(tmp_path)
    problems = _problems(exc)
    assert len(problems) == 6, problems
    assert problems[0] == f"{tmp_path / 'a.yaml'}:2: experiment 'a': variants: at least 2 variants are needed, got 1"
    assert problems[1].startswith(f"{tmp_path / 'b.yaml'}:3:1: invalid YAML")
    assert problems[2] == f"{tmp_path / 'c.yaml'}:2: metric 'm': denominator is required for kind 'ratio'"
    assert problems[3].startswith(f"{tmp_path / 'd.yaml'}:1: expected an experiment (a mapping with 'key')")
    assert problems[4] == f"{tmp_path / 'e.yaml'}:2: experiments: expected a list, got a mapping"
    assert problems[5] == f"{tmp_path / 'e.yaml'}:1: metrics: expected a list or a mapping, got int"


def test_duplicate_experiment_keys_across_files(tmp_path: Path) -> None:
    first = _write(tmp_path, "a.yaml", SPEC)
    second = _write(tmp_path, "b.yaml", "# again\n" + SPEC)
    _write(tmp_path, "metrics.yaml", METRICS)
    with pytest.raises(
        SpecError, match=re.escape(f"{second}:2: experiment 'checkout': key already defined at {first}:1")
    ):
        load_catalog(tmp_path)


def test_duplicate_metric_names_across_files(tmp_path: Path) -> None:
    first = _write(tmp_path, "a.yaml", METRICS)
    second = _write(tmp_path, "b.yaml", "metrics:\n- {name: aov, kind: count, event: purchase}\n")
    with pytest.raises(SpecError, match=re.escape(f"{second}:2: metric 'aov': name already defined at {first}:3")):
        load_catalog(tmp_path)


def test_catalog_checks_metric_references_across_files(tmp_path: Path) -> None:
    _write(tmp_path, "metrics.yaml", METRICS)
    text = SPEC.replace("goal: [conversion]", "goal: [conversion]\n  secondary: [aov, revenue]")
    path = _write(tmp_path, "checkout.yaml", text)
    with pytest.raises(SpecError) as exc:
        load_catalog(tmp_path)
    assert _problems(exc) == (
        (
            f"{path}:15: experiment 'checkout': metrics.secondary.1: "
            "'revenue' is not a defined metric (defined: aov, conversion)"
        ),
    )


def test_overlapping_namespace_ranges_name_both_experiments(tmp_path: Path) -> None:
    _write(tmp_path, "metrics.yaml", METRICS)
    first = _write(tmp_path, "a.yaml", SPEC + "namespace: {name: checkout, range: [0, 0.5]}\n")
    second = _write(
        tmp_path,
        "b.yaml",
        SPEC.replace("key: checkout", "key: other") + "namespace:\n  name: checkout\n  range: [0.4, 1]\n",
    )
    _write(
        tmp_path,
        "c.yaml",
        SPEC.replace("key: checkout", "key: elsewhere") + "namespace: {name: search, range: [0.2, 0.6]}\n",
    )
    with pytest.raises(SpecError) as exc:
        load_catalog(tmp_path)
    assert _problems(exc) == (
        (
            f"{second}:17: experiments 'checkout' ({first}:15) and 'other' overlap in namespace 'checkout': "
            "[0.0, 0.5) and [0.4, 1.0); the ranges of one namespace must be disjoint"
        ),
    )


def test_adjacent_namespace_ranges_are_fine(tmp_path: Path) -> None:
    _write(tmp_path, "metrics.yaml", METRICS)
    _write(tmp_path, "a.yaml", SPEC + "namespace: {name: checkout, range: [0, 0.5]}\n")
    _write(
        tmp_path,
        "b.yaml",
        SPEC.replace("key: checkout", "key: other") + "namespace: {name: checkout, range: [0.5, 1]}\n",
    )
    assert len(load_catalog(tmp_path).experiments) == 2


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"no \.yaml or \.yml files"):
        load_catalog(tmp_path)


# --- the bundled examples -----------------------------------------------------------------


def test_examples_load_as_one_catalog() -> None:
    catalog = load_catalog(EXAMPLES)
    assert sorted(catalog.experiments) == ["checkout-one-page", "free-shipping-threshold", "homepage-recommendations"]
    for spec in catalog.experiments.values():
        assert load_spec(dump_spec(spec)) == spec
        for name in [*spec.metrics.goal, *spec.metrics.secondary, *(g.metric for g in spec.metrics.guardrails)]:
            assert name in catalog.metrics


def test_free_shipping_example_matches_the_issue() -> None:
    spec = load_spec(EXAMPLES / "free_shipping.yaml", metrics=load_catalog(EXAMPLES / "metrics.yaml").metrics)
    assert spec.hypothesis is not None
    assert (spec.hypothesis.primary_metric, spec.hypothesis.direction) == ("conversion", "increase")
    assert (spec.hypothesis.mde, spec.hypothesis.mde_type, spec.hypothesis.baseline) == (0.08, "relative", 0.045)
    assert "4.5 %" in spec.description
    assert [(g.metric, g.max_degradation) for g in spec.metrics.guardrails] == [("average_order_value", 0.05)]
    assert [v.payload for v in spec.variants] == [
        {"free_shipping_threshold_usd": 50},
        {"free_shipping_threshold_usd": 35},
    ]
    excluded = {(c.attribute, c.value) for c in spec.targeting.exclude}
    assert excluded == {("account_tier", "vip"), ("is_employee", True)}
    assert spec.stratify_by == ("device",)


def test_recommendation_example_has_three_model_variants() -> None:
    spec = load_spec(EXAMPLES / "recommendations.yaml")
    assert len(spec.variants) == 3
    assert all(isinstance(v.payload, dict) and "version" in v.payload for v in spec.variants)


def test_example_metric_file_defines_the_named_metrics() -> None:
    metrics = load_catalog(EXAMPLES / "metrics.yaml").metrics
    assert {"conversion", "revenue_per_user", "average_order_value", "orders_per_session"} <= set(metrics)
    assert metrics["average_order_value"].kind == "ratio"
    assert metrics["conversion"].kind == "binary"
