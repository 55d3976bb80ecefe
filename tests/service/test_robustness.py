"""No input gives a 500: malformed JSON/YAML, wrong types, huge and hostile values at every endpoint.

Every 4xx must carry ``{"detail": [{"field": ..., "message": ...}]}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from splitlab.specs import load_catalog
from splitlab.storage import Store, create_store_engine, open_store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
T = "2024-05-01T12:00:00Z"
JSON_ENDPOINTS = ("/api/v1/assign", "/api/v1/assign/batch", "/api/v1/exposures", "/api/v1/events")
HOSTILE: list[Any] = [
    None, 0, -1, 10**400, 1e308, "", " ", "x" * 5000, "\x00", "\ud800", [], {}, [[[[[]]]]], True, "NaN",
    "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", {"a": "\x00"}, {"\x00": 1}, {"deep": [[[[[[[[1]]]]]]]]},
]  # fmt: skip
RAW_BODIES = [b"", b"{", b"[1,2", b"null", b"\xff\xfe", b'{"a": NaN}', b"[" * 5000 + b"]" * 5000, b'"x"', b"1e999"]


def _check(answer: Any) -> None:
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        detail = answer.json()["detail"]
        assert isinstance(detail, list)
        assert detail
        assert all(isinstance(d["field"], str) and d["message"] for d in detail)


def _bodies(running: str) -> dict[str, dict[str, Any]]:
    return {
        "/api/v1/assign": {"experiment": running, "unit_id": "u1", "attributes": {"country": "DE"}},
        "/api/v1/assign/batch": {"experiment": running, "units": [{"unit_id": "u1"}]},
        "/api/v1/exposures": {
            "exposures": [{"experiment": running, "unit_id": "u1", "variant": "control", "timestamp": T}]
        },
        "/api/v1/events": {"events": [{"event_id": "e1", "unit_id": "u1", "name": "n", "value": 1.0, "timestamp": T}]},
    }


def _leaves(body: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(body, dict):
        return [p for k, v in body.items() for p in _leaves(v, (*path, k))] or [path]
    if isinstance(body, list):
        return [p for i, v in enumerate(body) for p in _leaves(v, (*path, i))] or [path]
    return [path]


def _replaced(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, *rest = path
    copy = list(body) if isinstance(body, list) else dict(body)
    copy[head] = _replaced(body[head], tuple(rest), value)
    return copy


def _post_json(client: TestClient, url: str, body: Any, headers: dict[str, str]) -> Any:
    text = json.dumps(body, ensure_ascii=True, allow_nan=True)
    return client.post(url, content=text.encode(), headers={**headers, "Content-Type": "application/json"})


@pytest.mark.parametrize("url", JSON_ENDPOINTS)
def test_hostile_values_in_every_field_never_give_500(
    client: TestClient, running: str, admin: dict[str, str], sdk: dict[str, str], url: str
) -> None:
    body = _bodies(running)[url]
    _check(_post_json(client, url, body, sdk))
    for path in _leaves(body):
        for value in HOSTILE:
            _check(_post_json(client, url, _replaced(body, path, value), sdk))
    for raw in RAW_BODIES:
        _check(client.post(url, content=raw, headers={**sdk, "Content-Type": "application/json"}))


def test_hostile_specs_and_paths_never_give_500(
    client: TestClient, running: str, admin: dict[str, str], sdk: dict[str, str]
) -> None:
    url = f"/api/v1/experiments/{running}"
    for raw in [
        *RAW_BODIES,
        b"key: [",
        b"- a\n- b",
        b"key: checkout\nvariants: *x",
        b"a: &a [*a]",
        b"{}",
        b"/etc/hostname.yaml",
    ]:
        for content_type in ("application/json", "application/yaml"):
            _check(client.put(url, content=raw, headers={**admin, "Content-Type": content_type}))
    path_like = client.put(url, content=b"spec.yaml", headers={**admin, "Content-Type": "application/yaml"})
    assert path_like.status_code == 422
    assert "got a string" in path_like.json()["detail"][0]["message"]  # parsed as YAML text, never opened
    spec = {"key": running, "variants": [{"key": "control"}, {"key": "treatment"}], "description": "x"}
    for path in _leaves(spec):
        for value in HOSTILE:
            body = json.dumps(_replaced(spec, path, value)).encode()
            _check(client.put(url, content=body, headers={**admin, "Content-Type": "application/json"}))
    for bad in ("%00", "A", "x" * 300, "a%2Fb", "..", "%ff"):
        _check(client.get(f"/api/v1/experiments/{bad}", headers=admin))
        _check(client.post(f"/api/v1/experiments/{bad}/start", headers=admin))
    _check(client.get("/api/v1/experiments?status=bogus", headers=admin))
    _check(client.get("/api/v1/config", headers={**sdk, "If-None-Match": "\x7f" * 100}))
    _check(client.post(f"{url}/start?reason={'x' * 5000}", headers=admin))
    _check(client.post(f"{url}/pause?reason=%00", headers=admin))  # stored with the move: PostgreSQL refuses NUL


def test_hostile_attributes_against_targeting_never_give_500(
    client: TestClient, admin: dict[str, str], sdk: dict[str, str], database_url: str
) -> None:
    with open_store(database_url) as store:
        metrics = load_catalog(EXAMPLES).metrics.values()
        store.metrics.put_many(definitions=[m.model_dump(mode="json") for m in metrics], actor="test")
    yaml_spec = (EXAMPLES / "checkout_simplification.yaml").read_bytes()
    put = client.put("/api/v1/experiments/checkout-one-page", content=yaml_spec,
                     headers={**admin, "Content-Type": "application/yaml"})  # fmt: skip
    assert put.status_code == 200, put.text
    assert client.post("/api/v1/experiments/checkout-one-page/start", headers=admin).status_code == 200
    for name in ("country", "app_version", "is_employee", "platform", "unit_id"):
        for value in HOSTILE:
            one = {"experiment": "checkout-one-page", "unit_id": "u1", "attributes": {name: value}}
            _check(_post_json(client, "/api/v1/assign", one, sdk))
            many = {"experiment": "checkout-one-page", "units": [{"unit_id": "u1", "attributes": {name: value}}] * 2}
            _check(_post_json(client, "/api/v1/assign/batch", many, sdk))


def test_hostile_query_values_never_give_500(client: TestClient, running: str, admin: dict[str, str]) -> None:
    for query in ("fresh=maybe", "fresh=" + "1" * 5000, "fresh=true"):
        _check(client.get(f"/api/v1/experiments/{running}/results?{query}", headers=admin))
    for query in ("rerandomize=maybe", "rerandomize=%00"):
        _check(client.put(f"/api/v1/experiments/{running}?{query}", json={}, headers=admin))
    _check(client.get("/metrics?x=%ff", headers=admin))
    _check(client.get("/api/v1/nowhere", headers=admin))
    _check(client.delete("/api/v1/config", headers=admin))
    wrong_method = client.delete(f"/api/v1/experiments/{running}", headers=admin)
    assert wrong_method.status_code == 405
    assert set(wrong_method.headers["allow"].split(", ")) >= {"GET", "PUT"}  # two routes, one path


def test_an_unreachable_database_is_503_not_500(client: TestClient, sdk: dict[str, str]) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    healthy = runtime.store
    broken = Store(create_store_engine(make_url("postgresql+psycopg://nobody@127.0.0.1:1/none")))
    runtime.store = runtime.experiments._store = broken
    try:
        answer = client.post("/api/v1/assign", json={"experiment": "checkout", "unit_id": "u1"}, headers=sdk)
        ready = client.get("/api/v1/ready")
    finally:
        broken.close()
        runtime.store = runtime.experiments._store = healthy
    assert answer.status_code == 503
    assert answer.json()["detail"][0]["field"] == "database"
    assert answer.headers["retry-after"] == "1"
    assert ready.status_code == 503


def test_a_stuck_write_or_a_stopping_worker_is_503_not_500(
    spec: dict[str, Any],
    client: TestClient,
    running: str,
    admin: dict[str, str],
    sdk: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    monkeypatch.setattr(runtime.recorder, "flush", lambda timeout=30.0: False)  # queued records cannot be written
    change = client.post("/api/v1/experiments/checkout/pause", headers=admin)
    assert (change.status_code, change.json()["detail"][0]["field"]) == (503, "database")
    assert client.get("/api/v1/experiments/checkout", headers=admin).json()["status"] == "running"  # not changed
    monkeypatch.undo()
    spec["allocation"] = {"method": "random"}  # /assign waits for the record
    client.put("/api/v1/experiments/random", json={**spec, "key": "random"}, headers=admin)
    client.post("/api/v1/experiments/random/start", headers=admin)
    runtime.event_writer.close()
    runtime.recorder.close()
    event = {"event_id": "e1", "unit_id": "u1", "name": "buy", "timestamp": "2026-12-01T00:00:00Z"}
    for path, body in (
        ("/api/v1/assign", {"experiment": "random", "unit_id": "u1"}),
        ("/api/v1/events", {"events": [event]}),
    ):
        answer = client.post(path, json=body, headers=sdk)
        assert answer.status_code == 503, (path, answer.text)
        assert answer.headers["retry-after"] == "1"
        assert "stopping" in answer.json()["detail"][0]["message"]


def test_hostile_metric_definitions_never_give_500(client: TestClient, admin: dict[str, str]) -> None:
    url = "/api/v1/metrics/conversion"
    definition = {"name": "conversion", "kind": "binary", "event": "purchase", "window_days": 7}
    for path in _leaves(definition):
        for value in HOSTILE:
            body = json.dumps(_replaced(definition, path, value)).encode()
            _check(client.put(url, content=body, headers={**admin, "Content-Type": "application/json"}))
    for raw in RAW_BODIES:
        _check(client.put(url, content=raw, headers={**admin, "Content-Type": "application/json"}))
