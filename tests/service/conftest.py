"""Service tests go through the real app (TestClient, lifespan included) on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from splitlab.service import Settings, create_app
from splitlab.storage import open_store

SPEC = {
    "key": "checkout",
    "variants": [
        {"key": "control", "weight": 0.5, "payload": {"color": "grey"}},
        {"key": "treatment", "weight": 0.5, "payload": {"color": "blue"}},
    ],
}


@pytest.fixture
def spec() -> dict[str, Any]:
    """A two-variant spec with payloads (a fresh copy per test)."""
    return copy.deepcopy(SPEC)


@pytest.fixture
def keys(database_url: str) -> dict[str, str]:
    """Full API keys by role, created in the store before the app starts."""
    with open_store(database_url) as store:
        _, admin_key = store.keys.create(role="admin", name="ops", actor="test")
        _, sdk_key = store.keys.create(role="sdk", name="web", actor="test")
    return {"admin": admin_key, "sdk": sdk_key}


@pytest.fixture
def admin(keys: dict[str, str]) -> dict[str, str]:
    """Headers of an admin request."""
    return {"Authorization": f"Bearer {keys['admin']}"}


@pytest.fixture
def sdk(keys: dict[str, str]) -> dict[str, str]:
    """Headers of an sdk request."""
    return {"Authorization": f"Bearer {keys['sdk']}"}


def service_settings(database_url: str) -> Settings:
    """The service tests' settings: limits small enough for a test to reach them."""
    return Settings(database_url=database_url, max_batch_size=50, max_body_bytes=64 * 1024)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return service_settings(database_url)


@pytest.fixture
def client(settings: Settings, keys: dict[str, str]) -> Iterator[TestClient]:  # keys exist before the app starts
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def running(client: TestClient, admin: dict[str, str]) -> str:
    """The two-variant experiment ``checkout``, created and started through the API."""
    assert client.put("/api/v1/experiments/checkout", json=SPEC, headers=admin).status_code == 200
    assert client.post("/api/v1/experiments/checkout/start", headers=admin).status_code == 200
    return "checkout"
