"""A hand-built experiment, aggregated on SQLite, DuckDB, PostgreSQL and Spark, against numbers worked out by hand.

Every attribution boundary has an event on each side of it (one microsecond apart), so moving a
boundary, making an end inclusive or a start exclusive, changes the expected statistics. The
multiple-exposure unit and the unexposed unit carry large values that would show if counted.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from splitlab.analysis.sql import CellKey, QuantileStatistic, Source, aggregate_experiment
from splitlab.analysis.sql.quantile import SE_Z
from splitlab.specs.model import MetricDefinition
from splitlab.stats.statistics import CovariateStatistic, MeanStatistic, ProportionStatistic, RatioStatistic

T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
D = timedelta(days=1)
H = timedelta(hours=1)
US = timedelta(microseconds=1)

EXPOSURES = [  # experiment, unit, variant, time, attributes
    ("checkout", "c1", "control", T0, {"device": "ios"}),
    ("checkout", "c1", "control", T0 + 2 * D, {"device": "android"}),  # later: neither time nor segment
    ("checkout", "c2", "control", T0 + D, {"device": "web"}),
    ("checkout", "c3", "control", T0, {"device": "ios"}),
    ("checkout", "t1", "treatment", T0 + D / 2, {"device": "ios"}),
    ("checkout", "t2", "treatment", T0 + D, {"country": "FR"}),  # no device: level None
    ("checkout", "t3", "treatment", T0 + 5 * D, {"device": "web"}),
    ("checkout", "m1", "control", T0, {"device": "web"}),
    ("checkout", "m1", "treatment", T0 + H, {"device": "web"}),  # a second variant: excluded
    ("other", "c1", "x", T0 - 3 * D, {"device": "tv"}),  # another experiment
]
EVENTS = [  # id, unit, name, value, time
    ("e1", "c1", "purchase", 5.0, T0 - US),  # 1 us before exposure: pre-period only
    ("e2", "c1", "purchase", 20.0, T0),  # at exposure: counts
    ("e3", "c1", "purchase", 30.0, T0 + 7 * D - US),  # last microsecond of the 7-day window
    ("e4", "c1", "purchase", 40.0, T0 + 7 * D),  # window end is exclusive
    ("e5", "c1", "purchase", 7.0, T0 - 14 * D),  # first microsecond of the 14-day pre-window
    ("e6", "c1", "purchase", 1000.0, T0 - 14 * D - US),  # before the pre-window
    ("e7", "c1", "session_start", None, T0 + D),
    ("e8", "c1", "session_start", None, T0 + 2 * D - US),  # last microsecond of the 2-day window
    ("e9", "c1", "session_start", None, T0 + 2 * D),  # outside the 2-day window
    ("e10", "c2", "purchase", 150.0, T0 + D + H),  # capped at 100 for revenue
    ("e11", "c2", "page_view", 1.0, T0 + D + 2 * H),  # an event no metric uses
    ("e12", "t1", "purchase", 10.0, T0 + D / 2 + 3 * D),
    ("e13", "t1", "purchase", 10.0, T0 + D / 2 + 6 * D),
    ("e14", "t1", "purchase", 3.0, T0 + D / 2 - 13 * D),
    ("e15", "t1", "session_start", None, T0 + D / 2 + H),
    ("e16", "t2", "purchase", 60.0, T0 + 2 * D),
    ("e17", "t2", "purchase", None, T0 + D + 2 * H),  # no value: an order, but no revenue
    ("e18", "t3", "purchase", 8.0, T0 + 6 * D),
    ("e19", "m1", "purchase", 500.0, T0 + D),  # multiple-exposure unit
    ("e20", "z9", "purchase", 99.0, T0 + D),  # never exposed
]

METRICS = [
    MetricDefinition(
        name="conversion", kind="binary", event="purchase", window_days=7, covariate={"pre_window_days": 14}
    ),
    MetricDefinition(
        name="revenue", kind="sum", event="purchase", window_days=7,
        capping={"type": "absolute", "upper": 100.0}, covariate={"pre_window_days": 14},
    ),
    MetricDefinition(name="orders", kind="count", event="purchase", window_days=7),
    MetricDefinition(
        name="aov", kind="ratio", numerator={"event": "purchase", "aggregation": "sum"},
        denominator={"event": "purchase", "aggregation": "count"}, window_days=7, covariate={"pre_window_days": 14},
    ),
    MetricDefinition(name="basket", kind="mean", event="purchase", window_days=7, covariate={"pre_window_days": 14}),
    MetricDefinition(
        name="orders_per_session", kind="ratio", numerator={"event": "purchase", "aggregation": "count"},
        denominator={"event": "session_start", "aggregation": "count"}, window_days=2,
    ),
    MetricDefinition(name="revenue_p50", kind="quantile", event="purchase", quantile=0.5, window_days=7),
]  # fmt: skip


def mean(n: int, total: float, sum_sq: float) -> MeanStatistic:
    return MeanStatistic(n, total, sum_sq)


# Per unit (control: c1, c2, c3; treatment: t1, t2, t3), worked out from the events above:
#   conversion (pre)   revenue capped (pre)   orders   aov num/den (pre num/den)   basket (pre mean)   orders/session
# c1   1 (1)            50 (12)                2        50/2 (12/2)                 25 (6)              1/2
# c2   1 (0)            100 [150] (0)          1        150/1 (0/0)                 150 (0)             1/0
# c3   0 (0)            0 (0)                  0        0/0 (0/0)                   -                   0/0
# t1   1 (1)            20 (3)                 2        20/2 (3/1)                  10 (3)              0/1
# t2   1 (0)            60 (0)                 2        60/2 (0/0)                  60 (0)              2/0
# t3   1 (0)            8 (0)                  1        8/1 (0/0)                   8 (0)               1/0
EXPECTED = {
    "control": {
        "conversion": CovariateStatistic(ProportionStatistic(3, 2.0), mean(3, 1.0, 1.0), ((1.0,),)),
        "revenue": CovariateStatistic(mean(3, 150.0, 12500.0), mean(3, 12.0, 144.0), ((600.0,),)),
        "orders": mean(3, 3.0, 5.0),
        "aov": CovariateStatistic(
            RatioStatistic(mean(3, 200.0, 25000.0), mean(3, 3.0, 5.0), 250.0),
            RatioStatistic(mean(3, 12.0, 144.0), mean(3, 2.0, 4.0), 24.0),
            ((600.0, 100.0), (24.0, 4.0)),
        ),
        "basket": CovariateStatistic(mean(2, 175.0, 23125.0), mean(2, 6.0, 36.0), ((150.0,),)),
        "orders_per_session": RatioStatistic(mean(3, 2.0, 2.0), mean(3, 2.0, 4.0), 2.0),
    },
    "treatment": {
        "conversion": CovariateStatistic(ProportionStatistic(3, 3.0), mean(3, 1.0, 1.0), ((1.0,),)),
        "revenue": CovariateStatistic(mean(3, 88.0, 4064.0), mean(3, 3.0, 9.0), ((60.0,),)),
        "orders": mean(3, 5.0, 9.0),
        "aov": CovariateStatistic(
            RatioStatistic(mean(3, 88.0, 4064.0), mean(3, 5.0, 9.0), 168.0),
            RatioStatistic(mean(3, 3.0, 9.0), mean(3, 1.0, 1.0), 3.0),
            ((60.0, 20.0), (6.0, 2.0)),
        ),
        "basket": CovariateStatistic(mean(3, 78.0, 3764.0), mean(3, 3.0, 9.0), ((30.0,),)),
        "orders_per_session": RatioStatistic(mean(3, 3.0, 5.0), mean(3, 1.0, 1.0), 0.0),
    },
}
WAREHOUSE = {
    "exposures": {"table": "raw_exposures", "experiment": "experiment", "unit": "user_id", "variant": "arm",
                  "timestamp": "seen_at", "segments": ["device"], "attributes": "context"},
    "events": {"table": "raw_events", "unit": "user_id", "name": "event", "value": "amount", "timestamp": "at"},
}  # fmt: skip


LAYOUTS = [
    *((backend, layout) for backend in ("sqlite", "duckdb", "postgresql") for layout in ("store", "warehouse")),
    pytest.param(("spark", "warehouse"), marks=pytest.mark.spark),  # Spark reads tables; it holds no store
]


@pytest.fixture(params=LAYOUTS, ids="-".join)
def loaded(request: pytest.FixtureRequest, open_database_of: Any, store_loader: Any) -> tuple[Any, Source]:
    """The case in the store's tables or in a warehouse layout (every exposure a row, device a column)."""
    backend, layout = request.param
    database = open_database_of(backend)
    if layout == "store":
        store_loader(database, EXPOSURES, EVENTS)
        source = Source.splitlab_store()
        connection = database.stores[0].engine if database.stores else database.connection
        return connection, source
    database.create_table(
        "raw_exposures",
        {
            "experiment": "text",
            "user_id": "text",
            "arm": "text",
            "seen_at": "time",
            "device": "text",
            "context": "json",
        },
        [(e, u, v, t, a.get("device"), {"plan": "free"}) for e, u, v, t, a in EXPOSURES],
    )
    database.create_table(
        "raw_events",
        {"event_id": "text", "user_id": "text", "event": "text", "amount": "float", "at": "time"},
        EVENTS,
    )
    return database.connection, Source.from_config(WAREHOUSE)


def test_statistics_match_the_hand_computed_ones(loaded: tuple[Any, Source]) -> None:
    connection, source = loaded
    result = aggregate_experiment(connection, experiment_key="checkout", metrics=METRICS, source=source)
    assert result.variant_units == {"control": 3, "treatment": 3}
    assert result.multiple_exposure_units == 1
    assert result.multiple_exposure_rate == pytest.approx(1 / 7, rel=1e-12)
    for variant, expected in EXPECTED.items():
        cell = result.cells[CellKey(variant)]
        assert {name: cell[name] for name in expected} == expected
    assert set(result.cells) == {CellKey("control"), CellKey("treatment")}


def test_quantile_order_statistics(loaded: tuple[Any, Source]) -> None:
    connection, source = loaded
    result = aggregate_experiment(connection, experiment_key="checkout", metrics=METRICS, source=source)
    control = result.statistic("revenue_p50", "control")
    treatment = result.statistic("revenue_p50", "treatment")
    # Per-unit purchase sums, uncapped: control 0, 50, 150; treatment 8, 20, 60. Three units: the band is all.
    assert control == QuantileStatistic(3, 0.5, 0, (0.0, 50.0, 150.0))
    assert treatment == QuantileStatistic(3, 0.5, 0, (8.0, 20.0, 60.0))
    assert (control.estimate, treatment.estimate) == (50.0, 20.0)
    assert treatment.standard_error == pytest.approx((60.0 - 8.0) / (2 * SE_Z), rel=1e-12)


def test_as_of_drops_later_exposures_and_events(loaded: tuple[Any, Source]) -> None:
    connection, source = loaded
    metrics = [m for m in METRICS if m.name in ("conversion", "revenue", "orders")]
    result = aggregate_experiment(
        connection, experiment_key="checkout", metrics=metrics, source=source, as_of=T0 + 3 * D
    )
    # t3 (exposed at T0 + 5d) is out; c1's purchase at T0 + 7d - 1us and t1's at T0 + 3.5d and 6.5d are out.
    assert result.variant_units == {"control": 3, "treatment": 2}
    control, treatment = result.cells[CellKey("control")], result.cells[CellKey("treatment")]
    assert control["conversion"].metric == ProportionStatistic(3, 2.0)  # type: ignore[union-attr]
    assert control["revenue"].metric == mean(3, 120.0, 10400.0)  # type: ignore[union-attr]
    assert control["orders"] == mean(3, 2.0, 2.0)
    assert treatment["conversion"].metric == ProportionStatistic(2, 1.0)  # type: ignore[union-attr]
    assert treatment["revenue"].metric == mean(2, 60.0, 3600.0)  # type: ignore[union-attr]
    assert treatment["orders"] == mean(2, 2.0, 4.0)
    assert result.as_of == T0 + 3 * D


def test_segment_cells_and_their_sum(loaded: tuple[Any, Source]) -> None:
    connection, source = loaded
    result = aggregate_experiment(
        connection, experiment_key="checkout", metrics=METRICS, source=source, segments=["device"]
    )
    assert result.segment_levels("device") == ("ios", "web", None)
    assert result.cell_units == {
        CellKey("control"): 3, CellKey("treatment"): 3,
        CellKey("control", ("ios",)): 2, CellKey("control", ("web",)): 1,
        CellKey("treatment", ("ios",)): 1, CellKey("treatment", ("web",)): 1, CellKey("treatment", (None,)): 1,
    }  # fmt: skip
    # c1 and c3 (c1's later 'android' exposure does not move it); m1 (web) is excluded.
    assert result.statistic("orders", "control", segment=("ios",)) == mean(2, 2.0, 4.0)
    assert result.statistic("revenue", "control", segment=("web",)).metric == mean(1, 100.0, 10000.0)  # type: ignore[union-attr]
    assert result.statistic("revenue_p50", "control", segment=("ios",)) == QuantileStatistic(2, 0.5, 0, (0.0, 50.0))
    assert result.statistic("revenue_p50", "control", segment=("ios",)).estimate == 25.0  # type: ignore[union-attr]
    assert result.marginal("orders", "treatment", "device", None) == mean(1, 2.0, 4.0)
    for variant, expected in EXPECTED.items():  # the overall cells are the same with segments asked for
        cell = result.cells[CellKey(variant)]
        assert {name: cell[name] for name in expected} == expected
    with pytest.raises(ValueError, match="quantile"):
        result.marginal("revenue_p50", "control", "device", "ios")


def test_by_day_cells_are_cumulative(loaded: tuple[Any, Source]) -> None:
    connection, source = loaded
    result = aggregate_experiment(
        connection, experiment_key="checkout", metrics=METRICS, source=source, segments=["device"], by_day=True
    )
    first, second, sixth = date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 6)
    assert result.days == (first, second, sixth)
    # Control: c1, c3 on 1 March, c2 on 2 March. Treatment: t1 (00:00) and t2 on 2 March, t3 on 6 March.
    orders = {
        (variant, day): result.statistic("orders", variant, day=day)
        for variant in ("control", "treatment") for day in result.days
    }  # fmt: skip
    assert orders == {
        ("control", first): mean(2, 2.0, 4.0), ("control", second): mean(3, 3.0, 5.0),
        ("control", sixth): mean(3, 3.0, 5.0), ("treatment", first): mean(0, 0.0, 0.0),
        ("treatment", second): mean(2, 4.0, 8.0), ("treatment", sixth): mean(3, 5.0, 9.0),
    }  # fmt: skip
    assert result.statistic("conversion", "treatment", day=first) == CovariateStatistic(
        ProportionStatistic(0, 0.0), mean(0, 0.0, 0.0), ((0.0,),)
    )
    assert result.cell_units[CellKey("treatment", ("web",), sixth)] == 1
    assert result.cell_units[CellKey("treatment", ("web",), second)] == 0
    assert result.statistic("revenue", "control", segment=("ios",), day=first).metric == mean(2, 50.0, 2500.0)  # type: ignore[union-attr]
    for variant, expected in EXPECTED.items():  # the last day is the whole experiment
        cell = result.cells[CellKey(variant, None, sixth)]
        assert {name: cell[name] for name in expected} == expected
    assert "revenue_p50" not in result.cells[CellKey("control", None, sixth)]
