"""Exposures and events: whole batches validated before a write, idempotent, size limits answered with 413."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from splitlab.service import Settings, create_app
from splitlab.storage import open_store

EVENTS = "/api/v1/events"
EXPOSURES = "/api/v1/exposures"
T = "2024-05-01T12:00:00+02:00"


def _event(i: int, **changes: object) -> dict[str, object]:
    return {"event_id": f"e{i}", "unit_id": f"u{i}", "name": "purchase", "value": 9.5, "timestamp": T, **changes}


def test_events_are_idempotent_by_event_id(
    client: TestClient, admin: dict[str, str], sdk: dict[str, str], database_url: str
) -> None:
    batch = {"events": [_event(0), _event(1), _event(1)]}
    assert client.post(EVENTS, json=batch, headers=sdk).json() == {
        "received": 3,
        "inserted": 2,
        "duplicates": 1,
        "conflicts": 0,
    }
    assert client.post(EVENTS, json=batch, headers=sdk).json() == {
        "received": 3,
        "inserted": 0,
        "duplicates": 3,
        "conflicts": 0,
    }
    with open_store(database_url) as store:
        stored = store.events.get(event_id="e0")
    assert stored is not None
    assert stored.timestamp.isoformat() == "2024-05-01T10:00:00+00:00"


def test_one_bad_event_rejects_the_whole_batch_naming_the_field(
    client: TestClient, admin: dict[str, str], sdk: dict[str, str], database_url: str
) -> None:
    bad = {"events": [_event(0), _event(1), _event(2), _event(3, timestamp="2024-05-01T12:00:00")]}
    answer = client.post(EVENTS, json=bad, headers=sdk)
    assert answer.status_code == 422
    assert [d["field"] for d in answer.json()["detail"]] == ["events.3.timestamp"]
    raw = f'{{"events": [{{"event_id": "x", "unit_id": "u", "name": "n", "timestamp": "{T}", "value": NaN}}]}}'
    nan = client.post(EVENTS, content=raw, headers={**sdk, "Content-Type": "application/json"})
    assert nan.status_code == 422
    assert nan.json()["detail"][0]["field"] == "events.0.value"
    with open_store(database_url) as store:
        assert store.events.count() == 0


def test_properties_and_ids_the_store_would_refuse_are_422s_naming_each_field(
    client: TestClient, admin: dict[str, str], sdk: dict[str, str], database_url: str
) -> None:
    events = [
        _event(0, properties={"tags": ["ok", "a\x00b"]}),
        _event(1, properties={"x": "NaN-here"}),
        _event(2, properties={"deep": json.loads('{"a":' * 40 + "1" + "}" * 40)}),
        _event(3, unit_id="\u2003\x1c"),  # whitespace to str.strip, though not all of it to Unicode
        _event(4, timestamp="0001-01-01T00:00:00+01:00"),  # before year 1 in UTC
        _event(5, properties={"text": "[" * 40}),  # brackets in a string: stored as given
    ]
    raw = json.dumps({"events": events}).replace('"NaN-here"', "NaN")
    answer = client.post(EVENTS, content=raw, headers={**sdk, "Content-Type": "application/json"})
    assert answer.status_code == 422
    fields = {d["field"]: d["message"] for d in answer.json()["detail"]}
    # The schema's own checks come first (the ids); the store's, on the properties and times, once those pass.
    assert fields == {"events.3.unit_id": "must not be blank (only whitespace) nor contain NUL characters"}
    del events[3]
    raw = json.dumps({"events": events}).replace('"NaN-here"', "NaN")
    answer = client.post(EVENTS, content=raw, headers={**sdk, "Content-Type": "application/json"})
    assert answer.status_code == 422
    assert answer.json()["detail"] == [
        {"field": "events.0.properties.tags.1", "message": "must not contain NUL characters"},
        {"field": "events.1.properties.x", "message": "nan is not a finite number"},
        {"field": "events.2.properties.deep" + ".a" * 32, "message": "nested deeper than 32 levels"},
        {"field": "events.3.timestamp", "message": "0001-01-01T00:00:00+01:00 is out of range once converted to UTC"},
    ]
    with open_store(database_url) as store:
        assert store.events.count() == 0
    stored = client.post(EVENTS, json={"events": [events[-1]]}, headers=sdk)
    assert stored.json() == {"received": 1, "inserted": 1, "duplicates": 0, "conflicts": 0}


def test_size_limits_are_413(client: TestClient, admin: dict[str, str], sdk: dict[str, str]) -> None:
    too_many = client.post(EVENTS, json={"events": [_event(i) for i in range(51)]}, headers=sdk)
    assert too_many.status_code == 413
    assert too_many.json()["detail"][0] == {"field": "events", "message": "51 items, at most 50 per request"}
    too_big = client.post(EVENTS, json={"events": [_event(0, properties={"blob": "x" * 70_000})]}, headers=sdk)
    assert too_big.status_code == 413
    assert too_big.json()["detail"][0]["field"] == "body"
    body = json.dumps({"events": [_event(0, properties={"blob": "x" * 70_000})]}).encode()
    chunks = (body[i : i + 8192] for i in range(0, len(body), 8192))  # no Content-Length: counted as it streams
    streamed = client.post(EVENTS, content=chunks, headers={**sdk, "Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert streamed.json()["detail"][0]["field"] == "body"
    not_a_length = client.post(EVENTS, content=b"{}", headers={**sdk, "Content-Length": "lots"})
    assert not_a_length.status_code == 400


def _now(**offset: float) -> str:
    return (datetime.now(UTC) + timedelta(**offset)).isoformat()


def test_exposures_check_experiments_and_variants_before_writing(
    client: TestClient, running: str, admin: dict[str, str], sdk: dict[str, str], database_url: str
) -> None:
    now = _now()
    good = {"experiment": running, "unit_id": "u1", "variant": "control", "timestamp": now, "attributes": {"os": "ios"}}
    batch = {
        "exposures": [
            good,
            {**good, "unit_id": "u2", "variant": "purple"},
            {**good, "unit_id": "u3", "experiment": "nope"},
        ]
    }
    answer = client.post(EXPOSURES, json=batch, headers=sdk)
    assert answer.status_code == 422
    assert [d["field"] for d in answer.json()["detail"]] == ["exposures.1.variant", "exposures.2.experiment"]
    with open_store(database_url) as store:
        assert store.exposures.count(experiment_key=running) == 0
    first = client.post(EXPOSURES, json={"exposures": [good]}, headers=sdk)
    assert first.json() == {"received": 1, "inserted": 1, "duplicates": 0, "conflicts": 0}
    again = client.post(EXPOSURES, json={"exposures": [good, {**good, "variant": "treatment"}]}, headers=sdk)
    assert again.json() == {"received": 2, "inserted": 0, "duplicates": 1, "conflicts": 1}


def _refused_count(client: TestClient, admin: dict[str, str], reason: str) -> float:
    for line in client.get("/metrics", headers=admin).text.splitlines():
        if line.startswith(f'splitlab_exposures_refused_total{{reason="{reason}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_exposures_out_of_the_experiments_running_time_are_422s_and_counted(
    client: TestClient, running: str, admin: dict[str, str], sdk: dict[str, str], database_url: str
) -> None:
    good = {"experiment": running, "unit_id": "u1", "variant": "control", "timestamp": _now()}
    batch = [good, {**good, "unit_id": "u2", "timestamp": T}, {**good, "unit_id": "u3", "timestamp": _now(minutes=6)}]
    answer = client.post(EXPOSURES, json={"exposures": batch}, headers=sdk)
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert [d["field"] for d in detail] == ["exposures.1.timestamp", "exposures.2.timestamp"]
    assert detail[0]["message"].startswith("2024-05-01T10:00:00Z is before experiment 'checkout' started (")
    assert "is in the future: later than now plus the clock-skew allowance of 300 s" in detail[1]["message"]
    assert (_refused_count(client, admin, "before_start"), _refused_count(client, admin, "in_future")) == (1.0, 1.0)
    assert client.post("/api/v1/experiments/checkout/pause", headers=admin).status_code == 200
    paused = client.post(EXPOSURES, json={"exposures": [good]}, headers=sdk)
    assert paused.json()["detail"] == [
        {"field": "exposures.0.experiment", "message": "experiment 'checkout' is paused, not running"}
    ]
    assert _refused_count(client, admin, "not_running") == 1.0
    with open_store(database_url) as store:
        assert store.exposures.count(experiment_key=running) == 0


def test_the_clock_skew_allowance_is_a_setting(
    database_url: str, admin: dict[str, str], sdk: dict[str, str], spec: dict[str, object]
) -> None:
    assert Settings.from_env({"SPLITLAB_CLOCK_SKEW_SECONDS": "3600"}).clock_skew_seconds == 3600.0
    with pytest.raises(ValueError, match=r"SPLITLAB_CLOCK_SKEW_SECONDS: clock_skew_seconds == -1\.0, must be a finite"):
        Settings.from_env({"SPLITLAB_CLOCK_SKEW_SECONDS": "-1"})
    settings = Settings(database_url=database_url, clock_skew_seconds=3600)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.put("/api/v1/experiments/checkout", json=spec, headers=admin).status_code == 200
        assert client.post("/api/v1/experiments/checkout/start", headers=admin).status_code == 200
        fast = {"experiment": "checkout", "unit_id": "u1", "variant": "control", "timestamp": _now(minutes=30)}
        assert client.post(EXPOSURES, json={"exposures": [fast]}, headers=sdk).status_code == 200
        late = {**fast, "unit_id": "u2", "timestamp": _now(minutes=90)}
        assert client.post(EXPOSURES, json={"exposures": [late]}, headers=sdk).status_code == 422


def test_event_values_whose_square_overflows_are_422s(
    client: TestClient, admin: dict[str, str], sdk: dict[str, str], database_url: str
) -> None:
    answer = client.post(EVENTS, json={"events": [_event(0, value=1e308), _event(1, value=-1e200)]}, headers=sdk)
    assert answer.status_code == 422
    assert [d["field"] for d in answer.json()["detail"]] == ["events.0.value", "events.1.value"]
    assert client.post(EVENTS, json={"events": [_event(2, value=1e154)]}, headers=sdk).status_code == 200
    with open_store(database_url) as store:
        assert store.events.count() == 1
