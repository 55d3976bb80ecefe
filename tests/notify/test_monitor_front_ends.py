"""The monitor through every front end: the CLI (and a SIGKILL between an action and its delivery),
``splitlab serve --monitor``, ``GET /experiments/{key}/actions`` and the Prometheus gauges.

The experiment's traffic is simulated over the last 20 days, so a pass on the real clock sees it all:
a +50 % effect under an always-valid test, with ``auto_promote``, is promoted at the first pass.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from splitlab.cli import app as cli
from splitlab.operations.experiments import apply_spec, change_status, get_experiment
from splitlab.operations.monitoring import monitor_once
from splitlab.operations.simulation import simulate
from splitlab.service import Settings, create_app
from splitlab.specs import ExperimentSpec, MetricDefinition
from splitlab.storage import open_store

from .conftest import SECRET, SECRET_ENV, Receiver

CONVERSION = {"name": "conversion", "kind": "binary", "event": "purchase", "window_days": 7}

Run = Callable[..., list[subprocess.CompletedProcess[str]]]
CACHE_SECONDS = 0.2
"""The served worker's ``cache_seconds`` (1 by default): short, so that its caches expire soon after an action."""
SLACK = 1.5
"""What an answer may take beyond a bound on a busy 2-core machine."""


def _prepare(database_url: str, hook: str, *, promote: bool = True) -> dict[str, str]:
    """A running sequential experiment with a clear winner, monitored (with auto_promote); an admin key's headers."""
    spec = ExperimentSpec.model_validate(
        {
            "key": "checkout",
            "variants": [
                {"key": "control", "payload": {"flow": "old"}},
                {"key": "treatment", "payload": {"flow": "new"}},
            ],
            "hypothesis": {"primary_metric": "conversion", "direction": "increase", "mde": 0.1, "baseline": 0.1},
            "metrics": {"goal": ["conversion"]},
            "analysis": {"method": "sequential", "sequential": "msprt"},
            "notifications": [{"name": "team", "url": f"{hook}/team", "secret_env": SECRET_ENV}],
            "monitoring": {"auto_promote": promote, "notify": ["team"]},
        }
    )
    with open_store(database_url) as store:
        _, admin = store.keys.create(role="admin", name="ops", actor="test")
        store.metrics.put_many(definitions=[CONVERSION], actor="test")
        apply_spec(store, spec, actor="test")
        change_status(store, key="checkout", action="start", actor="test")
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=20, hours=1)
        metrics = {"conversion": MetricDefinition.model_validate(CONVERSION)}
        simulate(store, spec, metrics, units=20_000, effects={"conversion": 0.5}, days=20, seed=5, start=start)
    return {"Authorization": f"Bearer {admin}"}


def test_the_cli_promotes_notifies_with_signed_webhooks_and_does_nothing_twice(
    database_url: str, receiver: Receiver
) -> None:
    _prepare(database_url, receiver.url)
    runner = CliRunner()
    first = runner.invoke(cli, ["monitor", "--once", "--database", database_url])
    assert first.exit_code == 0, first.output
    assert "checkout: STRONG_LAUNCH" in first.output or "checkout: LAUNCH" in first.output
    assert "action: promote treatment" in first.output
    with open_store(database_url) as store:
        record = get_experiment(store, "checkout")
        assert (record.status, record.rolled_out_variant) == ("rolled_out", "treatment")
    kinds = sorted(r.json["kind"] for r in receiver.requests)
    assert "action_taken" in kinds
    assert "decision_reached" in kinds
    assert all(r.verified for r in receiver.requests)  # every body signed with the target's secret
    assert all(r.path == "/team" for r in receiver.requests)
    again = runner.invoke(cli, ["monitor", "--once", "--database", database_url])
    assert again.exit_code == 0, again.output
    assert "no running experiment" in again.output
    assert len(receiver.requests) == len(kinds)  # nothing sent twice


def test_a_monitor_killed_between_its_action_and_the_delivery_delivers_once_after_a_restart(
    database_url: str, receiver: Receiver, run_python: Run
) -> None:
    _prepare(database_url, receiver.url)
    code = (
        "import os, signal\n"
        "from splitlab.operations.monitoring import monitor_once\n"
        "from splitlab.storage import open_store\n"
        f"store = open_store({database_url!r})\n"
        "report = monitor_once(store)\n"  # the action and its notifications committed; nothing delivered
        "print(report.runs[0].action.action, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    [killed] = run_python(code)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert killed.stdout == "promote\n"
    assert receiver.requests == []
    runner = CliRunner()
    for _ in range(2):  # the restart delivers; a second pass has nothing left
        result = runner.invoke(cli, ["monitor", "--once", "--database", database_url])
        assert result.exit_code == 0, result.output
    deliveries = receiver.deliveries()
    assert len(deliveries) == len(set(deliveries)) > 0
    assert [r.json["kind"] for r in receiver.requests].count("action_taken") == 1
    with open_store(database_url) as store:
        assert len(store.monitor.actions(key="checkout")) == 1


@pytest.fixture
def monitored(database_url: str, receiver: Receiver) -> Iterator[tuple[TestClient, dict[str, str]]]:
    admin = _prepare(database_url, receiver.url, promote=False)
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        yield client, admin


def test_actions_route_and_prometheus_gauges(monitored: tuple[TestClient, dict[str, str]], database_url: str) -> None:
    client, admin = monitored
    gauges = client.get("/metrics", headers=admin).text
    assert "splitlab_monitor_decision{" not in gauges  # not monitored yet
    with open_store(database_url) as store:  # analysed and notified; no policy to act on
        assert monitor_once(store).runs[0].action is None
    gauges = client.get("/metrics", headers=admin).text
    assert re.search(r'splitlab_monitor_decision\{category="(STRONG_)?LAUNCH",experiment="checkout"\} 1.0', gauges)
    assert 'splitlab_monitor_goal_p_value{experiment="checkout",metric="conversion",variant="treatment"}' in gauges
    assert 'splitlab_monitor_last_run_timestamp_seconds{experiment="checkout"}' in gauges
    answer = client.get("/api/v1/experiments/checkout/actions", headers=admin)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["experiment"], body["actions"]) == ("checkout", [])
    assert body["last_decision"] in {"LAUNCH", "STRONG_LAUNCH"}
    assert "decision_reached" in [n["kind"] for n in body["notifications"]]
    assert client.get("/api/v1/experiments/nope/actions", headers=admin).status_code == 404
    assert client.get("/api/v1/experiments/checkout/actions").status_code == 401


def test_serve_with_the_monitor_promotes_and_assign_serves_the_winner(
    database_url: str, receiver: Receiver, servers: Callable[..., Any]
) -> None:
    admin = _prepare(database_url, receiver.url)
    server = servers(
        database_url,
        SPLITLAB_MONITOR="true",
        SPLITLAB_MONITOR_POLL_SECONDS="0.5",
        SPLITLAB_CACHE_SECONDS=str(CACHE_SECONDS),
        **{SECRET_ENV: SECRET},
    )
    deadline = time.monotonic() + 60
    while True:
        status = httpx.get(f"{server.base}/api/v1/experiments/checkout", headers=admin).json()["status"]
        if status == "rolled_out":
            break
        assert time.monotonic() < deadline, f"not promoted: {status}"
        time.sleep(0.2)  # polling for the monitor's pass, not timing anything
    actions = httpx.get(f"{server.base}/api/v1/experiments/checkout/actions", headers=admin).json()
    assert [a["action"] for a in actions["actions"]] == ["promote"]
    assert actions["actions"][0]["actor"] == "monitor"
    # The worker serves the new status once its caches expire, within 2 x cache_seconds of the promotion.
    deadline = time.monotonic() + 2 * CACHE_SECONDS + SLACK
    while True:
        assigned = httpx.post(
            f"{server.base}/api/v1/assign/batch",
            json={"experiment": "checkout", "units": [{"unit_id": f"u{i}"} for i in range(20)]},
            headers=admin,
        ).json()["assignments"]
        if {(a["variant"], a["reason"]) for a in assigned} == {("treatment", "rolled_out")}:
            break
        assert time.monotonic() < deadline, f"still assigned by the cached status: {assigned[:2]}"
        time.sleep(0.05)  # polling for the cache's expiry, not timing anything
    assert {a["payload"]["flow"] for a in assigned} == {"new"}
