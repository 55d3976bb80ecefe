"""The monitor on a clock that moves days in milliseconds: it analyses, notifies, and acts as the spec allows.

Traffic is simulated ahead of time (``backfill``: exposures and events dated over the coming
days); each pass analyses as of the monitor's clock, so a pass "3 days later" sees 3 days of data.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from splitlab.operations.errors import InvalidInputError
from splitlab.operations.experiments import apply_spec, change_status, get_experiment
from splitlab.operations.monitoring import MONITOR_ACTOR, monitor_once
from splitlab.operations.simulation import simulate
from splitlab.specs import ExperimentSpec, MetricDefinition
from splitlab.storage import Store, open_store

CONVERSION = {"name": "conversion", "kind": "binary", "event": "purchase", "window_days": 7}
LATENCY = {"name": "latency", "kind": "mean", "event": "page_load", "direction": "lower"}


def _spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "key": "checkout",
        "variants": [{"key": "control"}, {"key": "treatment"}],
        "hypothesis": {"primary_metric": "conversion", "direction": "increase", "mde": 0.1, "baseline": 0.1},
        "metrics": {"goal": ["conversion"]},
        "analysis": {"method": "sequential", "sequential": "msprt"},
        "notifications": [{"name": "ops", "url": "http://127.0.0.1:9/hook"}],
        "monitoring": {"interval_minutes": 1440, "notify": ["ops"]},
    }
    for key, value in overrides.items():
        spec[key] = value if not isinstance(value, dict) or key not in spec else {**spec[key], **value}
    return spec


def _run(
    store: Store, raw: dict[str, Any], *, units: int, effects: dict[str, float], days: float, start: datetime
) -> None:
    spec = ExperimentSpec.model_validate(raw)
    definitions = [CONVERSION, LATENCY] if "latency" in str(raw["metrics"]) else [CONVERSION]
    store.metrics.put_many(definitions=definitions, actor="test")
    apply_spec(store, spec, actor="test")
    change_status(store, key=spec.key, action="start", actor="test")
    metrics = {d["name"]: MetricDefinition.model_validate(d) for d in definitions}
    simulate(store, spec, metrics, units=units, effects=effects, days=days, seed=3, start=start)


def _days(store: Store, start: datetime, days: range, **kwargs: Any) -> list[Any]:
    """One pass a day; the runs of each pass, in order, until the experiment stops running."""
    runs = []
    for day in days:
        report = monitor_once(store, now=start + timedelta(days=day, hours=1), **kwargs)
        runs.extend(report.runs)
        if get_experiment(store, "checkout").status != "running":
            break
    return runs


@pytest.fixture
def store(database_url: str) -> Any:
    with open_store(database_url) as opened:
        yield opened


def test_a_clear_winner_is_promoted_with_its_audit_record_and_notifications(store: Store) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=21)
    raw = _spec(monitoring={"auto_promote": True})
    _run(store, raw, units=20_000, effects={"conversion": 0.5}, days=20, start=start)
    runs = _days(store, start, range(1, 21))
    action = runs[-1].action
    assert action is not None, runs[-1]
    assert (action.action, action.variant) == ("promote", "treatment")
    record = get_experiment(store, "checkout")
    assert record.status == "rolled_out"
    assert record.rolled_out_variant == "treatment"
    [taken] = store.monitor.actions(key="checkout")
    assert (taken.action, taken.variant, taken.actor) == ("promote", "treatment", MONITOR_ACTOR)
    assert taken.snapshot_id == runs[-1].snapshot_id
    latest = store.experiments.history(key="checkout")[-1]
    assert latest.changed_by == MONITOR_ACTOR
    assert latest.version == taken.experiment_version
    assert latest.reason is not None
    assert latest.reason.startswith("auto_promote: decision ")
    kinds = [n.kind for n in store.notifications.list(experiment_key="checkout")]
    assert "action_taken" in kinds
    assert "decision_reached" in kinds
    # The experiment is no longer running: later passes leave it alone.
    assert monitor_once(store, now=start + timedelta(days=30)).runs == ()


def test_a_guardrail_harmed_beyond_its_tolerance_is_rolled_back(store: Store) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=21)
    raw = _spec(
        metrics={"goal": ["conversion"], "guardrails": [{"metric": "latency", "max_degradation": 0.05}]},
        monitoring={"auto_rollback": True},
    )
    _run(store, raw, units=40_000, effects={"conversion": 0.0, "latency": 0.30}, days=20, start=start)
    runs = _days(store, start, range(1, 21))
    assert runs[-1].action is not None, runs[-1]
    assert runs[-1].action.action == "rollback"
    assert "guardrail_harm" in runs[-1].conditions
    assert get_experiment(store, "checkout").status == "paused"  # nobody is served the treatment


def test_a_fixed_horizon_test_is_stopped_only_at_its_planned_sample(store: Store) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=21)
    raw = _spec(monitoring={"auto_stop": True}, schedule={"min_sample_size": 3_000})
    raw["analysis"] = {"method": "frequentist"}
    _run(store, raw, units=12_000, effects={"conversion": 0.5}, days=12, start=start)
    runs = _days(store, start, range(1, 13))
    acted = [run for run in runs if run.action is not None]
    assert [run.action.action for run in acted] == ["stop"]
    assert "the planned sample reached" in acted[0].action.reasons[0]
    snapshots = {snapshot.id: snapshot.payload for snapshot in store.snapshots.list(experiment_key="checkout")}
    assert min(snapshots[acted[0].snapshot_id]["units"].values()) >= 3_000
    before = snapshots[runs[-2].snapshot_id]  # the look before: short of the plan
    assert min(before["units"].values()) < 3_000
    assert "sample_reached" in acted[0].conditions


def test_max_duration_stops_and_nothing_is_done_twice(store: Store) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=21)
    raw = _spec(schedule={"max_duration_days": 5})
    raw["analysis"] = {"method": "frequentist"}
    _run(store, raw, units=2_000, effects={}, days=10, start=start)
    runs = _days(store, start, range(1, 11))
    assert [r.action.action for r in runs if r.action] == ["stop"]
    assert runs[-1].action is not None
    assert "max_duration_days" in runs[-1].action.reasons[0]
    assert get_experiment(store, "checkout").status == "stopped"
    assert len(runs) == 4  # one run a day (daily schedule); on day 4 (+1 h) it is the 5th day running


def test_an_experiment_that_cannot_be_analysed_is_reported_not_fatal(store: Store) -> None:
    start = datetime.now(UTC).replace(microsecond=0)
    raw = _spec()
    raw["metrics"], raw["hypothesis"] = {}, None  # nothing to analyse
    apply_spec(store, ExperimentSpec.model_validate(raw), actor="test")
    change_status(store, key="checkout", action="start", actor="test")
    [run] = monitor_once(store, now=start + timedelta(hours=1)).runs
    assert run.error is not None
    assert [n.kind for n in store.notifications.list(experiment_key="checkout")] == ["monitor_error"]
    assert get_experiment(store, "checkout").status == "running"


def test_two_monitors_on_one_database_act_once(database_url: str, store: Store) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=21)
    _run(
        store, _spec(monitoring={"auto_promote": True}), units=20_000, effects={"conversion": 0.5}, days=8, start=start
    )
    now = start + timedelta(days=8)
    barrier = threading.Barrier(2)
    reports: list[Any] = []

    def watch(owner: str) -> None:
        with open_store(database_url) as own:
            barrier.wait()
            reports.append(monitor_once(own, now=now, owner=owner))

    threads = [threading.Thread(target=watch, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(len(report.runs) for report in reports) == 1  # one took the lease, the other skipped
    assert len(store.monitor.actions(key="checkout")) == 1


def test_apply_says_when_a_fixed_horizon_policy_acts_and_refuses_unknown_targets(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.metrics.put_many(definitions=[CONVERSION], actor="test")
    raw = _spec(monitoring={"auto_stop": True})
    raw["analysis"] = {"method": "frequentist"}
    outcome = apply_spec(store, ExperimentSpec.model_validate(raw), actor="test")
    [note] = outcome.notes
    assert note == (
        "monitoring: auto_stop under a fixed-horizon test (frequentist) acts only once every variant has its "
        "planned sample; method sequential acts at any look"
    )
    assert apply_spec(store, ExperimentSpec.model_validate(_spec()), actor="test").notes == ()  # sequential
    monkeypatch.delenv("SPLITLAB_NOTIFICATIONS_FILE", raising=False)
    with pytest.raises(InvalidInputError) as refused:
        apply_spec(store, ExperimentSpec.model_validate(_spec(monitoring={"notify": ["ops", "pager"]})), actor="t")
    [(field, message)] = refused.value.problems
    assert field == "monitoring.notify.1"
    assert "'pager'" in message
