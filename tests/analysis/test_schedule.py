"""The schedule and the plan through the store: apply, start, simulate, analyse, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from splitlab.analysis.experiment import analyze_experiment
from splitlab.analysis.readout import ExperimentReadout
from splitlab.operations.experiments import apply_spec, change_status, define_metrics
from splitlab.operations.simulation import simulate
from splitlab.specs import ExperimentSpec, MetricDefinition, load_spec
from splitlab.storage import Store, open_store

METRICS = [
    MetricDefinition.model_validate(d)
    for d in (
        {"name": "conversion", "kind": "binary", "event": "purchase", "window_days": 7},
        {"name": "average_order_value", "kind": "ratio", "window_days": 7,
         "numerator": {"event": "purchase", "aggregation": "sum"},
         "denominator": {"event": "purchase", "aggregation": "count"}},
    )
]  # fmt: skip


def _spec(key: str, *, schedule: str, analysis: str = "{}") -> ExperimentSpec:
    return load_spec(f"""
key: {key}
variants: [{{key: control, weight: 0.5}}, {{key: treatment, weight: 0.5}}]
hypothesis: {{primary_metric: conversion, direction: increase, mde: 0.1, baseline: 0.045}}
metrics:
  goal: [conversion]
  guardrails: [{{metric: average_order_value, max_degradation: 0.05}}]
schedule: {schedule}
analysis: {analysis}
""")


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with open_store(database_url) as opened:
        define_metrics(opened, METRICS, actor="ana")
        yield opened


def _run(store: Store, spec: ExperimentSpec, *, units: int, days: float, **effects: float) -> ExperimentReadout:
    apply_spec(store, spec, actor="ana")
    change_status(store, key=spec.key, action="start", actor="ana")
    metrics = {m.name: m for m in METRICS}
    simulate(store, spec, metrics, units=units, effects=effects, days=days, seed=21)
    return analyze_experiment(store, spec.key, save=False)


def _decision(readout: ExperimentReadout) -> Any:
    assert readout.decision is not None
    return readout.decision


def test_no_launch_decision_before_the_minimum_duration(store: Store) -> None:
    # A large planted effect on a sample past its plan: LAUNCH material, but 4 of 14 days have run.
    spec = _spec("min-duration", schedule="{min_duration_days: 14, min_sample_size: 2000}")
    readout = _run(store, spec, units=12_000, days=3, conversion=0.6)
    decision = _decision(readout)
    assert readout.min_duration_days == 14
    assert decision.category == "EXTEND_TEST"
    run = readout.days_running
    assert decision.reasons[0] == (
        f"minimum duration: {run:.1f} of the schedule's 14 days run; keep 'treatment' running "
        f"{14 - run:.1f} more days before deciding to launch or not."
    )
    assert any(r.startswith("interim (not a decision): 'conversion'") for r in decision.reasons)


def test_a_rollback_does_not_wait_for_the_minimum_duration(store: Store) -> None:
    spec = _spec("min-duration-harm", schedule="{min_duration_days: 14, min_sample_size: 2000}")
    decision = _decision(_run(store, spec, units=12_000, days=3, average_order_value=-0.3))
    assert decision.category == "ROLLBACK"
    assert decision.reasons[1].startswith("guardrail breach: 'average_order_value'")


def test_fixed_horizon_test_below_its_planned_sample_extends(store: Store) -> None:
    # About 5,000 of the 6,000 planned units per variant, with an effect the test finds anyway.
    spec = _spec("planned", schedule="{min_sample_size: 6000}")
    readout = _run(store, spec, units=10_000, days=14, conversion=0.6)
    decision = _decision(readout)
    conversion = next(m for m in readout.metrics if m.metric == "conversion")
    assert conversion.effect.p_value < 0.001
    assert decision.category == "EXTEND_TEST"
    assert decision.reasons[0].startswith("planned sample: control=")
    assert "of the planned 6,000 per variant" in decision.reasons[0]
    assert "more in all); keep 'treatment' running, about" in decision.reasons[0]
    failed = [h for h in readout.health if not h.passed]
    assert [h.name for h in failed] == ["sample_size"]


def test_sequential_test_below_its_planned_sample_lets_the_boundary_decide(store: Store) -> None:
    spec = _spec("sequential", schedule="{min_sample_size: 6000}", analysis="{method: sequential, sequential: msprt}")
    readout = _run(store, spec, units=10_000, days=14, conversion=0.6)
    decision = _decision(readout)
    conversion = next(m for m in readout.metrics if m.metric == "conversion")
    assert conversion.sequential is not None
    assert conversion.sequential.decision == "stop_efficacy"
    assert decision.category in ("STRONG_LAUNCH", "LAUNCH")
    assert decision.reasons[-1].startswith("planned sample: health check 'sample_size' failed:")
    assert decision.reasons[-1].endswith("a sequential design may stop before it: its boundary decides.")


def test_a_sequential_timeline_band_is_the_confidence_sequence_of_each_days_look(store: Store) -> None:
    # Read at every look, a sequential spec's band must hold at every look: each day's interval is the
    # mSPRT's confidence sequence at the look with that day's units, wider than the day's fixed-horizon CI.
    spec = _spec("seq-band", schedule="{min_sample_size: 6000}", analysis="{method: sequential, sequential: msprt}")
    readout = _run(store, spec, units=3_000, days=7)
    conversion = next(m for m in readout.metrics if m.metric == "conversion")
    assert conversion.sequential is not None
    looks = {look.n: look.ci for look in conversion.sequential.looks}  # absolute differences
    points = [p for p in readout.timeline if p.metric == "conversion"]
    assert len(points) >= 5
    assert {p.interval for p in points} == {"msprt confidence sequence"}
    for p in points:
        low, high = looks[p.units]
        assert p.relative_ci == pytest.approx((low / p.control_mean, high / p.control_mean), rel=1e-12)
    # Wider than the fixed-horizon 95 % CI of the same look's data (2 z SE, SE = effect / statistic): compared
    # on the same units, not with another experiment's days, whose data differ (and whose UTC day boundaries
    # move with the hour the test runs at).
    z = 1.959963984540054
    widths = [
        (look.ci[1] - look.ci[0], 2 * z * abs(look.effect / look.statistic))
        for look in conversion.sequential.looks
        if look.n in {p.units for p in points} and look.statistic != 0
    ]
    assert len(widths) >= 5
    assert all(sequence > ci for sequence, ci in widths)
    fixed = _spec("fixed-band", schedule="{min_sample_size: 6000}")
    fixed_points = [p for p in _run(store, fixed, units=3_000, days=7).timeline if p.metric == "conversion"]
    assert {p.interval for p in fixed_points} == {"ci"}
