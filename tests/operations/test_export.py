"""Export of stored readouts as results tables (DuckDB, Parquet, PostgreSQL, Spark) and of the spec catalog.

Every target is read back with its own reader (duckdb, pyarrow, SQLAlchemy, Spark) and checked
against the stored snapshot's JSON payload, read here without splitlab's row builder, and against
the other targets: the same rows, the same types.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

from splitlab.analysis.export_rows import TABLES
from splitlab.cli import app
from splitlab.operations.analysis import analyze
from splitlab.operations.errors import ConflictError, InvalidInputError
from splitlab.operations.export import ExportFailedError, export_catalog, export_results
from splitlab.specs.loading import load_spec
from splitlab.storage import NotFoundError, Snapshot, Store, open_store

ROOT = Path(__file__).resolve().parents[2]
KEY = "free-shipping-threshold"
STAMP = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
RESULT_FIGURES = {  # column of splitlab_results -> where the payload's metric record keeps it
    "control_n": ("effect", "control_n"),
    "treatment_n": ("effect", "treatment_n"),
    "control_estimate": ("effect", "control_mean"),
    "treatment_estimate": ("effect", "treatment_mean"),
    "absolute_effect": ("effect", "absolute_effect"),
    "absolute_ci_lower": ("effect", "absolute_ci", 0),
    "absolute_ci_upper": ("effect", "absolute_ci", 1),
    "relative_effect": ("effect", "relative_effect"),
    "relative_ci_lower": ("effect", "relative_ci", 0),
    "relative_ci_upper": ("effect", "relative_ci", 1),
    "p_value": ("effect", "p_value"),
    "test": ("effect", "test"),
    "cuped": ("effect", "cuped"),
    "alpha": ("effect", "alpha"),
    "chance_to_win": ("chance_to_win",),
    "metric_role": ("role",),
}


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite store with the examples applied and one experiment simulated and analysed twice."""
    url = f"sqlite:///{tmp_path_factory.mktemp('export') / 'store.db'}"
    db = ["--database", url]
    _cli("apply", str(ROOT / "examples"), *db)
    _cli("start", KEY, *db)
    _cli("simulate", KEY, "--units", "1500", "--effect", "conversion=+30%", "--seed", "3", *db)
    _cli("analyze", KEY, "--json", *db)
    _cli("analyze", KEY, "--json", *db)
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with open_store(store_url) as opened:
        yield opened


def _plain(value: Any) -> Any:
    """One form per value whatever the reader: times aware UTC (Spark and DuckDB give other zones)."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def _sorted(rows: list[dict[str, Any]], table: str) -> list[dict[str, Any]]:
    key = next(t.key for t in TABLES if t.name == table)
    plain = [{name: _plain(value) for name, value in row.items()} for row in rows]
    return sorted(plain, key=lambda row: tuple("" if row[k] is None else str(row[k]) for k in key))


def _read_duckdb(path: Path, schema: str | None = None) -> dict[str, list[dict[str, Any]]]:
    import duckdb

    with duckdb.connect(str(path), read_only=True) as conn:
        prefix = f"{schema}." if schema else ""
        tables = {}
        for table in TABLES:
            cursor = conn.execute(f"SELECT * FROM {prefix}{table.name}")  # noqa: S608 - our own names
            names = [d[0] for d in cursor.description or ()]
            tables[table.name] = _sorted([dict(zip(names, row, strict=True)) for row in cursor.fetchall()], table.name)
    return tables


def _read_parquet(directory: Path) -> dict[str, list[dict[str, Any]]]:
    import pyarrow.parquet as pq

    return {table.name: _sorted(pq.read_table(directory / table.name).to_pylist(), table.name) for table in TABLES}


def _read_postgres(url: str, schema: str | None = None) -> dict[str, list[dict[str, Any]]]:
    engine = create_engine(url, poolclass=NullPool)
    prefix = f'"{schema}".' if schema else ""
    try:
        with engine.connect() as conn:
            return {
                table.name: _sorted(
                    [dict(row._mapping) for row in conn.execute(text(f"SELECT * FROM {prefix}{table.name}"))],  # noqa: S608
                    table.name,
                )
                for table in TABLES
            }
    finally:
        engine.dispose()


def _lookup(record: dict[str, Any], path: tuple[Any, ...]) -> Any:
    for step in path:
        record = record[step]
    return record


def _check_against_payload(tables: dict[str, list[dict[str, Any]]], snapshots: list[Snapshot]) -> None:
    """Every snapshot's overall metrics, decision and checks, as its stored JSON holds them."""
    assert {row["snapshot_id"] for row in tables["splitlab_results"]} == {s.id for s in snapshots}
    for snapshot in snapshots:
        payload = snapshot.payload
        rows = [row for row in tables["splitlab_results"] if row["snapshot_id"] == snapshot.id]
        overall = {(row["metric"], row["variant"]): row for row in rows if row["segment_dimension"] is None}
        assert len(overall) == len(payload["metrics"]) >= 4
        for record in payload["metrics"]:
            row = overall[record["metric"], record["variant"]]
            for column, path in RESULT_FIGURES.items():
                assert row[column] == _lookup(record, path), (column, record["metric"])
            assert row["version"] == payload["spec_version"]
            assert row["snapshot_time"] == snapshot.created_at
        segments = [row for row in rows if row["segment_dimension"] is not None]
        assert len(segments) == len(payload["segments"]) > 0
        assert {row["segment_dimension"] for row in segments} == {"device"}
        (decision,) = [row for row in tables["splitlab_decisions"] if row["snapshot_id"] == snapshot.id]
        assert decision["decision"] == payload["decision"]["category"]
        assert json.loads(decision["reasons"]) == payload["decision"]["reasons"]
        assert decision["srm_p_value"] == payload["srm"]["p_value"]
        assert decision["units"] == sum(payload["units"].values())
        checks = [row for row in tables["splitlab_health_checks"] if row["snapshot_id"] == snapshot.id]
        assert [(c["check_name"], c["passed"]) for c in sorted(checks, key=lambda c: c["check_name"])] == sorted(
            (c["name"], c["passed"]) for c in payload["health"]
        )
    versions = tables["splitlab_experiments"]
    assert [row["version"] for row in versions] == [1, 2]
    assert [row["status"] for row in versions] == ["draft", "running"]
    assert versions[0]["owner"] == "growth-team@example.com"


def _without_export_time(tables: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    return {name: [{**row, "exported_at": None} for row in rows] for name, rows in tables.items()}


def test_duckdb_round_trip_and_idempotent(store: Store, tmp_path: Path) -> None:
    snapshots = store.snapshots.list(experiment_key=KEY)
    assert len(snapshots) == 2
    target = f"duckdb:///{tmp_path / 'results.duckdb'}"
    outcome = export_results(store, KEY, to=target, all_snapshots=True, exported_at=STAMP)
    assert outcome.snapshot_ids == tuple(s.id for s in snapshots)
    first = _read_duckdb(tmp_path / "results.duckdb")
    assert {name: len(rows) for name, rows in first.items()} == outcome.rows
    _check_against_payload(first, snapshots)
    assert {row["exported_at"] for row in first["splitlab_results"]} == {STAMP}
    # Again, all of them and then the latest alone: the same rows, once each, newer exported_at.
    export_results(store, KEY, to=target, all_snapshots=True)
    export_results(store, KEY, to=target)
    again = _read_duckdb(tmp_path / "results.duckdb")
    assert {name: len(rows) for name, rows in again.items()} == outcome.rows
    latest = [row for row in again["splitlab_results"] if row["snapshot_id"] == snapshots[-1].id]
    assert min(row["exported_at"] for row in latest) > STAMP
    assert _without_export_time(again) == _without_export_time(first)


def test_targets_agree_row_for_row(store: Store, tmp_path: Path, postgres_url: str, postgres_schemas: Any) -> None:
    snapshots = store.snapshots.list(experiment_key=KEY)
    for target in (f"duckdb:///{tmp_path / 'r.duckdb'}?schema=analytics", f"parquet:///{tmp_path / 'lake'}"):
        export_results(store, KEY, to=target, all_snapshots=True, exported_at=STAMP)
    export_results(store, KEY, to=postgres_url, all_snapshots=True, exported_at=STAMP)
    export_results(store, KEY, to=postgres_url, all_snapshots=True, exported_at=STAMP)
    # A schema of its own, created by the export (under the session's prefix: dropped at its end).
    named = f"{postgres_schemas.prefix}_export"
    export_results(store, KEY, to=postgres_url, schema=named, exported_at=STAMP)
    in_duckdb = _read_duckdb(tmp_path / "r.duckdb", schema="analytics")
    in_parquet = _read_parquet(tmp_path / "lake")
    in_postgres = _read_postgres(postgres_url)
    _check_against_payload(in_parquet, snapshots)
    assert in_duckdb == in_parquet
    assert in_postgres == in_parquet
    in_named = _read_postgres(postgres_url, schema=named)
    assert in_named["splitlab_results"] == [
        r for r in in_parquet["splitlab_results"] if r["snapshot_id"] == snapshots[-1].id
    ]
    files = sorted(p.name for p in (tmp_path / "lake" / "splitlab_results").iterdir())
    assert files == [f"{KEY}.snapshot-{s.id}.parquet" for s in snapshots]


def test_column_types_are_the_documented_ones(store: Store, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    export_results(store, KEY, to=str(tmp_path / "lake"), exported_at=STAMP)
    arrow = {"text": "string", "bigint": "int64", "double": "double", "boolean": "bool"}
    arrow["timestamp"] = "timestamp[us, tz=UTC]"
    for table in TABLES:
        schema = pq.read_schema(next((tmp_path / "lake" / table.name).iterdir()))
        assert [(f.name, str(f.type)) for f in schema] == [(c.name, arrow[c.type]) for c in table.columns]
    # docs/export.md lists every column of every table with its type, in order.
    docs = (ROOT / "docs" / "export.md").read_text(encoding="utf-8")
    for table in TABLES:
        section = docs.split(f"### `{table.name}`", 1)[1].split("\n### ", 1)[0]
        documented = re.findall(r"^\| `([a-z_]+)` \| (text|bigint|double|boolean|timestamp)", section, re.MULTILINE)
        assert documented == [(c.name, c.type) for c in table.columns], table.name


def test_a_table_of_another_shape_is_refused_and_nothing_written(store: Store, tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "r.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE splitlab_decisions (experiment VARCHAR, snapshot_id BIGINT)")
    with pytest.raises(ExportFailedError, match=r"splitlab_decisions exists without the column\(s\) version, "):
        export_results(store, KEY, to=f"duckdb:///{path}")
    with duckdb.connect(str(path)) as conn:
        names = {row[0] for row in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert names == {"splitlab_decisions"}  # the export's transaction rolled back, tables created in it too


def test_errors_name_what_is_wrong(store: Store, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"^to: 'ftp://x' is not an export target"):
        export_results(store, KEY, to="ftp://x")
    with pytest.raises(InvalidInputError, match=r"schema == '1x', must be a plain identifier"):
        export_results(store, KEY, to=str(tmp_path), schema="1x")
    with pytest.raises(NotFoundError, match="'nope' does not exist"):
        export_results(store, "nope", to=str(tmp_path))
    with pytest.raises(ConflictError, match="'checkout-one-page' has no stored readout"):
        export_results(store, "checkout-one-page", to=str(tmp_path))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportFailedError, match="is a file, a Parquet target is a directory"):
        export_results(store, KEY, to=str(tmp_path / "file"))
    with pytest.raises(ExportFailedError, match=r"postgres:\*\*\*@127.0.0.1:1/test: .*(refused|failed)"):
        export_results(store, KEY, to="postgresql://postgres:pw@127.0.0.1:1/test")


def test_the_spec_option_exports_every_saved_snapshot(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = (ROOT / "examples" / "free_shipping.yaml").read_text(encoding="utf-8")
    lake = tmp_path / "lake"
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "metrics.yaml").write_text((ROOT / "examples" / "metrics.yaml").read_text())
    (tmp_path / "specs" / "exp.yaml").write_text(spec + f"export:\n  to: parquet:///{lake}\n")
    db = ["--database", url]
    _cli("apply", str(tmp_path / "specs"), *db)
    _cli("start", KEY, *db)
    _cli("simulate", KEY, "--units", "600", "--seed", "1", *db)
    with open_store(url) as store:
        outcome = analyze(store, KEY)
        assert outcome.snapshot is not None
        assert outcome.warnings == ()
        exported = _read_parquet(lake)
        _check_against_payload(exported, [outcome.snapshot])
        # Not saved, not exported.
        analyze(store, KEY, save=False)
        assert len(list((lake / "splitlab_results").iterdir())) == 1
        # A target that cannot be written: the snapshot is kept, the failure is a warning.
        lake.rename(tmp_path / "elsewhere")
        lake.write_text("not a directory")
        with caplog.at_level(logging.WARNING, logger="splitlab.operations.export"):
            failed = analyze(store, KEY)
        assert failed.snapshot is not None
        assert store.snapshots.latest(experiment_key=KEY) == failed.snapshot
        (warning,) = failed.warnings
        assert f"snapshot {failed.snapshot.id} of {KEY!r} was saved but not exported" in warning
        assert "is a file, a Parquet target is a directory" in warning
        assert warning in caplog.text
    # The command line says so too, on stderr, and still exits 0 with the readout.
    result = CliRunner().invoke(app, ["analyze", KEY, "--json", *db])
    assert result.exit_code == 0
    assert "was saved but not exported" in result.stderr


def test_a_bad_export_option_is_refused_by_apply(tmp_path: Path) -> None:
    spec = tmp_path / "exp.yaml"
    spec.write_text("key: x\nvariants: [{key: a}, {key: b}]\nexport:\n  to: spark://localhost:7077\n")
    result = CliRunner().invoke(app, ["apply", str(spec), "--database", f"sqlite:///{tmp_path / 's.db'}"])
    assert result.exit_code == 2
    assert "export.to" in result.output
    assert "is a Spark master URL; export to Spark tables with spark:DATABASE" in result.output
    spec.write_text("key: x\nvariants: [{key: a}, {key: b}]\nexport:\n  to: postgresql://ana:pw@db/dw\n")
    result = CliRunner().invoke(app, ["apply", str(spec), "--database", f"sqlite:///{tmp_path / 's.db'}"])
    assert result.exit_code == 2
    assert "export.to: to holds a password" in result.output


def test_catalog_files_are_the_stored_specs(store: Store, tmp_path: Path) -> None:
    outcome = export_catalog(store, tmp_path / "catalog")
    index = json.loads(outcome.index.read_text())
    experiments = store.experiments.list()
    assert [entry["key"] for entry in index["experiments"]] == [record.key for record in experiments]
    for record in experiments:
        history = store.experiments.history(key=record.key)
        files = outcome.files[record.key]
        assert [path.name for path in files] == [f"v{v.version}.yaml" for v in history]
        for version, path in zip(history, files, strict=True):
            assert load_spec(path).model_dump(mode="json") == version.spec
        (entry,) = [e for e in index["experiments"] if e["key"] == record.key]
        assert [(v["version"], v["status"], v["file"]) for v in entry["versions"]] == [
            (v.version, v.status, f"{record.key}/v{v.version}.yaml") for v in history
        ]
    first = {path: path.read_bytes() for path in (tmp_path / "catalog").rglob("*.yaml")}
    export_catalog(store, tmp_path / "catalog", keys=[KEY])
    assert {path: path.read_bytes() for path in (tmp_path / "catalog").rglob("*.yaml")} == first
    with pytest.raises(NotFoundError):
        export_catalog(store, tmp_path / "catalog", keys=["nope"])


def _read_spark(spark: Any, database: str) -> dict[str, list[dict[str, Any]]]:
    tables = {}
    for table in TABLES:
        rows = [row.asDict() for row in spark.read.table(f"{database}.{table.name}").collect()]
        tables[table.name] = _sorted(rows, table.name)
    return tables


@pytest.mark.spark
def test_spark_tables_match_the_other_targets(store: Store, tmp_path: Path, spark: Any) -> None:
    first, second = (f"splitlab_export_{abs(hash(tmp_path)) % 10**8}_{n}" for n in (1, 2))
    # The warehouse directory is fixed when the session starts: these databases live under tmp_path.
    spark.sql(f"CREATE DATABASE {first} LOCATION '{tmp_path / 'first'}'")
    spark.sql(f"CREATE DATABASE {second} LOCATION '{tmp_path / 'second'}'")
    try:
        export_results(store, KEY, to=f"spark:{first}", all_snapshots=True, exported_at=STAMP)
        export_results(store, KEY, to=str(tmp_path / "lake"), all_snapshots=True, exported_at=STAMP)
        in_parquet = _read_parquet(tmp_path / "lake")
        assert _read_spark(spark, first) == in_parquet
        columns = spark.read.table(f"{first}.splitlab_results").columns
        assert columns[-2:] == ["experiment", "snapshot_id"]  # the partition columns, last
        # A process whose in-memory catalog does not know the tables finds their files at the
        # database's location: it adopts them and replaces the latest snapshot's partitions only.
        for table in TABLES:
            shutil.copytree(tmp_path / "first" / table.name, tmp_path / "second" / table.name)
        export_results(store, KEY, to="spark:", schema=second, exported_at=STAMP)
        assert _read_spark(spark, second) == in_parquet
        # A table that an overwrite would empty (not partitioned as ours) is refused before anything is written.
        spark.sql(f"DROP TABLE {first}.splitlab_health_checks")
        copy = f"SELECT * FROM {second}.splitlab_health_checks"  # noqa: S608 - our own names
        spark.sql(f"CREATE TABLE {first}.splitlab_health_checks USING parquet AS {copy}")
        with pytest.raises(ExportFailedError, match="not partitioned by experiment, snapshot_id"):
            export_results(store, KEY, to=f"spark:{first}")
        decisions = spark.read.table(f"{first}.splitlab_decisions").collect()
        assert sorted(row.exported_at.replace(tzinfo=UTC) for row in decisions) == [STAMP, STAMP]
    finally:
        for database in (first, second):
            spark.sql(f"DROP DATABASE IF EXISTS {database} CASCADE")


def test_non_finite_figures_are_null(store: Store, tmp_path: Path) -> None:
    # A figure the readout could not compute is NULL in every target, never NaN.
    export_results(store, KEY, to=str(tmp_path / "lake"), all_snapshots=True)
    rows = _read_parquet(tmp_path / "lake")["splitlab_results"]
    for row in rows:
        for value in row.values():
            assert not (isinstance(value, float) and not math.isfinite(value))
