"""A whole analysis with its data in Parquet files, read by Spark and by DuckDB through a ``--source`` file.

The store holds the spec and metric definitions; its exposures and events are written to Parquet
files (a folder of parts for the events, as a lake holds them) and two source files name them: one
for Spark (local mode), one for DuckDB. Every number of the two readouts, and of the readout from
the store itself, must agree to a relative 1e-9: the same query runs on three engines.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from splitlab.analysis.report import readout_to_dict
from splitlab.analysis.spark import run_query
from splitlab.operations.analysis import analyze
from splitlab.operations.experiments import apply_catalog, change_status, read_catalog
from splitlab.operations.simulation import simulate_experiment
from splitlab.storage import open_store

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
KEY = "free-shipping-threshold"
REL = 1e-9

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store with a simulated experiment, its data copied to Parquet, and the readout from the store."""
    folder = tmp_path_factory.mktemp("lake")
    store = open_store(f"sqlite:///{folder / 'store.db'}")
    apply_catalog(store, read_catalog(store, EXAMPLES), actor="test")
    change_status(store, key=KEY, action="start", actor="test")
    simulate_experiment(store, KEY, units=3000, effects={"conversion": 0.2}, seed=7)
    with store.engine.connect() as conn:
        exposures = pd.read_sql("SELECT * FROM exposures", conn)
        events = pd.read_sql("SELECT event_id, unit_id, name, value, timestamp FROM events", conn)
    exposures["first_exposed_at"] = pd.to_datetime(exposures["first_exposed_at"], utc=True)
    exposures["multiple_variants"] = exposures["multiple_variants"].astype(bool)
    events["timestamp"] = pd.to_datetime(events["timestamp"], utc=True)
    exposures.to_parquet(folder / "exposures.parquet")
    (folder / "events").mkdir()
    for part, rows in enumerate((events.iloc[::2], events.iloc[1::2])):
        rows.to_parquet(folder / "events" / f"part-{part}.parquet")
    mapping = {
        "tables": {"exposures": "exposures.parquet", "events": "events"},
        "exposures": {"table": "exposures", "experiment": "experiment_key", "unit": "unit_id", "variant": "variant",
                      "timestamp": "first_exposed_at", "attributes": "attributes",
                      "multiple_variants": "multiple_variants", "one_row_per_unit": True},
        "events": {"table": "events", "unit": "unit_id", "name": "name", "value": "value", "timestamp": "timestamp"},
    }  # fmt: skip
    sources = {}
    for engine, database in (("spark", "spark"), ("duckdb", "duckdb://")):
        sources[engine] = folder / f"{engine}.yml"
        sources[engine].write_text(yaml.safe_dump({"database": database, **mapping}), encoding="utf-8")
    stored = analyze(store, KEY, save=False).readout
    yield {"store": store, "sources": sources, "stored": stored}
    store.close()


def _numbers(value: Any, path: str = "") -> dict[str, Any]:
    """Every leaf of a readout's dict, by path (lists of metrics keyed by position)."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _numbers(item, f"{path}.{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _numbers(item, f"{path}[{i}]").items()}
    return {path: value}


def _assert_same_readout(found: Any, expected: Any) -> None:
    left, right = _numbers(readout_to_dict(found)), _numbers(readout_to_dict(expected))
    assert left.keys() == right.keys()
    compared = 0
    for path, value in right.items():
        if path.endswith(("analysed_at", ".sql")):
            continue
        other = left[path]
        if isinstance(value, float) and isinstance(other, float) and math.isfinite(value):
            assert other == pytest.approx(value, rel=REL, abs=1e-12), path
            compared += 1
        else:
            assert other == value, path
    assert compared > 50  # the effects, intervals and p-values were compared, not only labels


def test_spark_reads_parquet_and_equals_duckdb_and_the_store(lake: dict[str, Any], spark: Any) -> None:
    duckdb_readout = analyze(lake["store"], KEY, save=False, source=lake["sources"]["duckdb"]).readout
    spark_readout = analyze(lake["store"], KEY, save=False, source=lake["sources"]["spark"]).readout
    _assert_same_readout(duckdb_readout, lake["stored"])
    _assert_same_readout(spark_readout, duckdb_readout)
    assert spark_readout.srm is not None
    assert spark.catalog.tableExists("events")  # the Parquet folder was registered as a table of the session


def test_a_missing_parquet_path_names_the_table(lake: dict[str, Any], tmp_path: Path) -> None:
    source = tmp_path / "bad.yml"
    config = yaml.safe_load(lake["sources"]["spark"].read_text(encoding="utf-8"))
    config["tables"]["events"] = str(tmp_path / "nowhere")
    source.write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.raises(Exception, match=r"tables\.events: .*nowhere.* does not exist"):
        analyze(lake["store"], KEY, save=False, source=source)


class _StatementSpy:
    """A Spark session that records the statements it is given (the rest goes to the real session)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.statements: list[str] = []

    def sql(self, statement: str) -> Any:
        self.statements.append(statement)
        return self.session.sql(statement)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


def test_a_cte_read_twice_is_computed_once(spark: Any) -> None:
    spark.createDataFrame([(1, 2.0), (2, 3.0), (3, 5.0)], "unit int, value double").createOrReplaceTempView("numbers")
    statement = (
        "WITH doubled AS (SELECT unit, value * 2 AS value FROM numbers), "
        "top AS (SELECT MAX(value) AS value FROM doubled), once AS (SELECT COUNT(*) AS n FROM numbers) "
        "SELECT d.unit, d.value, t.value AS top, o.n FROM doubled AS d CROSS JOIN top AS t CROSS JOIN once AS o "
        "UNION ALL SELECT NULL, SUM(value), NULL, NULL FROM doubled"
    )
    spy = _StatementSpy(spark)
    rows = run_query(spy, statement)
    assert sorted((r["unit"] or 0, r["value"]) for r in rows) == [(0, 20.0), (1, 4.0), (2, 6.0), (3, 10.0)]
    assert {r["top"] for r in rows if r["unit"] is not None} == {10.0}
    # One statement per CTE, then the final SELECT over their views; none of them is a WITH any more.
    assert len(spy.statements) == 4
    assert not any(s.lstrip().upper().startswith("WITH") for s in spy.statements)
    assert "splitlab_doubled_" in spy.statements[1]
    assert "splitlab_doubled_" in spy.statements[3]
    assert "splitlab_top_" in spy.statements[3]
    # The views are gone afterwards.
    assert not [t.name for t in spark.catalog.listTables() if t.name.startswith("splitlab_")]
    spark.catalog.dropTempView("numbers")
