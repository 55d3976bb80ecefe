"""Bandit experiments over HTTP: weights, assignment with them, idempotent rewards, exposures as assignments."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from splitlab.operations.assignment import assign
from splitlab.operations.bandits import current_weights, window_srm
from splitlab.storage import Event, open_store

BANDIT: dict[str, Any] = {
    "key": "cta",
    "variants": [{"key": "a"}, {"key": "b"}],
    "allocation": {"method": "bandit", "bandit": {"policy": "thompson", "update_every": 40, "seed": 7}},
}


@pytest.fixture
def bandit(client: TestClient, admin: dict[str, str]) -> str:
    assert client.put("/api/v1/experiments/cta", json=BANDIT, headers=admin).status_code == 200
    assert client.post("/api/v1/experiments/cta/start", headers=admin).status_code == 200
    return "cta"


def test_bad_bandit_settings_are_refused_at_put_not_at_assign(
    client: TestClient, admin: dict[str, str], sdk: dict[str, str]
) -> None:
    bad = copy.deepcopy(BANDIT)
    bad["allocation"]["bandit"] |= {"floor": 5, "colour": "red"}
    refused = client.put("/api/v1/experiments/cta", json=bad, headers=admin)
    assert refused.status_code == 422
    assert refused.json()["detail"] == [
        {"field": "allocation.bandit.floor", "message": "Value error, floor == 5.0, must be in [0, 1]"},
        {"field": "allocation.bandit.colour", "message": "Extra inputs are not permitted"},
    ]
    yaml_body = (
        "key: cta\nvariants: [{key: a}, {key: b}]\n"
        "allocation: {method: bandit, bandit: {policy: thompson, colour: red}}\n"
    )
    yaml_refused = client.put(
        "/api/v1/experiments/cta", content=yaml_body, headers={**admin, "Content-Type": "application/yaml"}
    )
    assert yaml_refused.status_code == 422
    assert "allocation.bandit.colour: unknown field" in yaml_refused.json()["detail"][0]["message"]
    three = copy.deepcopy(BANDIT)
    three["variants"].append({"key": "c"})
    three["allocation"]["bandit"]["floor"] = 0.4
    too_high = client.put("/api/v1/experiments/cta", json=three, headers=admin)
    assert too_high.status_code == 422
    assert too_high.json()["detail"][0]["field"] == "allocation.bandit.floor"
    assert "must be <= 1/3 for 3 variants" in too_high.json()["detail"][0]["message"]
    # Nothing was stored, so nothing can be started and then refuse every assignment.
    assert client.post("/api/v1/experiments/cta/start", headers=admin).status_code == 404
    assert client.put("/api/v1/experiments/cta", json=BANDIT, headers=admin).status_code == 200
    assert client.post("/api/v1/experiments/cta/start", headers=admin).status_code == 200
    assigned = client.post("/api/v1/assign", json={"experiment": "cta", "unit_id": "u1"}, headers=sdk)
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["variant"] in ("a", "b")


def _assign(client: TestClient, headers: dict[str, str], units: list[str]) -> dict[str, str]:
    body = {"experiment": "cta", "units": [{"unit_id": u} for u in units]}
    answer = client.post("/api/v1/assign/batch", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return {a["unit_id"]: a["variant"] for a in answer.json()["assignments"]}


def test_rewards_move_the_weights_and_count_once(
    client: TestClient, bandit: str, sdk: dict[str, str], database_url: str
) -> None:
    first = client.get("/api/v1/experiments/cta/weights", headers=sdk).json()
    assert (first["phase"], first["weights"], first["units"]) == ("burn-in", [0.5, 0.5], 0)
    variants = _assign(client, sdk, [f"u{i}" for i in range(40)])
    with open_store(database_url) as store:  # recorded before the answer: random and bandit draws are not reproducible
        stored = store.assignments.get_many(experiment_key="cta", unit_ids=list(variants))
    assert {u: a.variant for u, a in stored.items()} == variants
    rewards = [{"unit_id": u, "reward": 1.0 if v == "b" else 0.0} for u, v in variants.items()]
    answer = client.post("/api/v1/experiments/cta/rewards", json={"rewards": rewards}, headers=sdk)
    assert answer.json() == {"received": 40, "recorded": 40, "duplicates": 0, "skipped": []}
    again = client.post(
        "/api/v1/experiments/cta/rewards",
        json={"rewards": [*rewards, {"unit_id": "stranger", "reward": 1}]},
        headers=sdk,
    )
    assert again.json() == {"received": 41, "recorded": 0, "duplicates": 40, "skipped": ["stranger"]}
    # 40 rewarded units closed the first window: the next one favours b, and every worker agrees.
    client.app.state.runtime.bandit_weights._cache.invalidate()  # type: ignore[attr-defined]
    weights = client.get("/api/v1/experiments/cta/weights", headers=sdk).json()
    with open_store(database_url) as store:
        expected = current_weights(store, "cta")
    assert weights["window"] == expected.window == 1
    assert weights["weights"] == list(expected.weights)
    assert weights["weights"][1] > 0.95
    config = client.get("/api/v1/config", headers=sdk).json()
    assert config["experiments"][0]["weights"] == weights["weights"]
    # Units already assigned keep their arm; new ones follow the new weights.
    assert _assign(client, sdk, list(variants)) == variants
    assert list(_assign(client, sdk, [f"new{i}" for i in range(40)]).values()).count("b") > 30


def test_bad_rewards_and_wrong_experiments_are_refused(
    client: TestClient, bandit: str, running: str, sdk: dict[str, str]
) -> None:
    _assign(client, sdk, ["u1"])
    out_of_range = client.post(
        "/api/v1/experiments/cta/rewards", json={"rewards": [{"unit_id": "u1", "reward": 2}]}, headers=sdk
    )
    assert out_of_range.status_code == 422
    assert out_of_range.json()["detail"][0]["field"] == "rewards.0.reward"
    not_finite = client.post(
        "/api/v1/experiments/cta/rewards", content=b'{"rewards": [{"unit_id": "u1", "reward": NaN}]}', headers=sdk
    )
    assert not_finite.status_code == 422
    not_a_number = client.post(
        "/api/v1/experiments/cta/rewards", json={"rewards": [{"unit_id": "u1", "reward": False}]}, headers=sdk
    )
    assert not_a_number.status_code == 422  # the schema says number; pydantic alone would take false as 0.0
    hash_experiment = client.get(f"/api/v1/experiments/{running}/weights", headers=sdk)
    assert hash_experiment.status_code == 409
    assert hash_experiment.json()["detail"][0]["field"] == "allocation.method"
    assert client.get("/api/v1/experiments/nope/weights", headers=sdk).status_code == 404
    too_many = [{"unit_id": f"u{i}", "reward": 1} for i in range(51)]
    assert client.post("/api/v1/experiments/cta/rewards", json={"rewards": too_many}, headers=sdk).status_code == 413


def test_exposures_record_the_assignments_sdks_made(
    client: TestClient, bandit: str, sdk: dict[str, str], database_url: str
) -> None:
    now = datetime.now(UTC).isoformat()
    exposures = [
        {"experiment": "cta", "unit_id": "app-1", "variant": "b", "timestamp": now},
        {"experiment": "cta", "unit_id": "app-2", "variant": "a", "timestamp": now},
    ]
    assert client.post("/api/v1/exposures", json={"exposures": exposures}, headers=sdk).status_code == 200
    with open_store(database_url) as store:
        stored = store.assignments.get_many(experiment_key="cta", unit_ids=["app-1", "app-2"])
    assert {u: a.variant for u, a in stored.items()} == {"app-1": "b", "app-2": "a"}
    assert _assign(client, sdk, ["app-1", "app-2"]) == {"app-1": "b", "app-2": "a"}
    rewards = [{"unit_id": "app-1", "reward": 1}, {"unit_id": "app-2", "reward": 0}]
    answer = client.post("/api/v1/experiments/cta/rewards", json={"rewards": rewards}, headers=sdk)
    assert answer.json()["recorded"] == 2


def test_a_bandit_is_analysed_window_by_window_in_results_status_and_the_srm_gauge(
    client: TestClient, admin: dict[str, str], sdk: dict[str, str], database_url: str
) -> None:
    spec = copy.deepcopy(BANDIT)
    spec["metrics"] = {"goal": ["signup_rate"]}
    spec["allocation"]["bandit"] |= {"metric": "signup", "floor": 0.1, "draws": 1000}
    with open_store(database_url) as store:
        store.metrics.put_many(
            definitions=[{"name": "signup_rate", "kind": "binary", "event": "signup", "window_days": 7}], actor="test"
        )
    assert client.put("/api/v1/experiments/cta", json=spec, headers=admin).status_code == 200
    assert client.post("/api/v1/experiments/cta/start", headers=admin).status_code == 200
    for window in range(4):
        client.app.state.runtime.bandit_weights._cache.invalidate()  # type: ignore[attr-defined]
        variants = _assign(client, sdk, [f"w{window}-{i}" for i in range(40)])
        now = datetime.now(UTC)
        exposures = [
            {"experiment": "cta", "unit_id": u, "variant": v, "timestamp": now.isoformat()} for u, v in variants.items()
        ]
        assert client.post("/api/v1/exposures", json={"exposures": exposures}, headers=sdk).status_code == 200
        # b converts 3 units in 4, a 1 in 4: the bandit moves its traffic to b
        converted = {u for i, (u, v) in enumerate(variants.items()) if (i % 4 != 0) == (v == "b")}
        with open_store(database_url) as store:
            store.events.log_many(
                [Event(event_id=f"e-{u}", unit_id=u, name="signup", timestamp=now) for u in sorted(converted)]
            )
        rewards = [{"unit_id": u, "reward": float(u in converted)} for u in variants]
        assert (
            client.post("/api/v1/experiments/cta/rewards", json={"rewards": rewards}, headers=sdk).json()["recorded"]
            == 40
        )
    fresh = client.get("/api/v1/experiments/cta/results", params={"fresh": "true"}, headers=admin)
    assert fresh.status_code == 200, fresh.text
    payload = fresh.json()["payload"]
    assert len(payload["phases"]) >= 3  # window 0 at 50/50, then the bandit's weights
    assert payload["phases"][-1]["weights"]["b"] > 0.8
    assert payload["srm"]["flag"] is False
    assert payload["decision"]["category"] != "INVALID"
    assert payload["metrics"][0]["effect"]["test"] == "period-weighted-z"
    status = client.get("/api/v1/experiments/cta/status", headers=admin).json()
    assert (status["srm_flag"], status["configured"]) == (False, payload["phases"][-1]["weights"])
    scraped = client.get("/metrics", headers=admin).text
    assert 'splitlab_srm_flag{experiment="cta"} 0.0' in scraped
    with open_store(database_url) as store:
        expected = window_srm(store, "cta")
    assert f'splitlab_srm_p_value{{experiment="cta"}} {expected.p_value}' in scraped
    # A client that forces 50 new units into a while the window gives a about 10 %: a real mismatch.
    later = datetime.now(UTC).isoformat()
    forced = [{"experiment": "cta", "unit_id": f"forced-{i}", "variant": "a", "timestamp": later} for i in range(50)]
    assert client.post("/api/v1/exposures", json={"exposures": forced}, headers=sdk).status_code == 200
    assert 'splitlab_srm_flag{experiment="cta"} 1.0' in client.get("/metrics", headers=admin).text
    assert client.get("/api/v1/experiments/cta/status", headers=admin).json()["srm_flag"] is True


def test_a_contextual_bandit_assigns_over_http_with_the_units_attributes(
    client: TestClient, admin: dict[str, str], sdk: dict[str, str], database_url: str
) -> None:
    spec = copy.deepcopy(BANDIT)
    spec["allocation"]["bandit"] = {"policy": "linucb", "context": ["x"], "update_every": 40, "floor": 0.05}
    assert client.put("/api/v1/experiments/cta", json=spec, headers=admin).status_code == 200
    assert client.post("/api/v1/experiments/cta/start", headers=admin).status_code == 200
    units: list[dict[str, Any]] = [{"unit_id": f"u{i}", "attributes": {"x": (i % 2) * 2 - 1.0}} for i in range(40)]
    answer = client.post("/api/v1/assign/batch", json={"experiment": "cta", "units": units}, headers=sdk)
    assert answer.status_code == 200, answer.text
    variants = {a["unit_id"]: a["variant"] for a in answer.json()["assignments"]}
    now = datetime.now(UTC).isoformat()
    exposures = [
        {"experiment": "cta", "unit_id": u["unit_id"], "variant": variants[u["unit_id"]], "timestamp": now}
        | {"attributes": u["attributes"]}
        for u in units
    ]
    assert client.post("/api/v1/exposures", json={"exposures": exposures}, headers=sdk).status_code == 200
    # a pays for units with x > 0, b for the others
    rewards = [
        {"unit_id": u["unit_id"], "reward": float((u["attributes"]["x"] > 0) == (variants[u["unit_id"]] == "a"))}
        for u in units
    ]
    assert (
        client.post("/api/v1/experiments/cta/rewards", json={"rewards": rewards}, headers=sdk).json()["recorded"] == 40
    )
    client.app.state.runtime.bandit_weights._policies.invalidate()  # type: ignore[attr-defined]
    fresh: list[dict[str, Any]] = [
        {"unit_id": f"n{i}", "attributes": {"x": 0.9 if i < 20 else -0.9}} for i in range(40)
    ]
    answer = client.post("/api/v1/assign/batch", json={"experiment": "cta", "units": fresh}, headers=sdk)
    assert answer.status_code == 200, answer.text
    chosen = [a["variant"] for a in answer.json()["assignments"]]
    assert chosen[:20].count("a") >= 16
    assert chosen[20:].count("b") >= 16
    with open_store(database_url) as store:  # the same rule as the CLI and the Python API
        expected = [assign(store, "cta", u["unit_id"], u["attributes"]).variant for u in fresh]
    assert chosen == expected
    missing = client.post("/api/v1/assign", json={"experiment": "cta", "unit_id": "z"}, headers=sdk)
    assert missing.status_code == 422
    assert "attributes.x == None, must be a finite number" in missing.text
    assert client.get("/api/v1/experiments/cta/weights", headers=sdk).status_code == 409
    assert client.get("/api/v1/config", headers=sdk).status_code == 200
