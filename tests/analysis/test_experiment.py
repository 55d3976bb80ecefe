"""End to end with known truth: simulate -> store -> in-database aggregation -> statistics -> decision."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from splitlab.analysis.experiment import analyze_experiment
from splitlab.operations.simulation import US_PER_DAY, _days_as_us, simulate
from splitlab.specs import ExperimentSpec, MetricDefinition, load_spec
from splitlab.storage import Store, open_store

SPEC = """
key: e2e
variants: [{key: control, weight: 0.5}, {key: treatment, weight: 0.5}]
hypothesis: {primary_metric: conversion, direction: increase, mde: 0.1, baseline: 0.045}
metrics:
  goal: [conversion]
  secondary: [revenue_per_user]
  guardrails: [{metric: average_order_value, max_degradation: 0.02}]
stratify_by: [device]
"""
METRICS = {
    "conversion": {"name": "conversion", "kind": "binary", "event": "purchase", "window_days": 7},
    "revenue_per_user": {"name": "revenue_per_user", "kind": "sum", "event": "purchase", "window_days": 7,
                         "covariate": {"pre_window_days": 14}},
    "average_order_value": {"name": "average_order_value", "kind": "ratio", "window_days": 7,
                            "numerator": {"event": "purchase", "aggregation": "sum"},
                            "denominator": {"event": "purchase", "aggregation": "count"}},
}  # fmt: skip


def _store(tmp_path: Path) -> tuple[Store, ExperimentSpec, dict[str, MetricDefinition]]:
    spec = load_spec(SPEC)
    store = open_store(f"sqlite:///{tmp_path / 'e2e.db'}")
    store.metrics.put_many(definitions=list(METRICS.values()), actor="test")
    store.experiments.create(key=spec.key, spec=spec.model_dump(mode="json"), actor="test", status="running")
    return store, spec, {k: MetricDefinition.model_validate(v) for k, v in METRICS.items()}


def _metric(readout: object, name: str) -> object:
    return next(m for m in readout.metrics if m.metric == name)  # type: ignore[attr-defined]


def test_planted_effect_is_found_with_its_sign_and_covered_by_the_ci(tmp_path: Path) -> None:
    store, spec, metrics = _store(tmp_path)
    with store:
        # 38,000 units per variant: past the 34,897 the hypothesis plans, so the fixed-horizon test may be read.
        simulate(store, spec, metrics, units=76_000, effects={"conversion": 0.25}, seed=11)
        readout = analyze_experiment(store, "e2e")
        conversion = _metric(readout, "conversion")
        low, high = conversion.effect.relative_ci  # type: ignore[attr-defined]
        assert conversion.effect.relative_effect > 0  # type: ignore[attr-defined]
        assert low <= 0.25 <= high
        assert conversion.effect.p_value < 0.05  # type: ignore[attr-defined]
        assert readout.decision is not None
        assert readout.decision.category in ("STRONG_LAUNCH", "LAUNCH")
        assert store.snapshots.latest(experiment_key="e2e") is not None
        assert {s.segment[0] for s in readout.segments if s.segment} == {"device"}


def test_aa_simulation_gives_no_launch(tmp_path: Path) -> None:
    store, spec, metrics = _store(tmp_path)
    with store:
        simulate(store, spec, metrics, units=30_000, effects={}, seed=12)
        readout = analyze_experiment(store, "e2e")
    assert readout.decision is not None
    assert readout.decision.category in ("NO_LAUNCH", "EXTEND_TEST")
    assert all(check.passed for check in readout.health if check.severity == "error")


def test_planted_guardrail_regression_rolls_back(tmp_path: Path) -> None:
    store, spec, metrics = _store(tmp_path)
    with store:
        simulate(store, spec, metrics, units=60_000, effects={"average_order_value": -0.12}, seed=13)
        readout = analyze_experiment(store, "e2e")
    aov = _metric(readout, "average_order_value")
    assert aov.effect.relative_ci[1] < -0.02  # type: ignore[attr-defined]
    assert readout.decision is not None
    assert readout.decision.category == "ROLLBACK"
    assert any("average_order_value" in reason for reason in readout.decision.reasons)


def test_planted_52_48_split_is_invalid(tmp_path: Path) -> None:
    store, spec, metrics = _store(tmp_path)
    with store:
        simulate(store, spec, metrics, units=40_000, effects={"conversion": 0.25}, split=[0.52, 0.48], seed=14)
        readout = analyze_experiment(store, "e2e")
    assert readout.srm.flag
    assert readout.decision is not None
    assert readout.decision.category == "INVALID"


def test_missing_metric_definitions_are_named(tmp_path: Path) -> None:
    spec = load_spec(SPEC)
    with open_store(f"sqlite:///{tmp_path / 'x.db'}") as store:
        store.experiments.create(key=spec.key, spec=spec.model_dump(mode="json"), actor="t")
        with pytest.raises(ValueError, match="no stored definition"):
            analyze_experiment(store, "e2e")
        with pytest.raises(ValueError, match="'nope' is not in the store"):
            analyze_experiment(store, "nope")


def test_decision_rules_come_from_the_spec(tmp_path: Path) -> None:
    store, spec, metrics = _store(tmp_path)
    with store:
        simulate(store, spec, metrics, units=20_000, effects={}, seed=15)
        assert analyze_experiment(store, "e2e", save=False).decision.category == "NO_LAUNCH"  # type: ignore[union-attr]
        # null is a setting here (always extend), not "the default": it must survive the store.
        data = spec.model_dump(mode="json")
        data["analysis"]["decision"] = {"extend_if_days_left_below": None}
        store.experiments.update(key="e2e", spec=data, diff=[], actor="t")
        assert analyze_experiment(store, "e2e", save=False).decision.category == "EXTEND_TEST"  # type: ignore[union-attr]
        # Stored before the spec typed analysis.decision: re-validated on read, the field named.
        data["analysis"]["decision"] = {"alhpa": 0.01}
        store.experiments.update(key="e2e", spec=data, diff=[], actor="t")
        with pytest.raises(ValueError, match=r"analysis\.decision\.alhpa\n  Extra inputs are not permitted"):
            analyze_experiment(store, "e2e")


def test_warehouse_tables_give_the_same_readout(tmp_path: Path) -> None:
    import duckdb
    import pandas as pd
    from sqlalchemy import text

    from splitlab.analysis.warehouse import warehouse

    store, spec, metrics = _store(tmp_path)
    with store:
        simulate(store, spec, metrics, units=8_000, effects={"conversion": 0.2}, seed=16)
        own = analyze_experiment(store, "e2e", save=False)
        with store.engine.connect() as conn:
            exposures = pd.read_sql(text("SELECT * FROM exposures"), conn)
            events = pd.read_sql(text("SELECT * FROM events"), conn)
        exposures = pd.DataFrame({
            "experiment_id": exposures["experiment_key"], "user_id": exposures["unit_id"], "arm": exposures["variant"],
            "exposed_at": pd.to_datetime(exposures["first_exposed_at"], utc=True),
            "device": exposures["attributes"].map(lambda a: json.loads(a)["device"]),
        })  # fmt: skip
        events = pd.DataFrame({
            "user_id": events["unit_id"], "event_name": events["name"], "amount": events["value"],
            "ts": pd.to_datetime(events["timestamp"], utc=True),
        })  # fmt: skip
        path = tmp_path / "warehouse.duckdb"
        with duckdb.connect(str(path)) as con:
            con.execute("CREATE TABLE exposures AS SELECT * FROM exposures")
            con.execute("CREATE TABLE events AS SELECT * FROM events")
        config = tmp_path / "source.yaml"
        config.write_text(
            f"database: duckdb:///{path}\n"
            "exposures: {table: exposures, unit: user_id, variant: arm, timestamp: exposed_at,"
            " experiment: experiment_id, segments: [device]}\n"
            "events: {table: events, unit: user_id, name: event_name, timestamp: ts, value: amount}\n"
        )
        with warehouse(config) as data:
            theirs = analyze_experiment(store, "e2e", save=False, data=data)
    assert theirs.units == own.units
    for mine, other in zip(own.metrics, theirs.metrics, strict=True):
        assert other.effect.p_value == pytest.approx(mine.effect.p_value, rel=1e-9)


def test_simulated_times_are_those_timedelta_gives() -> None:
    # The simulation times its events as one vector; these are the microseconds an Event built
    # with ``start + timedelta(days=d)`` had, so seeded simulations write the rows they always did.
    rng = np.random.default_rng(5)
    half_us = (rng.integers(-(10**12), 10**12, 20_000) + 0.5) / US_PER_DAY  # ties that round half to even
    days = np.concatenate([rng.uniform(-14.0, 22.0, 200_000), rng.uniform(-1e-6, 1e-6, 20_000), half_us,
                           np.array([0.0, -0.0, 3.0, -3.0, 5e-324])])  # fmt: skip
    expected = [timedelta(days=float(d)) // timedelta(microseconds=1) for d in days]
    assert _days_as_us(days).tolist() == expected
