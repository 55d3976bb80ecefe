"""Opening the store: URL resolution, engine set-up per backend, and migrations to head on open.

There are no module-level engines: :func:`open_store` builds one per call (app-factory style),
and :meth:`Store.close` disposes of it.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import URL, Connection, Engine, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.pool import StaticPool

from splitlab.storage._sql import WRITE_OPTION, Transactions, dumps
from splitlab.storage.assignments import AssignmentRepository
from splitlab.storage.bandits import BanditStateRepository
from splitlab.storage.errors import StoreUnavailableError
from splitlab.storage.events import EventRepository
from splitlab.storage.experiments import ExperimentRepository
from splitlab.storage.exposures import ExposureRepository
from splitlab.storage.keys import ApiKeyRepository
from splitlab.storage.metrics import MetricRepository
from splitlab.storage.monitor import MonitorRepository
from splitlab.storage.notifications import NotificationRepository
from splitlab.storage.snapshots import SnapshotRepository
from splitlab.storage.tables import deployment

__all__ = [
    "DEFAULT_URL",
    "URL_ENV_VAR",
    "Store",
    "StoreTimeouts",
    "alembic_config",
    "create_store_engine",
    "head_revision",
    "open_store",
    "resolve_url",
    "store_failure",
    "upgrade",
]

DEFAULT_URL = "sqlite:///splitlab.db"
"""The store when neither an argument nor ``SPLITLAB_DATABASE_URL`` names one (a file in the working directory)."""

URL_ENV_VAR = "SPLITLAB_DATABASE_URL"

SQLITE_BUSY_TIMEOUT_S = 30.0
"""How long a SQLite connection waits for another writer's lock before failing."""

SQLITE_PRAGMAS = (
    # 16 KiB pages (default 4 KiB) for a new database, before WAL fixes the page size: the
    # events indexes take scattered inserts and wider pages split less; batch ingestion runs
    # about 1.35x faster (benchmarks/ingest_bench.py). A no-op on an existing database.
    "PRAGMA page_size=16384",
    "PRAGMA journal_mode=WAL",  # readers never block the writer (a no-op in memory)
    "PRAGMA foreign_keys=ON",
    "PRAGMA cache_size=-32768",  # 32 MiB of page cache per connection (default 2 MiB)
)
"""Set on every SQLite connection, with the busy timeout of its :class:`StoreTimeouts`.

Durability stays at SQLite's default for WAL (synchronous=FULL).
"""


@dataclass(frozen=True, slots=True)
class StoreTimeouts:
    """How long the store's connections wait, so that no wait on the database is unbounded.

    The defaults suit the command line (an analysis may run for minutes); the HTTP service passes
    its own, seconds long (:class:`splitlab.service.Settings`). On PostgreSQL, ``connect_seconds`` is
    libpq's ``connect_timeout``, TCP keepalives and ``tcp_user_timeout`` drop a connection whose
    peer went silent (a network partition: no RST ever comes), and the statement, lock and
    idle-in-transaction limits are set for the session, so the server gives up too. On SQLite,
    ``lock_seconds`` is the busy timeout: how long a writer waits for another's lock.

    Attributes:
        connect_seconds: Longest wait for a new connection (PostgreSQL; at least 2, libpq's minimum).
        statement_seconds: Longest statement on PostgreSQL; None for no limit.
        lock_seconds: Longest wait for a lock (PostgreSQL ``lock_timeout``, SQLite busy timeout).
        pool_seconds: Longest wait for a free pooled connection (SQLAlchemy's ``pool_timeout``).
        silent_peer_seconds: How long a PostgreSQL connection may go without an answer from the
            network before the kernel drops it (keepalives and ``tcp_user_timeout``).
    """

    connect_seconds: float = 10.0
    statement_seconds: float | None = None
    lock_seconds: float = SQLITE_BUSY_TIMEOUT_S
    pool_seconds: float = 30.0
    silent_peer_seconds: float = 30.0

    def postgres_connect_args(self, url: URL) -> dict[str, Any]:
        """The libpq connection parameters; session settings appended to the URL's own ``options``."""
        silent = max(self.silent_peer_seconds, 3.0)
        settings = [f"-c lock_timeout={_milliseconds(self.lock_seconds)}"]
        if self.statement_seconds is not None:
            settings.append(f"-c statement_timeout={_milliseconds(self.statement_seconds)}")
            # A transaction left open by a stuck or killed client holds its locks this long at most.
            settings.append(f"-c idle_in_transaction_session_timeout={_milliseconds(2 * self.statement_seconds)}")
        own = url.query.get("options")
        options = " ".join([*([own] if isinstance(own, str) else list(own or ())), *settings])
        return {
            "connect_timeout": max(2, math.ceil(self.connect_seconds)),
            "keepalives": 1,
            "keepalives_idle": max(1, int(silent / 3)),
            "keepalives_interval": max(1, int(silent / 9)),
            "keepalives_count": 3,
            "tcp_user_timeout": _milliseconds(silent),
            "options": options,
        }


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# An arbitrary constant key: processes migrating the same PostgreSQL database queue on it.
_MIGRATION_LOCK_KEY = 7_405_144_812_309_771

_WHERE = "--database / SPLITLAB_DATABASE_URL"
_READ_ONLY_SQLSTATE = "25006"  # read_only_sql_transaction: a standby, or default_transaction_read_only


class Store:
    """The store's repositories over one engine.

    Build it with :func:`open_store` (which also migrates the database); ``Store(engine)``
    wraps an engine whose database is already at head. Use it as a context manager, or call
    :meth:`close`.

    Used as a context manager, a failure of this store that escapes the block and is no fault of
    the code (unreachable, read-only, not a database, locked past the busy timeout: SQLAlchemy's
    ``OperationalError`` and its kin) leaves it as :class:`StoreUnavailableError`, naming the URL
    with a hint; other databases' errors and programming errors pass through unchanged. Code
    inside the block still sees the driver's error, and so does code that holds the store
    without ``with`` (the HTTP service answers those with a 503).

    Attributes:
        experiments: Specs, versions and the audit log (:class:`ExperimentRepository`).
        assignments: Sticky assignments (:class:`AssignmentRepository`).
        exposures: First exposures and multiple-variant units (:class:`ExposureRepository`).
        events: Idempotent, atomic event batches (:class:`EventRepository`).
        snapshots: Stored analysis results (:class:`SnapshotRepository`).
        bandits: Per-arm sufficient statistics with atomic increments (:class:`BanditStateRepository`).
        metrics: Metric definitions by name (:class:`MetricRepository`).
        keys: API keys of the HTTP service (:class:`ApiKeyRepository`).
        notifications: The notification outbox and its delivery log (:class:`NotificationRepository`).
        monitor: The monitor's leases, schedules and actions (:class:`MonitorRepository`).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        tx = Transactions(engine)
        self.experiments = ExperimentRepository(tx)
        self.assignments = AssignmentRepository(tx)
        self.exposures = ExposureRepository(tx)
        self.events = EventRepository(tx)
        self.snapshots = SnapshotRepository(tx)
        self.bandits = BanditStateRepository(tx)
        self.metrics = MetricRepository(tx)
        self.keys = ApiKeyRepository(tx)
        self.notifications = NotificationRepository(tx)
        self.monitor = MonitorRepository(tx)
        self._deployment_id: str | None = None
        # The last error of this engine: it tells this store's failures from another database's
        # in __exit__ (`analyze --source` reads a warehouse inside the store's block). A weak
        # reference, so the error's frames are not kept alive.
        self._failure: weakref.ref[BaseException] | None = None
        event.listen(engine, "handle_error", self._remember_failure)

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def deployment_id(self) -> str:
        """This store's random identity, made by its first migration: what tells two deployments apart."""
        if self._deployment_id is None:
            with self.engine.connect() as conn:
                self._deployment_id = str(conn.execute(select(deployment.c.id)).scalar_one())
        return self._deployment_id

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (None for an empty database)."""
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
        failure = None if self._failure is None else self._failure()
        if isinstance(exc, DBAPIError) and exc is failure:
            unavailable = store_failure(exc, self.engine.url, opening=False)
            if unavailable is not None:
                raise unavailable from exc

    def _remember_failure(self, context: ExceptionContext) -> None:
        if context.sqlalchemy_exception is not None:
            self._failure = weakref.ref(context.sqlalchemy_exception)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"


def open_store(url: str | None = None, *, timeouts: StoreTimeouts | None = None) -> Store:
    """Open (creating if needed) the store at ``url`` and migrate it to the newest schema.

    Args:
        url: A SQLAlchemy URL. Default: the ``SPLITLAB_DATABASE_URL`` environment variable, else
            ``sqlite:///splitlab.db``. ``postgresql://`` and ``postgres://`` mean
            ``postgresql+psycopg://`` (psycopg 3).
        timeouts: How long connections wait (default :class:`StoreTimeouts`: the command line's).

    Returns:
        A :class:`Store`; close it when done (or use ``with``).

    Raises:
        ValueError: The URL is malformed, names an unsupported backend, or a SQLite file in a
            directory that does not exist.
        StoreUnavailableError: The database cannot be reached or opened (unreachable, unknown host,
            refused user, no such database, not a SQLite database, a schema newer than this
            splitlab); the message names the URL without its password and ends with a hint.

    Several processes may open the same database at once: migrations run under a lock (SQLite's
    write lock, a PostgreSQL advisory lock), so exactly one of them migrates.

    >>> with open_store("sqlite://") as store:  # in memory
    ...     store.experiments.list()
    []
    """
    engine = create_store_engine(resolve_url(url), timeouts)
    try:
        upgrade(engine)
    except DBAPIError as exc:
        engine.dispose()
        unavailable = store_failure(exc, engine.url, opening=True)
        if unavailable is None:
            raise
        raise unavailable from exc
    except CommandError as exc:  # Alembic does not know the database's revision
        engine.dispose()
        msg = f"cannot open the store at {_safe(engine.url)}: {exc}"
        hint = "was it migrated by a newer splitlab? upgrade splitlab, or check " + _WHERE
        raise StoreUnavailableError(msg, hint=hint) from exc
    except BaseException:
        engine.dispose()
        raise
    return Store(engine)


def store_failure(error: DBAPIError, url: URL, *, opening: bool) -> StoreUnavailableError | None:
    """The store's driver ``error`` as a :class:`StoreUnavailableError` for people, or None for a programming error.

    Unavailable means no fault of the code: SQLAlchemy's ``OperationalError`` (unreachable,
    refused, locked, read-only SQLite), SQLite's "not a database" and PostgreSQL's read-only
    transaction. The message names the URL without its password; the hint says what to check.

    Args:
        error: What SQLAlchemy raised for the store's engine.
        url: The store's URL.
        opening: Whether the store was being opened (connected and migrated) or used.
    """
    orig = error.orig
    safe = _safe(url)
    name = str(getattr(orig, "sqlite_errorname", ""))
    reason = _reason(orig)
    if name.startswith("SQLITE_READONLY") or getattr(orig, "sqlstate", None) == _READ_ONLY_SQLSTATE:
        msg = f"cannot write to the store at {safe}: {reason}"
        if url.get_backend_name() == "postgresql":
            hint = f"writes need the primary server, not a standby or a read-only session: check {_WHERE}"
        else:
            hint = f"writes need a writable store: check {_WHERE} and the file's permissions"
        return StoreUnavailableError(msg, hint=hint)
    verb = f"cannot open the store at {safe}" if opening else f"the store at {safe} failed"
    if name == "SQLITE_NOTADB":
        msg = f"cannot open the store at {safe}: the file is not a SQLite database"
        return StoreUnavailableError(msg, hint=f"name a splitlab store or a new file in {_WHERE}")
    if not isinstance(error, OperationalError):
        return None
    if name in ("SQLITE_BUSY", "SQLITE_LOCKED"):
        hint = "another process holds its write lock; try again when it finishes"
    elif name == "SQLITE_CANTOPEN":
        hint = f"check the file's path and permissions in {_WHERE}"
    elif url.get_backend_name() == "postgresql":
        hint = _postgres_hint(reason, url)
    else:
        hint = f"check {_WHERE}"
    return StoreUnavailableError(f"{verb}: {reason}", hint=hint)


def _postgres_hint(reason: str, url: URL) -> str:
    lowered = reason.lower()
    if "resolve host" in lowered or "could not translate host name" in lowered:
        return f"is the host name {url.host!r} right? check {_WHERE}"
    if "database" in lowered and "does not exist" in lowered:
        return f"create it with `createdb {url.database}`, or check {_WHERE}"
    if "password" in lowered or "role" in lowered or "pg_hba.conf" in lowered:
        return f"check the user and password in {_WHERE}"
    return f"is PostgreSQL running at {url.host or 'localhost'}:{url.port or 5432}? check {_WHERE}"


def _reason(orig: BaseException | None) -> str:
    """The driver's message in one line, without libpq's "connection to server at ... failed:" preamble."""
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    if not lines:
        return type(orig).__name__
    line = lines[0].rpartition(" failed: ")[2] if " failed: " in lines[0] else lines[0]
    return line.removeprefix("FATAL:").strip()


def _safe(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def resolve_url(url: str | None = None) -> URL:
    """The URL to open: the argument, else ``SPLITLAB_DATABASE_URL``, else :data:`DEFAULT_URL`; validated."""
    text_url = url if url is not None else os.environ.get(URL_ENV_VAR) or DEFAULT_URL
    try:
        parsed = make_url(text_url)
    except ArgumentError as exc:
        msg = f"database URL {text_url!r} is not a SQLAlchemy URL (e.g. sqlite:///splitlab.db)"
        raise ValueError(msg) from exc
    driver = parsed.drivername
    if driver in ("postgresql", "postgres", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    if driver in ("sqlite", "sqlite+pysqlite"):
        database = parsed.database or ""
        if database and database != ":memory:" and not parsed.query.get("uri"):
            folder = Path(database).expanduser().resolve().parent
            if not folder.is_dir():
                msg = f"database URL {text_url!r}: directory {folder} does not exist"
                raise ValueError(msg)
        return parsed
    safe = parsed.render_as_string(hide_password=True)
    msg = f"database URL {safe!r}: backend {driver!r} is not supported; use sqlite:/// or postgresql+psycopg://"
    raise ValueError(msg)


def create_store_engine(url: URL, timeouts: StoreTimeouts | None = None) -> Engine:
    """An engine configured for the store (no migration): SQLite in WAL mode, or PostgreSQL via psycopg 3."""
    timeouts = timeouts or StoreTimeouts()
    if url.get_backend_name() == "postgresql":
        return create_engine(
            url,
            json_serializer=dumps,
            pool_pre_ping=True,
            pool_timeout=timeouts.pool_seconds,
            connect_args=timeouts.postgres_connect_args(url),
        )
    memory = not url.database or url.database == ":memory:"
    options: dict[str, Any] = {
        "connect_args": {"timeout": timeouts.lock_seconds},
        "pool_timeout": timeouts.pool_seconds,
    }
    if memory:  # one shared connection, or every connection would see its own empty database
        options = {"connect_args": {"check_same_thread": False}, "poolclass": StaticPool}
    engine = create_engine(url, json_serializer=dumps, **options)
    busy = f"PRAGMA busy_timeout={_milliseconds(timeouts.lock_seconds)}"
    event.listen(engine, "connect", lambda connection, record: _configure_sqlite(connection, record, busy))
    event.listen(engine, "begin", _begin_sqlite)
    return engine


def _configure_sqlite(dbapi_connection: Any, _record: Any, busy_timeout: str) -> None:
    # SQLAlchemy, not the sqlite3 module, decides where transactions begin (see _begin_sqlite);
    # the module's own implicit BEGIN skips SELECT and DDL, which breaks transactional DDL.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(busy_timeout)  # first: the pragmas below may wait for another process's lock
        for pragma in SQLITE_PRAGMAS:
            _execute_when_unlocked(cursor, pragma)
    finally:
        cursor.close()


def _execute_when_unlocked(cursor: Any, pragma: str, *, attempts: int = 50) -> None:
    """Run ``pragma``, trying again while another process holds the database's lock.

    Switching to WAL needs the database to itself, and SQLite answers "database is locked" at once
    rather than through the busy handler while another process migrates a fresh file.
    """
    for attempt in range(attempts):
        try:
            cursor.execute(pragma)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.02 * (attempt + 1))
        else:
            return


def _begin_sqlite(conn: Connection) -> None:
    # A write transaction takes the write lock at BEGIN (waiting up to the busy timeout); a
    # deferred one that reads then writes could otherwise fail at once with "database is locked".
    mode = "IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration built in code (no alembic.ini), bound to ``connection`` if given."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration's revision id."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package ships its migrations
        msg = f"no migrations found in {_MIGRATIONS}"
        raise RuntimeError(msg)
    return head


def upgrade(engine: Engine) -> None:
    """Migrate the database to head, in one transaction under a lock; a no-op when already there."""
    with Transactions(engine).write() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        command.upgrade(alembic_config(conn), "head")
