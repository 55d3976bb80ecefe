"""The SQL aggregation against an independent pandas implementation on a seeded random data set.

Thousands of units with repeated exposures (some in two variants), events before, inside and after
every window, NULL values, percentile and absolute capping, CUPED covariates of every shape,
segments from a JSON column and a plain column, cumulative days and an ``as_of`` cut-off. The
reference reads the same raw rows with pandas and builds statistics with the ``from_values``
constructors; every number must agree to a relative 1e-9 on SQLite, DuckDB, PostgreSQL and Spark (local mode, the
same query translated to Spark SQL), so the four engines agree with each other to 1e-9 too.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from splitlab.analysis.sql import CellKey, QuantileStatistic, Source, aggregate_experiment
from splitlab.analysis.sql.quantile import SE_Z
from splitlab.specs.model import MetricDefinition
from splitlab.stats.statistics import CovariateStatistic, MeanStatistic, ProportionStatistic, RatioStatistic

DAY = 86_400_000_000
BASE = 1_709_294_400_000_000  # 2024-03-01 12:00 UTC in microseconds
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
REL = 1e-9

METRICS = [
    MetricDefinition(name="conv", kind="binary", event="purchase", window_days=7, covariate={"pre_window_days": 14}),
    MetricDefinition(
        name="rev", kind="sum", event="purchase", window_days=7,
        capping={"type": "percentile", "lower": 0.05, "upper": 0.95}, covariate={"pre_window_days": 14},
    ),
    MetricDefinition(name="orders", kind="count", event="purchase", window_days=3.5),
    MetricDefinition(
        name="basket", kind="mean", event="purchase", window_days=7,
        capping={"type": "absolute", "lower": 5.0, "upper": 80.0}, covariate={"pre_window_days": 10},
    ),
    MetricDefinition(
        name="aov", kind="ratio", numerator={"event": "purchase", "aggregation": "sum"},
        denominator={"event": "purchase", "aggregation": "count"}, window_days=7,
        capping={"type": "percentile", "upper": 0.9}, covariate={"pre_window_days": 14},
    ),
    MetricDefinition(
        name="ops", kind="ratio", numerator={"event": "purchase", "aggregation": "count"},
        denominator={"event": "session_start", "aggregation": "count"}, window_days=2.5,
    ),
    MetricDefinition(name="rev_p90", kind="quantile", event="purchase", quantile=0.9, window_days=7),
    MetricDefinition(name="rev_all", kind="sum", event="purchase"),
]  # fmt: skip
SOURCE = {
    "exposures": {"table": "wh_exposures", "experiment": "experiment", "unit": "unit", "variant": "variant",
                  "timestamp": "ts", "segments": ["country"], "attributes": "context"},
    "events": {"table": "wh_events", "unit": "unit", "name": "name", "value": "value", "timestamp": "ts"},
}  # fmt: skip
SEGMENTS = ("device", "country")


def _make_data(seed: int = 20240301, units: int = 3000, events: int = 30000) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = np.array([f"u{i:05d}" for i in range(units)])
    variant = rng.choice(["control", "treatment"], units)
    first = BASE + rng.integers(0, 10 * DAY, units)
    devices = np.array(["ios", "web", "android", None], dtype=object)
    rows: list[tuple[Any, ...]] = []
    for i in range(units):
        device = devices[rng.integers(0, 4)]
        context = {"plan": "free"} if device is None else {"device": device, "plan": "free"}
        country = ["FR", "DE", "US"][rng.integers(0, 3)]
        rows.append(("exp", ids[i], variant[i], int(first[i]), context, country))
        for _ in range(rng.integers(0, 3)):  # later exposures to the same variant, other segments
            later = int(first[i] + rng.integers(1, 3 * DAY))
            rows.append(("exp", ids[i], variant[i], later, {"device": "tv"}, "XX"))
        if rng.random() < 0.03:  # seen in the other variant too
            other = "treatment" if variant[i] == "control" else "control"
            rows.append(("exp", ids[i], other, int(first[i] + rng.integers(-DAY, DAY)), context, country))
    rows.extend(("other", ids[i], "x", int(BASE + rng.integers(0, DAY)), {"device": "ios"}, "FR") for i in range(200))
    exposures = pd.DataFrame(rows, columns=["experiment", "unit", "variant", "t_us", "context", "country"])

    owner = rng.integers(0, units + 300, events)
    unit_ids = np.where(owner < units, ids[np.minimum(owner, units - 1)], np.char.add("z", owner.astype(str)))
    anchor = np.where(owner < units, first[np.minimum(owner, units - 1)], BASE + 3 * DAY)
    times = anchor + rng.integers(-20 * DAY, 15 * DAY, events)
    name = rng.choice(["purchase", "session_start", "page_view"], events, p=[0.35, 0.45, 0.2])
    value = np.round(rng.lognormal(3.0, 1.0, events), 2)
    value = np.where(name == "session_start", np.nan, value)
    value = np.where((name == "purchase") & (rng.random(events) < 0.05), np.nan, value)
    event_frame = pd.DataFrame({"event_id": [f"e{i}" for i in range(events)], "unit": unit_ids, "name": name,
                                "value": value, "t_us": times})  # fmt: skip
    return exposures, event_frame


def _dt(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(micros))


# --- the independent implementation --------------------------------------------------------------


def _clip(values: np.ndarray, lower: float | None, upper: float | None) -> np.ndarray:
    out = values.copy()
    if upper is not None:
        out = np.where(out > upper, upper, out)
    if lower is not None:
        out = np.where(out < lower, lower, out)
    return out


def _cap(values: np.ndarray, metric: MetricDefinition) -> np.ndarray:
    capping = metric.capping
    if capping is None:
        return values
    if capping.type == "absolute":
        return _clip(values, capping.lower, capping.upper)
    present = values[~np.isnan(values)]
    lower = float(np.quantile(present, capping.lower)) if capping.lower is not None else None
    upper = float(np.quantile(present, capping.upper)) if capping.upper is not None else None
    return _clip(values, lower, upper)


class Reference:
    """Per-unit values computed with pandas from the raw rows."""

    def __init__(self, exposures: pd.DataFrame, events: pd.DataFrame, as_of_us: int | None = None) -> None:
        x = exposures[exposures.experiment == "exp"]
        if as_of_us is not None:
            x = x[x.t_us <= as_of_us]
            events = events[events.t_us <= as_of_us]
        x = x.sort_values(["t_us", "variant"], kind="stable")
        variants = x.groupby("unit").variant.nunique()
        first = x.drop_duplicates("unit", keep="first").set_index("unit")
        self.multiple = int((variants > 1).sum())
        self.units = first[variants.reindex(first.index) == 1].copy()
        self.units["device"] = [c.get("device") for c in self.units.context]
        self.units["day"] = self.units.t_us // DAY
        merged = events.merge(self.units[["t_us"]].rename(columns={"t_us": "x_us"}), left_on="unit", right_index=True)
        merged["offset"] = merged.t_us - merged.x_us
        self.events = merged
        self.values = {m.name: self._metric(m) for m in METRICS}

    def _measure(self, kind: str, event: str, start: int, end: int | None) -> np.ndarray:
        e = self.events
        mask = (e.name == event) & (e.offset >= start)
        if end is not None:
            mask &= e.offset < end
        grouped = e[mask].groupby("unit").value
        series = {"count": grouped.size(), "sum": grouped.sum(min_count=1), "values": grouped.count()}[kind]
        filled = series.reindex(self.units.index)
        return filled.to_numpy(dtype=float)

    def _per_unit(self, metric: MetricDefinition, start: int, end: int | None, post: tuple[int, int | None]) -> list:
        zero = np.nan_to_num
        if metric.kind == "ratio":
            return [
                zero(self._measure(side.aggregation, side.event, start, end))
                for side in (metric.numerator, metric.denominator)
            ]
        event = metric.event
        if metric.kind == "binary":
            return [(zero(self._measure("count", event, start, end)) > 0).astype(float)]
        if metric.kind == "count":
            return [zero(self._measure("count", event, start, end))]
        if metric.kind in ("sum", "quantile"):
            return [zero(self._measure("sum", event, start, end))]
        total, count = self._measure("sum", event, start, end), zero(self._measure("values", event, start, end))
        if (start, end) == post:
            return [np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)]
        has_value = zero(self._measure("values", event, *post)) > 0
        pre_mean = np.where(count > 0, zero(total) / np.where(count > 0, count, 1), 0.0)
        return [np.where(has_value, pre_mean, np.nan)]

    def _metric(self, metric: MetricDefinition) -> dict[str, list[np.ndarray]]:
        end = None if metric.window_days is None else round(metric.window_days * DAY)
        post = (0, end)
        values = self._per_unit(metric, 0, end, post)
        values[0] = _cap(values[0], metric)
        out = {"values": values}
        if metric.covariate is not None:
            covariate = self._per_unit(metric, -round(metric.covariate.pre_window_days * DAY), 0, post)
            covariate[0] = _cap(covariate[0], metric)
            out["covariate"] = covariate
        return out

    def statistic(self, metric: MetricDefinition, mask: np.ndarray) -> Any:
        data = self.values[metric.name]
        values = [v[mask] for v in data["values"]]
        if metric.kind == "quantile":
            return values[0]
        covariate = [c[mask] for c in data.get("covariate", [])]
        if metric.kind == "mean":
            keep = ~np.isnan(values[0])
            values, covariate = [v[keep] for v in values], [c[keep] for c in covariate]
        if covariate:
            kind = "proportion" if metric.kind == "binary" else "mean"
            return CovariateStatistic.from_values(_pair(values), _pair(covariate), kind=kind)
        if metric.kind == "binary":
            return ProportionStatistic.from_values(values[0])
        if metric.kind == "ratio":
            return RatioStatistic.from_values(values[0], values[1])
        return MeanStatistic.from_values(values[0])


def _pair(columns: list[np.ndarray]) -> Any:
    return tuple(columns) if len(columns) == 2 else columns[0]


# --- comparison -----------------------------------------------------------------------------------


def _flat(statistic: Any) -> list[float]:
    if dataclasses.is_dataclass(statistic):
        return [x for f in dataclasses.fields(statistic) for x in _flat(getattr(statistic, f.name))]
    if isinstance(statistic, tuple):
        return [x for item in statistic for x in _flat(item)]
    return [float(statistic)]


def _assert_same(found: Any, reference: Any, where: str) -> None:
    if isinstance(found, QuantileStatistic):
        values = np.asarray(reference)
        q = found.quantile
        assert found.n == values.size, where
        assert found.estimate == pytest.approx(float(np.quantile(values, q)), rel=1e-12, abs=1e-12), where
        spread = SE_Z * np.sqrt(q * (1 - q) / values.size)
        low, high = np.quantile(values, [max(q - spread, 0.0), min(q + spread, 1.0)])
        assert found.standard_error == pytest.approx((high - low) / (2 * SE_Z), rel=1e-12, abs=1e-12), where
        assert len(found.values) < values.size or values.size < 60, where  # only a band came back
        return
    assert type(found) is type(reference), where
    assert _flat(found) == pytest.approx(_flat(reference), rel=REL, abs=1e-12), where


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    return _make_data()


@pytest.fixture(scope="module")
def loaded(module_database_or_spark: Any, data: tuple[pd.DataFrame, pd.DataFrame]) -> Any:
    module_database = module_database_or_spark
    exposures, events = data
    module_database.create_table(
        "wh_exposures",
        {"experiment": "text", "unit": "text", "variant": "text", "ts": "time", "context": "json", "country": "text"},
        [(r.experiment, r.unit, r.variant, _dt(r.t_us), r.context, r.country) for r in exposures.itertuples()],
    )
    module_database.create_table(
        "wh_events",
        {"event_id": "text", "unit": "text", "name": "text", "value": "float", "ts": "time"},
        [
            (r.event_id, r.unit, r.name, None if np.isnan(r.value) else float(r.value), _dt(r.t_us))
            for r in events.itertuples()
        ],
    )
    # The store's index on its events (tables.py): without one, SQLite's plan reads every event for
    # every unit (a nested loop, 40 s here for what takes under a second indexed), a cost, not a result.
    module_database.create_index("wh_events", ["name", "unit", "ts"])
    return module_database.connection


def test_overall_and_segment_cells_match_pandas(loaded: Any, data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reference = Reference(*data)
    result = aggregate_experiment(
        loaded, experiment_key="exp", metrics=METRICS, source=Source.from_config(SOURCE), segments=SEGMENTS
    )
    units = reference.units
    assert result.multiple_exposure_units == reference.multiple > 0
    assert result.variant_units == units.variant.value_counts().sort_index().to_dict()
    checked = 0
    for key in result.cells:
        mask = (units.variant == key.variant).to_numpy().copy()
        if key.segment is not None:
            device, country = key.segment
            mask &= units.device.isna().to_numpy() if device is None else (units.device == device).to_numpy()
            mask &= (units.country == country).to_numpy()
        assert result.cell_units[key] == mask.sum()
        for metric in METRICS:
            _assert_same(result.cells[key][metric.name], reference.statistic(metric, mask), f"{key} {metric.name}")
            checked += 1
    assert checked == len(METRICS) * 2 * (1 + 4 * 3)  # 2 variants x (overall + 4 devices x 3 countries)


def test_cumulative_days_and_as_of_match_pandas(loaded: Any, data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    as_of = BASE + 6 * DAY + 12_345
    reference = Reference(*data, as_of_us=as_of)
    result = aggregate_experiment(
        loaded, experiment_key="exp", metrics=METRICS, source=Source.from_config(SOURCE), by_day=True, as_of=_dt(as_of)
    )
    units = reference.units
    days = sorted(units.day.unique())
    assert [d.toordinal() for d in result.days] == [(EPOCH.date() + timedelta(days=int(d))).toordinal() for d in days]
    assert result.multiple_exposure_units == reference.multiple
    for key, statistics in result.cells.items():
        mask = (units.variant == key.variant).to_numpy().copy()
        if key.day is not None:
            mask &= (units.day <= (key.day - EPOCH.date()).days).to_numpy()
        for metric in METRICS:
            if key.day is not None and metric.kind == "quantile":
                assert metric.name not in statistics
                continue
            _assert_same(statistics[metric.name], reference.statistic(metric, mask), f"{key} {metric.name}")
    assert len(result.cells) == 2 * (1 + len(days))
    assert CellKey("control", None, result.days[-1]) in result.cells


def test_phase_cells_match_pandas_and_add_up_to_the_unphased_ones(
    loaded: Any, data: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    reference = Reference(*data)
    starts = [BASE + 3 * DAY + 7, BASE + 6 * DAY]  # phase 2 starts mid-day, phase 3 on a unit's exact time
    units = reference.units
    phase = np.select([units.t_us >= starts[1], units.t_us >= starts[0]], [3, 2], 1)
    source = Source.from_config(SOURCE)
    arguments = {"experiment_key": "exp", "metrics": METRICS, "source": source, "segments": ["device"]}
    plain = aggregate_experiment(loaded, **arguments, by_day=True)
    phased = aggregate_experiment(loaded, **arguments, by_day=True, phase_starts=[_dt(s) for s in starts])
    assert phased.phases == (1, 2, 3)
    assert phased.variant_units == plain.variant_units
    assert {key for key in phased.cells if key.phase is None} == set(plain.cells)  # the same cells, and more
    for key, statistics in plain.cells.items():  # summed over finer rows: equal up to rounding
        for name, statistic in statistics.items():
            if isinstance(statistic, QuantileStatistic):
                assert phased.cells[key][name] == statistic
                continue
            _assert_same(phased.cells[key][name], statistic, f"{key} {name}")
    checked = 0
    for key, statistics in phased.cells.items():
        if key.phase is None:
            continue
        mask = (units.variant == key.variant).to_numpy() & (phase == key.phase)
        if key.segment is not None:
            (device,) = key.segment
            mask &= units.device.isna().to_numpy() if device is None else (units.device == device).to_numpy()
        if key.day is not None:
            mask &= (units.day <= (key.day - EPOCH.date()).days).to_numpy()
        assert phased.cell_units[key] == mask.sum()
        for metric in METRICS:
            if metric.kind == "quantile":
                assert metric.name not in statistics  # quantiles do not add: not given per phase
                continue
            _assert_same(statistics[metric.name], reference.statistic(metric, mask), f"{key} {metric.name}")
            checked += 1
    assert checked > 0
    with pytest.raises(ValueError, match=r"phase_starts.1 == .*, must be later than phase_starts.0"):
        aggregate_experiment(loaded, **arguments, phase_starts=[_dt(starts[1]), _dt(starts[0])])
