"""One rewards request must never poison a bandit (issue 15): the 1.5e308 reproduction over HTTP.

A reward of 1.5e308 POSTed with an sdk key used to make a Gaussian bandit's sum of squares infinite,
and its weights stayed at 50/50 through windows of clear signal. It is refused now (422, naming the
reward), nothing of its batch is stored, and the bandit still finds the winner.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from splitlab.storage import open_store

GAUSSIAN: dict[str, Any] = {
    "key": "revenue",
    "variants": [{"key": "a"}, {"key": "b"}],
    "allocation": {
        "method": "bandit",
        "bandit": {"policy": "gaussian-thompson", "update_every": 40, "draws": 1000, "seed": 5},
    },
}
REWARDS = "/api/v1/experiments/revenue/rewards"


def _start(client: TestClient, admin: dict[str, str], spec: dict[str, Any]) -> None:
    assert client.put("/api/v1/experiments/revenue", json=spec, headers=admin).status_code == 200
    assert client.post("/api/v1/experiments/revenue/start", headers=admin).status_code == 200


def _assign(client: TestClient, sdk: dict[str, str], units: list[str]) -> dict[str, str]:
    body = {"experiment": "revenue", "units": [{"unit_id": u} for u in units]}
    answer = client.post("/api/v1/assign/batch", json=body, headers=sdk)
    assert answer.status_code == 200, answer.text
    return {a["unit_id"]: a["variant"] for a in answer.json()["assignments"]}


def _weights(client: TestClient, sdk: dict[str, str]) -> dict[str, Any]:
    client.app.state.runtime.bandit_weights._cache.invalidate()  # type: ignore[attr-defined]
    answer = client.get("/api/v1/experiments/revenue/weights", headers=sdk)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _stored_totals(database_url: str) -> dict[str, tuple[int, float, float]]:
    with open_store(database_url) as store:
        arms = store.bandits.get(experiment_key="revenue")
    return {key: (arm.n, arm.sum, arm.sum_sq) for key, arm in arms.items() if "~" not in key}


def test_a_huge_reward_is_refused_and_the_bandit_still_finds_the_winner(
    client: TestClient, admin: dict[str, str], sdk: dict[str, str], database_url: str
) -> None:
    _start(client, admin, GAUSSIAN)
    rng = np.random.default_rng(2)
    variants = _assign(client, sdk, [f"u{i}" for i in range(40)])
    clean = [{"unit_id": u, "reward": float(rng.normal()) + (10.0 if v == "b" else 0.0)} for u, v in variants.items()]
    poisoned = copy.deepcopy(clean)
    poisoned[3]["reward"] = 1.5e308
    refused = client.post(REWARDS, json={"rewards": poisoned}, headers=sdk)
    assert refused.status_code == 422, refused.text
    [problem] = refused.json()["detail"]
    assert problem["field"] == "rewards.3.reward"
    assert problem["message"].startswith("reward of unit 'u3' == 1.5e+308, must be in [-1e+12, 1e+12]")
    assert _stored_totals(database_url) == {}  # nothing of the batch
    # The same batch without the huge reward is all new, and the next window goes to the winner.
    assert client.post(REWARDS, json={"rewards": clean}, headers=sdk).json()["recorded"] == 40
    weights = _weights(client, sdk)
    assert (weights["window"], weights["phase"]) == (1, "adaptive")
    assert weights["weights"][1] > 0.95
    assert all(np.isfinite(total) for cell in _stored_totals(database_url).values() for total in cell)


def test_a_declared_range_takes_rewards_at_its_bounds_over_http(
    client: TestClient, admin: dict[str, str], sdk: dict[str, str]
) -> None:
    bad = copy.deepcopy(GAUSSIAN)
    bad["allocation"]["bandit"]["reward_range"] = [10, 0]
    refused_spec = client.put("/api/v1/experiments/revenue", json=bad, headers=admin)
    assert refused_spec.status_code == 422
    assert refused_spec.json()["detail"][0]["field"] == "allocation.bandit.reward_range"
    declared = copy.deepcopy(GAUSSIAN)
    declared["allocation"]["bandit"]["reward_range"] = [0, 10]
    _start(client, admin, declared)
    variants = _assign(client, sdk, [f"u{i}" for i in range(40)])
    at_bounds = [{"unit_id": u, "reward": 10.0 if v == "b" else 0.0} for u, v in variants.items()]
    past = [*at_bounds[:5], {"unit_id": at_bounds[5]["unit_id"], "reward": 10.001}]
    refused = client.post(REWARDS, json={"rewards": past}, headers=sdk)
    assert refused.status_code == 422
    assert refused.json()["detail"] == [
        {
            "field": "rewards.5.reward",
            "message": "reward of unit 'u5' == 10.001, must be in [0, 10] (allocation.bandit.reward_range)",
        }
    ]
    assert client.post(REWARDS, json={"rewards": at_bounds}, headers=sdk).json()["recorded"] == 40
    assert _weights(client, sdk)["weights"][1] > 0.95
