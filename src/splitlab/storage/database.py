"""Opening the store: URL resolution, engine set-up per backend, and migrations to head on open.

There are no module-level engines: :func:`open_store` builds one per call (app-factory style),
and :meth:`Store.close` disposes of it.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
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
from splitlab.storage.snapshots import SnapshotRepository
from splitlab.storage.tables import deployment

__all__ = [
    "DEFAULT_URL",
    "URL_ENV_VAR",
    "Store",
    "alembic_config",
    "create_store_engine",
    "head_revision",
    "open_store",
    "resolve_url",
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
    f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}",
    "PRAGMA cache_size=-32768",  # 32 MiB of page cache per connection (default 2 MiB)
)
"""Set on every SQLite connection. Durability stays at SQLite's default for WAL (synchronous=FULL)."""

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# An arbitrary constant key: processes migrating the same PostgreSQL database queue on it.
_MIGRATION_LOCK_KEY = 7_405_144_812_309_771


class Store:
    """The store's repositories over one engine.

    Build it with :func:`open_store` (which also migrates the database); ``Store(engine)``
    wraps an engine whose database is already at head. Use it as a context manager, or call
    :meth:`close`.

    Attributes:
        experiments: Specs, versions and the audit log (:class:`ExperimentRepository`).
        assignments: Sticky assignments (:class:`AssignmentRepository`).
        exposures: First exposures and multiple-variant units (:class:`ExposureRepository`).
        events: Idempotent, atomic event batches (:class:`EventRepository`).
        snapshots: Stored analysis results (:class:`SnapshotRepository`).
        bandits: Per-arm sufficient statistics with atomic increments (:class:`BanditStateRepository`).
        metrics: Metric definitions by name (:class:`MetricRepository`).
        keys: API keys of the HTTP service (:class:`ApiKeyRepository`).
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
        self._deployment_id: str | None = None

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

    def __repr__(self) -> str:
        return f"Store({self.url!r})"


def open_store(url: str | None = None) -> Store:
    """Open (creating if needed) the store at ``url`` and migrate it to the newest schema.

    Args:
        url: A SQLAlchemy URL. Default: the ``SPLITLAB_DATABASE_URL`` environment variable, else
            ``sqlite:///splitlab.db``. ``postgresql://`` and ``postgres://`` mean
            ``postgresql+psycopg://`` (psycopg 3).

    Returns:
        A :class:`Store`; close it when done (or use ``with``).

    Raises:
        ValueError: The URL is malformed, names an unsupported backend, or a SQLite file in a
            directory that does not exist.
        StoreUnavailableError: The database cannot be reached.

    Several processes may open the same database at once: migrations run under a lock (SQLite's
    write lock, a PostgreSQL advisory lock), so exactly one of them migrates.

    >>> with open_store("sqlite://") as store:  # in memory
    ...     store.experiments.list()
    []
    """
    engine = create_store_engine(resolve_url(url))
    try:
        upgrade(engine)
    except OperationalError as exc:
        engine.dispose()
        safe = engine.url.render_as_string(hide_password=True)
        msg = f"cannot open the store at {safe}: {exc.orig}"
        raise StoreUnavailableError(msg) from exc
    except BaseException:
        engine.dispose()
        raise
    return Store(engine)


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


def create_store_engine(url: URL) -> Engine:
    """An engine configured for the store (no migration): SQLite in WAL mode, or PostgreSQL via psycopg 3."""
    if url.get_backend_name() == "postgresql":
        return create_engine(url, json_serializer=dumps, pool_pre_ping=True)
    memory = not url.database or url.database == ":memory:"
    options: dict[str, Any] = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    if memory:  # one shared connection, or every connection would see its own empty database
        options = {"connect_args": {"check_same_thread": False}, "poolclass": StaticPool}
    engine = create_engine(url, json_serializer=dumps, **options)
    event.listen(engine, "connect", _configure_sqlite)
    event.listen(engine, "begin", _begin_sqlite)
    return engine


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy, not the sqlite3 module, decides where transactions begin (see _begin_sqlite);
    # the module's own implicit BEGIN skips SELECT and DDL, which breaks transactional DDL.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


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
