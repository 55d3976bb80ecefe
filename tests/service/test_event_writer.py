"""Group commit of event batches: concurrent batches in one transaction, each answered with what it did."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from splitlab.service.errors import UnavailableError
from splitlab.service.hot_path.event_writer import EventWriter
from splitlab.storage import Event, Store, WriteResult, open_store

T = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with open_store(database_url) as opened:
        yield opened


def _rows(store: Store, ids: list[str]) -> list[tuple[Any, ...]]:
    return store.events.encode(Event(event_id=i, unit_id="u", name="buy", timestamp=T) for i in ids)


def test_concurrent_batches_are_committed_together_and_answered_one_by_one(store: Store) -> None:
    writer = EventWriter(store)
    commits: list[int] = []
    log_encoded = store.events.log_encoded

    def counting(batches: Any) -> list[WriteResult]:
        commits.append(len(batches))
        return log_encoded(batches)

    store.events.log_encoded = counting  # type: ignore[method-assign]
    batches = [[f"b{b}-e{i}" for i in range(200)] + ["shared"] for b in range(8)]
    start = threading.Barrier(8)

    def send(ids: list[str]) -> WriteResult:
        rows = _rows(store, ids)
        start.wait()
        return writer.submit(rows).result(60)

    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(send, batches))
    finally:
        writer.close()
    assert [r.received for r in results] == [201] * 8
    assert sum(r.inserted for r in results) == 8 * 200 + 1  # "shared" is stored once, by one batch
    assert sorted(r.duplicates for r in results) == [0] + [1] * 7
    assert store.events.count() == 1601
    assert sum(commits) == 8
    assert len(commits) < 8  # some batches shared a transaction


def test_a_failed_transaction_fails_every_batch_in_it(store: Store) -> None:
    writer = EventWriter(store)

    def broken(batches: Any) -> list[WriteResult]:
        raise RuntimeError("disk full")

    store.events.log_encoded = broken  # type: ignore[method-assign]
    try:
        with pytest.raises(RuntimeError, match="disk full"):
            writer.submit(_rows(store, ["e1"])).result(60)
    finally:
        writer.close()
    with pytest.raises(UnavailableError, match="stopping"):
        writer.submit(_rows(store, ["e2"]))


def test_a_deadlocked_group_is_written_again(store: Store) -> None:
    """PostgreSQL aborts one of two transactions that wait on each other's event ids; the writer retries it."""
    writer = EventWriter(store)
    calls: list[int] = []
    log_encoded = store.events.log_encoded

    class DeadlockError(Exception):
        sqlstate = "40P01"

    def deadlocking_once(batches: Any) -> list[WriteResult]:
        calls.append(len(batches))
        if len(calls) == 1:
            raise OperationalError("INSERT ...", {}, DeadlockError("deadlock detected"))
        return log_encoded(batches)

    store.events.log_encoded = deadlocking_once  # type: ignore[method-assign]
    try:
        result = writer.submit(_rows(store, ["e1", "e2"])).result(60)
    finally:
        writer.close()
    assert (result.inserted, len(calls)) == (2, 2)
    assert store.events.count() == 2


def test_a_batch_whose_request_gave_up_does_not_stop_the_writer_and_is_counted(store: Store) -> None:
    committed: list[WriteResult] = []
    writer = EventWriter(store, committed=committed.append)
    release = threading.Event()
    log_encoded = store.events.log_encoded

    def slow(batches: Any) -> list[WriteResult]:
        release.wait(10)
        return log_encoded(batches)

    store.events.log_encoded = slow  # type: ignore[method-assign]
    try:
        abandoned = writer.submit(_rows(store, ["e1"]))
        assert abandoned.cancel()  # its request timed out before the commit
        release.set()
        assert writer.submit(_rows(store, ["e2"])).result(10).inserted == 1
    finally:
        writer.close()
    assert store.events.count() == 2  # the abandoned batch was written all the same
    assert sum(r.inserted for r in committed) == 2  # and counted (the metrics match the store)
