"""The few SQL fragments that differ between SQLite, PostgreSQL and DuckDB, and the warehouses.

Everything else in the aggregation query is SQL that the three engines read the same way:
CTEs (``AS MATERIALIZED``), window functions, ``FILTER`` clauses on aggregates and ``UNION ALL``.
Times are turned into integer microseconds since 1970-01-01 UTC as soon as they are read, so the
attribution windows are integer comparisons with the same result on every engine.

The warehouses (Spark, Databricks, BigQuery, Snowflake, Trino) get the same query: it is written in
DuckDB's SQL and translated by one transpiler (sqlglot, :mod:`splitlab.analysis.sql.transpile`), so
there is one query builder and no second copy of the aggregation per warehouse.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DIALECTS",
    "NATIVE_DIALECTS",
    "WAREHOUSE_DIALECTS",
    "Dialect",
    "dialect_of",
    "execute",
    "quote_identifier",
    "quote_table",
    "sql_float",
    "sql_string",
]

DAY_US = 86_400_000_000


def quote_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier (the same rule on the three engines)."""
    return '"' + name.replace('"', '""') + '"'


def quote_table(name: str) -> str:
    """``table`` or ``schema.table`` with each part quoted."""
    return ".".join(quote_identifier(part) for part in name.split("."))


def sql_string(value: str) -> str:
    """``value`` as an SQL string literal (standard quoting: a quote is doubled)."""
    if "\x00" in value:
        msg = f"{value!r} contains a NUL character, which SQL strings cannot hold"
        raise ValueError(msg)
    return "'" + value.replace("'", "''") + "'"


def sql_float(value: float) -> str:
    """``value`` as a double-precision literal (a bare ``0.99`` is an exact decimal on PostgreSQL and DuckDB)."""
    if not math.isfinite(value):
        msg = f"{value!r} is not a finite number"
        raise ValueError(msg)
    return f"CAST({float(value)!r} AS DOUBLE PRECISION)"


NATIVE_DIALECTS = ("sqlite", "postgresql", "duckdb")
"""Engines the query is written for directly."""
WAREHOUSE_DIALECTS = ("spark", "databricks", "bigquery", "snowflake", "trino")
"""Engines that get the DuckDB query translated by sqlglot (Spark runs in the tests, the others in snapshots)."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """One engine's spelling of time conversion, day buckets and JSON look-ups.

    A warehouse dialect spells every fragment as DuckDB does; :meth:`finish` translates the whole
    statement at the end.
    """

    name: str

    @property
    def _spelling(self) -> str:
        return self.name if self.name in NATIVE_DIALECTS else "duckdb"

    def finish(self, sql: str) -> str:
        """The statement in this engine's SQL (a warehouse's through sqlglot; the native three as built)."""
        if self.name in NATIVE_DIALECTS:
            return sql
        from splitlab.analysis.sql.transpile import to_dialect

        return to_dialect(sql, self.name)

    def micros(self, column: str) -> str:
        """Microseconds since 1970-01-01 UTC of a time column, as an integer.

        SQLite: UTC text ``YYYY-MM-DD HH:MM:SS[.ffffff]`` (the store's format; a ``T`` separator
        is also read); PostgreSQL: ``timestamptz`` or ``timestamp`` (read as UTC); DuckDB:
        ``TIMESTAMPTZ`` or ``TIMESTAMP`` (read as UTC).
        """
        if self._spelling == "sqlite":
            return (
                f"(CAST(strftime('%s', substr({column}, 1, 19)) AS INTEGER) * 1000000"
                f" + CAST(substr({column} || '000000', 21, 6) AS INTEGER))"
            )
        if self._spelling == "postgresql":
            return f"CAST(EXTRACT(EPOCH FROM {column}) * 1000000 AS BIGINT)"
        return f"epoch_us({column})"

    def day(self, micros: str) -> str:
        """The UTC day number (days since 1970-01-01) of a microsecond time."""
        operator = "//" if self._spelling == "duckdb" else "/"
        return f"({micros} {operator} {DAY_US})"

    def json_text(self, column: str, key: str) -> str:
        """The value of ``key`` in a JSON column as text (JSON ``true`` is ``'true'``, ``null`` is NULL)."""
        path = sql_string(f'$."{key}"')
        if self._spelling == "sqlite":
            extracted = f"json_extract({column}, {path})"
            return (
                f"(CASE json_type({column}, {path}) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'"
                f" WHEN 'null' THEN NULL ELSE CAST({extracted} AS TEXT) END)"
            )
        if self._spelling == "postgresql":
            return f"(CAST({column} AS JSONB) ->> {sql_string(key)})"
        return f"json_extract_string({column}, {path})"

    def flag(self, column: str) -> str:
        """A boolean (or 0/1) column as the integer 1 or 0 (NULL is 0)."""
        return f"(CASE WHEN {column} THEN 1 ELSE 0 END)"


DIALECTS = {name: Dialect(name) for name in (*NATIVE_DIALECTS, *WAREHOUSE_DIALECTS)}

# SQLAlchemy's names of the warehouses whose dialect packages (sqlalchemy-bigquery, snowflake-sqlalchemy,
# trino, databricks-sqlalchemy) a user may have installed: the same query then runs there through the engine.
_SQLALCHEMY_NAMES = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "duckdb": "duckdb",
    "bigquery": "bigquery",
    "snowflake": "snowflake",
    "trino": "trino",
    "databricks": "databricks",
}


def _is_duckdb(connection: Any) -> bool:
    duckdb = sys.modules.get("duckdb")
    return duckdb is not None and isinstance(connection, duckdb.DuckDBPyConnection)


def _is_spark(connection: Any) -> bool:
    spark_sql = sys.modules.get("pyspark.sql")
    return spark_sql is not None and isinstance(connection, spark_sql.SparkSession)


def dialect_of(connection: Any) -> Dialect:
    """The dialect of a SQLAlchemy ``Engine``/``Connection``, a ``duckdb.DuckDBPyConnection`` or a ``SparkSession``.

    Raises:
        TypeError: ``connection`` is none of those.
        ValueError: a SQLAlchemy connection to an engine the aggregation has no dialect for.
    """
    if _is_duckdb(connection):
        return DIALECTS["duckdb"]
    if _is_spark(connection):
        return DIALECTS["spark"]
    from sqlalchemy.engine import Connection, Engine

    if isinstance(connection, Engine | Connection):
        name = connection.dialect.name
        if name not in _SQLALCHEMY_NAMES:
            msg = f"connection is a {name} database; the aggregation runs on {', '.join(_SQLALCHEMY_NAMES)}"
            raise ValueError(msg)
        return DIALECTS[_SQLALCHEMY_NAMES[name]]
    msg = (
        "connection must be a SQLAlchemy Engine or Connection, a duckdb.DuckDBPyConnection or a "
        f"pyspark.sql.SparkSession, got {type(connection).__name__}"
    )
    raise TypeError(msg)


def execute(connection: Any, sql: str) -> list[dict[str, Any]]:
    """Run one read-only statement and return its rows as dicts keyed by column name."""
    if _is_duckdb(connection):
        cursor = connection.execute(sql)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    if _is_spark(connection):
        from splitlab.analysis.spark import run_query

        return run_query(connection, sql)
    from sqlalchemy.engine import Connection, Engine

    if isinstance(connection, Engine):
        with connection.connect() as conn:
            return execute(conn, sql)
    assert isinstance(connection, Connection)  # noqa: S101 - dialect_of has checked it
    if connection.dialect.name != "postgresql":
        return _fetch(connection, sql)
    # PostgreSQL cannot estimate the rows of a CTE filtered on a computed column and may then pick a
    # nested loop over the events table (quadratic). Hash joins are always right for this query, so
    # nested loops are switched off for this statement only, and with them JIT compilation, which
    # the penalised plan cost would trigger (seconds of compiling for a query that runs in less).
    # SET LOCAL inside a savepoint that is rolled back restores the caller's settings.
    savepoint = connection.begin_nested()
    try:
        connection.exec_driver_sql("SET LOCAL enable_nestloop = off")
        connection.exec_driver_sql("SET LOCAL jit = off")
        return _fetch(connection, sql)
    finally:
        savepoint.rollback()


def _fetch(connection: Any, sql: str) -> list[dict[str, Any]]:
    # no_parameters: the statement goes to the driver as is, so a '%' in a literal stays a '%'.
    result = connection.exec_driver_sql(sql, execution_options={"no_parameters": True})
    return [dict(row._mapping) for row in result]
