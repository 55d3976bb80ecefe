"""The aggregation query in each warehouse's SQL: snapshots of sqlglot's translation, and what must hold in them.

One statement with every construct the builder writes (every metric kind, percentile and absolute
capping, CUPED covariates, a plain and a JSON segment, days, phases, an ``as_of`` cut-off) is
translated for Spark, Databricks, BigQuery, Snowflake and Trino and compared with the files in
``snapshots/``: a change in the builder or in sqlglot shows as a diff to review. Refresh them with
``SPLITLAB_UPDATE_SNAPSHOTS=1 pytest tests/analysis/sql/test_dialects.py`` after reading the diff.
Spark runs its statement for real in test_sql_cross_check.py and test_spark.py.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlglot
from sqlalchemy import create_engine
from typer.testing import CliRunner

from splitlab.analysis.sql import Source, aggregation_sql
from splitlab.analysis.sql._dialect import DIALECTS, WAREHOUSE_DIALECTS, dialect_of
from splitlab.cli import app
from splitlab.specs.model import MetricDefinition

SNAPSHOTS = Path(__file__).parent / "snapshots"
METRICS = [
    MetricDefinition(name="conv", kind="binary", event="purchase", window_days=7, covariate={"pre_window_days": 14}),
    MetricDefinition(name="rev", kind="sum", event="purchase", window_days=7,
                     capping={"type": "percentile", "lower": 0.05, "upper": 0.95}),
    MetricDefinition(name="orders", kind="count", event="purchase", window_days=3.5),
    MetricDefinition(name="basket", kind="mean", event="purchase", capping={"type": "absolute", "upper": 80.0}),
    MetricDefinition(name="aov", kind="ratio", numerator={"event": "purchase", "aggregation": "sum"},
                     denominator={"event": "purchase", "aggregation": "count"}, covariate={"pre_window_days": 14}),
    MetricDefinition(name="p90", kind="quantile", event="purchase", quantile=0.9, window_days=7),
]  # fmt: skip
SOURCE = Source.from_config(
    {
        "exposures": {"table": "analytics.exposures", "experiment": "experiment_id", "unit": "user_id",
                      "variant": "arm", "timestamp": "exposed_at", "segments": ["country"], "attributes": "context"},
        "events": {"table": "analytics.events", "unit": "user_id", "name": "event_name", "value": "amount",
                   "timestamp": "ts"},
    }
)  # fmt: skip
ARGUMENTS = {
    "experiment_key": "checkout-one-page",
    "metrics": METRICS,
    "source": SOURCE,
    "segments": ["country", "device"],
    "by_day": True,
    "as_of": datetime(2024, 3, 15, tzinfo=UTC),
    "phase_starts": [datetime(2024, 3, 5, 12, tzinfo=UTC)],
}


@pytest.mark.parametrize("dialect", WAREHOUSE_DIALECTS)
def test_the_statement_matches_its_snapshot(dialect: str) -> None:
    statement = aggregation_sql(dialect, **ARGUMENTS) + "\n"
    snapshot = SNAPSHOTS / f"{dialect}.sql"
    if os.environ.get("SPLITLAB_UPDATE_SNAPSHOTS") == "1":
        snapshot.write_text(statement, encoding="utf-8")
    assert statement == snapshot.read_text(encoding="utf-8")


@pytest.mark.parametrize("dialect", WAREHOUSE_DIALECTS)
def test_the_statement_is_that_warehouses_sql(dialect: str) -> None:
    statement = aggregation_sql(dialect, **ARGUMENTS)
    sqlglot.parse_one(statement, read=dialect)  # reads back in its own dialect
    # DuckDB-only spellings and the PostgreSQL/DuckDB CTE hint are gone; each engine's own epoch function is there.
    assert not re.search(r"epoch_us|json_extract_string|MATERIALIZED|//", statement, re.IGNORECASE)
    epoch = {"snowflake": "DATE_PART(EPOCH_MICROSECOND", "trino": "TO_UNIXTIME("}.get(dialect, "UNIX_MICROS(")
    assert statement.count(epoch) == 4  # exposure time and event time, each read and cut off at as_of
    quote = "`" if dialect in ("spark", "databricks", "bigquery") else '"'
    assert f"{quote}analytics{quote}.{quote}events{quote}" in statement
    assert "1709640000000000" in statement  # the phase start, in microseconds since 1970


def test_native_engines_keep_their_own_sql() -> None:
    duckdb = aggregation_sql("duckdb", **ARGUMENTS)
    assert "epoch_us(" in duckdb
    assert "AS MATERIALIZED" in duckdb
    assert "EXTRACT(EPOCH FROM" in aggregation_sql("postgresql", **ARGUMENTS)


def test_an_unknown_dialect_is_named() -> None:
    with pytest.raises(ValueError, match=r"dialect == 'oracle', must be one of sqlite, .*, trino"):
        aggregation_sql("oracle", **ARGUMENTS)


def test_the_cli_prints_the_experiments_statement(tmp_path: Path) -> None:
    runner = CliRunner()
    database = ["--database", f"sqlite:///{tmp_path / 's.db'}"]
    examples = Path(__file__).resolve().parents[3] / "examples"
    assert runner.invoke(app, ["apply", str(examples), *database]).exit_code == 0
    result = runner.invoke(app, ["sql", "free-shipping-threshold", "--dialect", "snowflake", *database])
    assert result.exit_code == 0, result.output
    sqlglot.parse_one(result.output, read="snowflake")
    assert "\"experiment_key\" = 'free-shipping-threshold'" in result.output
    bad = runner.invoke(app, ["sql", "free-shipping-threshold", "--dialect", "oracle", *database])
    assert bad.exit_code == 2
    assert "dialect == 'oracle'" in bad.output
    missing = runner.invoke(app, ["sql", "nope", *database])
    assert missing.exit_code == 2
    assert "nope" in missing.output


@pytest.mark.parametrize("name", ["bigquery", "snowflake", "trino", "databricks"])
def test_a_sqlalchemy_engine_of_a_warehouse_gets_its_dialect(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The warehouses' SQLAlchemy packages are not installed here; an engine reporting their dialect name
    # stands in for one, which is all dialect_of reads.
    engine = create_engine("sqlite://")
    monkeypatch.setattr(engine.dialect, "name", name)
    assert dialect_of(engine) == DIALECTS[name]
    monkeypatch.setattr(engine.dialect, "name", "oracle")
    with pytest.raises(ValueError, match="connection is a oracle database; the aggregation runs on sqlite, "):
        dialect_of(engine)
