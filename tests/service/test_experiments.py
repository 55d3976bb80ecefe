"""Experiments over HTTP: create-or-update from JSON or YAML with `splitlab apply`'s rules, and the lifecycle."""

from __future__ import annotations

import copy
from typing import Any

from fastapi.testclient import TestClient

URL = "/api/v1/experiments/checkout"


def test_put_creates_then_updates_then_is_unchanged(
    spec: dict[str, Any], client: TestClient, admin: dict[str, str], sdk: dict[str, str]
) -> None:
    created = client.put(URL, json=spec, headers=admin)
    assert created.status_code == 200
    assert created.json()["action"] == "created"
    assert created.json()["experiment"]["version"] == 1
    assert created.json()["experiment"]["status"] == "draft"
    assert created.json()["experiment"]["created_by"].startswith("api-key:ops")
    yaml_body = (
        "key: checkout\nvariants:\n"
        "  - {key: control, weight: 0.2, payload: {color: grey}}\n"
        "  - {key: treatment, weight: 0.8, payload: {color: blue}}\n"
    )
    updated = client.put(URL, content=yaml_body, headers={**admin, "Content-Type": "application/yaml"})
    assert updated.status_code == 200, updated.text
    assert updated.json()["action"] == "updated"
    assert {c["path"] for c in updated.json()["changes"]} == {"variants.control.weight", "variants.treatment.weight"}
    again = client.put(URL, content=yaml_body, headers={**admin, "Content-Type": "application/yaml"})
    assert again.json()["action"] == "unchanged"
    assert again.json()["experiment"]["version"] == 2
    listed = client.get("/api/v1/experiments", headers=admin).json()
    assert [(e["key"], e["version"]) for e in listed] == [("checkout", 2)]
    assert client.get(URL, headers=admin).json()["spec"]["variants"][0]["weight"] == 0.2
    assert client.get("/api/v1/experiments?status=running", headers=admin).json() == []


def test_protected_change_after_start_is_refused_unless_rerandomized(
    spec: dict[str, Any], client: TestClient, running: str, admin: dict[str, str], sdk: dict[str, str]
) -> None:
    renamed = copy.deepcopy(spec)
    renamed["variants"][1]["key"] = "blue"
    refused = client.put(URL, json=renamed, headers=admin)
    assert refused.status_code == 409
    assert "has run" in refused.json()["detail"][0]["message"]
    assert client.get(URL, headers=admin).json()["version"] == 2  # created, started; nothing more
    accepted = client.put(URL, params={"rerandomize": "true"}, json=renamed, headers=admin)
    assert accepted.status_code == 200
    assert accepted.json()["experiment"]["bucket_version"] == 2
    assert running == "checkout"


def test_invalid_specs_name_the_field(
    spec: dict[str, Any], client: TestClient, admin: dict[str, str], sdk: dict[str, str]
) -> None:
    bad = copy.deepcopy(spec)
    bad["variants"][0]["wieght"] = 0.5
    answer = client.put(URL, json=bad, headers=admin)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["field"] == "variants.0.wieght"
    other = client.put("/api/v1/experiments/other", json=spec, headers=admin)
    assert other.status_code == 422
    assert other.json()["detail"] == [
        {"field": "key", "message": "'checkout' differs from the key in the URL, 'other'"}
    ]
    yaml_answer = client.put(
        URL,
        content="key: checkout\nvariants: [{key: a, wieght: 1}]\n",
        headers={**admin, "Content-Type": "text/yaml"},
    )
    assert yaml_answer.status_code == 422
    assert "wieght" in yaml_answer.json()["detail"][0]["message"]
    assert client.get("/api/v1/experiments", headers=admin).json() == []


def test_lifecycle_moves_and_refusals(
    spec: dict[str, Any], client: TestClient, admin: dict[str, str], sdk: dict[str, str]
) -> None:
    assert client.post(f"{URL}/start", headers=admin).status_code == 404
    client.put(URL, json=spec, headers=admin)
    assert client.post(f"{URL}/start", headers=admin).json()["status"] == "running"
    assert client.post(f"{URL}/pause", params={"reason": "incident"}, headers=admin).json()["status"] == "paused"
    assert client.post(f"{URL}/start", headers=admin).json()["status"] == "running"  # resumes
    assert client.post(f"{URL}/stop", headers=admin).json()["status"] == "stopped"
    refused = client.post(f"{URL}/start", headers=admin)
    assert refused.status_code == 409
    assert refused.json()["detail"][0] == {
        "field": "status",
        "message": "cannot start an experiment that is stopped (allowed from stopped: archive)",
    }
    missing = client.get("/api/v1/experiments/nope", headers=admin)
    assert missing.status_code == 404
    assert missing.json()["detail"][0]["field"] == "key"


def test_metric_references_and_namespaces_are_checked_against_the_store(
    spec: dict[str, Any], client: TestClient, admin: dict[str, str]
) -> None:
    undefined = client.put(URL, json={**spec, "metrics": {"goal": ["conversion"]}}, headers=admin)
    assert undefined.status_code == 422
    assert undefined.json()["detail"][0]["field"] == "metrics.goal.0"
    assert "'conversion' is not a defined metric" in undefined.json()["detail"][0]["message"]
    layer = {**spec, "namespace": {"name": "checkout-layer", "range": [0.0, 0.5]}}
    assert client.put(URL, json=layer, headers=admin).status_code == 200
    overlapping = {**layer, "key": "other", "namespace": {"name": "checkout-layer", "range": [0.4, 1.0]}}
    refused = client.put("/api/v1/experiments/other", json=overlapping, headers=admin)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["field"] == "namespace.range"
    assert "'checkout'" in refused.json()["detail"][0]["message"]
    disjoint = {**overlapping, "namespace": {"name": "checkout-layer", "range": [0.5, 1.0]}}
    assert client.put("/api/v1/experiments/other", json=disjoint, headers=admin).status_code == 200
    assert client.put(URL, json=layer, headers=admin).json()["action"] == "unchanged"  # its own range is no overlap
