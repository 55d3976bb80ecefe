"""/assign after a change of weights or coverage while running, on SQLite and PostgreSQL.

Hash allocation: a unit assigned before keeps its stored variant, a new unit gets the new weights'
variant at once (its write is not waited for, and lands afterwards), and only units whose variant
the change could have moved are read. Random and bandit allocations still answer with the
variant the store kept first.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from splitlab.assignment import assign
from splitlab.specs import ExperimentSpec, to_plan
from splitlab.storage import open_store

ONE = "/api/v1/assign"
BATCH = "/api/v1/assign/batch"


def _assigned(client: TestClient, sdk: dict[str, str], units: list[str]) -> dict[str, str]:
    """The units' variants from /assign/batch, 50 units a request (the test settings' limit)."""
    variants = {}
    for start in range(0, len(units), 50):
        body = {"experiment": "checkout", "units": [{"unit_id": u} for u in units[start : start + 50]]}
        answer = client.post(BATCH, json=body, headers=sdk)
        assert answer.status_code == 200, answer.text
        variants |= {a["unit_id"]: a["variant"] for a in answer.json()["assignments"]}
    return variants


def _changed(client: TestClient, admin: dict[str, str], spec: dict[str, Any], **change: Any) -> dict[str, Any]:
    """``spec`` with new ``weights`` and/or ``coverage``, applied to the running experiment."""
    changed = copy.deepcopy(spec)
    for variant, weight in zip(changed["variants"], change.pop("weights", ()), strict=False):
        variant["weight"] = weight
    changed |= change
    answer = client.put(f"/api/v1/experiments/{spec['key']}", json=changed, headers=admin)
    assert answer.status_code == 200, answer.text
    assert answer.json()["action"] == "updated"
    return changed


def _stored(database_url: str, units: list[str]) -> dict[str, str]:
    with open_store(database_url) as store:
        stored = store.assignments.get_many(experiment_key="checkout", unit_ids=units)
    return {u: a.variant for u, a in stored.items()}


def _variants(spec: dict[str, Any], units: list[str]) -> dict[str, str | None]:
    plan = to_plan(ExperimentSpec.model_validate(spec))
    return {u: assign(plan, u).variant for u in units}


def test_assigned_units_keep_their_variant_and_new_units_get_the_new_weights(
    spec: dict[str, Any],
    client: TestClient,
    running: str,
    admin: dict[str, str],
    sdk: dict[str, str],
    database_url: str,
) -> None:
    units = [f"u{i}" for i in range(200)]
    before = _assigned(client, sdk, units)
    skewed = _changed(client, admin, spec, weights=(0.1, 0.9))  # the change writes what was queued first
    moved = {u for u, v in _variants(skewed, units).items() if v != before[u]}
    assert 40 < len(moved) < 120  # the units in control with a bucket in [0.1, 0.5)
    assert _assigned(client, sdk, units) == before
    newcomers = [f"new{i}" for i in range(200)]
    answers = _assigned(client, sdk, newcomers)
    assert answers == _variants(skewed, newcomers)
    assert client.app.state.runtime.recorder.flush(timeout=10)  # type: ignore[attr-defined]
    assert _stored(database_url, [*units, *newcomers]) == before | answers


def test_a_new_unit_is_answered_while_its_write_is_held(
    spec: dict[str, Any],
    client: TestClient,
    running: str,
    admin: dict[str, str],
    sdk: dict[str, str],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The recorder's write is held until the answer is in: a request that waited would get a 503."""
    monkeypatch.setattr("splitlab.service.hot_path.assigner.RECORD_TIMEOUT_SECONDS", 2.0)
    skewed = _changed(client, admin, spec, weights=(0.1, 0.9))
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    writing, release = threading.Event(), threading.Event()

    def held(write: Callable[..., Any]) -> Callable[..., Any]:
        def wait_then_write(**kwargs: Any) -> Any:
            writing.set()
            release.wait(30)
            return write(**kwargs)

        return wait_then_write

    repository = runtime.store.assignments
    monkeypatch.setattr(repository, "add_many", held(repository.add_many))
    monkeypatch.setattr(repository, "record_many", held(repository.record_many))
    newcomers = [f"new{i}" for i in range(20)]
    try:
        answers = {u: client.post(ONE, json={"experiment": running, "unit_id": u}, headers=sdk) for u in newcomers}
        assert {a.status_code for a in answers.values()} == {200}
        assert writing.wait(10)  # the recorder took them, and is held in its write
        assert _stored(database_url, newcomers) == {}
    finally:
        release.set()
    assert runtime.recorder.flush(timeout=10)
    variants = {u: a.json()["variant"] for u, a in answers.items()}
    assert variants == _variants(skewed, newcomers)
    assert _stored(database_url, newcomers) == variants


def test_only_units_the_change_may_have_moved_are_read(
    spec: dict[str, Any],
    client: TestClient,
    running: str,
    admin: dict[str, str],
    sdk: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A unit whose hash gives the same variant under the weights of every phase has no other one stored."""
    skewed = _changed(client, admin, spec, weights=(0.2, 0.8))
    repository = client.app.state.runtime.store.assignments  # type: ignore[attr-defined]
    read: list[str] = []
    get_many = repository.get_many

    def counted(**kwargs: Any) -> Any:
        read.extend(kwargs["unit_ids"])
        return get_many(**kwargs)

    monkeypatch.setattr(repository, "get_many", counted)
    units = [f"n{i}" for i in range(300)]
    _assigned(client, sdk, units[:150])
    for unit in units[150:]:
        client.post(ONE, json={"experiment": running, "unit_id": unit}, headers=sdk)
    then, now = _variants(spec, units), _variants(skewed, units)
    moved = [u for u in units if then[u] != now[u]]
    assert 50 < len(moved) < 130  # the units with a bucket in [0.2, 0.5)
    assert sorted(read) == sorted(moved)


def test_a_coverage_ramp_reads_nothing_and_moves_nobody(
    spec: dict[str, Any],
    client: TestClient,
    admin: dict[str, str],
    sdk: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Coverage 0.5 -> 1: a unit enrolled at 0.5 is in the same variant at 1, the others were never enrolled."""
    half = copy.deepcopy(spec) | {"coverage": 0.5}
    assert client.put("/api/v1/experiments/checkout", json=half, headers=admin).status_code == 200
    assert client.post("/api/v1/experiments/checkout/start", headers=admin).status_code == 200
    units = [f"u{i}" for i in range(200)]
    before = _assigned(client, sdk, units)
    assert 60 < sum(v is not None for v in before.values()) < 140
    _changed(client, admin, half, coverage=1.0)
    repository = client.app.state.runtime.store.assignments  # type: ignore[attr-defined]
    monkeypatch.setattr(repository, "get_many", lambda **_: pytest.fail("read a stored assignment"))
    after = _assigned(client, sdk, units)
    assert {u: v for u, v in after.items() if before[u] is not None} == {
        u: v for u, v in before.items() if v is not None
    }
    assert all(v is not None for v in after.values())


BANDIT: dict[str, Any] = {
    "key": "checkout",
    "variants": [{"key": "control"}, {"key": "treatment"}],
    "allocation": {"method": "bandit", "bandit": {"policy": "thompson", "update_every": 40, "seed": 7}},
}
RANDOM: dict[str, Any] = {
    "key": "checkout",
    "variants": [{"key": "control"}, {"key": "treatment"}],
    "allocation": {"method": "random"},
}


@pytest.mark.parametrize("allocation", [RANDOM, BANDIT], ids=["random", "bandit"])
def test_random_and_bandit_allocations_answer_with_the_first_recorded_variant(
    allocation: dict[str, Any],
    client: TestClient,
    admin: dict[str, str],
    sdk: dict[str, str],
    database_url: str,
) -> None:
    """Another worker recorded the units between this one's lookup and its write: the request waits and gets them."""
    assert client.put("/api/v1/experiments/checkout", json=allocation, headers=admin).status_code == 200
    assert client.post("/api/v1/experiments/checkout/start", headers=admin).status_code == 200
    units = [f"u{i}" for i in range(30)]
    with open_store(database_url) as store:
        store.assignments.record_many(experiment_key="checkout", variants=dict.fromkeys(units, "treatment"))
    runtime = client.app.state.runtime  # type: ignore[attr-defined]

    async def nothing_stored(*_args: Any) -> dict[str, str]:
        return {}

    runtime.sticky.lookup = nothing_stored
    assert _assigned(client, sdk, units) == dict.fromkeys(units, "treatment")
