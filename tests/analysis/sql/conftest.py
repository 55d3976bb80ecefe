"""The same tables on SQLite, DuckDB and PostgreSQL, for the aggregation tests.

PostgreSQL: ``SPLITLAB_TEST_POSTGRES_URL`` (default: the local server of DESIGN.md); every
database gets its own schema ``splitlab_test_<random>_<n>`` (tests/conftest.py), dropped afterwards. When the server
cannot be reached the PostgreSQL cases skip with the reason, except under ``CI=true``, where they
fail.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from splitlab.storage import Event, Exposure, open_store

BACKENDS = ("sqlite", "duckdb", "postgresql")

_TYPES = {
    "sqlite": {"text": "TEXT", "float": "REAL", "time": "TEXT", "json": "TEXT", "bool": "INTEGER"},
    "postgresql": {
        "text": "TEXT",
        "float": "DOUBLE PRECISION",
        "time": "TIMESTAMPTZ",
        "json": "JSONB",
        "bool": "BOOLEAN",
    },
    "duckdb": {"text": "VARCHAR", "float": "DOUBLE", "time": "TIMESTAMPTZ", "json": "JSON", "bool": "BOOLEAN"},
}
# Spark has no JSON type: a JSON attribute column is a string that get_json_object reads.
_SPARK_TYPES = {"text": "string", "float": "double", "time": "timestamp", "json": "string", "bool": "boolean"}


@dataclass
class Database:
    """A fresh database of one backend; ``connection`` is what aggregate_experiment takes."""

    backend: str
    connection: Any
    url: str | None = None
    stores: list[Any] = field(default_factory=list)
    views: list[str] = field(default_factory=list)

    def create_table(self, name: str, columns: dict[str, str], rows: Sequence[Sequence[Any]]) -> None:
        """Create ``name`` with columns of kinds text/float/time/json/bool and insert ``rows``."""
        kinds = list(columns.values())
        converted = [[self._value(v, k) for v, k in zip(row, kinds, strict=True)] for row in rows]
        if self.backend == "spark":
            schema = ", ".join(f"`{c}` {_SPARK_TYPES[k]}" for c, k in columns.items())
            self.connection.createDataFrame(converted, schema=schema).createOrReplaceTempView(name)
            self.views.append(name)
            return
        types = _TYPES[self.backend]
        definitions = ", ".join('"' + c.replace('"', '""') + f'" {types[k]}' for c, k in columns.items())
        ddl = f"CREATE TABLE {name} ({definitions})"
        if self.backend == "duckdb":
            self.connection.execute(ddl)
            if converted:  # through a frame: DuckDB's executemany goes row by row
                frame = pd.DataFrame(converted, columns=[f"c{i}" for i in range(len(columns))])
                for i, kind in enumerate(kinds):
                    if kind == "time":
                        frame[f"c{i}"] = pd.to_datetime(frame[f"c{i}"], utc=True)
                self.connection.register("rows_frame", frame)
                self.connection.execute(f"INSERT INTO {name} SELECT * FROM rows_frame")  # noqa: S608
                self.connection.unregister("rows_frame")
            return
        placeholders = ", ".join(
            f"CAST(:c{i} AS JSONB)" if k == "json" and self.backend == "postgresql" else f":c{i}"
            for i, k in enumerate(kinds)
        )
        with self.connection.begin() as conn:
            conn.execute(text(ddl))
            if converted:
                params = [{f"c{i}": v for i, v in enumerate(row)} for row in converted]
                conn.execute(text(f"INSERT INTO {name} VALUES ({placeholders})"), params)  # noqa: S608

    def create_index(self, table: str, columns: Sequence[str]) -> None:
        """Index ``columns`` of ``table``, as a warehouse's table would be indexed (Spark has no indexes)."""
        if self.backend == "spark":
            return
        ddl = f"CREATE INDEX ix_{table} ON {table} ({', '.join(columns)})"
        if self.backend == "duckdb":
            self.connection.execute(ddl)
            return
        with self.connection.begin() as conn:
            conn.execute(text(ddl))

    def _value(self, value: Any, kind: str) -> Any:
        if value is None:
            return None
        if kind == "time" and self.backend == "sqlite":
            return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        if kind == "json":
            return json.dumps(value)
        return value

    def open_store(self) -> Any:
        """The real store (SQLite and PostgreSQL only) in this database."""
        assert self.url is not None
        store = open_store(self.url)
        self.stores.append(store)
        return store


def open_database(backend: str, directory: Path, request: pytest.FixtureRequest) -> Iterator[Database]:
    """A fresh database of ``backend``, closed (and its schema dropped) afterwards.

    ``spark``: the test run's one Spark session (tests/conftest.py); its tables are temporary views,
    dropped afterwards.
    """
    if backend == "spark":
        database = Database("spark", request.getfixturevalue("spark"))
        yield database
        for view in database.views:
            database.connection.catalog.dropTempView(view)
        return
    if backend == "duckdb":
        connection = duckdb.connect()
        yield Database("duckdb", connection)
        connection.close()
        return
    if backend == "sqlite":
        url = f"sqlite:///{directory / f'{secrets.token_hex(4)}.db'}"
        engine = create_engine(url, poolclass=NullPool)
        database = Database("sqlite", engine, url)
        yield database
    else:
        schemas = request.getfixturevalue("postgres_schemas")  # tests/conftest.py
        name, url = schemas.create()
        engine = create_engine(url, poolclass=NullPool)
        database = Database("postgresql", engine, url)
        yield database
    for store in database.stores:
        store.close()
    engine.dispose()
    if backend == "postgresql":
        schemas.drop(name)


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from open_database(request.param, tmp_path, request)


@pytest.fixture
def postgres_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh PostgreSQL schema, for PostgreSQL-only tests."""
    yield from open_database("postgresql", tmp_path, request)


@pytest.fixture(scope="module", params=BACKENDS)
def module_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """Like ``database``, shared by the tests of a module (for data sets worth loading once)."""
    yield from open_database(request.param, tmp_path_factory.mktemp("db"), request)


@pytest.fixture(scope="module", params=[*BACKENDS, pytest.param("spark", marks=pytest.mark.spark)])
def module_database_or_spark(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    """Like ``module_database``, and Spark (local mode; temporary views) as a fourth engine."""
    yield from open_database(request.param, tmp_path_factory.mktemp("db"), request)


@pytest.fixture
def open_database_of(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """``open(backend)``: a fresh database of any backend, ``spark`` included, closed after the test.

    For a fixture whose parameters combine a backend with something else (a hand case's store and
    warehouse layouts, of which Spark has only the second).
    """
    opened: list[Iterator[Database]] = []

    def open_one(backend: str) -> Database:
        generator = open_database(backend, tmp_path, request)
        opened.append(generator)
        return next(generator)

    yield open_one
    for generator in opened:
        next(generator, None)


@pytest.fixture
def store_loader() -> Any:
    """``load(database, exposures, events)``: fill the store's tables (see ``_load_store``)."""
    return _load_store


def _load_store(database: Database, exposures: Sequence[tuple[Any, ...]], events: Sequence[tuple[Any, ...]]) -> None:
    """Put exposures (experiment, unit, variant, time, attributes) and events (id, unit, name, value, time) in
    the store's tables: through the real store on SQLite and PostgreSQL, as the same rows on DuckDB."""
    if database.backend != "duckdb":
        store = database.open_store()
        for key in sorted({row[0] for row in exposures}):
            variants = sorted({row[2] for row in exposures if row[0] == key})
            spec = {"key": key, "variants": [{"key": v} for v in variants]}
            store.experiments.create(key=key, spec=spec, actor="t", status="running")
        store.exposures.log_many(  # history loaded on purpose: dated before the experiments were created
            (
                Exposure(experiment_key=e, unit_id=u, variant=v, timestamp=t, attributes=a)
                for e, u, v, t, a in exposures
            ),
            backfill=True,
        )
        store.events.log_many(Event(event_id=i, unit_id=u, name=n, value=v, timestamp=t) for i, u, n, v, t in events)
        return
    first: dict[tuple[str, str], tuple[Any, ...]] = {}
    seen: dict[tuple[str, str], set[str]] = {}
    for row in sorted(exposures, key=lambda r: r[3]):
        first.setdefault((row[0], row[1]), row)
        seen.setdefault((row[0], row[1]), set()).add(row[2])
    database.create_table(
        "exposures",
        {"experiment_key": "text", "unit_id": "text", "variant": "text", "first_exposed_at": "time",
         "attributes": "json", "multiple_variants": "bool"},
        [(*row, len(seen[key]) > 1) for key, row in first.items()],
    )  # fmt: skip
    database.create_table(
        "events",
        {"event_id": "text", "unit_id": "text", "name": "text", "value": "float", "timestamp": "time"},
        events,
    )
