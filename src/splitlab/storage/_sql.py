"""Helpers shared by the repositories: transactions, dialect inserts, JSON and time encoding."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

WRITE_OPTION = "splitlab_write"
"""Execution option marking a write transaction (SQLite: BEGIN IMMEDIATE, so it waits for the lock up front)."""

IN_CHUNK = 500
"""Keys per ``IN (...)`` list: far below every backend's bound-parameter limit."""

_T = TypeVar("_T")

# One strict encoder: NaN and infinities are not JSON (PostgreSQL's jsonb refuses them).
_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":"))


class Transactions:
    """Read and write transactions on one engine.

    Every write runs in a transaction that holds the database's write lock from its first
    statement (SQLite ``BEGIN IMMEDIATE``; PostgreSQL's row locks do the same job), so a
    read-then-write sequence never fails half-way because another process wrote in between.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**{WRITE_OPTION: True})
        # SQLite has one writer at a time. Threads of one process queue on this lock, which wakes the
        # next one the moment the write commits, instead of on SQLite's busy handler, which polls with
        # sleeps of up to 100 ms (several concurrent batches then spend most of their time asleep).
        self._sqlite_writes = threading.Lock() if engine.dialect.name == "sqlite" else None

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    def read(self) -> AbstractContextManager[Connection]:
        """A read transaction (SQLite: deferred, so readers never block writers)."""
        return self.engine.begin()

    def write(self) -> AbstractContextManager[Connection]:
        """A write transaction, committed on success and rolled back on any error."""
        if self._sqlite_writes is None:
            return self._writer.begin()
        return self._queued_write(self._sqlite_writes)

    @contextmanager
    def _queued_write(self, lock: threading.Lock) -> Iterator[Connection]:
        with lock, self._writer.begin() as conn:
            yield conn


def upsert(table: Table, dialect: str) -> sqlite.Insert | postgresql.Insert:
    """The dialect's INSERT construct, which has ``on_conflict_do_nothing`` / ``on_conflict_do_update``."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def encode_json(value: Any, *, name: str) -> str:
    """Strict JSON text of ``value``; ValueError naming ``name`` when it is not JSON-serialisable."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        msg = f"{name} is not JSON-serialisable: {exc}"
        raise ValueError(msg) from exc


def json_encoder() -> Callable[[Any], str]:
    """The strict encoder's ``encode`` (raises TypeError/ValueError), for hot loops that report errors themselves."""
    return _ENCODER.encode


def dumps(value: Any) -> str:
    """Strict compact JSON (the engine's serializer for JSON columns)."""
    return _ENCODER.encode(value)


def sqlite_time(value: datetime) -> str:
    """An aware datetime as SQLite stores it: UTC, ``YYYY-MM-DD HH:MM:SS.ffffff`` (SQLAlchemy's format)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def now() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)


def chunks(items: Sequence[_T], size: int = IN_CHUNK) -> Iterator[Sequence[_T]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def unknown_experiment(key: str) -> str:
    """The one wording of a reference to an experiment the store does not hold."""
    return f"experiment {key!r} does not exist"


def not_running(key: str, status: str) -> str:
    """The one wording of data for an experiment that is not running (draft, paused, stopped, archived)."""
    return f"experiment {key!r} is {status}, not running"


def before_start(time: datetime, key: str, started: datetime) -> str:
    """The one wording of an exposure dated before its experiment started running."""
    return f"{_utc_text(time)} is before experiment {key!r} started ({_utc_text(started)})"


def in_future(time: datetime, latest: datetime, clock_skew: timedelta) -> str:
    """The one wording of a time later than now plus the clock-skew allowance."""
    return (
        f"{_utc_text(time)} is in the future: later than now plus the clock-skew allowance of "
        f"{clock_skew.total_seconds():g} s ({_utc_text(latest)})"
    )


def _utc_text(time: datetime) -> str:
    return time.astimezone(UTC).isoformat().replace("+00:00", "Z")


def undeclared_variant(variant: str, key: str, declared: frozenset[str]) -> str:
    """The one wording of a variant that experiment ``key``'s spec does not declare."""
    return f"variant {variant!r} is not a variant of experiment {key!r} ({', '.join(sorted(declared))})"


def variant_keys(spec: object) -> frozenset[str] | None:
    """The variant keys declared in a spec dict (``spec["variants"][i]["key"]``), or None when unknown."""
    if not isinstance(spec, dict):
        return None
    variants = spec.get("variants")
    if not isinstance(variants, list) or not variants:
        return None
    keys = [v.get("key") for v in variants if isinstance(v, dict)]
    if len(keys) != len(variants) or not all(isinstance(k, str) for k in keys):
        return None
    return frozenset(str(k) for k in keys)
