"""Warehouse-native analysis: read exposures and events from the user's own tables, read-only.

A YAML file names the database and maps its tables and columns::

    database: duckdb:///warehouse.duckdb        # or postgresql+psycopg://..., sqlite:///...
    exposures: {table: analytics.exposures, unit: user_id, variant: arm, timestamp: exposed_at,
                experiment: experiment_id, segments: [device, country]}
    events: {table: analytics.events, unit: user_id, name: event_name, timestamp: ts, value: amount}

Past one machine, the same file names Spark, and Parquet files (a file, a folder of parts or a
glob; relative paths are read from the file's folder) can stand in for tables, on Spark or DuckDB::

    database: spark                               # local[*]; or local[4], spark://host:7077, yarn
    tables: {exposures: data/exposures/, events: data/events/*.parquet}
    exposures: {table: exposures, ...}
    events: {table: events, ...}

The experiment's spec and metric definitions still come from the splitlab store; only the data is
read from the warehouse, with one aggregation query (see docs/aggregation.md and docs/scale.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from splitlab.analysis.sql import Source
from splitlab.analysis.sql._dialect import _is_duckdb, _is_spark, quote_identifier, sql_string

__all__ = ["read_source", "register_parquet", "warehouse"]

DUCKDB_PREFIX = "duckdb:///"
SPARK_PREFIXES = ("spark://", "local", "yarn", "k8s://")


def _spark_master(url: str) -> str | None:
    """The Spark master a ``database`` value names (``spark`` alone: the default), or None for a database URL."""
    if url == "spark":
        return ""
    return url if url.startswith(SPARK_PREFIXES) else None


def _parquet_tables(config: dict[str, Any], folder: Path) -> dict[str, Path | str]:
    tables = config.pop("tables", None) or {}
    if not isinstance(tables, dict) or not all(isinstance(path, str) for path in tables.values()):
        msg = "tables must map table names to Parquet paths, e.g. {events: data/events/}"
        raise ValueError(msg)
    return {name: path if Path(path).is_absolute() else str(folder / path) for name, path in tables.items()}


def register_parquet(connection: Any, tables: Mapping[str, str | Path]) -> None:
    """Make Parquet files (a file, a folder of parts or a glob) readable as tables under the given names.

    Args:
        connection: a ``SparkSession`` (temporary views) or a ``duckdb.DuckDBPyConnection``
            (temporary views over ``read_parquet``).
        tables: ``{table name: path}``.

    Raises:
        ValueError: a name that is not a plain identifier, or a path that does not exist.
    """
    for name, path in tables.items():
        if not isinstance(name, str) or not name.isidentifier():
            msg = f"tables: {name!r} is not a plain table name (letters, digits, _)"
            raise ValueError(msg)
        location = str(path)
        if not any(ch in location for ch in "*?[") and not Path(location).exists():
            msg = f"tables.{name}: {location!r} does not exist"
            raise ValueError(msg)
        if _is_spark(connection):
            connection.read.parquet(location).createOrReplaceTempView(name)
        elif _is_duckdb(connection):
            connection.execute(
                f"CREATE OR REPLACE TEMP VIEW {quote_identifier(name)} AS "  # noqa: S608 - quoted name, literal path
                f"SELECT * FROM read_parquet({sql_string(location)})"
            )
        else:
            msg = f"tables: Parquet files are read by Spark or DuckDB, not by {type(connection).__name__}"
            raise TypeError(msg)


def read_source(path: str | Path) -> tuple[str, dict[str, Path | str], Source]:
    """A source file's database URL, Parquet tables (paths made absolute) and table mapping, checked.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not YAML, no ``database``, or a mapping mistake (the message names the field).
    """
    file = Path(path)
    if not file.exists():
        msg = f"source file {str(file)!r} does not exist"
        raise FileNotFoundError(msg)
    try:
        config = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        msg = f"source file {str(file)!r} is not valid YAML: {error}"
        raise ValueError(msg) from error
    if not isinstance(config, dict) or not isinstance(config.get("database"), str):
        msg = f"source file {str(file)!r} needs a 'database' URL and 'exposures' and 'events' sections"
        raise ValueError(msg)  # noqa: TRY004 - a config mistake, reported as ValueError like the others
    url = config.pop("database")
    tables = _parquet_tables(config, file.parent)
    return url, tables, Source.from_config(config)


@contextmanager
def warehouse(path: str | Path) -> Iterator[tuple[Any, Source]]:
    """Open the database a warehouse file names (read-only where the driver allows) with its mapping."""
    url, tables, source = read_source(path)
    master = _spark_master(url)
    if master is not None:
        from splitlab.analysis.spark import spark_session

        # The process's one session is kept for the next analysis: starting Spark costs seconds.
        session = spark_session(master or None)
        register_parquet(session, tables)
        yield session, source
        return
    if url.startswith(DUCKDB_PREFIX) or url == "duckdb://":
        import duckdb

        path = url[len(DUCKDB_PREFIX) :] if url.startswith(DUCKDB_PREFIX) else ""
        connection = duckdb.connect(path or ":memory:", read_only=bool(path))
        try:
            register_parquet(connection, tables)
            yield connection, source
        finally:
            connection.close()
        return
    if tables:
        msg = f"tables: Parquet files are read on Spark or DuckDB; database {url!r} reads its own tables"
        raise ValueError(msg)
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        yield engine, source
    finally:
        engine.dispose()
