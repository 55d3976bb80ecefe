"""deploy/: the Prometheus scrape config, the alert rules and the Grafana dashboard, checked against the real /metrics.

Every metric an expression names must be exported by the app, under the name the text format gives
its series (a counter ``splitlab_x`` is queried as ``splitlab_x_total``, a histogram as
``_bucket``/``_sum``/``_count``), and every label it groups by, matches or shows must exist on them.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus.yml"
ALERT_RULES = DEPLOY / "splitlab-alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "splitlab-dashboard.json"

EXPECTED_ALERTS = {  # alert: its `for`
    "SplitlabGuardrailBreached": "1m",
    "SplitlabMonitorStale": "15m",
    "SplitlabSampleRatioMismatch": "15m",
    "SplitlabHighErrorRate": "5m",
    "SplitlabAssignLatencyHigh": "10m",
    "SplitlabEventBatchesRejected": "10m",
}
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
EXPERIMENT_QUERY = "label_values(splitlab_assignments_total, experiment)"

# The series of a metric family, by type, as PromQL sees them (the parser strips a counter's _total).
SERIES_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count"),
}
TARGET_LABELS = {"job", "instance"}  # added by Prometheus to every scraped series
ROUTER_METRICS = {  # the router's series the dashboard must show, and the labels it must keep apart
    "splitlab_router_requests_total": {"experiment", "variant"},
    "splitlab_router_model_duration_seconds_bucket": {"experiment", "variant"},
    "splitlab_router_model_failures_total": {"experiment", "variant", "reason"},
    "splitlab_router_breaker_state": {"experiment", "variant"},
    "splitlab_router_correct_predictions_total": {"experiment", "variant"},
    "splitlab_router_feedback_total": {"experiment", "variant"},
    "splitlab_router_shadow_calls_total": {"experiment", "variant", "outcome"},
    "splitlab_router_records_dropped_total": {"reason"},
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_METRIC = re.compile(r"(?<![\w:])splitlab_\w+")
_MATCHERS = re.compile(r"\{([^{}]*)\}")
_MATCHER_LABEL = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^()]*)\)")
_LABEL_VALUES = re.compile(r"label_values\(\s*(\w+)\s*,\s*(\w+)\s*\)")
_LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_TEMPLATE_LABEL = re.compile(r"\$labels\.(\w+)")
_DURATION = re.compile(r"^(\d+[smhdwy])+$")


def _alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))
    return [rule for group in rules["groups"] for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _variable_query(variable: dict[str, Any]) -> str:
    query = variable.get("query", "")
    return query["query"] if isinstance(query, dict) else query


def _expressions() -> list[tuple[str, str, set[str]]]:
    """Every PromQL expression of the dashboard and the alert rules: (where, expr, labels it displays)."""
    found = []
    dashboard = _dashboard()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            shown = set(_LEGEND_LABEL.findall(target.get("legendFormat", "")))
            found.append((f"panel {panel['title']!r} target {target['refId']}", target["expr"], shown))
    found.extend(
        (f"variable {variable['name']!r}", _variable_query(variable), set())
        for variable in dashboard["templating"]["list"]
        if variable["type"] == "query"
    )
    for rule in _alert_rules():
        shown = {label for text in rule.get("annotations", {}).values() for label in _TEMPLATE_LABEL.findall(text)}
        found.append((f"alert {rule['alert']}", rule["expr"], shown))
    return found


def _without_strings(expr: str) -> str:
    return _STRING.sub('""', expr)


def _metric_names(expr: str) -> set[str]:
    return set(_METRIC.findall(_without_strings(expr)))


def _grouping_labels(expr: str) -> set[str]:
    return {label.strip() for group in _GROUPING.findall(_without_strings(expr)) for label in group.split(",")} - {""}


def _used_labels(expr: str) -> set[str]:
    """Labels the expression matches on or groups by (``le`` of histogram_quantile included)."""
    bare = _without_strings(expr)
    matched = {label for matchers in _MATCHERS.findall(bare) for label in _MATCHER_LABEL.findall(matchers)}
    from_values = {label for _, label in _LABEL_VALUES.findall(bare)}
    return matched | _grouping_labels(expr) | from_values


class Exported(NamedTuple):
    """What /metrics exports: every series it declares, and the label names seen on those it has samples of."""

    declared: set[str]
    labels: dict[str, set[str]]


def _exported(text: str) -> Exported:
    exported = Exported(set(), {})
    for family in text_string_to_metric_families(text):
        exported.declared.update(family.name + suffix for suffix in SERIES_SUFFIXES.get(family.type, ("",)))
        for sample in family.samples:
            exported.declared.add(sample.name)
            exported.labels.setdefault(sample.name, set()).update(sample.labels)
    return exported


# (a) Prometheus configuration and alert rules


def test_prometheus_scrapes_splitlab_metrics_with_an_admin_key() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["splitlab"]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"] == {"type": "Bearer", "credentials_file": "/etc/prometheus/splitlab-admin-key"}
    assert "bearer_token" not in job
    assert "bearer_token_file" not in job  # the deprecated spelling, not to be mixed with authorization
    assert [t for group in job["static_configs"] for t in group["targets"]] == ["splitlab:8000"]
    assert job.get("scrape_interval", config.get("global", {}).get("scrape_interval")) == "15s"
    assert "splitlab-alerts.yml" in config["rule_files"]
    for rule_file in config["rule_files"]:  # relative to the configuration file
        assert (PROMETHEUS_CONFIG.parent / rule_file).is_file(), rule_file


def test_every_alert_rule_is_complete() -> None:
    groups = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))["groups"]
    assert groups
    assert all(group["name"] and group["rules"] for group in groups)
    rules = _alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), names
    assert all("record" not in rule for rule in rules)
    for rule in rules:
        assert isinstance(rule["expr"], str), rule["alert"]
        assert rule["expr"].strip(), rule["alert"]
        assert _DURATION.match(rule["for"]), (rule["alert"], rule["for"])
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
    durations = {rule["alert"]: rule["for"] for rule in rules}
    assert {name: durations.get(name) for name in EXPECTED_ALERTS} == EXPECTED_ALERTS


def test_the_alerts_watch_what_they_are_named_after() -> None:
    exprs = {rule["alert"]: " ".join(rule["expr"].split()) for rule in _alert_rules()}
    assert _metric_names(exprs["SplitlabSampleRatioMismatch"]) == {"splitlab_srm_flag"}
    assert exprs["SplitlabSampleRatioMismatch"].endswith("== 1")
    assert 'status=~"5.."' in exprs["SplitlabHighErrorRate"]
    assert exprs["SplitlabAssignLatencyHigh"].startswith("histogram_quantile(0.99,")
    assert 'route="/api/v1/assign"' in exprs["SplitlabAssignLatencyHigh"]
    assert exprs["SplitlabAssignLatencyHigh"].endswith("> 0.05")
    assert _metric_names(exprs["SplitlabEventBatchesRejected"]) == {"splitlab_event_batches_rejected_total"}
    assert exprs["SplitlabEventBatchesRejected"].endswith("> 0")


# (b) Grafana dashboard


def test_dashboard_panels_have_ids_titles_positions_and_queries() -> None:
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] == 39
    panels = dashboard["panels"]
    assert panels
    ids = [panel["id"] for panel in panels]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), ids
    for panel in panels:
        assert isinstance(panel["title"], str), panel["id"]
        assert panel["title"].strip(), panel["id"]
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) and grid[k] >= 0 for k in ("h", "w", "x", "y")), panel["title"]
        assert grid["w"] > 0, panel["title"]
        assert grid["h"] > 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert isinstance(target["expr"], str), panel["title"]
            assert target["expr"].strip(), panel["title"]
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]


def test_dashboard_panels_do_not_overlap() -> None:
    def cells(panel: dict[str, Any]) -> set[tuple[int, int]]:
        g = panel["gridPos"]
        return {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}

    for one, two in combinations(_dashboard()["panels"], 2):
        assert not cells(one) & cells(two), (one["title"], two["title"])


def test_dashboard_datasource_and_experiment_variables() -> None:
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    experiment = variables["experiment"]
    assert experiment["type"] == "query"
    assert experiment["datasource"] == DATASOURCE
    assert _variable_query(experiment) == EXPERIMENT_QUERY


def test_dashboard_shows_what_the_operators_need() -> None:
    panels = {panel["title"]: panel for panel in _dashboard()["panels"]}
    exprs = {title: " ".join(t["expr"] for t in panel["targets"]) for title, panel in panels.items()}
    srm_flag = next(p for p in panels.values() if "splitlab_srm_flag" in exprs[p["title"]])
    assert srm_flag["type"] == "stat"
    steps = srm_flag["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert {"color": "red", "value": 1} in steps
    used = {name for text in exprs.values() for name in _metric_names(text)}
    assert used >= {
        "splitlab_request_duration_seconds_count",
        "splitlab_request_duration_seconds_bucket",
        "splitlab_assignments_total",
        "splitlab_exposures_total",
        "splitlab_exposed_units",
        "splitlab_srm_flag",
        "splitlab_srm_p_value",
        "splitlab_events_ingested_total",
        "splitlab_events_duplicate_total",
        "splitlab_event_batches_rejected_total",
        "splitlab_bandit_weight",
    }
    latency = _quantiles(panels, "splitlab_request_duration_seconds_bucket")
    assert {e.split(",")[0] for e in latency} == {"histogram_quantile(0.5", "histogram_quantile(0.99"}
    assert all(_grouping_labels(e) == {"le", "route"} for e in latency)


def test_dashboard_shows_the_model_router_per_variant() -> None:
    panels = {panel["title"]: panel for panel in _dashboard()["panels"]}
    exprs = {title: " ".join(t["expr"] for t in panel["targets"]) for title, panel in panels.items()}
    used = {name for text in exprs.values() for name in _metric_names(text)}
    assert used >= set(ROUTER_METRICS)
    for title, text in exprs.items():
        for name in _metric_names(text) & set(ROUTER_METRICS):
            wanted = ROUTER_METRICS[name]
            assert all(_grouping_labels(e) >= wanted for e in _sub_expressions(text, name)), (title, name)
    latency = _quantiles(panels, "splitlab_router_model_duration_seconds_bucket")
    assert {e.split(",")[0] for e in latency} == {"histogram_quantile(0.5", "histogram_quantile(0.95"}
    assert all(_grouping_labels(e) == {"le", "experiment", "variant"} for e in latency)
    ratios = {title: " ".join(text.split()) for title, text in exprs.items() if " / " in text and "router" in text}
    error_rate = next(t for t in ratios.values() if 'outcome!="ok"' in t)
    assert error_rate.count("splitlab_router_requests_total") == 2  # failed over all
    accuracy = next(t for t in ratios.values() if "splitlab_router_correct_predictions_total" in t)
    assert accuracy.split(" / ")[1].count('event="prediction_correct"') == 1
    breaker = next(p for p in panels.values() if "splitlab_router_breaker_state" in exprs[p["title"]])
    assert breaker["type"] == "stat"
    texts = {
        value: option["text"]
        for m in breaker["fieldConfig"]["defaults"]["mappings"]
        for value, option in m["options"].items()
    }
    assert texts == {"0": "closed", "1": "open", "2": "half-open"}


def _quantiles(panels: dict[str, dict[str, Any]], bucket: str) -> list[str]:
    """The dashboard's histogram_quantile expressions over ``bucket``."""
    return [
        t["expr"]
        for p in panels.values()
        for t in p["targets"]
        if "histogram_quantile" in t["expr"] and bucket in t["expr"]
    ]


def _sub_expressions(text: str, name: str) -> list[str]:
    """The aggregations of ``text`` (split at its top-level divisions) that read metric ``name``."""
    return [part for part in text.split(" / ") if name in _metric_names(part)]


@pytest.mark.parametrize("expr", [pytest.param(expr, id=where) for where, expr, _ in _expressions()])
def test_promql_brackets_balance(expr: str) -> None:
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in _without_strings(expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs:
            assert stack, f"unbalanced {char!r} in {expr!r}"
            assert stack.pop() == pairs[char], f"mismatched {char!r} in {expr!r}"
    assert not stack, f"unclosed {stack} in {expr!r}"


# (c) against the metrics the real app exports


@pytest.fixture
def exported(client: TestClient, running: str, admin: dict[str, str], sdk: dict[str, str]) -> Exported:
    """The series /metrics exports after some traffic, with the label names seen on each."""
    bandit = {
        "key": "cta",
        "variants": [{"key": "a"}, {"key": "b"}],
        "allocation": {"method": "bandit", "bandit": {"policy": "thompson", "draws": 200}},
    }
    assert client.put("/api/v1/experiments/cta", json=bandit, headers=admin).status_code == 200
    assert client.post("/api/v1/experiments/cta/start", headers=admin).status_code == 200
    assigned = client.post("/api/v1/assign", json={"experiment": running, "unit_id": "u1"}, headers=sdk)
    assert assigned.status_code == 200
    variant = assigned.json()["variant"]
    exposure = {"experiment": running, "unit_id": "u1", "variant": variant, "timestamp": datetime.now(UTC).isoformat()}
    assert client.post("/api/v1/exposures", json={"exposures": [exposure]}, headers=sdk).status_code == 200
    event = {"event_id": "e1", "unit_id": "u1", "name": "buy", "timestamp": "2024-05-01T00:00:00Z"}
    assert client.post("/api/v1/events", json={"events": [event, event]}, headers=sdk).status_code == 200
    rejected = client.post("/api/v1/events", json={"events": [{**event, "timestamp": "yesterday"}]}, headers=sdk)
    assert rejected.status_code == 422
    # A monitor's run as `splitlab monitor` leaves it (the gauges read the monitor's state).
    store, now = client.app.state.runtime.store, datetime.now(UTC)  # type: ignore[attr-defined]
    assert store.monitor.claim(key=running, owner="test", now=now, lease_seconds=60) is not None
    summary = {
        "primary": {"conversion/treatment": {"p_value": 0.4, "lift": 0.01}},
        "guardrails": {"latency/treatment": "ok"},
    }
    store.monitor.finish(
        key=running, owner="test", now=now, next_run_at=now, decision="EXTEND_TEST", conditions=["sample_reached"],
        summary=summary,
    )  # fmt: skip
    _route_some_requests(client, admin, sdk)
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    # A full record queue needs a store slower than the router; this is the count it then reports.
    runtime.telemetry.count_router_dropped("queue_full", 1)
    deadline = time.monotonic() + 10
    while True:  # the shadow calls run after their answers were sent
        scraped = client.get("/metrics", headers=admin)
        assert scraped.status_code == 200
        exported = _exported(scraped.text)
        if "splitlab_router_shadow_calls_total" in exported.labels or time.monotonic() > deadline:
            return exported


def _route_some_requests(client: TestClient, admin: dict[str, str], sdk: dict[str, str]) -> None:
    """Route units of an experiment whose second model raises and whose third shadows the control; give feedback."""
    routed = {
        "key": "ranker",
        "variants": [  # in-process models: copy answers the input it is given, sqrt raises on it
            {"key": "control", "weight": 0.5, "payload": {"model": {"python": "copy:copy"}}},
            {"key": "broken", "weight": 0.5, "payload": {"model": {"python": "math:sqrt"}}},
            {"key": "challenger", "weight": 0.0, "payload": {"model": {"python": "copy:copy"}}},
        ],
        "routing": {"shadow": {"variant": "challenger"}},
    }
    assert client.put("/api/v1/experiments/ranker", json=routed, headers=admin).status_code == 200
    assert client.post("/api/v1/experiments/ranker/start", headers=admin).status_code == 200
    served = set()
    for unit in range(20):
        body = {"unit_id": f"r{unit}", "input": {"prediction": 1}}
        answer = client.post("/api/v1/route/ranker/predict", json=body, headers=sdk)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"prediction": 1}
        served.add((answer.headers["x-splitlab-variant"], answer.headers.get("x-splitlab-fallback")))
    assert served == {("control", None), ("broken", "true")}
    feedback = {"request_id": answer.headers["x-splitlab-request-id"], "label": 1}
    assert client.post("/api/v1/route/ranker/feedback", json=feedback, headers=sdk).status_code == 200


def test_every_metric_in_the_promql_is_exported(exported: Exported) -> None:
    missing = {
        name: where
        for where, expr, _ in _expressions()
        for name in _metric_names(expr)
        if name not in exported.declared
    }
    assert not missing, f"not exported by /metrics: {missing}; exported: {sorted(exported.declared)}"


def test_every_label_in_the_promql_exists(exported: Exported) -> None:
    problems = []
    for where, expr, shown in _expressions():
        names = _metric_names(expr)
        if unsampled := names - exported.labels.keys():
            problems.append(f"{where}: no samples of {sorted(unsampled)} to check its labels against")
            continue
        available = TARGET_LABELS.union(*(exported.labels[name] for name in names))
        if unknown := _used_labels(expr) - available:
            problems.append(f"{where}: labels {sorted(unknown)} are on none of {sorted(names)}")
        output = (_grouping_labels(expr) - {"le"}) or available
        if unknown := shown - output:
            problems.append(f"{where}: shows labels {sorted(unknown)}, the query gives {sorted(output)}")
    assert not problems, "\n".join(problems)
