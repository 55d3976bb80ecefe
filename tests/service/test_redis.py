"""Redis as the workers' shared cache: sticky assignments and bandit weights, per deployment, never required."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import delete

from splitlab.service import Settings, create_app
from splitlab.service.caches.shared import ABSENT
from splitlab.storage import open_store
from splitlab.storage.tables import assignments

BATCH = "/api/v1/assign/batch"
BANDIT = {
    "key": "cta",
    "variants": [{"key": "a"}, {"key": "b"}, {"key": "c"}],
    "allocation": {"method": "bandit", "bandit": {"policy": "thompson", "update_minutes": 60}},
}


@pytest.fixture
def shared(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def _app(database_url: str, redis_url: str | None) -> TestClient:
    settings = Settings(database_url=database_url, redis_url=redis_url, max_batch_size=500)
    return TestClient(create_app(settings), raise_server_exceptions=False)


def _deployment(database_url: str) -> str:
    with open_store(database_url) as store:
        return store.deployment_id


def _units(client: TestClient, headers: dict[str, str], experiment: str, units: list[str]) -> list[str]:
    body = {"experiment": experiment, "units": [{"unit_id": u} for u in units]}
    answer = client.post(BATCH, json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return [a["variant"] for a in answer.json()["assignments"]]


def test_workers_share_sticky_assignments_through_redis(
    database_url: str, redis_url: str, shared: redis.Redis, spec: dict[str, Any], admin: dict[str, str]
) -> None:
    units = [f"u{i}" for i in range(60)]
    with _app(database_url, redis_url) as first, _app(database_url, redis_url) as second:
        first.put("/api/v1/experiments/checkout", json=spec, headers=admin)
        first.post("/api/v1/experiments/checkout/start", headers=admin)
        before = _units(first, admin, "checkout", units)
        skewed = copy.deepcopy(spec)
        skewed["variants"][0]["weight"], skewed["variants"][1]["weight"] = 0.02, 0.98
        assert first.put("/api/v1/experiments/checkout", json=skewed, headers=admin).status_code == 200
        # After the weight change stored assignments matter for the units whose hash now gives
        # another variant (control's before, treatment's now: the others cannot differ and are not
        # read); the first worker reads those from the store once and leaves them in Redis.
        assert _units(first, admin, "checkout", [*units, "never-seen"]) == [*before, "treatment"]
        key = f"splitlab:{_deployment(database_url)}:sticky:checkout:1"
        cached = shared.hgetall(key)
        moved = [u for u, variant in zip(units, before, strict=True) if variant == "control" and u in cached]
        assert len(moved) >= 10  # about 29 of the 30 control units move to treatment at 2/98
        assert {u: cached[u] for u in moved} == dict.fromkeys(moved, "control")
        assert all(u not in cached for u, variant in zip(units, before, strict=True) if variant == "treatment")
        assert shared.ttl(key) > 0
        # The second worker needs no store at all for them: even with the rows gone it keeps them.
        with open_store(database_url) as store, store.engine.begin() as conn:
            conn.execute(delete(assignments))
        assert _units(second, admin, "checkout", units) == before


def test_an_absent_marker_never_hides_a_recorded_variant(
    database_url: str, redis_url: str, shared: redis.Redis, spec: dict[str, Any], admin: dict[str, str]
) -> None:
    with _app(database_url, redis_url) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        cache = runtime.shared
        cache.sticky_put("checkout", 1, {"u1": "treatment"}, absent=["u2"])
        cache.sticky_put("checkout", 1, {}, absent=["u1"])  # a late marker loses to the variant
        cache.sticky_put("checkout", 1, {"u2": "control"})  # a variant recorded later replaces the marker
        assert cache.sticky_get("checkout", 1, ["u1", "u2", "u3"]) == {"u1": "treatment", "u2": "control"}
        cache.sticky_put("checkout", 1, {}, absent=["u3"])
        assert cache.sticky_get("checkout", 1, ["u3"]) == {"u3": ABSENT}


def test_every_worker_allocates_a_bandit_window_with_the_first_weights(
    database_url: str, redis_url: str, shared: redis.Redis, admin: dict[str, str]
) -> None:
    with _app(database_url, redis_url) as first, _app(database_url, redis_url) as second:
        first.put("/api/v1/experiments/cta", json=BANDIT, headers=admin)
        first.post("/api/v1/experiments/cta/start", headers=admin)
        weights = first.get("/api/v1/experiments/cta/weights", headers=admin).json()
        key = f"splitlab:{_deployment(database_url)}:bandit:cta:1:{weights['window']}"
        stored = json.loads(shared.get(key))
        assert stored["weights"] == weights["weights"]
        # Pretend the first worker computed other weights (late rewards): the second adopts them.
        shared.set(key, json.dumps({**stored, "weights": [0.0, 1.0, 0.0]}))
        second_weights = second.get("/api/v1/experiments/cta/weights", headers=admin).json()
        assert second_weights["weights"] == [0.0, 1.0, 0.0]
        assert set(_units(second, admin, "cta", [f"u{i}" for i in range(30)])) == {"b"}


def test_deployments_sharing_redis_never_read_each_other(
    database_url: str, redis_url: str, tmp_path: Any, spec: dict[str, Any], admin: dict[str, str]
) -> None:
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    with open_store(other_url) as store:
        _, other_key = store.keys.create(role="admin", name="ops", actor="test")
    other_admin = {"Authorization": f"Bearer {other_key}"}
    assert _deployment(other_url) != _deployment(database_url)
    with _app(database_url, redis_url) as mine, _app(other_url, redis_url) as theirs:
        for client, headers in ((mine, admin), (theirs, other_admin)):
            client.put("/api/v1/experiments/checkout", json=spec, headers=headers)
            client.post("/api/v1/experiments/checkout/start", headers=headers)
        mine.app.state.runtime.shared.sticky_put("checkout", 1, {"u1": "control"})  # type: ignore[attr-defined]
        theirs_cache = theirs.app.state.runtime.shared  # type: ignore[attr-defined]
        assert theirs_cache.sticky_get("checkout", 1, ["u1"]) == {}
        assert theirs.get("/api/v1/experiments", headers=admin).status_code == 401  # my key is not theirs


def test_redis_down_costs_reads_not_answers(database_url: str, spec: dict[str, Any], admin: dict[str, str]) -> None:
    units = [f"u{i}" for i in range(20)]
    with _app(database_url, "redis://127.0.0.1:1/0") as client:
        client.put("/api/v1/experiments/checkout", json=spec, headers=admin)
        client.post("/api/v1/experiments/checkout/start", headers=admin)
        before = _units(client, admin, "checkout", units)
        skewed = copy.deepcopy(spec)
        skewed["variants"][0]["weight"], skewed["variants"][1]["weight"] = 0.02, 0.98
        client.put("/api/v1/experiments/checkout", json=skewed, headers=admin)
        assert _units(client, admin, "checkout", units) == before


def test_ready_says_degraded_naming_redis_while_it_does_not_answer(database_url: str) -> None:
    with _app(database_url, "redis://:secret@127.0.0.1:1/0") as client:
        answer = client.get("/api/v1/ready")
    assert answer.status_code == 200  # Redis is an optional cache: the worker stays in the load balancer
    body = answer.json()
    assert body["status"] == "degraded"
    assert body["database"] in {"sqlite", "postgresql"}
    [problem] = body["detail"]
    assert problem["field"] == "redis"
    # No key is needed here: nothing about where Redis is (the log has the details).
    assert problem["message"] == (
        "Redis does not answer; the store alone serves (sticky assignments and bandit weights are not shared)"
    )
    assert "secret" not in answer.text
    assert "127.0.0.1" not in answer.text


def test_ready_is_ok_while_redis_answers(database_url: str, redis_url: str) -> None:
    with _app(database_url, redis_url) as client:
        answer = client.get("/api/v1/ready")
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"
    assert "detail" not in answer.json()


def test_serve_starts_without_its_redis_and_warns_once(
    tmp_path: Path, servers: Callable[..., Any], spec: dict[str, Any]
) -> None:
    database_url = f"sqlite:///{tmp_path / 'store.db'}"
    with open_store(database_url) as store:
        _, key = store.keys.create(role="admin", name="ops", actor="test")
    admin = {"Authorization": f"Bearer {key}"}
    server = servers(database_url, SPLITLAB_REDIS_URL="redis://127.0.0.1:1/0")  # waits for /ready to say 200
    assert httpx.get(f"{server.base}/api/v1/ready", timeout=10).json()["status"] == "degraded"
    assert httpx.put(f"{server.base}/api/v1/experiments/checkout", json=spec, headers=admin).status_code == 200
    assert httpx.post(f"{server.base}/api/v1/experiments/checkout/start", headers=admin).status_code == 200
    body = {"experiment": "checkout", "units": [{"unit_id": "u1"}]}
    assigned = httpx.post(f"{server.base}{BATCH}", json=body, headers=admin)
    assert assigned.status_code == 200, assigned.text
    warnings = [line for line in server.log.read_text().splitlines() if line.startswith("warning:")]
    warning = (
        "warning: Redis at redis://127.0.0.1:1/0 does not answer: Error 111 connecting to 127.0.0.1:1. Connection"
        " refused (serving from the store alone; /api/v1/ready says degraded)"
    )
    assert warnings == [warning]
    assert "Traceback" not in server.log.read_text()
