"""Real server processes on loopback: several workers, several servers on one PostgreSQL, metrics across workers."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from splitlab.assignment import assign
from splitlab.specs import ExperimentSpec, to_plan
from splitlab.storage import open_store

SPEC: dict[str, Any] = {"key": "checkout", "variants": [{"key": "control"}, {"key": "treatment"}]}
CACHE_SECONDS = "0.2"
"""The servers' ``cache_seconds`` (1 by default): a change reaches every worker within 0.4 s, so the waits are short."""


def _admin_key(database_url: str) -> dict[str, str]:
    with open_store(database_url) as store:
        _, key = store.keys.create(role="admin", name="ops", actor="test")
    return {"Authorization": f"Bearer {key}"}


def _assigned(client: httpx.Client, units: list[str]) -> list[str]:
    body = {"experiment": "checkout", "units": [{"unit_id": u} for u in units]}
    answer = client.post("/api/v1/assign/batch", json=body)
    assert answer.status_code == 200, answer.text
    return [a["variant"] for a in answer.json()["assignments"]]


def _wait_for_version(client: httpx.Client, version: int) -> None:
    """Poll the config until this server serves ``version`` (workers re-read the store every cache_seconds).

    Each poll reaches any one worker: ten answers in a row with the version mean all of them have it.
    """
    deadline = time.monotonic() + 15
    in_a_row = 0
    while time.monotonic() < deadline:
        experiments = client.get("/api/v1/config").json()["experiments"]
        in_a_row = in_a_row + 1 if experiments and experiments[0]["version"] >= version else 0
        if in_a_row == 10:
            return
        time.sleep(0.05)  # polling for a state, not timing anything
    raise AssertionError(f"{client.base_url} never served version {version}")


def _assignments_counted(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "splitlab_assignments_total"
    )


def test_two_workers_assign_alike_and_count_metrics_together(database_url: str, servers: Callable[..., Any]) -> None:
    headers = _admin_key(database_url)
    server = servers(database_url, workers=2, SPLITLAB_CACHE_SECONDS=CACHE_SECONDS)
    plan = to_plan(ExperimentSpec.model_validate(SPEC))
    with httpx.Client(base_url=server.base, headers=headers, timeout=30) as client:
        assert client.put("/api/v1/experiments/checkout", json=SPEC).status_code == 200
        assert client.post("/api/v1/experiments/checkout/start").status_code == 200
        _wait_for_version(client, 2)
        for round_ in range(2):
            for i in range(20):
                answer = client.post("/api/v1/assign", json={"experiment": "checkout", "unit_id": f"u{i}"}).json()
                assert answer["variant"] == assign(plan, f"u{i}").variant, round_
        # Each scrape reaches one of the two workers; either adds up both workers' counters.
        assert {_assignments_counted(client) for _ in range(6)} == {40.0}


def test_two_servers_on_one_postgres_give_the_same_assignments(postgres_url: str, servers: Callable[..., Any]) -> None:
    headers = _admin_key(postgres_url)
    first = servers(postgres_url, SPLITLAB_CACHE_SECONDS=CACHE_SECONDS)
    second = servers(postgres_url, SPLITLAB_CACHE_SECONDS=CACHE_SECONDS)
    units = [f"user-{i}" for i in range(300)]
    with (
        httpx.Client(base_url=first.base, headers=headers, timeout=30) as a,
        httpx.Client(base_url=second.base, headers=headers, timeout=30) as b,
    ):
        assert a.put("/api/v1/experiments/checkout", json=SPEC).status_code == 200
        assert a.post("/api/v1/experiments/checkout/start").status_code == 200
        _wait_for_version(b, 2)
        before = _assigned(a, units)
        assert _assigned(b, units) == before
        assert set(before) == {"control", "treatment"}
        # A weight change through one server: assigned units keep their variant on both servers.
        skewed = copy.deepcopy(SPEC)
        skewed["variants"][0]["weight"], skewed["variants"][1]["weight"] = 0.05, 0.95
        assert a.put("/api/v1/experiments/checkout", json=skewed).json()["action"] == "updated"
        _wait_for_version(b, 3)
        assert _assigned(b, units) == before
        assert _assigned(a, units) == before
        newcomers = [f"new-{i}" for i in range(300)]
        on_b = _assigned(b, newcomers)
        assert _assigned(a, newcomers) == on_b
        assert on_b.count("treatment") > 250  # the new weights apply to units never assigned
