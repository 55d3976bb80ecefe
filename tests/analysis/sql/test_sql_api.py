"""Sources, argument checks, odd names and empty data: the edges of the aggregation API."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import create_engine

from splitlab.analysis.sql import (
    CellKey,
    EventTable,
    ExposureTable,
    QuantileStatistic,
    Source,
    aggregate_experiment,
)
from splitlab.analysis.sql.quantile import band_half_width
from splitlab.specs.model import MetricDefinition
from splitlab.stats.frequentist import compare_estimates
from splitlab.stats.nonparametric import quantile_test
from splitlab.stats.statistics import MeanStatistic, ProportionStatistic

T0 = datetime(2024, 5, 1, tzinfo=UTC)
CONVERSION = MetricDefinition(name="conversion", kind="binary", event="purchase", window_days=7)
REVENUE = MetricDefinition(name="revenue", kind="sum", event="purchase", window_days=7)
WAREHOUSE = {
    "exposures": {"table": "x", "experiment": "e", "unit": "u", "variant": "v", "timestamp": "t"},
    "events": {"table": "y", "unit": "u", "name": "n", "value": "val", "timestamp": "t"},
}


def _config(**changes: Any) -> dict[str, Any]:
    config = {section: dict(fields) for section, fields in WAREHOUSE.items()}
    for path, value in changes.items():
        section, field = path.split("__")
        if value is None:
            config[section].pop(field)
        else:
            config[section][field] = value
    return config


# --- Source --------------------------------------------------------------------------------------


def test_store_source_maps_the_store_tables() -> None:
    source = Source.splitlab_store()
    assert source.exposures == ExposureTable(
        table="exposures", experiment="experiment_key", unit="unit_id", variant="variant",
        timestamp="first_exposed_at", attributes="attributes", multiple_variants="multiple_variants",
        one_row_per_unit=True,
    )  # fmt: skip
    assert source.events == EventTable(
        table="events", unit="unit_id", name="name", value="value", timestamp="timestamp"
    )
    assert source.exposures.segment("device") == ("json", "attributes")


def test_from_config_reads_every_field() -> None:
    config = _config(exposures__segments=["country"], exposures__attributes="ctx", exposures__multiple_variants="m",
                     exposures__one_row_per_unit=True, exposures__table="analytics.x")  # fmt: skip
    source = Source.from_config(config)
    assert source.exposures == ExposureTable(
        table="analytics.x", experiment="e", unit="u", variant="v", timestamp="t", segment_columns=("country",),
        attributes="ctx", multiple_variants="m", one_row_per_unit=True,
    )  # fmt: skip
    assert source.events.value == "val"
    assert Source.from_config(_config(events__value=None, exposures__experiment=None)).events.value is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"exposures__variant": None}, r"exposures\.variant is required"),
        ({"events__timestamp": None}, r"events\.timestamp is required"),
        ({"exposures__colour": "c"}, r"exposures\.colour is not a known field"),
        ({"exposures__unit": ""}, r"exposures\.unit == '', must be a non-empty"),
        ({"events__name": 3}, r"events\.name == 3"),
        ({"events__table": "a..b"}, r"events\.table == 'a\.\.b'"),
        ({"exposures__segments": "country"}, r"exposures\.segments == 'country', must be a list"),
        ({"exposures__segments": ["a", "a"]}, r"exposures\.segments .* more than once"),
        ({"exposures__segments": ["bad name"]}, r"exposures\.segments\.0 == 'bad name'"),
        ({"exposures__one_row_per_unit": "yes"}, r"exposures\.one_row_per_unit == 'yes'"),
    ],
)
def test_from_config_names_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Source.from_config(_config(**changes))


def test_from_config_refuses_missing_sections() -> None:
    with pytest.raises(ValueError, match="events is required"):
        Source.from_config({"exposures": WAREHOUSE["exposures"]})
    with pytest.raises(ValueError, match="events == 'y', must be a mapping"):
        Source.from_config({"exposures": WAREHOUSE["exposures"], "events": "y"})
    with pytest.raises(ValueError, match="source config must be a mapping"):
        Source.from_config(["exposures"])  # type: ignore[arg-type]


def test_segment_without_a_column_or_json_is_refused() -> None:
    source = Source.from_config(_config(exposures__segments=["country"]))
    assert source.exposures.segment("country") == ("column", "country")
    with pytest.raises(ValueError, match="segments: 'device' is not a segment column"):
        source.exposures.segment("device")


# --- arguments -----------------------------------------------------------------------------------


@pytest.fixture
def engine(tmp_path: Any) -> Any:
    engine = create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE x (e TEXT, u TEXT, v TEXT, t TEXT)")
        conn.exec_driver_sql("CREATE TABLE y (u TEXT, n TEXT, val REAL, t TEXT)")
    yield engine
    engine.dispose()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"experiment_key": ""}, "experiment_key == ''"),
        ({"metrics": []}, "metrics must be a non-empty sequence"),
        ({"metrics": CONVERSION}, "metrics must be a non-empty sequence"),
        ({"metrics": [CONVERSION, "revenue"]}, r"metrics\.1 is a str"),
        ({"metrics": [CONVERSION, CONVERSION]}, "'conversion' defined more than once"),
        ({"source": "store"}, "source must be a Source"),
        ({"segments": "device"}, "segments == 'device', must be a sequence"),
        ({"segments": ["device"]}, "segments: 'device' is not a segment column"),
        ({"segments": ["d e"]}, "segments == 'd e'"),
        ({"by_day": 1}, "by_day == 1, must be True or False"),
        ({"as_of": datetime(2024, 5, 1)}, "as_of == .*, must be a timezone-aware datetime"),
        ({"as_of": "2024-05-01"}, "as_of == '2024-05-01'"),
    ],
)
def test_invalid_arguments_name_the_parameter(engine: Any, arguments: dict[str, Any], message: str) -> None:
    call = {"experiment_key": "exp", "metrics": [CONVERSION], "source": Source.from_config(WAREHOUSE)} | arguments
    with pytest.raises(ValueError, match=message):
        aggregate_experiment(engine, **call)


def test_a_value_metric_needs_a_value_column(engine: Any) -> None:
    source = Source.from_config(_config(events__value=None))
    assert aggregate_experiment(engine, experiment_key="exp", metrics=[CONVERSION], source=source).cells == {}
    with pytest.raises(ValueError, match="'revenue' \\(sum\\) needs event values"):
        aggregate_experiment(engine, experiment_key="exp", metrics=[CONVERSION, REVENUE], source=source)


def test_connection_must_be_a_database() -> None:
    with pytest.raises(TypeError, match="connection must be a SQLAlchemy Engine or Connection"):
        aggregate_experiment("sqlite://", experiment_key="exp", metrics=[CONVERSION], source=Source.splitlab_store())


def test_empty_experiment_gives_empty_aggregates(engine: Any) -> None:
    result = aggregate_experiment(
        engine, experiment_key="exp", metrics=[CONVERSION], source=Source.from_config(WAREHOUSE)
    )
    assert (result.variant_units, result.multiple_exposure_units, result.cells, result.days) == ({}, 0, {}, ())
    assert math.isnan(result.multiple_exposure_rate)
    assert "WITH" in result.sql
    with pytest.raises(KeyError, match="no cell"):
        result.statistic("conversion", "control")


# --- odd names, on every backend -----------------------------------------------------------------


def test_quoted_names_and_literals(database: Any) -> None:
    """Keywords, spaces, quotes and '%' in table, column, event and experiment names are data, not SQL."""
    database.create_table(
        '"my exposures"',
        {"order": "text", "user id": "text", 'arm "a"': "text", "select": "time", "flag": "bool"},
        [
            ("it's 100%", "u1", "control", T0, False),
            ("it's 100%", "u2", "treatment", T0, False),
            ("it's 100%", "u3", "treatment", T0, True),  # flagged by the warehouse itself
            ("other", "u4", "treatment", T0, False),
        ],
    )
    database.create_table(
        '"my events"',
        {"user id": "text", "from": "text", "value": "float", "where": "time"},
        [
            ("u1", "buy' OR '1'='1", 5.0, T0 + timedelta(hours=1)),
            ("u2", "buy' OR '1'='1", 7.0, T0 + timedelta(hours=1)),
            ("u2", "buy", 100.0, T0 + timedelta(hours=1)),
            ("u3", "buy' OR '1'='1", 9.0, T0 + timedelta(hours=1)),
        ],
    )
    source = Source.from_config({
        "exposures": {"table": "my exposures", "experiment": "order", "unit": "user id", "variant": 'arm "a"',
                      "timestamp": "select", "multiple_variants": "flag"},
        "events": {"table": "my events", "unit": "user id", "name": "from", "value": "value", "timestamp": "where"},
    })  # fmt: skip
    metric = MetricDefinition(name="spend", kind="sum", event="buy' OR '1'='1", window_days=1)
    result = aggregate_experiment(database.connection, experiment_key="it's 100%", metrics=[metric], source=source)
    assert result.variant_units == {"control": 1, "treatment": 1}
    assert result.multiple_exposure_units == 1
    assert result.statistic("spend", "control") == MeanStatistic(1, 5.0, 25.0)
    assert result.statistic("spend", "treatment") == MeanStatistic(1, 7.0, 49.0)


def test_table_without_experiment_column(database: Any) -> None:
    database.create_table("x", {"u": "text", "v": "text", "t": "time"}, [("a", "control", T0), ("b", "treatment", T0)])
    database.create_table("y", {"u": "text", "n": "text", "val": "float", "t": "time"}, [("b", "purchase", 1.0, T0)])
    source = Source.from_config(_config(exposures__experiment=None))
    result = aggregate_experiment(database.connection, experiment_key="any", metrics=[CONVERSION], source=source)
    assert result.cells == {
        CellKey("control"): {"conversion": ProportionStatistic(1, 0.0)},
        CellKey("treatment"): {"conversion": ProportionStatistic(1, 1.0)},
    }


def test_postgresql_settings_are_restored(postgres_database: Any) -> None:
    database = postgres_database
    database.create_table("x", {"e": "text", "u": "text", "v": "text", "t": "time"}, [("exp", "a", "control", T0)])
    database.create_table("y", {"u": "text", "n": "text", "val": "float", "t": "time"}, [])
    with database.connection.connect() as conn:
        aggregate_experiment(conn, experiment_key="exp", metrics=[CONVERSION], source=Source.from_config(WAREHOUSE))
        assert conn.exec_driver_sql("SHOW enable_nestloop").scalar() == "on"
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1  # the caller's transaction is usable


# --- QuantileStatistic against the raw-data quantile test ----------------------------------------


def _band(values: np.ndarray, quantile: float) -> QuantileStatistic:
    """What the query returns: the sorted values whose rank is within the band."""
    ordered = np.sort(values)
    n = ordered.size
    centre, half = (n - 1) * quantile, band_half_width(n, quantile)
    ranks = [k for k in range(n) if abs(k - centre) <= half]
    return QuantileStatistic(n, quantile, ranks[0], tuple(float(v) for v in ordered[ranks[0] : ranks[-1] + 1]))


@pytest.mark.parametrize(
    ("quantile", "n_control", "n_treatment"), [(0.5, 400, 350), (0.9, 2000, 1800), (0.99, 500, 600)]
)
def test_quantile_statistic_reproduces_quantile_test(quantile: float, n_control: int, n_treatment: int) -> None:
    rng = np.random.default_rng(11)
    control, treatment = rng.lognormal(2, 1, n_control), rng.lognormal(2.1, 1, n_treatment)
    c, t = _band(control, quantile), _band(treatment, quantile)
    assert len(c.values) < n_control / 2
    expected = quantile_test(control, treatment, quantile=quantile)
    found = compare_estimates(c.group_estimate(), t.group_estimate(), test=expected.test, use_t=False)
    assert (c.estimate, t.estimate) == (float(np.quantile(control, quantile)), float(np.quantile(treatment, quantile)))
    assert found.absolute_ci == pytest.approx(expected.absolute_ci, rel=1e-12)
    assert found.p_value == pytest.approx(expected.p_value, rel=1e-9)


def test_quantile_statistic_edges() -> None:
    empty = QuantileStatistic(0, 0.5, 0, ())
    assert math.isnan(empty.estimate)
    assert math.isnan(empty.standard_error)
    single = QuantileStatistic(1, 0.9, 0, (4.0,))
    assert (single.estimate, single.standard_error) == (4.0, 0.0)
    band = QuantileStatistic(100, 0.5, 40, tuple(float(v) for v in range(40, 60)))
    assert band.value_at(0.5) == 49.5
    with pytest.raises(ValueError, match="rank 99 is outside the order statistics kept"):
        band.value_at(1.0)
