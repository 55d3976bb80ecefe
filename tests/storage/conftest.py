"""Every storage test runs on SQLite (a temporary file) and on PostgreSQL (see tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from splitlab.storage import Store, open_store


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with open_store(database_url) as opened:
        yield opened


@pytest.fixture
def experiment(store: Store) -> str:
    """A registered two-variant experiment ("control", "treatment"); returns its key."""
    store.experiments.create(
        key="checkout",
        spec={"key": "checkout", "variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}]},
        actor="ana",
    )
    return "checkout"
