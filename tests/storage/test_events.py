"""Events: atomic batches, idempotent by event id, exact round trips."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
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


def _nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (
            Event(event_id="bad", unit_id="u", name="x", timestamp=T0, properties={"score": float("nan")}),
            ValueError,
            r"events\[5\].properties.score: nan is not a finite number",
        ),
        (  # PostgreSQL's jsonb refuses NUL: refused on every backend, before anything is written
            Event(event_id="bad", unit_id="u", name="x", timestamp=T0, properties={"note": ["ok", "a\x00b"]}),
            ValueError,
            r"events\[5\].properties.note.1: must not contain NUL characters",
        ),
        (
            Event(event_id="bad", unit_id="u", name="x", timestamp=T0, properties={"k\ud800": 1}),
            ValueError,
            r"events\[5\].properties.k.*: key must be valid Unicode",
        ),
        (
            Event(event_id="bad", unit_id="u", name="x", timestamp=T0, properties=_nested(40)),
            ValueError,
            r"events\[5\].properties(\.a)+: nested deeper than 32 levels",
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


def test_properties_that_only_look_suspicious_are_stored_as_given(store: Store) -> None:
    # Brackets and an escaped backslash before "u0000" inside strings fail the quick test on the
    # encoded text; the walk of the value finds nothing wrong.
    properties = {"text": "[" * 40 + "{", "path": "C:\\u0000", "deep": _nested(30)}
    store.events.log_many([Event(event_id="odd", unit_id="u", name="x", timestamp=T0, properties=properties)])
    stored = store.events.get(event_id="odd")
    assert stored is not None
    assert stored.properties == properties


class _Parsed:
    """A record with an Event's fields, as the service's request parser makes them (any offset)."""

    def __init__(self, event_id: str, timestamp: datetime) -> None:
        self.event_id, self.unit_id, self.name = event_id, "u", "view"
        self.value, self.properties, self.timestamp = 1.5, {"k": "v"}, timestamp


def test_encode_checked_takes_records_with_event_fields_and_stores_times_in_utc(store: Store) -> None:
    plus_two = timezone(timedelta(hours=2))
    rows = store.events.encode_checked([_Parsed("p1", datetime(2024, 5, 1, 2, 0, 0, 7, tzinfo=plus_two))])
    store.events.log_encoded([rows])
    stored = store.events.get(event_id="p1")
    assert stored is not None
    assert stored.timestamp == datetime(2024, 5, 1, 0, 0, 0, 7, tzinfo=UTC)
    assert stored.timestamp.utcoffset() == timedelta(0)
    assert (stored.value, stored.properties) == (1.5, {"k": "v"})


def test_encode_checked_names_a_time_out_of_range_in_utc(store: Store) -> None:
    early = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    expected = r"^events\[1\].timestamp: 0001-01-01T00:00:00\+01:00 is out of range once converted to UTC$"
    with pytest.raises(ValueError, match=expected):
        store.events.encode_checked([_Parsed("ok", T0), _Parsed("early", early)])


def test_a_database_error_mid_batch_rolls_the_whole_batch_back(store: Store) -> None:
    when = T0 if store.dialect == "postgresql" else sqlite_time(T0)
    rows = [("ok", "u", "view", None, when, None, when), ("broken", None, "view", None, when, None, when)]
    with pytest.raises(IntegrityError), Transactions(store.engine).write() as conn:
        write_event_rows(conn, rows)
    assert store.events.count() == 0


def test_an_empty_batch_is_a_no_op(store: Store) -> None:
    assert store.events.log_many([]) == WriteResult(received=0, inserted=0)
    assert store.events.log_many(iter(_events(range(2)))) == WriteResult(received=2, inserted=2)


# --- columns ------------------------------------------------------------------------------------

COLUMN_TIMES = [
    T0,
    datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2024, 2, 29, 12, 0, 0, 1, tzinfo=UTC),
]


def _columns(prefix: str, **changes: object) -> dict[str, object]:
    """Three events as columns: what :meth:`EventRepository.log_columns` takes."""
    columns: dict[str, object] = {
        "event_id": [f"{prefix}{i}" for i in range(3)],
        "unit_id": ["u1", "u2", "u1"],
        "name": ["view", "purchase", "view"],
        "timestamp": np.array([t.replace(tzinfo=None) for t in COLUMN_TIMES], dtype="datetime64[us]"),
        "value": np.array([1.0, 0.1 + 0.2, -2.5]),
    }
    return {**columns, **changes}


def _stored(store: Store, prefix: str) -> list[tuple[object, ...]]:
    """The stored columns (times as the driver returns them: SQLite's text, PostgreSQL's datetimes), in write order."""
    with store.engine.connect() as conn:
        query = "SELECT unit_id, name, value, timestamp, properties FROM events WHERE event_id LIKE %s ORDER BY id"
        if store.dialect == "sqlite":
            query = query.replace("%s", "?")
        return [tuple(row) for row in conn.exec_driver_sql(query, (f"{prefix}%",)).fetchall()]


def test_columns_store_the_rows_events_store(store: Store) -> None:
    events_ = [
        Event(event_id=f"m{i}", unit_id=u, name=n, timestamp=t, value=v)
        for i, (u, n, t, v) in enumerate(zip(["u1", "u2", "u1"], ["view", "purchase", "view"], COLUMN_TIMES,
                                             [1.0, 0.1 + 0.2, -2.5], strict=True))
    ]  # fmt: skip
    store.events.log_many(events_)
    assert store.events.log_columns(**_columns("c")) == WriteResult(received=3, inserted=3)  # type: ignore[arg-type]
    assert _stored(store, "c") == _stored(store, "m")
    stored = store.events.get(event_id="c1")
    assert stored is not None
    assert (stored.timestamp, stored.value) == (COLUMN_TIMES[1], 0.1 + 0.2)


def test_columns_are_idempotent_by_event_id_and_take_no_values(store: Store) -> None:
    store.events.log_columns(**_columns("c"))  # type: ignore[arg-type]
    again = store.events.log_columns(**_columns("c", event_id=["c0", "new", "new"], value=None))  # type: ignore[arg-type]
    assert again == WriteResult(received=3, inserted=1)
    new = store.events.get(event_id="new")
    assert new is not None
    assert (new.unit_id, new.value, new.properties) == ("u2", None, None)
    assert store.events.log_columns(
        event_id=[], unit_id=[], name=[], timestamp=np.array([], dtype="datetime64[us]")
    ) == (WriteResult(received=0, inserted=0))


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"unit_id": ["u1", " ", "u1"]}, ValueError, r"^events\[1\]\.unit_id == ' ', must be a non-empty string$"),
        ({"event_id": ["c0", "c1", 2]}, TypeError, r"^events\[2\]\.event_id == 2, must be a string$"),
        ({"name": ["view", "", "view"]}, ValueError, r"^events\[1\]\.name == '', must be a non-empty string$"),
        ({"value": np.array([1.0, 2.0, np.inf])}, ValueError, r"^events\[2\]\.value == inf, must be finite$"),
        ({"value": np.array(["1", "2", "3"])}, TypeError, r"^value is a <U1 array, must hold real numbers$"),
        (
            {"timestamp": np.array(["2024-05-01", "NaT", "2024-05-01"], dtype="datetime64[us]")},
            ValueError,
            r"^events\[1\]\.timestamp == NaT, must be a time from year 1 to 9999$",
        ),
        (
            {"timestamp": np.array(["2024-05-01", "2024-05-01", "10000-01-01"], dtype="datetime64[us]")},
            ValueError,
            r"^events\[2\]\.timestamp == 10000-01-01T00:00:00\.000000, must be a time from year 1 to 9999$",
        ),
        (
            {"timestamp": np.array(["2024-05-01"] * 3, dtype="datetime64[ns]")},
            TypeError,
            r"^timestamp is a datetime64\[ns\] array, must be datetime64\[us\] \(UTC\)$",
        ),
        (
            {"unit_id": ["u1", "u2"]},
            ValueError,
            r"^columns of different lengths \(event_id 3, unit_id 2, name 3, timestamp 3, value 3\), must have one",
        ),
    ],
)
def test_columns_with_one_bad_item_write_nothing(
    store: Store, changes: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        store.events.log_columns(**_columns("c", **changes))  # type: ignore[arg-type]
    assert store.events.count() == 0


@pytest.mark.parametrize("value", [1e308, -1e155, math.inf, math.nan])
def test_values_whose_square_is_not_finite_are_refused_by_every_path(store: Store, value: float) -> None:
    with pytest.raises(ValueError, match=r"^value == .*, must be finite"):
        Event(event_id="e1", unit_id="u1", name="buy", value=value, timestamp=datetime(2024, 5, 1, tzinfo=UTC))
    columns = _columns("c")
    columns["value"] = np.array([1.0, value, 2.0])
    with pytest.raises(ValueError, match=r"^events\[1\]\.value == .*, must be finite"):
        store.events.log_columns(**columns)  # type: ignore[arg-type]
    assert store.events.count() == 0
    largest = Event(event_id="e2", unit_id="u1", name="buy", value=1e154, timestamp=datetime(2024, 5, 1, tzinfo=UTC))
    assert store.events.log(largest) == WriteResult(1, 1)
