"""Events: what units did. Batches are atomic and idempotent by ``event_id``.

Ingestion is the store's hot path. A batch is checked and encoded in one tight Python loop, then
written by one ``executemany`` of a Core ``INSERT … ON CONFLICT (event_id) DO NOTHING``,
compiled for the connection's dialect and executed at the driver level
(``Connection.exec_driver_sql``). That skips SQLAlchemy's per-row parameter processing, which
would cost more than the insert itself; ``benchmarks/ingest_bench.py`` compares the result with a
bare driver ``executemany`` of the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from splitlab.storage._sql import Transactions, json_encoder, now, sqlite_time, upsert
from splitlab.storage.json_values import json_problems, storable_text
from splitlab.storage.records import MAX_VALUE, Event, StoredEvent, WriteResult, check_text, check_value
from splitlab.storage.tables import events

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["EventFields", "EventRepository", "event_problems"]

COLUMNS = ("event_id", "unit_id", "name", "value", "timestamp", "properties", "ingested_at")
"""The columns an ingested row fills, in the order of the tuples given to :func:`write_event_rows`."""


class EventFields(Protocol):
    """What an event to encode has: an :class:`Event`, or any record with its fields (the service's parsed requests)."""

    @property
    def event_id(self) -> str: ...  # noqa: D102
    @property
    def unit_id(self) -> str: ...  # noqa: D102
    @property
    def name(self) -> str: ...  # noqa: D102
    @property
    def value(self) -> float | None: ...  # noqa: D102
    @property
    def timestamp(self) -> datetime: ...  # noqa: D102
    @property
    def properties(self) -> Mapping[str, Any] | None: ...  # noqa: D102


class EventRepository:
    """Append-only events; an ``event_id`` is stored once, however often it is sent."""

    def __init__(self, tx: Transactions) -> None:
        self._tx = tx

    def log(self, event: Event) -> WriteResult:
        """Log one event (see :meth:`log_many`)."""
        return self.log_many([event])

    def log_many(self, events_: Iterable[Event]) -> WriteResult:
        """Log a batch of events in one transaction: all or nothing.

        Re-sending events whose ids are stored (or repeating an id within the batch) adds
        nothing: the first copy stored is kept. Every item is checked and encoded before the
        first row is written, so a bad item raises and leaves the store unchanged.

        Returns:
            Rows received and rows inserted (new event ids).

        Raises:
            TypeError: An item is not an :class:`Event`.
            ValueError: An item's properties are not JSON (NaN, infinities, non-JSON objects).
        """
        rows = self.encode(events_)
        return self.log_encoded([rows])[0]

    def encode(self, events_: Iterable[Event]) -> list[tuple[Any, ...]]:
        """Check and encode a batch for :meth:`log_encoded` (the Python half of :meth:`log_many`).

        Raises:
            TypeError: An item is not an :class:`Event`.
            ValueError: An item's properties are not JSON the databases take (see
                :mod:`splitlab.storage.json_values`); the message names the item and the field.
        """
        batch = events_ if isinstance(events_, list) else list(events_)
        for index, event in enumerate(batch):
            if not isinstance(event, Event):
                msg = f"events[{index}] is a {type(event).__name__}, must be an Event"
                raise TypeError(msg)
        return _encode(batch, text_times=self._tx.dialect == "sqlite")

    def encode_checked(self, items: Sequence[EventFields]) -> list[tuple[Any, ...]]:
        """:meth:`encode` for items that passed :class:`Event`'s own checks elsewhere, without building Events.

        For a caller whose parser already checked what :class:`Event` checks (the service's
        request schema): ids and name non-blank strings, ``value`` a finite float or None,
        ``timestamp`` timezone-aware, ``properties`` a JSON object or None. Building an Event
        per item would check it all again, in Python, per event.
        The encoding's own checks still apply (the time in range once in UTC, the properties
        JSON the databases take).

        Raises:
            ValueError: An item's time or properties cannot be stored; the message names the item and the field.
        """
        return _encode(items, text_times=self._tx.dialect == "sqlite")

    def log_columns(
        self,
        *,
        event_id: Sequence[str],
        unit_id: Sequence[str],
        name: Sequence[str],
        timestamp: npt.NDArray[np.datetime64],
        value: npt.NDArray[np.float64] | None = None,
    ) -> WriteResult:
        """Log a batch given as columns, one item per event, in one transaction (as :meth:`log_many` does).

        For callers that make events in bulk (the simulation): :class:`Event`'s checks run once per
        column, in C loops over the column, and times are formatted as one vector, instead of an
        Event built and checked per event. Events logged this way have no properties.

        Args:
            event_id: non-blank strings; an id stored already (or repeated) adds nothing.
            unit_id: non-blank strings.
            name: non-blank strings.
            timestamp: UTC times as numpy ``datetime64[us]`` (the stores' resolution).
            value: finite numbers whose squares are finite, or None for events without a value.

        Raises:
            TypeError: An item that is not a string, times that are not ``datetime64[us]``, values that are not numbers.
            ValueError: Columns of different lengths, or the first item the store refuses (named ``events[i].field``:
                a blank string, a time that is missing or out of range, a value that is not finite or whose square
                is not).
        """
        size = len(event_id)
        lengths = {"event_id": size, "unit_id": len(unit_id), "name": len(name), "timestamp": len(timestamp)}
        if value is not None:
            lengths["value"] = len(value)
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"{column} {n}" for column, n in lengths.items())
            msg = f"columns of different lengths ({listed}), must have one item per event each"
            raise ValueError(msg)
        if not size:
            return WriteResult(received=0, inserted=0)
        for field, column in (("event_id", event_id), ("unit_id", unit_id), ("name", name)):
            _check_text_column(column, field)
        text_times = self._tx.dialect == "sqlite"
        when = _time_column(timestamp, text_times=text_times)
        values = repeat(None) if value is None else _value_column(value)
        stamp = _ingested_at(text_times=text_times)
        rows = list(zip(event_id, unit_id, name, values, when, repeat(None), repeat(stamp), strict=False))
        return self.log_encoded([rows])[0]

    def log_encoded(self, batches: Sequence[Sequence[tuple[Any, ...]]]) -> list[WriteResult]:
        """Write encoded batches (from :meth:`encode`) in one transaction; what each one did, in order.

        One commit for several batches is the point: a commit costs a write of every page the
        batch touched (and an fsync), so a service that gathers the batches of concurrent
        requests into one transaction (group commit) ingests several times faster. An event id
        repeated across the batches is stored once, by the first batch that has it.
        """
        with self._tx.write() as conn:
            return [WriteResult(received=len(rows), inserted=write_event_rows(conn, rows)) for rows in batches]

    def get(self, *, event_id: str) -> StoredEvent | None:
        """The stored event with this id, or None."""
        with self._tx.read() as conn:
            row = conn.execute(select(events).where(events.c.event_id == event_id)).first()
        if row is None:
            return None
        return StoredEvent(
            event_id=row.event_id,
            unit_id=row.unit_id,
            name=row.name,
            value=row.value,
            timestamp=row.timestamp,
            properties=row.properties,
            ingested_at=row.ingested_at,
        )

    def count(self, *, name: str | None = None) -> int:
        """Stored events, or only those called ``name``."""
        query = select(func.count()).select_from(events)
        if name is not None:
            query = query.where(events.c.name == name)
        with self._tx.read() as conn:
            return int(conn.execute(query).scalar_one())


def _encode(batch: Sequence[EventFields], *, text_times: bool) -> list[tuple[Any, ...]]:
    """Rows for :func:`write_event_rows`, in one tight loop (this is most of the Python cost of ingestion)."""
    encode = json_encoder()
    stamp = _ingested_at(text_times=text_times)
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    try:
        for e in batch:
            p = e.properties
            properties = None
            if p is not None:
                properties = encode(p)
                if not storable_text(properties) and json_problems(p, ""):
                    break  # named below
            timestamp = e.timestamp.astimezone(UTC)
            # Aware UTC: its ISO text without the "+00:00" is exactly sqlite_time(timestamp), in one C call.
            when = timestamp.isoformat(" ", "microseconds")[:-6] if text_times else timestamp
            append((e.event_id, e.unit_id, e.name, e.value, when, properties, stamp))
    except (TypeError, ValueError, RecursionError, OverflowError) as exc:
        raise ValueError(_problem(len(rows), batch[len(rows)], exc)) from exc
    if len(rows) < len(batch):
        raise ValueError(_problem(len(rows), batch[len(rows)], None))
    return rows


def _ingested_at(*, text_times: bool) -> Any:
    """Now, encoded as the batch's ``ingested_at``: text on SQLite, an aware datetime elsewhere."""
    received = now()
    return sqlite_time(received) if text_times else received


def _check_text_column(column: Sequence[str], field: str) -> None:
    """:func:`~splitlab.storage.records.check_text` for every item, the first bad one named ``events[i].field``.

    The common case (all good) costs three passes in C; only a column with a bad item is walked in Python.
    """
    if all(map(isinstance, column, repeat(str))) and all(column) and not any(map(str.isspace, column)):
        return
    for index, item in enumerate(column):
        check_text(item, name=f"events[{index}].{field}")


def _time_column(timestamp: npt.NDArray[np.datetime64], *, text_times: bool) -> list[Any]:
    """Checked times, encoded as :func:`_encode` encodes one: ``sqlite_time`` text, or aware UTC datetimes."""
    import numpy as np  # imported by the callers of columns only: opening a store does not load numpy

    times = np.asarray(timestamp)
    if times.dtype != np.dtype("datetime64[us]"):
        msg = f"timestamp is a {times.dtype} array, must be datetime64[us] (UTC)"
        raise TypeError(msg)
    # NaT compares false with every time, so it is refused with the times out of range.
    outside = ~((times >= np.datetime64(datetime.min, "us")) & (times <= np.datetime64(datetime.max, "us")))
    if outside.any():
        index = int(np.argmax(outside))
        msg = f"events[{index}].timestamp == {times[index]}, must be a time from year 1 to 9999"
        raise ValueError(msg)
    if not text_times:
        return [t.replace(tzinfo=UTC) for t in times.tolist()]
    formatted = np.datetime_as_string(times, unit="us")
    # ISO text with a space for its "T" (always the 11th character from year 1 to 9999) is sqlite_time's format.
    formatted.view(formatted.dtype.char + "1").reshape(len(formatted), -1)[:, 10] = " "
    return list(formatted.tolist())


def _value_column(value: npt.NDArray[np.float64]) -> list[float]:
    """Checked values as floats: real, finite with a finite square, the first bad one named ``events[i].value``."""
    import numpy as np

    numbers = np.asarray(value)
    if numbers.dtype.kind not in "fiu":
        msg = f"value is a {numbers.dtype} array, must hold real numbers"
        raise TypeError(msg)
    # NaN compares false: refused with the infinities and the values whose square overflows.
    refused = ~(np.abs(numbers) <= MAX_VALUE)
    if refused.any():
        index = int(np.argmax(refused))
        check_value(float(numbers[index]), name=f"events[{index}].value")
    return list(numbers.astype(np.float64).tolist())


def _problem(index: int, event: EventFields, error: BaseException | None) -> str:
    """Why item ``index`` could not be encoded, naming its field (the slow path of :func:`_encode`)."""
    for field, message in event_problems(event, f"events[{index}]"):
        return f"{field}: {message}"
    return f"events[{index}].properties is not JSON-serialisable: {error!r}"


def event_problems(event: EventFields, where: str) -> list[tuple[str, str]]:
    """``(field, message)`` for each part of ``event`` the encoding refuses, fields under ``where``.

    The properties as :func:`~splitlab.storage.json_values.json_problems` walks them, and a time
    out of range once converted to UTC (a datetime near year 1 or 9999 with an offset).
    """
    problems = []
    if event.properties is not None:
        problems.extend(json_problems(event.properties, f"{where}.properties"))
    try:
        event.timestamp.astimezone(UTC)
    except OverflowError:
        problems.append((f"{where}.timestamp", f"{event.timestamp.isoformat()} is out of range once converted to UTC"))
    return problems


def write_event_rows(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> int:
    """Insert encoded rows (tuples in :data:`COLUMNS` order) in the caller's transaction; returns how many were new.

    Encoded means: times as :func:`~splitlab.storage._sql.sqlite_time` text on SQLite and aware
    datetimes on PostgreSQL, properties as JSON text or None, values finite floats or None.
    """
    if not rows:
        return 0
    sql, to_params = _compiled_insert(conn)
    if conn.dialect.name == "postgresql":
        # Row locks in event-id order: two overlapping batches in flight cannot deadlock.
        # (SQLite runs one write transaction at a time, so it needs no order.)
        rows = sorted(rows, key=itemgetter(0))
    params = list(rows) if to_params is None else [to_params(row) for row in rows]
    result = conn.exec_driver_sql(sql, params)
    # Both drivers report the rows an executemany changed; ON CONFLICT DO NOTHING changes none.
    return int(result.rowcount)


def _compiled_insert(conn: Connection) -> tuple[str, Callable[[tuple[Any, ...]], Any] | None]:
    """The driver-level SQL of the idempotent INSERT, and how a row tuple becomes its parameters (None: as is)."""
    statement = upsert(events, conn.dialect.name).on_conflict_do_nothing(index_elements=[events.c.event_id])
    # for_executemany: no implicit "RETURNING events.id", which PostgreSQL would otherwise compute per row.
    compiled = statement.compile(dialect=conn.dialect, column_keys=list(COLUMNS), for_executemany=True)
    positions = compiled.positiontup
    if positions is None:  # named parameters (psycopg): the bind names are the column names
        return compiled.string, lambda row: dict(zip(COLUMNS, row, strict=True))
    if list(positions) == list(COLUMNS):
        return compiled.string, None
    order = [COLUMNS.index(name) for name in positions]
    return compiled.string, lambda row: tuple(row[i] for i in order)
