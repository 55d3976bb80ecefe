"""Events: atomic batches, idempotent by event id, exact round trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from splitlab.storage import Event, Store, WriteResult
from splitlab.storage._sql import Transactions, sqlite_time
from splitlab.storage.events import write_event_rows
from splitlab.storage.tables import events

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def _events(ids: range, *, name: str = "purchase", prefix: str = "e") -> list[Event]:
    return [
        Event(
            event_id=f"{prefix}{i}",
            unit_id=f"u{i % 7}",
            name=name,
            value=i * 1.5,
            timestamp=T0 + timedelta(seconds=i, microseconds=i),
            properties={"currency": "EUR", "items": i % 3},
        )
        for i in ids
    ]


def test_a_batch_is_stored_and_reports_what_was_new(store: Store) -> None:
    assert store.events.log_many(_events(range(100))) == WriteResult(received=100, inserted=100)
    assert store.events.count() == 100
    assert store.events.count(name="purchase") == 100
    assert store.events.count(name="refund") == 0


def test_re_sending_adds_nothing_and_counts_duplicates(store: Store) -> None:
    store.events.log_many(_events(range(100)))
    assert store.events.log_many(_events(range(100))) == WriteResult(received=100, inserted=0)
    overlap = store.events.log_many(_events(range(90, 130)))
    assert (overlap.inserted, overlap.duplicates) == (30, 10)
    assert store.events.count() == 130


def test_a_repeated_id_keeps_the_first_copy(store: Store) -> None:
    first = Event(event_id="dup", unit_id="u1", name="purchase", value=1.0, timestamp=T0)
    second = Event(event_id="dup", unit_id="u2", name="refund", value=-1.0, timestamp=T0)
    assert store.events.log_many([first, second]) == WriteResult(received=2, inserted=1)
    assert store.events.log(second) == WriteResult(received=1, inserted=0)
    stored = store.events.get(event_id="dup")
    assert stored is not None
    assert (stored.unit_id, stored.name, stored.value) == ("u1", "purchase", 1.0)


def test_fields_round_trip_exactly(store: Store) -> None:
    kathmandu = timezone(timedelta(hours=5, minutes=45))
    when = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=kathmandu)
    store.events.log_many(
        [
            Event(event_id="a", unit_id="u", name="view", timestamp=when),
            Event(
                event_id="b",
                unit_id="u",
                name="purchase",
                value=0.1 + 0.2,
                timestamp=T0,
                properties={"sku": "é-1", "tags": ["x", None], "nested": {"n": 3}},
            ),
        ]
    )
    view = store.events.get(event_id="a")
    purchase = store.events.get(event_id="b")
    assert view is not None
    assert purchase is not None
    assert (view.value, view.properties, view.timestamp, view.timestamp.tzinfo) == (None, None, when, UTC)
    assert purchase.value == 0.1 + 0.2
    assert purchase.properties == {"sku": "é-1", "tags": ["x", None], "nested": {"n": 3}}
    assert abs(purchase.ingested_at - datetime.now(UTC)) < timedelta(minutes=5)
    assert store.events.get(event_id="missing") is None


def test_stored_times_compare_in_sql_as_times(store: Store) -> None:
    store.events.log_many(_events(range(10)))
    cut = T0 + timedelta(seconds=5, microseconds=5)
    with store.engine.connect() as conn:
        at = conn.execute(select(events.c.event_id).where(events.c.timestamp == cut)).scalars().all()
        after = conn.execute(select(func.count()).select_from(events).where(events.c.timestamp > cut)).scalar_one()
        first = conn.execute(select(func.min(events.c.timestamp))).scalar_one()
    assert at == ["e5"]
    assert after == 4
    assert first == T0


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (
            Event(event_id="bad", unit_id="u", name="x", timestamp=T0, properties={"score": float("nan")}),
            ValueError,
            r"events\[5\].properties is not JSON-serialisable",
        ),
        (
            Event(event_id="bad", unit_id="u", name="x", timestamp=T0, properties={"when": T0}),
            ValueError,
            r"events\[5\].properties is not JSON-serialisable",
        ),
        ({"event_id": "bad"}, TypeError, r"events\[5\] is a dict, must be an Event"),
    ],
)
def test_a_batch_with_one_bad_row_writes_nothing(store: Store, bad: object, error: type[Exception], match: str) -> None:
    store.events.log_many(_events(range(3)))
    batch = [*_events(range(5), prefix="new"), bad, *_events(range(3))]
    with pytest.raises(error, match=match):
        store.events.log_many(batch)  # type: ignore[arg-type]
    assert store.events.count() == 3
    assert store.events.get(event_id="new0") is None


def test_a_database_error_mid_batch_rolls_the_whole_batch_back(store: Store) -> None:
    when = T0 if store.dialect == "postgresql" else sqlite_time(T0)
    rows = [("ok", "u", "view", None, when, None, when), ("broken", None, "view", None, when, None, when)]
    with pytest.raises(IntegrityError), Transactions(store.engine).write() as conn:
        write_event_rows(conn, rows)
    assert store.events.count() == 0


def test_an_empty_batch_is_a_no_op(store: Store) -> None:
    assert store.events.log_many([]) == WriteResult(received=0, inserted=0)
    assert store.events.log_many(iter(_events(range(2)))) == WriteResult(received=2, inserted=2)
