"""Export stored readouts as normalised results tables, and the spec catalog as versioned files.

The tables and their rows are :mod:`splitlab.analysis.export_rows`'s (pure); this module reads
the store, parses the target (:func:`splitlab.specs.model.parse_export_target`, the grammar a spec's
``export.to`` shares) and writes each table to it, importing the target's driver only then:

- PostgreSQL (SQLAlchemy and psycopg) and DuckDB: one transaction per export, which creates the
  tables when missing, deletes the rows of every exported snapshot (and the experiment's version
  rows), and inserts them again. Exporting a snapshot twice leaves one copy of its rows; a failed
  export leaves the tables as they were. On PostgreSQL a transaction-scoped advisory lock orders
  concurrent exports, so two of the same snapshot cannot both insert.
- Parquet: a directory per table holding one file per snapshot (``EXPERIMENT.snapshot-ID.parquet``)
  or per experiment (``EXPERIMENT.parquet``), each written to a hidden temporary file and renamed
  over the old one, so a reader never sees half a file.
- Spark: tables in the session's catalog, partitioned by the columns an export replaces and
  created with dynamic partition overwrite as their own option, so each ``insertInto`` overwrite
  replaces only the partitions it writes (a plain ``saveAsTable`` append would add a copy).

:func:`export_saved` is the hook :func:`splitlab.operations.analysis.analyze` calls after a
snapshot is stored: it exports the snapshot to the spec's ``export`` target, and a failure
there is a warning on the analysis' outcome, never a lost snapshot.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from splitlab.analysis.export_rows import EXPERIMENTS, TABLES, Table, experiment_rows, snapshot_rows
from splitlab.operations.errors import ConflictError, InvalidInputError
from splitlab.operations.experiments import get_experiment
from splitlab.specs.model import Export, ExportTarget, parse_export_target

if TYPE_CHECKING:
    import pyarrow as pa

    from splitlab.analysis.readout import ExperimentReadout
    from splitlab.storage import Snapshot, Store

__all__ = [
    "CatalogOutcome",
    "ExportFailedError",
    "ExportOutcome",
    "export_catalog",
    "export_results",
    "export_saved",
    "export_target",
]

logger = logging.getLogger(__name__)

Rows = dict[str, list[dict[str, Any]]]
# A table's replaced keys: the values of its ``replace_by`` columns, one tuple per group of rows.
Keys = dict[str, list[tuple[Any, ...]]]


class ExportFailedError(ValueError):
    """The target could not be written (unreachable, refused, not writable, a table of another shape).

    A ``ValueError``, as the front ends show a problem with what the user named: one line, the
    target (password hidden) and the driver's reason; nothing was written to SQL targets.

    Attributes:
        target: the target as the user would write it, password hidden.
        reason: why, in one line.
    """

    def __init__(self, target: ExportTarget, reason: str) -> None:
        super().__init__(f"cannot export to {target}: {reason}")
        self.target = str(target)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportOutcome:
    """What one export wrote.

    Attributes:
        experiment: the experiment's key.
        target: the target, as the user would write it (password hidden).
        snapshot_ids: the exported snapshots, oldest first.
        rows: rows written per table (after deleting the rows they replace).
    """

    experiment: str
    target: str
    snapshot_ids: tuple[int, ...]
    rows: dict[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogOutcome:
    """What :func:`export_catalog` wrote: the directory, and the files of spec versions per experiment."""

    directory: Path
    files: dict[str, tuple[Path, ...]]
    index: Path


def export_target(to: str | ExportTarget, schema: str | None = None) -> ExportTarget:
    """``to`` parsed by ``parse_export_target``; a bad one is an ``InvalidInputError`` on ``to`` (or ``schema``)."""
    if isinstance(to, ExportTarget):
        if schema is not None and schema != to.schema:
            raise InvalidInputError([("schema", f"schema == {schema!r}, but the target names {to.schema!r}")])
        return to
    try:
        parse_export_target(to)
    except ValueError as exc:
        raise InvalidInputError([("to", str(exc))]) from None
    try:  # the target is well formed: what is left is the schema, or its disagreement with the target's
        return parse_export_target(to, schema)
    except ValueError as exc:
        raise InvalidInputError([("schema", str(exc))]) from None


def export_results(
    store: Store,
    key: str,
    *,
    to: str | ExportTarget,
    schema: str | None = None,
    all_snapshots: bool = False,
    exported_at: datetime | None = None,
) -> ExportOutcome:
    """Write experiment ``key``'s stored readouts to ``to`` as the results tables of docs/export.md.

    Args:
        store: The store holding the experiment and its snapshots.
        key: The experiment.
        to: The target (a string in the grammar of :func:`~splitlab.specs.model.parse_export_target`, or parsed).
        schema: The target's schema (Spark: database), when ``to`` does not name one.
        all_snapshots: Export every snapshot; default only the latest.
        exported_at: The ``exported_at`` of every row; default now.

    Raises:
        NotFoundError: No experiment ``key``.
        InvalidInputError: A malformed target (field ``to``) or schema.
        ConflictError: The experiment has no stored readout yet (field ``snapshots``).
        ExportFailedError: The target could not be written; nothing was written to a SQL target.
    """
    target = export_target(to, schema)
    get_experiment(store, key)
    if all_snapshots:
        snapshots = store.snapshots.list(experiment_key=key)
    else:
        latest = store.snapshots.latest(experiment_key=key)
        snapshots = [] if latest is None else [latest]
    if not snapshots:
        message = f"experiment {key!r} has no stored readout to export: run `splitlab analyze {key}` first"
        raise ConflictError("snapshots", message)
    return _export(store, key, target, snapshots, readouts=None, exported_at=exported_at)


def export_saved(store: Store, snapshot: Snapshot, readout: ExperimentReadout) -> str | None:
    """Export a snapshot just stored to its spec's ``export`` target, if the spec has one.

    Called by :func:`splitlab.operations.analysis.analyze` after the snapshot's transaction has
    committed: whatever goes wrong here (a target that is down, a bad table, a bug) cannot cost
    the snapshot, so it is logged and returned as a warning instead of raised.

    Returns:
        None when exported (or there is nothing to export), else the warning.
    """
    try:
        record = store.experiments.get(key=snapshot.experiment_key)
        option = None if record is None else record.spec.get("export")
        if not option:
            return None
        target = Export.model_validate(option).target
        _export(store, snapshot.experiment_key, target, [snapshot], readouts={snapshot.id: readout}, exported_at=None)
    except Exception as exc:  # the snapshot is kept whatever the export does, and the user is told
        warning = f"snapshot {snapshot.id} of {snapshot.experiment_key!r} was saved but not exported: {exc}"
        logger.warning(warning)
        return warning
    return None


def _export(
    store: Store,
    key: str,
    target: ExportTarget,
    snapshots: Sequence[Snapshot],
    *,
    readouts: Mapping[int, ExperimentReadout] | None,
    exported_at: datetime | None,
) -> ExportOutcome:
    from splitlab.analysis.report import readout_from_dict

    stamp = exported_at or datetime.now(UTC)
    rows: Rows = {table.name: [] for table in TABLES}
    keys: Keys = {table.name: [] for table in TABLES}
    rows[EXPERIMENTS.name] = experiment_rows(store.experiments.history(key=key), exported_at=stamp)
    keys[EXPERIMENTS.name] = [(key,)]
    for snapshot in snapshots:
        readout = (readouts or {}).get(snapshot.id) or readout_from_dict(snapshot.payload)
        tables = snapshot_rows(readout, snapshot_id=snapshot.id, snapshot_time=snapshot.created_at, exported_at=stamp)
        for name, table_rows in tables.items():
            rows[name].extend(table_rows)
            keys[name].append((key, snapshot.id))
    _WRITERS[target.kind](target, rows, keys)
    return ExportOutcome(
        experiment=key,
        target=str(target),
        snapshot_ids=tuple(snapshot.id for snapshot in snapshots),
        rows={name: len(table_rows) for name, table_rows in rows.items()},
    )


def _failed(target: ExportTarget, error: BaseException) -> ExportFailedError:
    cause = getattr(error, "orig", None) or error  # SQLAlchemy wraps the driver's error
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    reason = lines[0] if lines else type(cause).__name__
    return ExportFailedError(target, reason)


def _check_columns(target: ExportTarget, table: Table, existing: Iterable[str]) -> None:
    """Refuse a table that lacks columns of the schema (made by another version, or by someone else)."""
    missing = [name for name in table.column_names if name not in set(existing)]
    if missing:
        message = (
            f"table {table.name} exists without the column(s) {', '.join(missing)} of docs/export.md; "
            "export to another schema, or add them"
        )
        raise ExportFailedError(target, message)


# -- PostgreSQL ------------------------------------------------------------------------------------

_LOCK_ID = int.from_bytes(hashlib.sha256(b"splitlab export").digest()[:8], "big", signed=True)
"""The advisory lock every export to PostgreSQL takes: exports of one database run one at a time."""


def _write_postgres(target: ExportTarget, rows: Rows, keys: Keys) -> None:
    from sqlalchemy import (
        BigInteger,
        Boolean,
        Column,
        DateTime,
        Double,
        Index,
        MetaData,
        Text,
        create_engine,
        delete,
        func,
        insert,
        inspect,
        select,
        text,
        tuple_,
    )
    from sqlalchemy import Table as SqlTable
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.pool import NullPool

    types: dict[str, Callable[[], Any]] = {
        "text": Text,
        "bigint": BigInteger,
        "double": Double,
        "boolean": Boolean,
        "timestamp": lambda: DateTime(timezone=True),
    }
    metadata = MetaData(schema=target.schema)
    tables = {}
    for table in TABLES:
        columns = [Column(c.name, types[c.type](), nullable=c.nullable) for c in table.columns]
        sql_table = SqlTable(table.name, metadata, *columns)
        Index(f"ix_{table.name}_replace", *(sql_table.c[name] for name in table.replace_by))
        tables[table.name] = sql_table
    engine = create_engine(target.location, poolclass=NullPool, connect_args={"connect_timeout": 10})
    try:
        with engine.begin() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(_LOCK_ID)))
            if target.schema is not None:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{target.schema}"'))
            metadata.create_all(conn, checkfirst=True)
            inspector = inspect(conn)
            for table in TABLES:
                existing = [c["name"] for c in inspector.get_columns(table.name, schema=target.schema)]
                _check_columns(target, table, existing)
                sql_table = tables[table.name]
                replaced = tuple_(*(sql_table.c[name] for name in table.replace_by))
                conn.execute(delete(sql_table).where(replaced.in_(keys[table.name])))
                if rows[table.name]:
                    conn.execute(insert(sql_table), rows[table.name])
    except DBAPIError as exc:
        raise _failed(target, exc) from None
    finally:
        engine.dispose()


# -- Arrow: the column types of DuckDB and Parquet -------------------------------------------------


def _arrow_schema(table: Table) -> pa.Schema:
    import pyarrow as pa

    types = {
        "text": pa.string(),
        "bigint": pa.int64(),
        "double": pa.float64(),
        "boolean": pa.bool_(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }
    return pa.schema([pa.field(c.name, types[c.type], nullable=c.nullable) for c in table.columns])


def _arrow_table(table: Table, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    import pyarrow as pa

    return pa.Table.from_pylist(list(rows), schema=_arrow_schema(table))


# -- DuckDB ----------------------------------------------------------------------------------------

_DUCKDB_TYPES = {"text": "VARCHAR", "bigint": "BIGINT", "double": "DOUBLE", "boolean": "BOOLEAN",
                 "timestamp": "TIMESTAMPTZ"}  # fmt: skip


def _write_duckdb(target: ExportTarget, rows: Rows, keys: Keys) -> None:
    import duckdb

    path = Path(target.location)
    if path.is_dir():
        raise ExportFailedError(target, f"{path} is a directory, a DuckDB target is a file")
    try:
        conn = duckdb.connect(str(path))
    except duckdb.Error as exc:
        raise _failed(target, exc) from None
    try:
        conn.execute("BEGIN TRANSACTION")
        prefix = ""
        if target.schema is not None:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{target.schema}"')
            prefix = f'"{target.schema}".'
        for table in TABLES:
            name = f'{prefix}"{table.name}"'
            columns = ", ".join(
                f'"{c.name}" {_DUCKDB_TYPES[c.type]}{"" if c.nullable else " NOT NULL"}' for c in table.columns
            )
            conn.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")
            existing = [str(row[0]) for row in conn.execute(f"SELECT * FROM {name} LIMIT 0").description or ()]  # noqa: S608
            _check_columns(target, table, existing)
            condition = " AND ".join(f'"{column}" = ?' for column in table.replace_by)
            conn.executemany(f"DELETE FROM {name} WHERE {condition}", [list(k) for k in keys[table.name]])  # noqa: S608
            if rows[table.name]:
                batch = _arrow_table(table, rows[table.name])  # noqa: F841 - DuckDB reads the local by its name
                conn.execute(f"INSERT INTO {name} BY NAME SELECT * FROM batch")  # noqa: S608
        conn.execute("COMMIT")
    except duckdb.Error as exc:
        conn.execute("ROLLBACK")
        raise _failed(target, exc) from None
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()


# -- Parquet ---------------------------------------------------------------------------------------


def _parquet_file(table: Table, key: tuple[Any, ...]) -> str:
    """The file holding one replaced group: ``KEY.parquet`` or ``KEY.snapshot-ID.parquet``.

    Experiment keys are slugs (no dots, never starting with ``.`` or ``_``, which readers skip).
    """
    if table.replace_by == ("experiment",):
        return f"{key[0]}.parquet"
    return f"{key[0]}.snapshot-{key[1]}.parquet"


def _write_parquet(target: ExportTarget, rows: Rows, keys: Keys) -> None:
    import pyarrow.parquet as pq

    root = Path(target.location)
    try:
        if root.exists() and not root.is_dir():
            message = f"{root} is a file, a Parquet target is a directory (for a DuckDB file: duckdb:///{root})"
            raise ExportFailedError(target, message)
        for table in TABLES:
            directory = root / table.name
            directory.mkdir(parents=True, exist_ok=True)
            groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {tuple(key): [] for key in keys[table.name]}
            for row in rows[table.name]:
                groups[tuple(row[c] for c in table.replace_by)].append(row)
            for key, group in groups.items():
                final = directory / _parquet_file(table, key)
                temporary = directory / f".{final.name}.{uuid.uuid4().hex}.tmp"
                try:
                    pq.write_table(_arrow_table(table, group), temporary)
                    temporary.replace(final)
                finally:
                    temporary.unlink(missing_ok=True)
    except OSError as exc:
        raise _failed(target, exc) from None


# -- Spark -----------------------------------------------------------------------------------------


def _write_spark(target: ExportTarget, rows: Rows, keys: Keys) -> None:  # noqa: ARG001 - partitions are the keys
    from splitlab.analysis.spark import spark_session

    try:
        session = spark_session()
    except ImportError as exc:
        raise _failed(target, exc) from None
    from pyspark.errors import PySparkException
    from pyspark.sql import types as T  # noqa: N812 - Spark's own idiom

    types: dict[str, T.DataType] = {
        "text": T.StringType(),
        "bigint": T.LongType(),
        "double": T.DoubleType(),
        "boolean": T.BooleanType(),
        "timestamp": T.TimestampType(),
    }
    try:
        if target.schema is not None:
            session.sql(f"CREATE DATABASE IF NOT EXISTS `{target.schema}`")
        database = target.schema or session.catalog.currentDatabase()
        frames = []
        for table in TABLES:  # every table checked before any is written: Spark has no transaction across them
            name = f"`{database}`.`{table.name}`"
            schema = T.StructType([T.StructField(c.name, types[c.type], c.nullable) for c in table.columns])
            if not session.catalog.tableExists(f"{database}.{table.name}"):
                _create_spark_table(session, database, table, schema)
            existing = session.table(name).columns
            _check_columns(target, table, existing)
            _check_spark_partitions(session, target, name, table)
            values = [tuple(row[c] for c in table.column_names) for row in rows[table.name]]
            # insertInto is positional, and a partitioned table keeps its partition columns last.
            frames.append((name, session.createDataFrame(values, schema).select(*existing)))
        for name, frame in frames:
            frame.write.insertInto(name, overwrite=True)
    except PySparkException as exc:
        raise _failed(target, exc) from None


def _check_spark_partitions(session: Any, target: ExportTarget, name: str, table: Table) -> None:
    """Refuse a table an overwrite would empty: not partitioned as ours are, or without dynamic overwrite."""
    # One DESCRIBE (the catalog's listColumns costs as much again): the columns, then
    # "# Partition Information", "# col_name" and the partition columns up to a blank line, then
    # the details, "Storage Properties" among them.
    described = [(str(row[0]), str(row[1])) for row in session.sql(f"DESCRIBE TABLE EXTENDED {name}").collect()]
    names = [first for first, _ in described]
    start = names.index("# Partition Information") + 2 if "# Partition Information" in names else len(names)
    partitions = list(itertools.takewhile(bool, names[start:]))
    storage = dict(described).get("Storage Properties", "")
    if partitions != list(table.replace_by) or "partitionOverwriteMode=dynamic" not in storage:
        message = (
            f"table {table.name} exists but is not partitioned by {', '.join(table.replace_by)} with "
            "OPTIONS (partitionOverwriteMode 'dynamic'): an export would overwrite all of it; "
            "export to another database, or drop the table"
        )
        raise ExportFailedError(target, message)


def _create_spark_table(session: Any, database: str, table: Table, schema: Any) -> None:
    """Create ``table`` partitioned by the columns an export replaces, so a write overwrites exactly its partitions.

    Spark's built-in catalog lives in memory: a new process does not know the tables an earlier
    one made, though their files are still at the table's location, where Spark refuses to
    create a managed table. Those files are then adopted as the table (an external one at that
    location, its partitions recovered), and the export goes on replacing its own partitions.
    """
    from pyspark.errors import PySparkException

    name = f"`{database}`.`{table.name}`"
    columns = ", ".join(f"`{field.name}` {field.dataType.simpleString()}" for field in schema.fields)
    partitions = ", ".join(f"`{column}`" for column in table.replace_by)
    # The table's own option, read by every insert into it: an overwrite replaces the partitions it
    # writes, not the whole table (Spark's default for an insert overwrite).
    create = (
        f"CREATE TABLE {name} ({columns}) USING parquet OPTIONS (partitionOverwriteMode 'dynamic') "
        f"PARTITIONED BY ({partitions})"
    )
    try:
        session.sql(create)
    except PySparkException as exc:
        if exc.getCondition() != "LOCATION_ALREADY_EXISTS":
            raise
        location = f"{session.catalog.getDatabase(database).locationUri.rstrip('/')}/{table.name}"
        quoted = location.replace("\\", "\\\\").replace("'", "\\'")
        session.sql(f"{create} LOCATION '{quoted}'")
        session.sql(f"ALTER TABLE {name} RECOVER PARTITIONS")


_WRITERS: dict[str, Callable[[ExportTarget, Rows, Keys], None]] = {
    "postgresql": _write_postgres,
    "duckdb": _write_duckdb,
    "parquet": _write_parquet,
    "spark": _write_spark,
}


# -- The spec catalog ------------------------------------------------------------------------------


def export_catalog(
    store: Store, directory: str | os.PathLike[str], *, keys: Sequence[str] | None = None
) -> CatalogOutcome:
    """Write every version of every experiment's spec as ``DIR/KEY/vN.yaml``, and ``DIR/index.json``.

    Each file is the spec as ``splitlab apply`` reads it (:func:`splitlab.specs.loading.dump_spec`:
    defaults left out), so ``load_spec(file)`` equals the stored spec of that version. The index
    lists, per experiment, its status and current version and, per version, its file, status,
    author, time, reason and diff. Files are replaced whole (written aside, then renamed), so a
    re-export rewrites the same bytes and a reader never sees half a file.

    Args:
        store: The store.
        directory: Where to write (created when missing).
        keys: Only these experiments; default every experiment.

    Raises:
        NotFoundError: A key in ``keys`` that is not an experiment.
        InvalidInputError: The directory cannot be written (field ``directory``).
    """
    from splitlab.specs.loading import dump_spec
    from splitlab.specs.model import ExperimentSpec

    root = Path(directory)
    records = [get_experiment(store, key) for key in keys] if keys is not None else store.experiments.list()
    files: dict[str, tuple[Path, ...]] = {}
    entries = []
    try:
        for record in records:
            written = []
            versions = []
            for version in store.experiments.history(key=record.key):
                path = root / record.key / f"v{version.version}.yaml"
                _write_text(path, dump_spec(ExperimentSpec.model_validate(version.spec)))
                written.append(path)
                versions.append(
                    {
                        "version": version.version,
                        "file": path.relative_to(root).as_posix(),
                        "status": version.status,
                        "changed_at": version.changed_at.astimezone(UTC).isoformat(),
                        "changed_by": version.changed_by,
                        "reason": version.reason,
                        "diff": version.diff,
                    }
                )
            files[record.key] = tuple(written)
            entries.append(
                {
                    "key": record.key,
                    "status": record.status,
                    "current_version": record.current_version,
                    "versions": versions,
                }
            )
        index = root / "index.json"
        _write_text(index, json.dumps({"experiments": entries}, indent=2, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise InvalidInputError([("directory", f"cannot write the catalog to {root}: {exc.strerror or exc}")]) from None
    return CatalogOutcome(directory=root, files=files, index=index)


def _write_text(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        temporary.write_text(content, encoding="utf-8")
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
