"""The model router through the real app and store, with real model servers on loopback (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import sys
import time
import types
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from splitlab.operations.monitoring import monitor_once
from splitlab.service import Settings, create_app
from splitlab.service.model_server import RunningModelServer, start_model_server, train_demo_models
from splitlab.storage import open_store

METRICS = [
    {"name": "model-error-rate", "kind": "mean", "event": "prediction_error", "direction": "lower"},
    {"name": "model-latency-ms", "kind": "mean", "event": "prediction", "direction": "lower"},
    {"name": "model-accuracy", "kind": "mean", "event": "prediction_correct"},
]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return train_demo_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def holdout(models: dict[str, Path]) -> list[list[float]]:
    data = json.loads(Path(models["holdout"]).read_text())
    rows = data["rows"] if isinstance(data, dict) else [item["features"] for item in data]
    return [list(map(float, row)) for row in rows]


@pytest.fixture(scope="module")
def servers(models: dict[str, Path]) -> Iterator[dict[str, RunningModelServer]]:
    """Model servers on loopback: a good one, a weak one, and three that misbehave."""
    options: dict[str, dict[str, Any]] = {
        "good": {"model_path": models["good"]},
        "weak": {"model_path": models["weak"]},
        "slow": {"model_path": models["weak"], "delay_ms": 400},
        "failing": {"model_path": models["weak"], "failure_rate": 1.0},
        "closing": {"model_path": models["weak"], "close_rate": 1.0},
        "hanging": {"model_path": models["weak"], "hang": True},
    }
    with ThreadPoolExecutor(len(options)) as pool:  # each spends a second importing scikit-learn: at once
        futures = {name: pool.submit(start_model_server, name=name, **kw) for name, kw in options.items()}
        started = {name: future.result() for name, future in futures.items()}
    try:
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture
def store_url(database_url: str) -> str:
    return database_url


@pytest.fixture
def admin_key(database_url: str) -> str:
    with open_store(database_url) as store:
        _, key = store.keys.create(role="admin", name="ops", actor="test")
    return key


@pytest.fixture
def client(database_url: str, admin_key: str) -> Iterator[TestClient]:
    settings = Settings(database_url=database_url, cache_seconds=0, record_interval=0.01)
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        test_client.headers["Authorization"] = f"Bearer {admin_key}"
        yield test_client


def _spec(key: str, control: str, challenger: str, *, routing: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "key": key,
        "variants": [
            {"key": "control", "weight": extra.pop("control_weight", 0.5), "payload": {"model": control}},
            {"key": "challenger", "weight": extra.pop("challenger_weight", 0.5), "payload": {"model": challenger}},
        ],
        "routing": routing,
        **extra,
    }


def _start(client: TestClient, spec: dict[str, Any]) -> None:
    for metric in METRICS:
        assert client.put(f"/api/v1/metrics/{metric['name']}", json=metric).status_code == 200
    response = client.put(f"/api/v1/experiments/{spec['key']}", json=spec)
    assert response.status_code == 200, response.text
    assert client.post(f"/api/v1/experiments/{spec['key']}/start").status_code == 200


def _predict(client: TestClient, key: str, unit: str, row: list[float], **headers: str) -> Any:
    body = {"unit_id": unit, "input": {"features": row}}
    return client.post(f"/api/v1/route/{key}/predict", json=body, headers=headers)


def _flush(client: TestClient) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    assert runtime.router.log.flush(timeout=10)


def _events(database_url: str, name: str) -> list[Any]:
    from sqlalchemy import select

    from splitlab.storage.tables import events

    with open_store(database_url) as store, store.engine.connect() as conn:
        return list(conn.execute(select(events).where(events.c.name == name)).all())


def test_a_unit_keeps_its_model_and_every_prediction_is_recorded_and_joined_to_its_feedback(
    client: TestClient, servers: dict[str, RunningModelServer], holdout: list[list[float]], database_url: str
) -> None:
    spec = _spec("churn", {"url": servers["good"].url, "name": "good"}, {"url": servers["weak"].url}, routing={})
    _start(client, spec)
    seen: dict[str, set[str]] = {}
    answers = []
    for i in range(40):
        unit = f"user-{i % 10}"
        response = _predict(client, "churn", unit, holdout[i])
        assert response.status_code == 200, response.text
        body = response.json()
        variant = response.headers["x-splitlab-variant"]
        seen.setdefault(unit, set()).add(variant)
        # the model's own body, from the model of the unit's variant
        assert body["model"] == ("good" if variant == "control" else "weak")
        assert response.headers["x-splitlab-model"] == ("good" if variant == "control" else "challenger")
        assert "x-splitlab-fallback" not in response.headers
        answers.append((response.headers["x-splitlab-request-id"], unit, variant, body))
    assert all(len(variants) == 1 for variants in seen.values())  # sticky by hash
    assert {v for vs in seen.values() for v in vs} == {"control", "challenger"}
    _flush(client)
    predictions = {row.event_id: row for row in _events(database_url, "prediction")}
    assert set(predictions) == {request for request, _, _, _ in answers}
    for request, unit, variant, body in answers:
        row = predictions[request]
        properties = row.properties if isinstance(row.properties, dict) else json.loads(row.properties)
        assert (row.unit_id, properties["variant"], properties["prediction"]) == (unit, variant, body["prediction"])
        assert row.value > 0
    with open_store(database_url) as store:
        assert store.exposures.count(experiment_key="churn") == 10
    # feedback: the true label scores the prediction; sent twice, stored once
    request, _, _, body = answers[0]
    wrong = next(label for label in body["probabilities"] if str(label) != str(body["prediction"]))
    first = client.post("/api/v1/route/churn/feedback", json={"request_id": request, "label": int(wrong)})
    again = client.post("/api/v1/route/churn/feedback", json={"request_id": request, "label": int(wrong)})
    assert first.status_code == 200, first.text
    assert (first.json()["inserted"], again.json()["inserted"]) == (2, 0)  # correct + log loss
    [correct] = _events(database_url, "prediction_correct")
    [log_loss] = _events(database_url, "prediction_log_loss")
    assert correct.value == 0.0
    assert log_loss.value == pytest.approx(-__import__("math").log(max(body["probabilities"][wrong], 1e-15)))
    unknown = client.post("/api/v1/route/churn/feedback", json={"request_id": "no-such-request", "label": 1})
    assert unknown.status_code == 404
    assert unknown.json()["detail"][0]["field"] == "request_id"
    other = client.post("/api/v1/route/another/feedback", json={"request_id": request, "label": 1})
    assert other.status_code == 404  # a request id of another experiment is not this one's


@pytest.mark.parametrize("bad", ["slow", "failing", "closing"])
def test_a_failing_model_falls_back_to_the_control_and_counts_as_an_error_of_its_variant(
    client: TestClient, servers: dict[str, RunningModelServer], holdout: list[list[float]], database_url: str, bad: str
) -> None:
    routing = {"timeout_ms": 150, "breaker": {"failures": 1000}}
    spec = _spec("fraud", {"url": servers["good"].url}, {"url": servers[bad].url}, routing=routing)
    _start(client, spec)
    outcomes = []
    for i in range(16):
        response = _predict(client, "fraud", f"u{i}", holdout[i])
        assert response.status_code == 200, response.text
        variant = response.headers["x-splitlab-variant"]
        assert response.json()["model"] == "good"  # the control's model answered everyone
        assert (response.headers.get("x-splitlab-fallback") == "true") == (variant == "challenger")
        outcomes.append(variant)
    assert "challenger" in outcomes
    _flush(client)
    errors = {row.unit_id: row.value for row in _events(database_url, "prediction_error")}
    assert errors == {f"u{i}": float(variant == "challenger") for i, variant in enumerate(outcomes)}
    metrics = client.get("/metrics").text
    series = 'splitlab_router_requests_total{experiment="fraud",outcome="fallback",variant="challenger"}'
    assert f"{series} {outcomes.count('challenger')}.0" in metrics
    reason = {"slow": "timeout", "failing": "status_5xx", "closing": "connection"}[bad]
    assert f'reason="{reason}"' in metrics


def test_without_fallback_a_failed_model_is_a_502_or_504(
    client: TestClient, servers: dict[str, RunningModelServer], holdout: list[list[float]]
) -> None:
    routing = {"fallback": "none", "timeout_ms": 150}
    spec = _spec("nofall", {"url": servers["slow"].url}, {"url": servers["failing"].url}, routing=routing)
    _start(client, spec)
    statuses = {}
    for i in range(12):
        response = _predict(client, "nofall", f"u{i}", holdout[i])
        statuses[response.headers["x-splitlab-variant"]] = response.status_code
    assert statuses == {"control": 504, "challenger": 502}


def test_the_breaker_opens_after_consecutive_failures_and_half_opens_after_its_pause(
    client: TestClient, servers: dict[str, RunningModelServer], holdout: list[list[float]]
) -> None:
    routing = {"timeout_ms": 150, "breaker": {"failures": 3, "pause_seconds": 0.5}}
    spec = _spec(
        "breaker",
        {"url": servers["good"].url},
        {"url": servers["slow"].url},
        routing=routing,
        control_weight=0.0,
        challenger_weight=1.0,
    )
    _start(client, spec)

    def route(unit: str) -> None:
        response = _predict(client, "breaker", unit, holdout[0])
        assert response.status_code == 200
        assert response.headers["x-splitlab-fallback"] == "true"

    def metric(prefix: str) -> str:
        lines = [line for line in client.get("/metrics").text.splitlines() if line.startswith(prefix)]
        return lines[0].rsplit(" ", 1)[1] if lines else "0"

    def seen() -> tuple[str, str, str]:
        """(breaker state, calls that reached the slow model and timed out, calls refused by the breaker)."""
        failures = 'splitlab_router_model_failures_total{experiment="breaker",reason="%s",variant="challenger"}'
        return (
            metric('splitlab_router_breaker_state{experiment="breaker",variant="challenger"}'),
            metric(failures % "timeout"),
            metric(failures % "breaker_open"),
        )

    for i in range(3):
        route(f"a{i}")
    assert seen() == ("1.0", "3.0", "0")  # three timeouts in a row: open
    for i in range(5):
        route(f"b{i}")
    assert seen() == ("1.0", "3.0", "5.0")  # refused at once, without calling the model
    time.sleep(0.6)
    route("c0")  # half-open: one trial reaches the model, times out, and opens it again
    assert seen() == ("1.0", "4.0", "5.0")
    route("c1")
    assert seen() == ("1.0", "4.0", "6.0")


def test_shadow_answers_are_logged_never_returned_and_a_hanging_shadow_never_slows_the_client(
    client: TestClient, servers: dict[str, RunningModelServer], holdout: list[list[float]], database_url: str
) -> None:
    routing = {"shadow": {"variant": "challenger", "share": 1.0}}
    spec = _spec(
        "shadowed",
        {"url": servers["good"].url},
        {"url": servers["weak"].url},
        routing=routing,
        control_weight=1.0,
        challenger_weight=0.0,
    )
    _start(client, spec)
    for i in range(20):
        response = _predict(client, "shadowed", f"u{i}", holdout[i])
        assert response.json()["model"] == "good"
        assert response.headers["x-splitlab-variant"] == "control"
    deadline = time.monotonic() + 10
    while len(_events(database_url, "shadow_prediction")) < 20 and time.monotonic() < deadline:
        _flush(client)
        time.sleep(0.05)
    shadows = _events(database_url, "shadow_prediction")
    assert len(shadows) == 20
    agreements = _events(database_url, "shadow_agreement")
    assert len(agreements) == 20
    assert 0 < sum(row.value for row in agreements) <= 20
    # a shadow that never answers: the client is answered as fast, and shadow load stays bounded
    hung = _spec(
        "hung-shadow",
        {"url": servers["good"].url},
        {"url": servers["hanging"].url, "timeout_ms": 2000},
        routing={"shadow": {"variant": "challenger", "share": 1.0, "max_in_flight": 4}},
        control_weight=1.0,
        challenger_weight=0.0,
    )
    _start(client, hung)
    latencies = []
    for i in range(12):
        start = time.perf_counter()
        assert _predict(client, "hung-shadow", f"h{i}", holdout[i]).status_code == 200
        latencies.append(time.perf_counter() - start)
    assert max(latencies) < 1.0  # the shadow waits 2 s for its model; the client never does
    dropped = 'splitlab_router_shadow_calls_total{experiment="hung-shadow",outcome="dropped",variant="challenger"}'
    assert f"{dropped} 8.0" in client.get("/metrics").text


# --- canary, driven by the monitor with a clock the test moves ------------------------------------------

_MODULE = "splitlab_test_router_models"


@pytest.fixture
def python_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process models: ``right`` answers every unit's label, ``broken`` raises."""
    module = types.ModuleType(_MODULE)

    def right(request: dict[str, Any]) -> dict[str, Any]:  # right 9 times in 10, never fails
        label = request["label"] if request["i"] % 10 else 1 - request["label"]
        return {"prediction": label, "confidence": 0.9, "probabilities": {str(label): 0.9}}

    def broken(request: dict[str, Any]) -> dict[str, Any]:  # fails on a third of the requests
        if request["i"] % 3 == 0:
            raise RuntimeError("model crashed")
        return right(request)

    module.right = right  # type: ignore[attr-defined]
    module.broken = broken  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, _MODULE, module)


def _canary_spec(key: str, challenger: str) -> dict[str, Any]:
    return _spec(
        key,
        {"python": f"{_MODULE}:right"},
        {"python": f"{_MODULE}:{challenger}"},
        routing={
            "canary": {
                "variant": "challenger",
                "steps": [0.2, 0.5, 1],
                "min_step_minutes": 30,
                "min_units_per_step": 10,
            }
        },
        control_weight=0.8,
        challenger_weight=0.2,
        metrics={
            "goal": ["model-accuracy"],
            "guardrails": [{"metric": "model-error-rate", "max_degradation": 0.0}],
        },
        # absolute: the always-valid intervals are differences, defined for an error rate whose baseline is 0
        hypothesis={"primary_metric": "model-accuracy", "direction": "increase", "mde": 0.05, "mde_type": "absolute"},
        analysis={"method": "sequential", "sequential": "msprt"},
    )


def _traffic(client: TestClient, key: str, units: range) -> None:
    for i in units:
        unit = f"{key}-{i}"
        response = client.post(
            f"/api/v1/route/{key}/predict", json={"unit_id": unit, "input": {"label": i % 2, "i": i}}
        )
        assert response.status_code == 200, response.text
        request = response.headers["x-splitlab-request-id"]
        client.post(f"/api/v1/route/{key}/feedback", json={"request_id": request, "label": i % 2})
    _flush(client)


def _actions(database_url: str, key: str) -> list[tuple[str, str | None]]:
    with open_store(database_url) as store:
        return [(a.action, a.variant) for a in reversed(store.monitor.actions(key=key))]


def test_a_canary_whose_model_fails_is_rolled_back_at_once(
    client: TestClient, python_models: None, database_url: str
) -> None:
    _start(client, _canary_spec("risky", "broken"))
    _traffic(client, "risky", range(200))
    with open_store(database_url) as store:
        report = monitor_once(store, experiment="risky", now=datetime.now(UTC) + timedelta(minutes=1), due_only=False)
        status = store.experiments.get(key="risky").status
    assert [run.action.action for run in report.runs if run.action] == ["rollback"]
    assert status == "paused"
    assert _actions(database_url, "risky") == [("rollback", "challenger")]
    # paused: every unit is served the control's model, and nothing more is recorded
    response = client.post("/api/v1/route/risky/predict", json={"unit_id": "risky-1", "input": {"label": 1, "i": 1}})
    assert (response.status_code, response.headers["x-splitlab-variant"]) == (200, "control")


def test_a_healthy_canary_steps_up_after_each_hold_and_is_promoted_at_the_end(
    client: TestClient, python_models: None, database_url: str
) -> None:
    _start(client, _canary_spec("upgrade", "right"))
    start = datetime.now(UTC)
    moves = []
    units = 0
    with open_store(database_url) as store:
        for minutes in (10, 40, 60, 75):
            _traffic(client, "upgrade", range(units, units + 90))
            units += 90
            report = monitor_once(store, experiment="upgrade", now=start + timedelta(minutes=minutes), due_only=False)
            [run] = report.runs
            assert run.error is None
            moves.append(None if run.action is None else (run.action.action, run.action.weights))
        record = store.experiments.get(key="upgrade")
    assert moves == [
        None,  # 10 minutes into a 30-minute step: held
        ("ramp", {"control": 0.5, "challenger": 0.5}),  # step 1 held 40 minutes without harm
        None,  # 20 minutes into step 2
        ("promote", None),  # the last step of the ramp held: rolled out
    ]
    assert (record.status, record.rolled_out_variant) == ("rolled_out", "challenger")
    assert _actions(database_url, "upgrade") == [("ramp", "challenger"), ("promote", "challenger")]
    response = client.post("/api/v1/route/upgrade/predict", json={"unit_id": "anyone", "input": {"label": 0, "i": 1}})
    assert response.headers["x-splitlab-variant"] == "challenger"
