"""Assignment over HTTP agrees with splitlab.assignment, keeps sticky units, and enrols only when running."""

from __future__ import annotations

import copy
from typing import Any

from fastapi.testclient import TestClient

from splitlab.assignment import assign
from splitlab.service.schemas import AssignmentPublic
from splitlab.specs import ExperimentSpec, to_plan
from splitlab.storage import open_store

ONE = "/api/v1/assign"
BATCH = "/api/v1/assign/batch"


def test_assign_matches_the_engine_and_returns_the_payload(
    spec: dict[str, Any], client: TestClient, running: str, admin: dict[str, str], sdk: dict[str, str]
) -> None:
    plan = to_plan(ExperimentSpec.model_validate(spec))
    for unit in ("u1", "u2", "u3", "user-42"):
        answer = client.post(ONE, json={"experiment": running, "unit_id": unit}, headers=sdk)
        assert answer.status_code == 200
        body = answer.json()
        expected = assign(plan, unit)
        assert (body["variant"], body["enrolled"], body["bucket"]) == (expected.variant, True, expected.bucket)
        assert body["payload"] == {"color": "grey" if expected.variant == "control" else "blue"}


def test_the_hand_encoded_answer_is_exactly_the_documented_schema(
    client: TestClient, running: str, sdk: dict[str, str]
) -> None:
    # /assign encodes its answer itself (no response model at run time): it must stay AssignmentPublic.
    body = {"experiment": running, "unit_id": "ü-1", "attributes": {"country": "DE"}}
    answer = client.post(ONE, json=body, headers=sdk)
    assert answer.headers["content-type"] == "application/json"
    assert int(answer.headers["content-length"]) == len(answer.content)
    parsed = AssignmentPublic.model_validate_json(answer.content, strict=True)
    assert answer.json() == parsed.model_dump()
    assert list(answer.json()) == list(AssignmentPublic.model_fields)
    assert parsed.unit_id == "ü-1"
    # A body that arrives in chunks (no Content-Length) is read whole.
    chunks = (part.encode() for part in ('{"experiment": "', running, '", "unit_id"', ': "ü-1"}'))
    streamed = client.post(ONE, content=chunks, headers={**sdk, "Content-Type": "application/json"})
    assert streamed.json() == {**answer.json()}


def test_blank_or_nul_ids_are_422_naming_the_field(client: TestClient, running: str, sdk: dict[str, str]) -> None:
    for unit in (" ", "\u3000\t", "\x1c", "a\x00b"):
        answer = client.post(ONE, json={"experiment": running, "unit_id": unit}, headers=sdk)
        assert answer.status_code == 422, unit
        assert answer.json()["detail"] == [
            {"field": "unit_id", "message": "must not be blank (only whitespace) nor contain NUL characters"}
        ]
    assert client.post(ONE, json={"experiment": running, "unit_id": " x "}, headers=sdk).status_code == 200


def test_batch_matches_single_assignments_and_records_them(
    spec: dict[str, Any],
    client: TestClient,
    running: str,
    admin: dict[str, str],
    sdk: dict[str, str],
    database_url: str,
) -> None:
    units = [{"unit_id": f"u{i}", "attributes": {"country": "DE"}} for i in range(40)]
    batch = client.post(BATCH, json={"experiment": running, "units": units}, headers=sdk)
    assert batch.status_code == 200
    singles = [
        client.post(ONE, json={"experiment": running, "unit_id": u["unit_id"]}, headers=sdk).json() for u in units
    ]
    # While the weights have not changed, a recorded unit's hash gives its recorded variant: "enrolled".
    assert {a["reason"] for a in batch.json()["assignments"] + singles} == {"enrolled"}
    assert batch.json()["assignments"] == singles
    assert {a["variant"] for a in singles} == {"control", "treatment"}
    assert client.app.state.runtime.recorder.flush()  # type: ignore[attr-defined]
    with open_store(database_url) as store:
        stored = store.assignments.get_many(experiment_key=running, unit_ids=[u["unit_id"] for u in units])
    assert {u: a.variant for u, a in stored.items()} == {a["unit_id"]: a["variant"] for a in singles}
    empty = client.post(BATCH, json={"experiment": running, "units": []}, headers=sdk)
    assert empty.json()["assignments"] == []


def test_assigned_units_keep_their_variant_after_a_weight_change(
    spec: dict[str, Any], client: TestClient, running: str, admin: dict[str, str], sdk: dict[str, str]
) -> None:
    units = [{"unit_id": f"u{i}"} for i in range(40)]
    before = client.post(BATCH, json={"experiment": running, "units": units}, headers=sdk).json()["assignments"]
    skewed = copy.deepcopy(spec)
    skewed["variants"][0]["weight"], skewed["variants"][1]["weight"] = 0.01, 0.99
    assert client.put(f"/api/v1/experiments/{running}", json=skewed, headers=admin).status_code == 200
    after = client.post(BATCH, json={"experiment": running, "units": units}, headers=sdk).json()["assignments"]
    assert [a["variant"] for a in after] == [b["variant"] for b in before]
    # Read from the store (reason sticky) only where the new weights hash to another variant.
    moved = [
        b["variant"] != assign(to_plan(ExperimentSpec.model_validate(skewed)), b["unit_id"]).variant for b in before
    ]
    assert [a["reason"] for a in after] == ["sticky" if m else "enrolled" for m in moved]
    assert 5 < sum(moved) < 35
    fresh = client.post(BATCH, json={"experiment": running, "units": [{"unit_id": f"new{i}"} for i in range(40)]},
                        headers=sdk).json()["assignments"]  # fmt: skip
    assert sum(a["variant"] == "treatment" for a in fresh) >= 35


def test_draft_and_paused_experiments_enrol_nobody(
    spec: dict[str, Any], client: TestClient, admin: dict[str, str], sdk: dict[str, str]
) -> None:
    client.put("/api/v1/experiments/checkout", json=spec, headers=admin)
    draft = client.post(ONE, json={"experiment": "checkout", "unit_id": "u1"}, headers=sdk).json()
    assert (draft["enrolled"], draft["variant"], draft["payload"]) == (False, None, None)
    client.post("/api/v1/experiments/checkout/start", headers=admin)
    enrolled = client.post(ONE, json={"experiment": "checkout", "unit_id": "u1"}, headers=sdk).json()
    client.post("/api/v1/experiments/checkout/pause", headers=admin)
    paused_old = client.post(ONE, json={"experiment": "checkout", "unit_id": "u1"}, headers=sdk).json()
    paused_new = client.post(ONE, json={"experiment": "checkout", "unit_id": "u2"}, headers=sdk).json()
    assert enrolled["enrolled"] is True
    # The engine's rule (GrowthBook's): an inactive experiment serves nobody, sticky units included.
    assert (paused_old["enrolled"], paused_old["reason"]) == (False, "inactive")
    assert (paused_new["enrolled"], paused_new["reason"]) == (False, "inactive")


def test_unknown_experiment_and_oversized_batch(
    spec: dict[str, Any], client: TestClient, running: str, admin: dict[str, str], sdk: dict[str, str]
) -> None:
    missing = client.post(ONE, json={"experiment": "nope", "unit_id": "u1"}, headers=sdk)
    assert missing.status_code == 404
    assert missing.json()["detail"][0]["field"] == "experiment"
    units = [{"unit_id": f"u{i}"} for i in range(51)]
    too_many = client.post(BATCH, json={"experiment": running, "units": units}, headers=sdk)
    assert too_many.status_code == 413
    assert too_many.json()["detail"][0]["field"] == "units"


def test_edits_of_a_draft_do_not_make_assign_read_stored_assignments(
    spec: dict[str, Any], client: TestClient, admin: dict[str, str]
) -> None:
    """Only versions that ran can have recorded units; a weight change while running can move them."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    client.put("/api/v1/experiments/checkout", json=spec, headers=admin)
    skewed = copy.deepcopy(spec)
    skewed["variants"][0]["weight"], skewed["variants"][1]["weight"] = 0.2, 0.8
    client.put("/api/v1/experiments/checkout", json=skewed, headers=admin)  # still a draft
    client.post("/api/v1/experiments/checkout/start", headers=admin)
    assert runtime.experiments.load("checkout").sticky_reads is False
    skewed["variants"][0]["weight"], skewed["variants"][1]["weight"] = 0.5, 0.5
    changed = client.put("/api/v1/experiments/checkout", json=skewed, headers=admin)
    assert changed.status_code == 200, changed.json()
    assert runtime.experiments.load("checkout").sticky_reads is True


def test_a_unit_another_worker_recorded_first_keeps_that_record_with_its_attributes_bucket(
    spec: dict[str, Any], client: TestClient, admin: dict[str, str], sdk: dict[str, str], database_url: str
) -> None:
    """A race near a weight change: the racing answer is the hash, the store's first record wins after it.

    Allocation ``attributes`` does not wait for the write (docs: the assigner's trade-off); the next
    answer is the stored variant, and its bucket still comes from the unit's hashed attributes.
    """
    spec["allocation"] = {"method": "attributes", "attributes": ["device"]}
    client.put("/api/v1/experiments/checkout", json=spec, headers=admin)
    client.post("/api/v1/experiments/checkout/start", headers=admin)
    spec["variants"][0]["weight"], spec["variants"][1]["weight"] = 0.3, 0.7  # stored variants now matter
    assert client.put("/api/v1/experiments/checkout", json=spec, headers=admin).status_code == 200
    units = {f"u{i}": {"device": f"d{i}"} for i in range(30)}
    with open_store(database_url) as store:  # another worker, between this one's lookup and its write
        store.assignments.record_many(experiment_key="checkout", variants=dict.fromkeys(units, "treatment"))
    runtime = client.app.state.runtime  # type: ignore[attr-defined]

    async def nothing_stored(*_args: Any) -> dict[str, str]:
        return {}

    runtime.sticky.lookup = nothing_stored
    body = {"experiment": "checkout", "units": [{"unit_id": u, "attributes": a} for u, a in units.items()]}
    racing = client.post(BATCH, json=body, headers=sdk).json()["assignments"]
    plan = to_plan(ExperimentSpec.model_validate(spec))
    hashed = [assign(plan, u, attributes) for u, attributes in units.items()]
    assert [a["variant"] for a in racing] == [h.variant for h in hashed]
    assert "control" in {a["variant"] for a in racing}
    del runtime.sticky.lookup  # the real lookup again
    assert runtime.recorder.flush(timeout=10)
    answers = client.post(BATCH, json=body, headers=sdk).json()["assignments"]
    assert {(a["variant"], a["enrolled"], a["reason"]) for a in answers} == {("treatment", True, "sticky")}
    assert [a["bucket"] for a in answers] == [h.bucket for h in hashed]
