"""The assignment recorder: batched writes, group commit for waiting callers, the store arbitrates.

Nothing queued is lost on close, nor while the store is unreachable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from splitlab.service.errors import UnavailableError
from splitlab.service.hot_path.recorder import AssignmentRecorder
from splitlab.storage import Store, open_store

SPEC = {"key": "checkout", "variants": [{"key": "control"}, {"key": "treatment"}]}


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with open_store(database_url) as opened:
        opened.experiments.create(key="checkout", spec=SPEC, actor="test", status="running")
        yield opened


class Notes:
    def __init__(self) -> None:
        self.stored: list[tuple[str, int, dict[str, str]]] = []
        self.failed: list[tuple[int, str]] = []

    def on_stored(self, key: str, version: int, variants: Mapping[str, str]) -> None:
        self.stored.append((key, version, dict(variants)))

    def on_failed(self, units: int, error: BaseException) -> None:
        self.failed.append((units, str(error)))


def test_queued_assignments_are_written_together_and_the_first_recorded_wins(store: Store) -> None:
    notes = Notes()
    recorder = AssignmentRecorder(store, interval=60.0, stored=notes.on_stored, failed=notes.on_failed)
    try:
        store.assignments.record(experiment_key="checkout", unit_id="u0", variant="treatment")  # another worker
        assert recorder.submit("checkout", 1, {"u0": "control", "u1": "control"}, wait=False) is None
        recorder.submit("checkout", 1, {"u1": "treatment", "u2": "treatment"}, wait=False)  # u1: the first queued wins
        assert notes.stored == []  # nothing written before the interval, a flush or a waiting caller
        future = recorder.submit("checkout", 1, {"u3": "control"}, wait=True)
        assert future is not None
        assert future.result(timeout=10) == {"u3": "control"}
        assert recorder.flush(timeout=10)
        written = {u: v for _, _, variants in notes.stored for u, v in variants.items()}
        assert written == {"u0": "treatment", "u1": "control", "u2": "treatment", "u3": "control"}
        assert len(notes.stored) == 1  # one transaction for everything queued
    finally:
        recorder.close()
    assert notes.failed == []


def test_a_waiting_caller_gets_the_variant_the_store_kept(store: Store) -> None:
    notes = Notes()
    recorder = AssignmentRecorder(store, interval=60.0, stored=notes.on_stored, failed=notes.on_failed)
    try:
        store.assignments.record(experiment_key="checkout", unit_id="u1", variant="treatment")
        future = recorder.submit("checkout", 1, {"u1": "control", "u2": "control"}, wait=True)
        assert future is not None
        assert future.result(timeout=10) == {"u1": "treatment", "u2": "control"}
    finally:
        recorder.close()


def test_close_writes_what_is_queued(store: Store) -> None:
    notes = Notes()
    recorder = AssignmentRecorder(store, interval=60.0, stored=notes.on_stored, failed=notes.on_failed)
    recorder.submit("checkout", 1, {f"u{i}": "control" for i in range(500)}, wait=False)
    recorder.close()
    stored = store.assignments.get_many(experiment_key="checkout", unit_ids=[f"u{i}" for i in range(500)])
    assert len(stored) == 500


def test_an_unreachable_store_keeps_assignments_queued_and_fails_waiters(store: Store) -> None:
    notes = Notes()
    recorder = AssignmentRecorder(store, interval=0.05, stored=notes.on_stored, failed=notes.on_failed)
    down = threading.Event()
    down.set()

    def flaky(write: Callable[..., Any]) -> Callable[..., Any]:
        def maybe(**kwargs: Any) -> Any:
            if down.is_set():
                raise OperationalError("INSERT", {}, Exception("the database is down"))
            return write(**kwargs)

        return maybe

    store.assignments.record_many = flaky(store.assignments.record_many)  # type: ignore[method-assign]
    store.assignments.add_many = flaky(store.assignments.add_many)  # type: ignore[method-assign]
    try:
        recorder.submit("checkout", 1, {"u1": "control"}, wait=False)
        future = recorder.submit("checkout", 1, {"u2": "treatment"}, wait=True)
        assert future is not None
        with pytest.raises(OperationalError):
            future.result(timeout=10)  # the caller answers 503
        assert not recorder.flush(timeout=0.3)  # still queued: flush waits for them
        down.clear()
        assert recorder.flush(timeout=10)
        assert {
            u: a.variant
            for u, a in store.assignments.get_many(experiment_key="checkout", unit_ids=["u1", "u2"]).items()
        } == {
            "u1": "control",
            "u2": "treatment",
        }
    finally:
        recorder.close()
    assert notes.failed == []


def test_assignments_the_store_refuses_are_reported(store: Store) -> None:
    notes = Notes()
    recorder = AssignmentRecorder(store, interval=60.0, stored=notes.on_stored, failed=notes.on_failed)
    try:
        recorder.submit("checkout", 1, {"u1": "no-such-variant"}, wait=False)
        assert recorder.flush(timeout=10)
    finally:
        recorder.close()
    assert notes.failed[0][0] == 1
    assert "no-such-variant" in notes.failed[0][1]
    assert not recorder.seen("checkout", 1, "u1")  # given up: a later request may queue the unit again


def test_written_units_are_counted_on_both_paths(store: Store) -> None:
    counted: list[int] = []
    notes = Notes()
    recorder = AssignmentRecorder(
        store, interval=60.0, stored=notes.on_stored, failed=notes.on_failed, recorded=counted.append
    )
    try:
        store.assignments.record(experiment_key="checkout", unit_id="u0", variant="treatment")  # another worker's
        recorder.submit("checkout", 1, {"u1": "control", "u2": "control"}, wait=False)
        assert recorder.flush(timeout=10)
        future = recorder.submit("checkout", 1, {"u0": "control", "u3": "control"}, wait=True)
        assert future is not None
        future.result(timeout=10)
    finally:
        recorder.close()
    assert counted == [2, 1]  # u0 was recorded by another worker: not counted


def test_a_caller_that_stopped_waiting_does_not_stop_the_thread(store: Store) -> None:
    notes = Notes()
    recorder = AssignmentRecorder(store, interval=60.0, stored=notes.on_stored, failed=notes.on_failed)
    release = threading.Event()
    record_many = store.assignments.record_many

    def slow(**kwargs: Any) -> Any:
        release.wait(10)
        return record_many(**kwargs)

    store.assignments.record_many = slow  # type: ignore[method-assign]
    try:
        abandoned = recorder.submit("checkout", 1, {"u1": "control"}, wait=True)
        assert abandoned is not None
        assert abandoned.cancel()  # its request timed out
        release.set()
        future = recorder.submit("checkout", 1, {"u2": "treatment"}, wait=True)
        assert future is not None
        assert future.result(timeout=10) == {"u2": "treatment"}
    finally:
        recorder.close()


def test_submitting_to_a_closed_recorder_is_refused_with_a_503(store: Store) -> None:
    notes = Notes()
    recorder = AssignmentRecorder(store, interval=60.0, stored=notes.on_stored, failed=notes.on_failed)
    recorder.close()
    with pytest.raises(UnavailableError, match="stopping"):
        recorder.submit("checkout", 1, {"u1": "control"}, wait=False)


def test_beyond_the_queue_limit_the_newest_requeued_units_stay(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the store is down, units pile up; past MAX_QUEUED the oldest are given up, never the newest."""
    monkeypatch.setattr("splitlab.service.hot_path.recorder.MAX_QUEUED", 3)
    notes = Notes()
    recorder = AssignmentRecorder(store, interval=0.05, stored=notes.on_stored, failed=notes.on_failed)
    down = threading.Event()
    down.set()
    add_many = store.assignments.add_many

    def flaky(**kwargs: Any) -> Any:
        if down.is_set():
            raise OperationalError("INSERT", {}, Exception("the database is down"))
        return add_many(**kwargs)

    store.assignments.add_many = flaky  # type: ignore[method-assign]
    try:
        recorder.submit("checkout", 1, {"old1": "control", "old2": "control"}, wait=False)
        assert not recorder.flush(timeout=0.3)  # failed once, requeued
        recorder.submit("checkout", 1, {"new1": "control", "new2": "control", "new3": "control"}, wait=False)
        assert not recorder.flush(timeout=0.3)
        down.clear()
        assert recorder.flush(timeout=10)
    finally:
        recorder.close()
    stored = store.assignments.get_many(experiment_key="checkout", unit_ids=["old1", "old2", "new1", "new2", "new3"])
    assert sorted(stored) == ["new1", "new2", "new3"]
    assert sum(units for units, _ in notes.failed) == 2


def test_closing_while_the_store_is_down_reports_every_unit_and_answers_every_waiter(store: Store) -> None:
    notes = Notes()
    recorder = AssignmentRecorder(store, interval=0.05, stored=notes.on_stored, failed=notes.on_failed)

    def down(**_kwargs: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("the database is down"))

    store.assignments.record_many = down  # type: ignore[method-assign]
    store.assignments.add_many = down  # type: ignore[method-assign]
    recorder.submit("checkout", 1, {"u1": "control"}, wait=False)
    assert not recorder.flush(timeout=0.2)
    waiting = recorder.submit("checkout", 1, {"u2": "control", "u3": "treatment"}, wait=True)
    assert waiting is not None
    recorder.close(timeout=10)
    with pytest.raises((OperationalError, UnavailableError)):
        waiting.result(timeout=5)  # answered (503), not left hanging
    assert sum(units for units, _ in notes.failed) == 3  # nothing dropped without a report
