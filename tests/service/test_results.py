"""Results: the latest stored readout, or a fresh analysis of the stored exposures and events."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from splitlab.operations.simulation import simulate
from splitlab.specs import ExperimentSpec, MetricDefinition
from splitlab.storage import open_store

URL = "/api/v1/experiments/checkout/results"
SPEC = {
    "key": "checkout",
    "variants": [{"key": "control"}, {"key": "treatment"}],
    "hypothesis": {"primary_metric": "conversion", "direction": "increase", "mde": 0.1, "baseline": 0.1},
    "metrics": {"goal": ["conversion"]},
}
CONVERSION = {"name": "conversion", "kind": "binary", "event": "purchase", "window_days": 7}


def _run_with_traffic(client: TestClient, admin: dict[str, str], database_url: str, **simulation: Any) -> None:
    """Define the metric, create and start ``checkout`` through the API, and simulate its traffic."""
    with open_store(database_url) as store:
        store.metrics.put_many(definitions=[CONVERSION], actor="test")
    assert client.put("/api/v1/experiments/checkout", json=SPEC, headers=admin).status_code == 200
    assert client.post("/api/v1/experiments/checkout/start", headers=admin).status_code == 200
    with open_store(database_url) as store:
        metrics = {"conversion": MetricDefinition.model_validate(CONVERSION)}
        simulate(store, ExperimentSpec.model_validate(SPEC), metrics, **simulation)


def test_fresh_analysis_is_stored_and_then_served(client: TestClient, admin: dict[str, str], database_url: str) -> None:
    _run_with_traffic(client, admin, database_url, units=2_000, seed=3)
    none_yet = client.get(URL, headers=admin)
    assert none_yet.status_code == 404
    assert "?fresh=true" in none_yet.json()["detail"][0]["message"]
    fresh = client.get(URL, params={"fresh": "true"}, headers=admin)
    assert fresh.status_code == 200, fresh.text
    body = fresh.json()
    assert body["fresh"] is True
    assert body["spec_version"] == 2
    assert sum(body["payload"]["units"].values()) == 2_000
    latest = client.get(URL, headers=admin).json()
    assert (latest["snapshot_id"], latest["fresh"]) == (body["snapshot_id"], False)
    assert client.get("/api/v1/experiments/nope/results", headers=admin).status_code == 404


def test_status_and_the_srm_gauge_flag_a_skewed_split(
    client: TestClient, admin: dict[str, str], database_url: str
) -> None:
    _run_with_traffic(client, admin, database_url, units=4_000, seed=5, split=(0.56, 0.44))
    status = client.get("/api/v1/experiments/checkout/status", headers=admin)
    assert status.status_code == 200, status.text
    body = status.json()
    assert (body["status"], body["srm_flag"]) == ("running", True)
    assert body["srm_p_value"] < 1e-3
    assert body["units"]["control"] > body["units"]["treatment"] > 1_000
    assert body["configured"] == {"control": 0.5, "treatment": 0.5}
    scraped = client.get("/metrics", headers=admin).text
    assert 'splitlab_srm_flag{experiment="checkout"} 1.0' in scraped
    for variant, units in body["units"].items():
        assert f'splitlab_exposed_units{{experiment="checkout",variant="{variant}"}} {float(units)}' in scraped
    assert client.get("/api/v1/experiments/nope/status", headers=admin).status_code == 404


def test_an_experiment_without_metrics_cannot_be_analysed(
    client: TestClient, running: str, admin: dict[str, str]
) -> None:
    # The request is fine; the stored experiment is what stands in the way: 409, not 422.
    for url in (f"/api/v1/experiments/{running}/status", f"/api/v1/experiments/{running}/results?fresh=true"):
        answer = client.get(url, headers=admin)
        assert answer.status_code == 409, answer.text
        assert answer.json()["detail"][0]["field"] == "spec.metrics"
