"""/metrics: Prometheus text with assignments, exposures, events and latency, counted per app."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_what_the_api_did(
    client: TestClient, running: str, admin: dict[str, str], sdk: dict[str, str]
) -> None:
    units = [{"unit_id": f"u{i}"} for i in range(20)]
    answer = client.post("/api/v1/assign/batch", json={"experiment": running, "units": units}, headers=sdk).json()
    treatment = sum(a["variant"] == "treatment" for a in answer["assignments"])
    exposure = {
        "experiment": running,
        "unit_id": "u1",
        "variant": "control",
        "timestamp": datetime.now(UTC).isoformat(),
    }
    client.post("/api/v1/exposures", json={"exposures": [exposure, {**exposure, "unit_id": "u2"}]}, headers=sdk)
    event = {"event_id": "e1", "unit_id": "u1", "name": "buy", "timestamp": "2024-05-01T00:00:00Z"}
    client.post("/api/v1/events", json={"events": [event, event]}, headers=sdk)
    client.post("/api/v1/events", json={"events": [{**event, "timestamp": "yesterday"}]}, headers=sdk)
    client.post("/api/v1/events", json={"events": [event] * 51}, headers=sdk)
    assert client.get("/metrics", headers=sdk).status_code == 403
    scraped = client.get("/metrics", headers=admin)
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    samples = _samples(scraped.text)
    assert samples[("splitlab_assignments_total", (("experiment", running), ("variant", "treatment")))] == treatment
    assert samples[("splitlab_assignments_total", (("experiment", running), ("variant", "control")))] == 20 - treatment
    assert samples[("splitlab_exposures_total", (("experiment", running), ("variant", "control")))] == 2
    assert samples[("splitlab_events_ingested_total", ())] == 1
    assert samples[("splitlab_events_duplicate_total", ())] == 1
    assert samples[("splitlab_event_batches_rejected_total", (("reason", "invalid"),))] == 1
    assert samples[("splitlab_event_batches_rejected_total", (("reason", "too_large"),))] == 1
    count = (
        "splitlab_request_duration_seconds_count",
        (("method", "POST"), ("route", "/api/v1/assign/batch"), ("status", "200")),
    )
    assert samples[count] == 1
