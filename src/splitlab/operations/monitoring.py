"""The monitor's use case: analyse each running experiment on its schedule and act on the verdict as its spec allows.

One pass (:func:`monitor_once`) takes, for every running experiment that is due, the lease on it
(:meth:`splitlab.storage.MonitorRepository.claim`), analyses it as of the monitor's clock (the
snapshot is stored, as ``splitlab analyze`` stores it), and then:

- notifies the spec's targets of what appeared since the last run: ``srm_detected``,
  ``guardrail_harm`` (a guardrail breached its tolerance), ``sample_reached``, ``decision_reached``
  (the first decision other than EXTEND_TEST) and ``decision_changed``;
- applies the spec's automation policy (``monitoring`` in the spec), through the same operations a
  person uses, with actor ``monitor``:

  ======================  ==========================================  ===========================
  policy                  when                                        action
  ======================  ==========================================  ===========================
  ``auto_rollback``       decision ROLLBACK (a guardrail breached,    pause: nobody is served the
                          or the goal harmed)                         treatment, enrolled units too
  ``auto_promote``        decision LAUNCH or STRONG_LAUNCH            roll the winner out
  ``auto_stop``           a decisive result: LAUNCH, STRONG_LAUNCH,   stop
                          NO_LAUNCH or ROLLBACK (fixed horizon:
                          any final decision)
  (always)                ``schedule.max_duration_days`` reached      stop
  ``routing.canary``      a guardrail breached / a step held without  rollback / ramp to the next
                          harm / the last step held without harm      step / promote the challenger
  ======================  ==========================================  ===========================

A canary (:func:`splitlab.operations.routing.plan_canary`) is moved by its own gate, which the
spec's ``routing.canary`` authorises whatever the ``monitoring`` flags: its guardrails are tested
at every run by always-valid (mSPRT) intervals, which the spec must use, so moving at any look
keeps their error rates.

Only an always-valid (sequential) test may end an experiment at an arbitrary look: under a
fixed-horizon test (and for a primary metric the sequential monitor does not cover, such as a
quantile) the policy acts only once every variant has its planned sample (or at the maximum
duration), since acting on an early look of a fixed-horizon test inflates its error rates
(``splitlab apply`` warns about such a policy). Once a sequential test has its planned sample it
is over: any final category stops it under ``auto_stop``, as a fixed-horizon test's does. The
decision engine gives no launch or no-launch category before ``min_duration_days``, so nothing is
promoted or stopped for success before it.

An action, its audit entry (a new version of the experiment with actor ``monitor`` and the
reasons) and its notifications are written in one transaction: a monitor killed before the commit
did nothing (the lease expires and the next pass repeats the run), one killed after it finds the
experiment no longer running. Delivery of the notifications is :func:`splitlab.notify.deliver_due`'s.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from splitlab.notify import build_notifications
from splitlab.operations.analysis import analyze
from splitlab.operations.errors import ConflictError
from splitlab.specs import ExperimentSpec, NotificationKind, NotificationTarget
from splitlab.storage import ExperimentVersion, Store

if TYPE_CHECKING:
    from splitlab.analysis.readout import ExperimentReadout

__all__ = [
    "MONITOR_ACTOR",
    "MonitorReport",
    "PlannedAction",
    "RunOutcome",
    "monitor_and_deliver",
    "monitor_once",
    "plan_action",
    "policy_notes",
    "summary_of",
    "watch",
    "watch_experiment",
]

_log = logging.getLogger("splitlab.operations")

MONITOR_ACTOR = "monitor"
"""The actor of every change the monitor makes, in the audit log."""

LEASE_SECONDS = 600.0
"""How long a monitor holds an experiment it works on; a monitor that dies frees it after this."""

_FINAL_LAUNCH = ("STRONG_LAUNCH", "LAUNCH")
_DECISIVE = ("STRONG_LAUNCH", "LAUNCH", "NO_LAUNCH", "ROLLBACK")
_UNDECIDED = ("EXTEND_TEST", "INVALID")


@dataclass(frozen=True, slots=True)
class PlannedAction:
    """What the policy asks for: ``stop``, ``rollback``, ``promote`` (a winner), ``ramp`` (new weights); and why."""

    action: str
    reasons: tuple[str, ...]
    variant: str | None = None
    weights: dict[str, float] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOutcome:
    """One experiment's monitoring run.

    Attributes:
        experiment: The experiment.
        snapshot_id: The stored analysis (None when it could not be stored, or the run failed).
        decision: The decision category.
        conditions: The conditions found (``srm_detected``, ``guardrail_harm``, ``sample_reached``).
        summary: The goal metrics' quoted p-values and lifts and the guardrails' states (:func:`summary_of`).
        action: The action taken, or None.
        notifications: Outbox rows written by this run.
        error: Why the run failed, or None.
    """

    experiment: str
    snapshot_id: int | None = None
    decision: str | None = None
    conditions: tuple[str, ...] = ()
    summary: dict[str, Any] | None = None
    action: PlannedAction | None = None
    notifications: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class MonitorReport:
    """A pass: the runs made, and the running experiments skipped (not due, or leased by another monitor)."""

    runs: tuple[RunOutcome, ...] = ()
    skipped: tuple[str, ...] = field(default_factory=tuple)


def _default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def plan_action(readout: ExperimentReadout, spec: ExperimentSpec) -> PlannedAction | None:
    """The action the spec's policy asks for on ``readout`` (pure; see the module docstring), or None."""
    monitoring = spec.monitoring
    decision = readout.decision
    category = None if decision is None else str(decision.category)
    sequential = _always_valid(readout, spec)
    at_plan = _at_plan(readout)
    may_end = sequential or at_plan
    basis = "a sequential test (valid at any look)" if sequential and not at_plan else "the planned sample reached"
    reasons = tuple(decision.reasons) if decision is not None else ()
    if decision is not None and may_end:
        if monitoring.auto_rollback and category == "ROLLBACK":
            why = (f"auto_rollback: decision ROLLBACK on {basis}", *reasons)
            return PlannedAction("rollback", why, decision.variant)
        if monitoring.auto_promote and category in _FINAL_LAUNCH and decision.variant is not None:
            why = (f"auto_promote: decision {category} on {basis}", *reasons)
            return PlannedAction("promote", why, decision.variant)
        # Before its plan a sequential test stops on a crossing only; at its plan (the test is over) any
        # final category stops it, as a fixed-horizon test's.
        ended = tuple(c for c in _all_categories() if c not in _UNDECIDED)
        stops = _DECISIVE if sequential and not at_plan else ended
        if monitoring.auto_stop and category in stops:
            return PlannedAction("stop", (f"auto_stop: decision {category} on {basis}", *reasons))
    most = readout.max_duration_days
    if most is not None and readout.days_running >= most:
        limit = f"schedule.max_duration_days == {most:g} reached ({readout.days_running:g} days running)"
        return PlannedAction("stop", (limit, *reasons))
    return None


def policy_notes(spec: ExperimentSpec) -> list[str]:
    """What ``splitlab apply`` says about a spec's automation policy: when the monitor may act on it."""
    policy = spec.monitoring
    asked = [name for name in ("auto_stop", "auto_rollback", "auto_promote") if getattr(policy, name)]
    if not asked or spec.analysis.method == "sequential":
        return []
    names = ", ".join(asked)
    test = f"monitoring: {names} under a fixed-horizon test ({spec.analysis.method})"
    if spec.schedule.min_sample_size is None and spec.hypothesis is None:
        no_plan = "(schedule.min_sample_size, or a hypothesis with mde and baseline)"
        until = "the monitor acts only at schedule.max_duration_days"
        return [f"{test} acts only at the planned sample, and this spec plans none {no_plan}: {until}"]
    return [f"{test} acts only once every variant has its planned sample; method sequential acts at any look"]


def _always_valid(readout: ExperimentReadout, spec: ExperimentSpec) -> bool:
    """Whether the decision rests on an always-valid test: a sequential spec whose primary metric has sequential looks.

    A metric the sequential monitor does not cover (a quantile, say) is tested at a fixed horizon
    even under ``analysis.method: sequential``: acting on it early would be peeking.
    """
    if spec.analysis.method != "sequential":
        return False
    primary = spec.hypothesis.primary_metric if spec.hypothesis is not None else None
    goals = [m for m in readout.metrics if m.role == "goal" and (primary is None or m.metric == primary)]
    return bool(goals) and all(m.sequential is not None and m.sequential.looks for m in goals)


def _all_categories() -> tuple[str, ...]:
    return ("STRONG_LAUNCH", "LAUNCH", "CONSIDER_LAUNCH", "EXTEND_TEST", "NO_LAUNCH", "ROLLBACK", "INVALID")


def _at_plan(readout: ExperimentReadout) -> bool:
    planned = readout.planned_units_per_variant
    return planned is not None and bool(readout.units) and min(readout.units.values()) >= planned


def conditions_of(readout: ExperimentReadout) -> tuple[str, ...]:
    """The conditions a readout shows: ``srm_detected``, ``guardrail_harm``, ``sample_reached``."""
    from splitlab.analysis.decision import guardrail_status

    found = []
    # The health checks hold the SRM of every allocation phase (or bandit window), the overall one included.
    if readout.srm.flag or any("srm" in check.name.lower() and not check.passed for check in readout.health):
        found.append("srm_detected")
    if any(m.role == "guardrail" and guardrail_status(m) == "breached" for m in readout.metrics):
        found.append("guardrail_harm")
    if _at_plan(readout):
        found.append("sample_reached")
    return tuple(found)


def summary_of(readout: ExperimentReadout) -> dict[str, Any]:
    """The goal metrics' p-value and lift as every form quotes them, and the guardrails' states.

    The p-value is the always-valid one under a sequential test (:func:`splitlab.analysis.decision.quote`);
    a guardrail's state is ``breached``, ``harmed``, ``uncertain`` or ``ok`` as the decision engine
    judges it (:func:`splitlab.analysis.decision.guardrail_status`). Keys are ``metric/variant``.
    """
    from splitlab.analysis.decision import guardrail_status, quote

    def finite(value: float) -> float | None:  # JSON has no NaN: an undefined figure is null
        return value if math.isfinite(value) else None

    primary: dict[str, dict[str, float | None]] = {}
    guardrails: dict[str, str] = {}
    for m in readout.metrics:
        if m.role == "goal":
            quoted = {"p_value": finite(quote(m).p_value), "lift": finite(m.effect.relative_effect)}
            primary[f"{m.metric}/{m.variant}"] = quoted
        elif m.role == "guardrail":
            guardrails[f"{m.metric}/{m.variant}"] = guardrail_status(m)
    return {"primary": primary, "guardrails": guardrails}


def watch_experiment(
    store: Store,
    key: str,
    *,
    now: datetime,
    owner: str,
    global_targets: Sequence[NotificationTarget] = (),
    due_only: bool = True,
    lease_seconds: float = LEASE_SECONDS,
) -> RunOutcome | None:
    """One monitoring run of experiment ``key`` under a lease; None when it is not due or another monitor has it.

    A failed analysis or action is reported in the outcome (and notified as ``monitor_error``),
    never raised: one experiment's trouble does not stop the pass.
    """
    state = store.monitor.claim(key=key, owner=owner, now=now, lease_seconds=lease_seconds, due_only=due_only)
    if state is None:
        return None
    record = store.experiments.get(key=key)
    if record is None or record.status != "running":  # stopped by someone (or a monitor) meanwhile
        store.monitor.finish(key=key, owner=owner, now=now, next_run_at=now + timedelta(minutes=60))
        return RunOutcome(experiment=key, error=None)
    spec = ExperimentSpec.model_validate(record.spec)
    next_run = now + timedelta(minutes=spec.monitoring.interval_minutes)
    try:
        outcome = _run(store, spec, state.conditions, state.last_decision, now=now, global_targets=global_targets)
    except Exception as exc:  # reported, notified and kept in the state: the pass goes on
        _log.warning("splitlab monitor: %s: %s", key, exc)
        error = f"{type(exc).__name__}: {exc}"
        sent = _notify_error(store, spec, error, now=now, global_targets=global_targets)
        store.monitor.finish(key=key, owner=owner, now=now, next_run_at=next_run, error=error)
        return RunOutcome(experiment=key, error=error, notifications=sent)
    store.monitor.finish(
        key=key,
        owner=owner,
        now=now,
        next_run_at=next_run,
        snapshot_id=outcome.snapshot_id,
        decision=outcome.decision,
        conditions=outcome.conditions,
        summary=outcome.summary,
    )
    return outcome


def _run(
    store: Store,
    spec: ExperimentSpec,
    previous: Sequence[str],
    last_decision: str | None,
    *,
    now: datetime,
    global_targets: Sequence[NotificationTarget],
) -> RunOutcome:
    try:
        analysis = analyze(store, spec.key, as_of=now, save=True)
    except ConflictError as exc:  # cannot be analysed as specified: nothing to act on, said once per run
        raise RuntimeError(f"cannot analyse: {exc.message}") from None
    readout = analysis.readout
    snapshot_id = None if analysis.snapshot is None else analysis.snapshot.id
    decision = None if readout.decision is None else str(readout.decision.category)
    conditions = conditions_of(readout)
    notes = _news(readout, spec, previous, last_decision, conditions)
    planned = None
    if snapshot_id is not None:  # act only on a kept readout
        canary = spec.routing.canary if spec.routing is not None else None
        planned = plan_action(readout, spec) if canary is None else _canary_action(store, readout, spec, now=now)
    notifications = [
        row
        for kind, text, data in notes
        for row in build_notifications(
            spec, kind=kind, text=text, data=data, snapshot_id=snapshot_id, global_targets=global_targets
        )
    ]
    if planned is not None:
        data: dict[str, Any] = {
            "action": planned.action,
            "variant": planned.variant,
            "decision": decision,
            "reasons": planned.reasons,
        }
        if planned.weights is not None:
            data["weights"] = planned.weights
        text = _action_text(spec.key, planned)
        notifications += build_notifications(
            spec,
            kind=NotificationKind.ACTION_TAKEN,
            text=text,
            data=data,
            snapshot_id=snapshot_id,
            global_targets=global_targets,
        )
        _act(store, spec, planned, notifications, snapshot_id=snapshot_id, decision=decision, now=now)
    elif notifications:
        store.notifications.enqueue(notifications=notifications)
    return RunOutcome(
        experiment=spec.key,
        snapshot_id=snapshot_id,
        decision=decision,
        conditions=conditions,
        summary=summary_of(readout),
        action=planned,
        notifications=len(notifications),
    )


def _news(
    readout: ExperimentReadout,
    spec: ExperimentSpec,
    previous: Sequence[str],
    last_decision: str | None,
    conditions: Sequence[str],
) -> list[tuple[NotificationKind, str, dict[str, Any]]]:
    """The notifications of what appeared since the previous run: (kind, text, data)."""
    key = spec.key
    decision = readout.decision
    category = None if decision is None else str(decision.category)
    data: dict[str, Any] = {
        "decision": category,
        "reasons": [] if decision is None else list(decision.reasons),
        "days_running": readout.days_running,
        "units": dict(readout.units),
    }
    planned = readout.planned_units_per_variant
    texts = {
        "srm_detected": f"{key}: sample ratio mismatch (p = {readout.srm.p_value:.2g}); the results cannot be trusted",
        "guardrail_harm": f"{key}: a guardrail is harmed beyond its tolerance",
        # built for every run, planned or not (the condition itself needs a plan)
        "sample_reached": f"{key}: every variant has its planned sample ({planned or 0:,} units)",
    }
    news = [(NotificationKind(c), texts[c], data) for c in conditions if c not in previous]
    if category is not None and category not in _UNDECIDED and category != last_decision:
        reasons = "; ".join(data["reasons"][:2])
        if last_decision is None or last_decision in _UNDECIDED:
            news.append((NotificationKind.DECISION_REACHED, f"{key}: decision {category}: {reasons}", data))
        else:
            text = f"{key}: decision changed from {last_decision} to {category}: {reasons}"
            news.append((NotificationKind.DECISION_CHANGED, text, data))
    return news


def _canary_action(
    store: Store, readout: ExperimentReadout, spec: ExperimentSpec, *, now: datetime
) -> PlannedAction | None:
    """The canary's move (:func:`~splitlab.operations.routing.plan_canary`) as an action; None to hold."""
    from splitlab.operations.routing import plan_canary

    move = plan_canary(readout, spec, step_started_at=_step_started_at(store, spec.key), now=now)
    if move.action == "hold":
        return None
    canary = spec.routing.canary if spec.routing is not None else None
    assert canary is not None  # noqa: S101 - the caller checks
    challenger = canary.variant
    if move.action == "rollback":
        return PlannedAction("rollback", move.reasons, challenger)
    return PlannedAction(move.action, move.reasons, challenger, weights=move.weights)


def _step_started_at(store: Store, key: str) -> datetime:
    """When the canary's current step began: its last ramp, else when the experiment last started running."""
    from splitlab.operations.experiments import history

    ramps = [action for action in store.monitor.actions(key=key, limit=50) if action.action == "ramp"]
    versions = history(store, key)
    started = next(
        (
            v.changed_at
            for v, before in zip(versions[::-1], [*versions[::-1][1:], None], strict=True)
            if v.status == "running" and (before is None or before.status != "running")
        ),
        versions[-1].changed_at if versions else datetime.now(UTC),
    )
    return max([started, *(ramp.created_at for ramp in ramps)])


def _action_text(key: str, planned: PlannedAction) -> str:
    if planned.action == "ramp":
        assert planned.weights is not None  # noqa: S101 - a ramp carries its weights
        share = planned.weights[planned.variant or ""]
        return f"{key}: canary {planned.variant!r} moved to {share:.0%} by the monitor: {planned.reasons[0]}"
    what = {
        "stop": f"{key} was stopped",
        "rollback": f"{key} was rolled back (paused: nobody is served the treatment)",
        "promote": f"{key}: {planned.variant!r} was rolled out to everyone",
    }[planned.action]
    return f"{what} by the monitor: {planned.reasons[0]}"


def _act(
    store: Store,
    spec: ExperimentSpec,
    planned: PlannedAction,
    notifications: list[Any],
    *,
    snapshot_id: int | None,
    decision: str | None,
    now: datetime,
) -> None:
    """Apply ``planned`` through the lifecycle operations, its record and notifications in the same transaction."""
    from splitlab.operations.experiments import change_status, reweight, roll_back, roll_out

    reason = "; ".join(planned.reasons)

    def record(conn: Connection, version: ExperimentVersion) -> None:
        store.monitor.record_action(
            conn,
            key=spec.key,
            action=planned.action,
            reasons=planned.reasons,
            actor=MONITOR_ACTOR,
            at=now,
            variant=planned.variant,
            snapshot_id=snapshot_id,
            decision=decision,
            experiment_version=version.version,
        )
        store.notifications.enqueue(notifications=notifications, conn=conn)

    if planned.action == "promote":
        assert planned.variant is not None  # noqa: S101 - plan_action promotes only a named winner
        roll_out(store, key=spec.key, variant=planned.variant, actor=MONITOR_ACTOR, reason=reason, then=record)
    elif planned.action == "ramp":
        assert planned.weights is not None  # noqa: S101 - a ramp carries its weights
        reweight(store, key=spec.key, weights=planned.weights, actor=MONITOR_ACTOR, reason=reason, then=record)
    elif planned.action == "rollback":
        roll_back(store, key=spec.key, actor=MONITOR_ACTOR, reason=reason, then=record)
    else:
        change_status(store, key=spec.key, action="stop", actor=MONITOR_ACTOR, reason=reason, then=record)


def _notify_error(
    store: Store, spec: ExperimentSpec, error: str, *, now: datetime, global_targets: Sequence[NotificationTarget]
) -> int:
    try:
        rows = build_notifications(
            spec,
            kind=NotificationKind.MONITOR_ERROR,
            text=f"{spec.key}: the monitor could not run: {error}",
            data={"error": error},
            occasion=now.isoformat(),
            global_targets=global_targets,
        )
        return store.notifications.enqueue(notifications=rows)
    except Exception as exc:  # the store itself is in trouble: the log is all that is left
        _log.warning("splitlab monitor: %s: the error could not be notified: %s", spec.key, exc)
        return 0


def monitor_once(
    store: Store,
    *,
    now: datetime | Callable[[], datetime] | None = None,
    experiment: str | None = None,
    owner: str | None = None,
    global_targets: Sequence[NotificationTarget] = (),
    due_only: bool = True,
) -> MonitorReport:
    """One pass over the running experiments (or ``experiment`` alone): each due one gets a run.

    Args:
        store: The store.
        now: The monitor's clock (a time, or a function giving it); default the real UTC time.
        experiment: Watch only this experiment.
        owner: This monitor's id for leases; default host, process and a random part.
        global_targets: The global notification targets (:func:`splitlab.notify.global_targets`).
        due_only: Skip experiments whose next run is not due yet (False: run each now).

    Raises:
        NotFoundError: ``experiment`` does not exist.
        ConflictError: ``experiment`` is not running.
    """
    clock = now if callable(now) else (lambda: now or datetime.now(UTC))
    owner = owner or _default_owner()
    if experiment is not None:
        from splitlab.operations.experiments import get_experiment

        record = get_experiment(store, experiment)
        if record.status != "running":
            raise ConflictError("experiment", f"experiment {experiment!r} is {record.status}, not running")
        keys = [experiment]
    else:
        keys = [record.key for record in store.experiments.list(status="running")]
    runs, skipped = [], []
    for key in keys:
        outcome = watch_experiment(
            store, key, now=clock(), owner=owner, global_targets=global_targets, due_only=due_only
        )
        if outcome is None:
            skipped.append(key)
        else:
            runs.append(outcome)
    return MonitorReport(runs=tuple(runs), skipped=tuple(skipped))


def monitor_and_deliver(
    store: Store,
    *,
    experiment: str | None = None,
    global_targets: Sequence[NotificationTarget] = (),
    due_only: bool = True,
    owner: str | None = None,
) -> MonitorReport:
    """A pass of :func:`monitor_once`, then the delivery of every notification due (its own and earlier ones)."""
    from splitlab.notify import deliver_due

    report = monitor_once(store, experiment=experiment, global_targets=global_targets, due_only=due_only, owner=owner)
    deliver_due(store)
    return report


def watch(
    store: Store,
    stop: threading.Event,
    *,
    poll_seconds: float,
    experiment: str | None = None,
    global_targets: Sequence[NotificationTarget] = (),
    on_pass: Callable[[MonitorReport], None] | None = None,
) -> None:
    """Run passes every ``poll_seconds`` until ``stop`` is set (``splitlab monitor``, ``splitlab serve --monitor``).

    A pass that fails as a whole (the store unreachable) is logged and the next one tries again.
    """
    owner = _default_owner()
    while not stop.is_set():
        try:
            report = monitor_and_deliver(store, experiment=experiment, global_targets=global_targets, owner=owner)
        except Exception as exc:  # the store is down, say: the loop outlives it
            _log.warning("splitlab monitor: the pass failed: %s", exc)
        else:
            if on_pass is not None:
                on_pass(report)
        stop.wait(poll_seconds)
