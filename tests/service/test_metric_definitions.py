"""Metric definitions over HTTP: stored whole, validated, and usable by experiments created after them."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

CONVERSION = {"name": "conversion", "kind": "binary", "event": "purchase", "window_days": 7}


def test_define_then_refer(
    spec: dict[str, Any], client: TestClient, admin: dict[str, str], sdk: dict[str, str]
) -> None:
    with_goal = {**spec, "metrics": {"goal": ["conversion"]}}
    assert client.put("/api/v1/experiments/checkout", json=with_goal, headers=admin).status_code == 422
    assert client.put("/api/v1/metrics/conversion", json=CONVERSION, headers=sdk).status_code == 403
    stored = client.put("/api/v1/metrics/conversion", json=CONVERSION, headers=admin)
    assert stored.status_code == 200, stored.text
    assert stored.json()["kind"] == "binary"
    assert [m["name"] for m in client.get("/api/v1/metrics", headers=admin).json()] == ["conversion"]
    assert client.put("/api/v1/experiments/checkout", json=with_goal, headers=admin).status_code == 200


def test_invalid_definitions_name_the_field(client: TestClient, admin: dict[str, str]) -> None:
    mismatch = client.put("/api/v1/metrics/revenue", json=CONVERSION, headers=admin)
    assert mismatch.status_code == 422
    assert mismatch.json()["detail"][0]["field"] == "name"
    bad_kind = client.put("/api/v1/metrics/conversion", json={**CONVERSION, "kind": "median"}, headers=admin)
    assert bad_kind.status_code == 422
    assert bad_kind.json()["detail"][0]["field"] == "kind"
    nul = client.put("/api/v1/metrics/conversion", json={**CONVERSION, "event": "pur\x00chase"}, headers=admin)
    assert nul.status_code == 422
    assert client.get("/api/v1/metrics", headers=admin).json() == []
