"""The SDK against a real ``splitlab serve`` process on a loopback port (SQLite and PostgreSQL)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from sqlalchemy import select

from splitlab.sdk import FALLBACK, Client
from splitlab.sdk.records import Item
from splitlab.storage import open_store
from splitlab.storage.tables import events

SPEC: dict[str, Any] = {
    "key": "checkout",
    "variants": [
        {"key": "control", "weight": 0.5, "payload": {"color": "grey"}},
        {"key": "treatment", "weight": 0.5, "payload": {"color": "blue"}},
    ],
    "targeting": {"include": [{"attribute": "country", "operator": "in", "value": ["DE", "FR"]}]},
}

CACHE_SECONDS = "0.2"
"""The server's ``cache_seconds`` (1 by default): a change reaches its config within 0.4 s, so the waits are short."""


def _keys(database_url: str) -> tuple[dict[str, str], str]:
    with open_store(database_url) as store:
        _, admin = store.keys.create(role="admin", name="ops", actor="test")
        _, sdk = store.keys.create(role="sdk", name="web", actor="test")
    return {"Authorization": f"Bearer {admin}"}, sdk


def _until(predicate: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # polling for a state, not timing anything


def test_sdk_assigns_like_the_service_and_delivers_to_the_store(database_url: str, servers: Callable[..., Any]) -> None:
    admin, sdk_key = _keys(database_url)
    server = servers(database_url, SPLITLAB_CACHE_SECONDS=CACHE_SECONDS)
    reports: list[tuple[str, int, str]] = []

    def on_error(kind: str, items: Sequence[Item], reason: str) -> None:
        reports.append((kind, len(items), reason))

    with httpx.Client(base_url=server.base, headers=admin, timeout=30) as api:
        assert api.put("/api/v1/experiments/checkout", json=SPEC).status_code == 200
        assert api.post("/api/v1/experiments/checkout/start").status_code == 200
        client = Client(server.base, sdk_key, refresh_interval=0.2, flush_interval=0.05, on_error=on_error)
        try:
            _until(lambda: client.assign("checkout", "probe", {"country": "DE"}).reason != FALLBACK, "the config")
            units = [(f"user-{i}", {"country": "DE" if i % 3 else "US"}) for i in range(60)]
            local = [client.assign("checkout", unit, attributes) for unit, attributes in units]
            for (unit, attributes), mine in zip(units, local, strict=True):
                served = api.post(
                    "/api/v1/assign", json={"experiment": "checkout", "unit_id": unit, "attributes": attributes}
                ).json()
                assert (mine.variant, mine.enrolled, mine.payload) == (
                    served["variant"],
                    served["enrolled"],
                    served["payload"],
                ), unit
            assert {a.reason for a in local} == {"enrolled", "not_targeted"}
            ids = [client.track(unit, "purchase", 9.5, {"sku": "A1"}) for unit, _ in units[:25]]
            assert client.flush(timeout=30)
            stats = client.stats
            enrolled = [unit for (unit, _), a in zip(units, local, strict=True) if a.enrolled]
            assert (stats.delivered, stats.failed, stats.dropped) == (len(enrolled) + 1 + 25, 0, 0)  # +1: the probe

            # A weight change reaches the client with its next refresh (a new ETag) ...
            version = client.config_version
            skewed = copy.deepcopy(SPEC)
            skewed["variants"][0]["weight"], skewed["variants"][1]["weight"] = 0.1, 0.9
            assert api.put("/api/v1/experiments/checkout", json=skewed).status_code == 200
            _until(lambda: client.config_version != version, "the new config")
            newcomers = [client.assign("checkout", f"new-{i}", {"country": "FR"}).variant for i in range(200)]
            assert newcomers.count("treatment") > 160
            # ... and an unchanged config costs a 304, which keeps the version.
            fetches = client.stats.config_fetches
            _until(lambda: client.stats.config_fetches > fetches + 2, "more refreshes")
            assert client.config_version != version

            # The service down: the last good config stays in use, and the failures are reported.
            server.stop()
            _until(lambda: any(kind == "config" for kind, _, _ in reports), "a config failure report")
            assert client.assign("checkout", "user-1", {"country": "DE"}).variant == local[1].variant
        finally:
            client.close()
    with open_store(database_url) as store:
        assert {e.unit_id for e in store.exposures.conflicts(experiment_key="checkout")} == set()
        for unit in enrolled:
            exposure = store.exposures.get(experiment_key="checkout", unit_id=unit)
            assert exposure is not None
            assert exposure.variant == next(a.variant for (u, _), a in zip(units, local, strict=True) if u == unit)
        with store.engine.connect() as conn:
            stored = set(conn.execute(select(events.c.event_id)).scalars())
        assert stored == set(ids)
