"""Every storage test runs on SQLite (a temporary file) and on PostgreSQL (see tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from splitlab.storage import Store, open_store
from splitlab.storage.tables import experiment_versions

STARTED = datetime(2024, 5, 1, tzinfo=UTC)
"""When the ``experiment`` fixture started running: the tests' exposures are dated after it."""


def _start_at(store: Store, key: str, when: datetime) -> None:
    """Start experiment ``key`` and date its start ``when`` (the store only ever records the time of the change)."""
    store.experiments.set_status(key=key, status="running", actor="ana")
    with store.engine.begin() as conn:
        conn.execute(
            update(experiment_versions)
            .where(experiment_versions.c.experiment_key == key, experiment_versions.c.status == "running")
            .values(changed_at=when)
        )


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with open_store(database_url) as opened:
        yield opened


@pytest.fixture
def experiment(store: Store) -> str:
    """A two-variant experiment ("control", "treatment") running since :data:`STARTED`; returns its key."""
    store.experiments.create(
        key="checkout",
        spec={"key": "checkout", "variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}]},
        actor="ana",
    )
    _start_at(store, "checkout", STARTED)
    return "checkout"


@pytest.fixture
def start_at() -> Callable[[Store, str, datetime], None]:
    """``start_at(store, key, when)``: start an experiment and date its start ``when``."""
    return _start_at
