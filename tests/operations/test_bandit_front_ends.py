"""Bandit experiments through the CLI and over HTTP (SQLite and PostgreSQL): the same rules, the same words.

A Thompson bandit's traffic goes window by window through the operations (weights, recorded
assignments, exposures, purchases, rewards); ``splitlab analyze`` / ``status`` and ``GET
.../results`` / ``.../status`` then read the same valid, period-weighted readout. A contextual
bandit is applied, assigned with its context and refused without it by both front ends alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from splitlab.assignment import compile_plan
from splitlab.cli import app as cli_app
from splitlab.operations.assignment import evaluate
from splitlab.operations.bandits import current_weights, record_rewards
from splitlab.service import Settings, create_app
from splitlab.specs import ExperimentSpec, to_plan
from splitlab.storage import Event, Exposure, open_store

METRICS = "metrics:\n  - {name: signup_rate, kind: binary, event: signup, window_days: 7}\n"


def _bandit(key: str, **bandit: Any) -> dict[str, Any]:
    return {
        "key": key,
        "variants": [{"key": "a"}, {"key": "b"}],
        "metrics": {"goal": ["signup_rate"]},
        "allocation": {"method": "bandit", "bandit": {"metric": "signup", "floor": 0.1, "draws": 1000} | bandit},
    }


@pytest.fixture
def cli(database_url: str) -> Any:
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(cli_app, [*args, "--database", database_url], env={"SPLITLAB_ACTOR": "ana"})

    return run


@pytest.fixture
def http(database_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with open_store(database_url) as store:
        _, admin = store.keys.create(role="admin", name="ops", actor="test")
    with TestClient(create_app(Settings(database_url=database_url)), raise_server_exceptions=False) as client:
        yield client, {"Authorization": f"Bearer {admin}"}


def _apply(cli: Any, tmp_path: Path, spec: dict[str, Any]) -> Any:
    path = tmp_path / f"{spec['key']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return cli("apply", str(path))


def _traffic(database_url: str, key: str, windows: int = 5, per_window: int = 200) -> None:
    rng = np.random.default_rng(11)
    with open_store(database_url) as store:
        plan = compile_plan(to_plan(ExperimentSpec.model_validate(store.experiments.get(key=key).spec)))  # type: ignore[union-attr]
        for window in range(windows):
            units = [(f"{window}-{i}", None) for i in range(per_window)]
            weights = current_weights(store, key).weights
            variants = {r.unit_id: str(r.variant) for r in evaluate(plan, units, weights=weights)}
            store.assignments.record_many(experiment_key=key, variants=variants)
            now = datetime.now(UTC)
            converted = {u for u, v in variants.items() if rng.random() < 0.1 + 0.08 * window + 0.1 * (v == "b")}
            store.exposures.log_many(
                [Exposure(experiment_key=key, unit_id=u, variant=v, timestamp=now) for u, v in variants.items()]
            )
            store.events.log_many([Event(event_id=f"e{u}", unit_id=u, name="signup", timestamp=now) for u in converted])
            record_rewards(store, key, {u: float(u in converted) for u in variants})


def test_a_bandit_reads_the_same_valid_readout_through_the_cli_and_over_http(
    cli: Any, http: tuple[TestClient, dict[str, str]], tmp_path: Path, database_url: str
) -> None:
    (tmp_path / "metrics.yaml").write_text(METRICS)
    assert cli("apply", str(tmp_path / "metrics.yaml")).exit_code == 0
    assert _apply(cli, tmp_path, _bandit("cta", policy="thompson", update_every=200)).exit_code == 0
    assert cli("start", "cta").exit_code == 0
    _traffic(database_url, "cta")
    shown = cli("analyze", "cta", "--json", "--no-save")
    assert shown.exit_code == 0, shown.output
    readout = json.loads(shown.stdout)
    client, admin = http
    fresh = client.get("/api/v1/experiments/cta/results", params={"fresh": "true"}, headers=admin)
    assert fresh.status_code == 200, fresh.text
    served = fresh.json()["payload"]
    for payload in (readout, served):
        assert payload["srm"]["flag"] is False
        assert payload["decision"]["category"] != "INVALID"
        assert len(payload["phases"]) >= 3
        assert payload["metrics"][0]["effect"]["test"] == "period-weighted-z"
    assert served["metrics"][0]["effect"]["absolute_effect"] == readout["metrics"][0]["effect"]["absolute_effect"]
    assert [p["weights"] for p in served["phases"]] == [p["weights"] for p in readout["phases"]]
    status = json.loads(cli("status", "cta", "--json").stdout)
    assert status["srm_flag"] is client.get("/api/v1/experiments/cta/status", headers=admin).json()["srm_flag"] is False
    text = cli("status", "cta").stdout
    assert "SRM: p = " in text
    assert "(ok)" in text
    assert "SAMPLE RATIO MISMATCH" not in text


def test_a_contextual_bandit_is_applied_assigned_and_refused_alike(
    cli: Any, http: tuple[TestClient, dict[str, str]], tmp_path: Path
) -> None:
    client, admin = http
    (tmp_path / "metrics.yaml").write_text(METRICS)
    assert cli("apply", str(tmp_path / "metrics.yaml")).exit_code == 0
    no_context = _bandit("ctx", policy="linucb", update_every=50)
    refused = _apply(cli, tmp_path, no_context)
    assert refused.exit_code == 2
    answer = client.put("/api/v1/experiments/ctx", json=no_context, headers=admin)
    assert answer.status_code == 422
    message = "policy 'linucb' is contextual: context must name the unit attributes it decides on"
    assert message in refused.output
    assert message in answer.json()["detail"][0]["message"]
    assert _apply(cli, tmp_path, _bandit("ctx", policy="linucb", context=["x"], update_every=50)).exit_code == 0
    assert cli("start", "ctx").exit_code == 0
    by_cli = cli("assign", "ctx", "u1", "--attr", "x=0.4", "--json")
    assert by_cli.exit_code == 0, by_cli.output
    over_http = client.post(
        "/api/v1/assign", json={"experiment": "ctx", "unit_id": "u1", "attributes": {"x": 0.4}}, headers=admin
    )
    assert over_http.json()["variant"] == json.loads(by_cli.stdout)["variant"]
    missing_cli = cli("assign", "ctx", "u2", "--json")
    missing_http = client.post("/api/v1/assign", json={"experiment": "ctx", "unit_id": "u2"}, headers=admin)
    assert missing_cli.exit_code == 2
    assert missing_http.status_code == 422
    words = "attributes.x == None, must be a finite number: the contextual bandit decides on it"
    assert words in missing_cli.output
    assert words in missing_http.json()["detail"][0]["message"]
