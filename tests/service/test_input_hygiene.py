"""Input the service must refuse with a 4xx that names the field, whose body always encodes, storing nothing.

Lone surrogates (``"\\ud800"`` in JSON, ``"\\ud800"`` in a double-quoted YAML scalar) as keys and
values; bodies that are not JSON (415); attributes and properties past their limits; times out of
the store's range. Each answer is checked as bytes: strict UTF-8, JSON, the error shape, and the
field it names, with lone surrogates written as their escapes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from splitlab.service.schemas import MAX_ATTRIBUTES, MAX_ATTRIBUTES_BYTES
from splitlab.storage import Exposure, RefusedRowsError, open_store

ASSIGN = "/api/v1/assign"
BATCH = "/api/v1/assign/batch"
EXPOSURES = "/api/v1/exposures"
EVENTS = "/api/v1/events"
SPEC_URL = "/api/v1/experiments/checkout"
T = "2024-05-01T12:00:00Z"
SURROGATE = "\ud800"
"""A lone surrogate: ``json.dumps`` (ASCII) sends it as the escape ``\\ud800``, which the service parses back."""
LONE = "\\ud800"
"""The lone surrogate as an error answer shows it: six characters."""
JSON = {"Content-Type": "application/json"}


def _problems(answer: Any, status: int) -> list[dict[str, str]]:
    """The problems of an error answer, once its status is checked and its bytes are UTF-8 JSON of the error shape."""
    assert answer.status_code == status, answer.text
    body = json.loads(answer.content.decode("utf-8"))  # strict: a lone surrogate would not decode
    detail = body["detail"]
    assert detail
    assert all(set(d) == {"field", "message"} and d["message"] for d in detail)
    return [{"field": d["field"], "message": d["message"]} for d in detail]


def _fields(answer: Any, status: int = 422) -> set[str]:
    return {d["field"] for d in _problems(answer, status)}


def _now(**offset: float) -> str:
    return (datetime.now(UTC) + timedelta(**offset)).isoformat()


def _post(client: TestClient, url: str, body: Any, headers: dict[str, str]) -> Any:
    """``body`` as ASCII JSON (a lone surrogate escaped), which an HTTP client's own encoder would refuse."""
    return client.post(url, content=json.dumps(body).encode(), headers={**headers, **JSON})


def _counts(database_url: str) -> tuple[int, int]:
    with open_store(database_url) as store:
        return store.exposures.count(experiment_key="checkout"), store.events.count()


# --- lone surrogates ---------------------------------------------------------------------------


def test_lone_surrogate_keys_and_values_are_422s_naming_the_field(
    client: TestClient, running: str, sdk: dict[str, str], database_url: str
) -> None:
    exposure = {"experiment": running, "unit_id": "u1", "variant": "control", "timestamp": _now()}
    event = {"event_id": "e1", "unit_id": "u1", "name": "purchase", "timestamp": T}
    cases: list[tuple[str, dict[str, Any], str]] = [
        (ASSIGN, {"experiment": running, "unit_id": "u1", "attributes": {SURROGATE: 1}}, f"attributes.{LONE}"),
        (ASSIGN, {"experiment": running, "unit_id": "u1", f"{SURROGATE}x": 1}, f"{LONE}x"),
        (ASSIGN, {"experiment": running, "unit_id": f"u{SURROGATE}"}, "unit_id"),
        (
            BATCH,
            {"experiment": running, "units": [{"unit_id": "u1", "attributes": {SURROGATE: 1}}]},
            f"units.0.attributes.{LONE}",
        ),
        (BATCH, {"experiment": running, SURROGATE: 1, "units": [{"unit_id": "u1"}]}, LONE),
        (BATCH, {"experiment": running, "units": [{"unit_id": "u1", f"a{SURROGATE}": 1}]}, f"units.0.a{LONE}"),
        (
            EXPOSURES,
            {"exposures": [{**exposure, "attributes": {"os": f"a{SURROGATE}"}}]},
            "exposures.0.attributes.os",
        ),
        (
            EXPOSURES,
            {"exposures": [{**exposure, "attributes": {SURROGATE: "ios"}}]},
            f"exposures.0.attributes.{LONE}",
        ),
        (
            EVENTS,
            {"events": [{**event, "properties": {"sku": {SURROGATE: 1}}}]},
            f"events.0.properties.sku.{LONE}",
        ),
        (EVENTS, {"events": [{**event, SURROGATE: 1}]}, f"events.0.{LONE}"),
    ]
    for url, body, field in cases:
        answer = _post(client, url, body, sdk)
        assert _problems(answer, 422) == [
            {"field": field, "message": f"{'key ' if LONE in field else ''}must be valid Unicode (no lone surrogates)"}
        ], (url, answer.text)
    assert client.app.state.runtime.recorder.flush()  # type: ignore[attr-defined]
    with open_store(database_url) as store:
        assert store.assignments.get(experiment_key=running, unit_id="u1") is None
    assert _counts(database_url) == (0, 0)
    # A surrogate pair is one character: JSON joins it.
    emoji = {"experiment": running, "unit_id": "u1", "attributes": {"\U0001f600": "\U0001f600"}}
    assert _post(client, ASSIGN, emoji, sdk).status_code == 200


def test_a_spec_with_a_lone_surrogate_is_refused_over_json_and_yaml_and_not_stored(
    client: TestClient, admin: dict[str, str], spec: dict[str, Any], database_url: str
) -> None:
    assert client.put(SPEC_URL, json=spec, headers=admin).status_code == 200
    variants = [{"key": "control"}, {"key": "treatment"}]
    json_cases = [
        ({"key": "checkout", SURROGATE: 1, "variants": variants}, LONE, "key must"),
        ({"key": "checkout", "variants": [{"key": "control", "payload": {SURROGATE: 1}}, {"key": "treatment"}]},
         f"variants.0.payload.{LONE}", "key must"),
        ({"key": "checkout", "description": f"a{SURROGATE}", "variants": variants}, "description", "must"),
    ]  # fmt: skip
    for body, field, what in json_cases:
        answer = client.put(SPEC_URL, content=json.dumps(body).encode(), headers={**admin, **JSON})
        assert _problems(answer, 422) == [
            {"field": field, "message": f"{what} be valid Unicode (no lone surrogates)"}
        ], answer.text
    yaml_cases = {
        f'key: checkout\n"{LONE}": 1\nvariants: [{{key: control}}, {{key: treatment}}]\n': f"2: {LONE}: key",
        f'key: checkout\nvariants:\n- key: control\n  payload: {{"{LONE}": 1}}\n- key: treatment\n': (
            f"4: variants.0.payload.{LONE}: key"
        ),
        f'key: checkout\nvariants:\n- key: control\n  payload: "{LONE}"\n- key: treatment\n': (
            "4: variants.0.payload: value"
        ),
    }
    for text, where in yaml_cases.items():
        answer = client.put(SPEC_URL, content=text.encode(), headers={**admin, "Content-Type": "application/yaml"})
        assert _problems(answer, 422) == [
            {"field": "body", "message": f"<yaml text>:{where} must be valid Unicode (no lone surrogates)"}
        ], text
    with open_store(database_url) as store:
        stored = store.experiments.get(key="checkout")
    assert stored is not None
    assert (stored.current_version, stored.spec["variants"][0]["payload"]) == (1, {"color": "grey"})
    # A pair escaped in YAML is one character, as in JSON (PyYAML alone keeps two surrogates).
    pair = 'key: checkout\nvariants:\n- key: control\n  payload: {"\\ud83d\\ude00": 1}\n- key: treatment\n'
    answer = client.put(SPEC_URL, content=pair.encode(), headers={**admin, "Content-Type": "text/yaml"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["experiment"]["spec"]["variants"][0]["payload"] == {"\U0001f600": 1}


# --- Content-Type ------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_a_body_that_is_not_json_is_415_on_every_json_route(
    client: TestClient, running: str, admin: dict[str, str], sdk: dict[str, str], database_url: str, content_type: str
) -> None:
    bodies = {
        ASSIGN: {"experiment": running, "unit_id": "u1"},
        BATCH: {"experiment": running, "units": [{"unit_id": "u1"}]},
        EXPOSURES: {"exposures": [{"experiment": running, "unit_id": "u1", "variant": "control", "timestamp": _now()}]},
        EVENTS: {"events": [{"event_id": "e1", "unit_id": "u1", "name": "purchase", "timestamp": T}]},
        f"{SPEC_URL}/rewards": {"rewards": [{"unit_id": "u1", "reward": 1}]},
    }
    for url, body in bodies.items():
        answer = client.post(url, content=json.dumps(body).encode(), headers={**sdk, "Content-Type": content_type})
        assert _fields(answer, 415) == {"Content-Type"}, url
        assert content_type in answer.json()["detail"][0]["message"]
    spec = {"key": running, "variants": [{"key": "control"}, {"key": "treatment", "weight": 0.5}], "description": "x"}
    answer = client.put(SPEC_URL, content=json.dumps(spec).encode(), headers={**admin, "Content-Type": content_type})
    assert _fields(answer, 415) == {"Content-Type"}
    assert client.app.state.runtime.recorder.flush()  # type: ignore[attr-defined]
    with open_store(database_url) as store:
        assert store.assignments.get(experiment_key=running, unit_id="u1") is None
        stored = store.experiments.get(key=running)
        assert stored is not None
        assert stored.spec["description"] == ""
    assert _counts(database_url) == (0, 0)


def test_json_types_and_yaml_for_specs_are_read(
    client: TestClient, running: str, admin: dict[str, str], sdk: dict[str, str]
) -> None:
    body = json.dumps({"experiment": running, "unit_id": "u1"}).encode()
    for content_type in ("application/json; charset=utf-8", "application/vnd.splitlab+json", "APPLICATION/JSON"):
        assert client.post(ASSIGN, content=body, headers={**sdk, "Content-Type": content_type}).status_code == 200
    assert client.post(ASSIGN, content=body, headers=sdk).status_code == 200  # no Content-Type: read as JSON
    batch = json.dumps({"experiment": running, "units": [{"unit_id": "u1"}]}).encode()
    assert client.post(BATCH, content=batch, headers=sdk).status_code == 200
    for i, content_type in enumerate(
        ("application/yaml", "text/yaml", "application/x-yaml", "text/yaml; charset=utf-8")
    ):
        text = f"key: {running}\ndescription: take {i}\nvariants: [{{key: control}}, {{key: treatment}}]\n"
        answer = client.put(SPEC_URL, content=text.encode(), headers={**admin, "Content-Type": content_type})
        assert answer.status_code == 200, (content_type, answer.text)
        assert answer.json()["experiment"]["spec"]["description"] == f"take {i}"


# --- attributes and properties -----------------------------------------------------------------


def test_attributes_past_their_limits_are_422s_naming_the_field(
    client: TestClient, running: str, sdk: dict[str, str], database_url: str
) -> None:
    over = f"is {MAX_ATTRIBUTES_BYTES + 11} bytes once encoded as JSON, at most {MAX_ATTRIBUTES_BYTES}"
    flat = "attribute values are strings, numbers, booleans or null"
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({f"k{i}": i for i in range(MAX_ATTRIBUTES + 1)}, "", "Dictionary should have at most 100 items"),
        ({"device": {"os": "ios"}}, ".device", f"is an object: {flat}"),
        ({"tags": ["a", "b"]}, ".tags", f"is an array: {flat}"),
        ({"note": "x" * MAX_ATTRIBUTES_BYTES}, "", over),
        ({"note": "é" * (MAX_ATTRIBUTES_BYTES // 2)}, "", over),  # half the characters, the same bytes
    ]
    for attributes, suffix, message in cases:
        exposure = {"experiment": running, "unit_id": "u1", "variant": "control", "timestamp": _now()}
        bodies = {
            ASSIGN: ({"experiment": running, "unit_id": "u1", "attributes": attributes}, "attributes"),
            BATCH: (
                {"experiment": running, "units": [{"unit_id": "u1", "attributes": attributes}]},
                "units.0.attributes",
            ),
            EXPOSURES: ({"exposures": [{**exposure, "attributes": attributes}]}, "exposures.0.attributes"),
        }
        for url, (body, field) in bodies.items():
            [problem] = _problems(client.post(url, json=body, headers=sdk), 422)
            assert problem["field"] == field + suffix, (url, problem)
            assert problem["message"].startswith(message), (url, problem)
    assert client.app.state.runtime.recorder.flush()  # type: ignore[attr-defined]
    with open_store(database_url) as store:
        assert store.assignments.get(experiment_key=running, unit_id="u1") is None
    assert _counts(database_url) == (0, 0)
    at_the_limit = {f"k{i}": "v" for i in range(MAX_ATTRIBUTES)}
    answer = client.post(ASSIGN, json={"experiment": running, "unit_id": "u1", "attributes": at_the_limit}, headers=sdk)
    assert answer.status_code == 200, answer.text
    scalars = {"country": "DE", "age": 31, "score": 0.5, "employee": False, "plan": None}
    answer = client.post(ASSIGN, json={"experiment": running, "unit_id": "u2", "attributes": scalars}, headers=sdk)
    assert answer.status_code == 200, answer.text


def test_properties_past_their_limits_are_422s_naming_the_field(
    client: TestClient, sdk: dict[str, str], database_url: str
) -> None:
    def event(i: int, properties: dict[str, Any]) -> dict[str, Any]:
        return {"event_id": f"e{i}", "unit_id": "u1", "name": "purchase", "timestamp": T, "properties": properties}

    many = client.post(
        EVENTS, json={"events": [event(0, {f"k{i}": i for i in range(MAX_ATTRIBUTES + 1)})]}, headers=sdk
    )
    [problem] = _problems(many, 422)
    assert problem["field"] == "events.0.properties"
    assert problem["message"].startswith("Dictionary should have at most 100 items")
    fine = event(0, {"sku": "A1", "items": [{"id": 1}, {"id": 2}]})  # properties may nest
    big = event(1, {"blob": "é" * (MAX_ATTRIBUTES_BYTES // 2)})
    answer = client.post(EVENTS, json={"events": [fine, big]}, headers=sdk)
    assert _problems(answer, 422) == [
        {"field": "events.1.properties", "message": "is 8203 bytes once encoded as JSON, at most 8192"}
    ]
    assert _counts(database_url) == (0, 0)
    assert client.post(EVENTS, json={"events": [fine]}, headers=sdk).status_code == 200


# --- times -------------------------------------------------------------------------------------


def test_event_times_outside_the_range_are_422s_naming_the_field(
    client: TestClient, sdk: dict[str, str], database_url: str
) -> None:
    times = ["0001-01-01T00:00:00Z", "1999-12-31T23:59:59.999999Z", "2000-01-01T00:30:00+01:00", _now(hours=1)]
    events = [{"event_id": f"e{i}", "unit_id": "u1", "name": "n", "timestamp": t} for i, t in enumerate(times)]
    answer = client.post(EVENTS, json={"events": events}, headers=sdk)
    problems = _problems(answer, 422)
    assert [p["field"] for p in problems] == [f"events.{i}.timestamp" for i in range(4)]
    assert problems[0]["message"] == "0001-01-01T00:00:00+00:00 is before 2000-01-01T00:00:00Z, the earliest time taken"
    assert "is in the future: later than now plus the clock-skew allowance of 300 s" in problems[3]["message"]
    assert _counts(database_url) == (0, 0)
    edges = ["2000-01-01T00:00:00Z", "2000-01-01T01:00:00+01:00", _now(minutes=4)]
    events = [{"event_id": f"f{i}", "unit_id": "u1", "name": "n", "timestamp": t} for i, t in enumerate(edges)]
    assert client.post(EVENTS, json={"events": events}, headers=sdk).json()["inserted"] == 3


def test_exposure_times_before_the_range_are_refused_by_the_store_for_every_writer(
    client: TestClient, running: str, sdk: dict[str, str], database_url: str
) -> None:
    answer = client.post(
        EXPOSURES,
        json={
            "exposures": [
                {"experiment": running, "unit_id": "u1", "variant": "control", "timestamp": "0001-01-01T00:00:00Z"}
            ]
        },
        headers=sdk,
    )
    assert _problems(answer, 422) == [
        {
            "field": "exposures.0.timestamp",
            "message": "0001-01-01T00:00:00+00:00 is before 2000-01-01T00:00:00Z, the earliest time taken",
        }
    ]
    # A backfill (the simulation's) may go back before the experiment's start, not before the range.
    with open_store(database_url) as store:
        old = Exposure(
            experiment_key=running, unit_id="u2", variant="control", timestamp=datetime(1999, 12, 31, tzinfo=UTC)
        )
        with pytest.raises(RefusedRowsError) as refused:
            store.exposures.log_many([old], backfill=True)
        assert refused.value.problems[0][:2] == (0, "timestamp")
        assert refused.value.reasons == ("too_early",)
        ok = Exposure(
            experiment_key=running, unit_id="u2", variant="control", timestamp=datetime(2000, 1, 1, tzinfo=UTC)
        )
        assert store.exposures.log_many([ok], backfill=True).inserted == 1
