"""What the dashboard's pages show, gathered from the operations and shaped for the templates.

Nothing here decides anything about an experiment: decisions, warnings, effects and sample sizes
come from the operations (a stored snapshot, the monitor's state, an analysis, the power module)
and the report's own renderers draw the charts and tables. These functions only read and arrange.

The analysis, the report and the statistics (pandas, scipy) are imported by the functions that
show a readout or a plan, not with this module: the service imports it at start-up, in every
worker, and most workers never draw a readout.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import yaml
from markupsafe import Markup

from splitlab.operations import analysis, experiments
from splitlab.operations.errors import ConflictError
from splitlab.specs import ExperimentSpec
from splitlab.specs.lifecycle import Action, allowed_actions
from splitlab.storage import ExperimentRecord, Snapshot, Store

if TYPE_CHECKING:
    from splitlab.analysis.readout import ExperimentReadout
    from splitlab.stats.power import SampleSizePlan

__all__ = [
    "ACTIONS",
    "FRESH_SNAPSHOT",
    "ExperimentPage",
    "ListRow",
    "PlanningForm",
    "experiment_page",
    "experiment_rows",
    "plan",
    "planning_form",
]

FRESH_SNAPSHOT = timedelta(minutes=15)
"""A stored readout of the experiment's current version younger than this is shown instead of a new analysis.

An analysis reads every exposure and event of the experiment (a second or more for a few tens of
thousands of units and twenty metrics); the monitor and ``splitlab analyze`` keep snapshots, so a
watched experiment's page opens at once. The page says which one it shows, and offers a new analysis.
"""

ACTIONS = {
    "start": "Start or resume",
    "pause": "Pause",
    "stop": "Stop",
    "roll-out": "Roll out a variant",
    "rollback": "Roll back (pause)",
}
"""The dashboard's actions (as in ``/experiments/{key}/actions/{action}``) and their labels."""
_ALLOWED_BY = {
    "start": (Action.START, Action.RESUME),
    "pause": (Action.PAUSE,),
    "stop": (Action.STOP,),
    "roll-out": (Action.ROLL_OUT,),
    "rollback": (Action.PAUSE,),
}
_ROUTING_EVENTS = ("prediction", "prediction_error", "prediction_correct")


def _spec_of(record: ExperimentRecord) -> ExperimentSpec:
    return ExperimentSpec.model_validate(record.spec)


# --- the list ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ListRow:
    """One experiment in the list."""

    key: str
    name: str
    owner: str
    status: str
    days_running: float | None
    units: int
    decision: str | None
    decision_source: str | None
    warnings: tuple[str, ...]
    actions_taken: int
    last_action: str | None


_WARNINGS = {"srm_detected": "SRM", "guardrail_harm": "guardrail breached"}


def experiment_rows(store: Store, *, status: str | None = None, query: str = "") -> list[ListRow]:
    """The experiments (of ``status``, matching ``query`` in their key or owner), with what is known of each.

    Nothing is analysed: the decision and warnings are the monitor's last ones, else those of the
    latest stored readout. Reads one query per kind of fact for all experiments, plus the phases
    and latest snapshot of each shown experiment.

    Raises:
        InvalidInputError: ``status`` is not a status.
    """
    needle = query.strip().lower()
    records = [
        r
        for r in experiments.list_experiments(store, status=status)
        if not needle or needle in r.key.lower() or needle in str(r.spec.get("owner", "")).lower()
    ]
    keys = [r.key for r in records]
    units = store.exposures.variant_counts(experiment_keys=keys) if keys else {}
    states = store.monitor.states(keys=keys) if keys else {}
    actions: dict[str, list[Any]] = defaultdict(list)
    for action in store.monitor.actions(limit=10_000):
        actions[action.experiment_key].append(action)
    now = datetime.now(UTC)
    rows = []
    for record in records:
        state = states.get(record.key)
        snapshot = store.snapshots.latest(experiment_key=record.key)
        decision: str | None = None
        source: str | None = None
        warnings: tuple[str, ...] = ()
        if state is not None and state.last_decision is not None:
            decision, source = state.last_decision, "monitor"
            warnings = tuple(_WARNINGS[c] for c in state.conditions if c in _WARNINGS)
        elif snapshot is not None:
            decision = (snapshot.payload.get("decision") or {}).get("category")
            source = f"snapshot {snapshot.created_at:%Y-%m-%d %H:%M}"
            warnings = _snapshot_warnings(snapshot.payload)
        days = experiments.days_running(store, record.key, now=now)
        mine = actions.get(record.key, [])
        rows.append(
            ListRow(
                key=record.key,
                name=str(record.spec.get("name") or record.key),
                owner=str(record.spec.get("owner") or ""),
                status=record.status,
                days_running=days,
                units=sum(units.get(record.key, {}).values()),
                decision=decision,
                decision_source=source,
                warnings=warnings,
                actions_taken=len(mine),
                last_action=None if not mine else f"{mine[0].action} {mine[0].created_at:%Y-%m-%d %H:%M}",
            )
        )
    return rows


def _snapshot_warnings(payload: Mapping[str, Any]) -> tuple[str, ...]:
    """The failed health checks a stored readout names (its SRM flag and guardrail checks among them)."""
    found = []
    if (payload.get("srm") or {}).get("flag"):
        found.append("SRM")
    for check in payload.get("health") or ():
        if not check.get("passed", True) and "guardrail" in str(check.get("name", "")).lower():
            found.append("guardrail breached")
            break
    return tuple(found)


# --- one experiment ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionView:
    """One version of the spec: who changed what, when and why."""

    version: int
    status: str
    changed_by: str
    changed_at: datetime
    reason: str | None
    changes: tuple[tuple[str, str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One line of the audit log: a version, a monitor action or a notification."""

    at: datetime
    kind: str
    actor: str
    text: str
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExperimentPage:
    """Everything the experiment page shows."""

    record: ExperimentRecord
    spec: ExperimentSpec
    spec_yaml: str
    versions: tuple[VersionView, ...]
    audit: tuple[AuditEntry, ...]
    readout: ExperimentReadout | None
    readout_source: str
    readout_problem: str | None
    sections: Mapping[str, Markup]
    phases: tuple[Any, ...]
    bandit_windows: tuple[Any, ...]
    routing_metrics: Markup | None
    actions: tuple[str, ...]
    variants: tuple[str, ...]
    monitor_state: Any = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def _readout(
    store: Store, record: ExperimentRecord, *, fresh: bool
) -> tuple[ExperimentReadout | None, str, str | None]:
    """The readout to show, where it comes from, and why there is none."""
    from splitlab.analysis.report import readout_from_dict

    if not fresh:
        snapshot: Snapshot | None = store.snapshots.latest(experiment_key=record.key)
        if (
            snapshot is not None
            and snapshot.spec_version == record.current_version
            and datetime.now(UTC) - snapshot.created_at < FRESH_SNAPSHOT
        ):
            try:
                readout = readout_from_dict(snapshot.payload)
            except ValueError:
                pass  # a snapshot of an older format: analyse instead
            else:
                age = (datetime.now(UTC) - snapshot.created_at).total_seconds() / 60
                source = f"stored readout #{snapshot.id} ({age:.0f} min old, spec v{snapshot.spec_version})"
                return readout, source, None
    try:
        outcome = analysis.analyze(store, record.key, save=False)
    except ConflictError as exc:
        return None, "no readout", exc.message
    return outcome.readout, "analysed now (not stored)", None


def experiment_page(store: Store, key: str, *, fresh: bool = False, can_act: bool) -> ExperimentPage:
    """The experiment page of ``key``: spec, versions, audit log, the readout's sections, allowed actions.

    Raises:
        NotFoundError: No experiment ``key``.
    """
    from splitlab.analysis.report import (
        decision_section,
        health_section,
        metrics_section,
        segments_section,
        timeline_section,
        traffic_section,
    )
    from splitlab.operations.bandits import window_phases

    record = experiments.get_experiment(store, key)
    spec = _spec_of(record)
    history = experiments.history(store, key)
    versions = tuple(
        VersionView(
            version=v.version,
            status=v.status,
            changed_by=v.changed_by,
            changed_at=v.changed_at,
            reason=v.reason,
            changes=tuple((str(c.get("path")), _short(c.get("old")), _short(c.get("new"))) for c in v.diff),
        )
        for v in reversed(history)
    )
    readout, source, problem = _readout(store, record, fresh=fresh)
    sections: dict[str, Markup] = {}
    if readout is not None:
        # The report's fragments escape every text of the readout themselves.
        sections = {
            "decision": Markup(decision_section(readout)),  # noqa: S704
            "health": Markup(health_section(readout)),  # noqa: S704
            "traffic": Markup(traffic_section(readout)),  # noqa: S704
            "metrics": Markup(metrics_section(readout, roles=("goal", "secondary"))),  # noqa: S704
            "guardrails": Markup(metrics_section(readout, roles=("guardrail",))),  # noqa: S704
            "timeline": Markup(timeline_section(readout)),  # noqa: S704
            "segments": Markup(segments_section(readout)),  # noqa: S704
        }
    allowed = set(allowed_actions(record.status))
    actions = tuple(a for a, needs in _ALLOWED_BY.items() if can_act and allowed.intersection(needs))
    return ExperimentPage(
        record=record,
        spec=spec,
        spec_yaml=yaml.safe_dump(record.spec, sort_keys=False, allow_unicode=True),
        versions=versions,
        audit=tuple(_audit(store, key, history)),
        readout=readout,
        readout_source=source,
        readout_problem=problem,
        sections=sections,
        phases=tuple(experiments.phases(store, key)),
        bandit_windows=tuple(window_phases(store, key)) if spec.allocation.method == "bandit" else (),
        routing_metrics=_routing_metrics(store, spec, readout),
        actions=actions,
        variants=spec.variant_keys,
        monitor_state=store.monitor.states(keys=[key]).get(key),
    )


def _short(value: object) -> str:
    text = "-" if value is None else yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text.removesuffix("\n...").removesuffix("...").strip()
    return text if len(text) <= 200 else text[:199] + "…"


def _audit(store: Store, key: str, history: Sequence[Any]) -> list[AuditEntry]:
    """The versions, the monitor's actions and the notifications sent, newest first."""
    entries = [
        AuditEntry(
            at=v.changed_at,
            kind="version",
            actor=v.changed_by,
            text=f"v{v.version}: {v.status}" + (f", {len(v.diff)} change(s) to the spec" if v.diff else ""),
            reason=v.reason,
        )
        for v in history
    ]
    entries += [
        AuditEntry(
            at=a.created_at,
            kind="monitor action",
            actor=a.actor,
            text=f"{a.action}" + (f" {a.variant}" if a.variant else "") + (f" on {a.decision}" if a.decision else ""),
            reason="; ".join(a.reasons) or None,
        )
        for a in store.monitor.actions(key=key, limit=200)
    ]
    entries += [
        AuditEntry(
            at=n.created_at,
            kind="notification",
            actor=n.target_name,
            text=f"{n.kind} to {n.target_name}: {n.status} after {n.attempts} attempt(s)",
            reason=n.last_error,
        )
        for n in store.notifications.list(experiment_key=key, limit=200)
    ]
    return sorted(entries, key=lambda e: e.at, reverse=True)


def _routing_metrics(store: Store, spec: ExperimentSpec, readout: ExperimentReadout | None) -> Markup | None:
    """For a routed model: the readout's metrics over the router's events (latency, errors, quality)."""
    if spec.routing is None or readout is None:
        return None
    definitions = store.metrics.list()
    names = {
        name
        for name, body in definitions.items()
        if _events_of(body).intersection(_ROUTING_EVENTS) and name in {m.metric for m in readout.metrics}
    }
    if not names:
        return None
    from splitlab.analysis.report import metrics_section

    subset = replace(readout, metrics=tuple(m for m in readout.metrics if m.metric in names))
    return Markup(metrics_section(subset))  # noqa: S704 - the report escapes every text


def _events_of(body: Mapping[str, Any]) -> set[str]:
    found = {body.get("event")}
    for part in ("numerator", "denominator"):
        if isinstance(body.get(part), Mapping):
            found.add(body[part].get("event"))
    return {str(e) for e in found if e}


# --- planning ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanningForm:
    """The calculator's inputs as the form shows them (text, so a refused value is shown as typed)."""

    baseline: str = "0.1"
    mde: str = "0.05"
    mde_type: str = "relative"
    alpha: str = "0.05"
    power: str = "0.8"
    daily_units: str = "1000"
    variants: str = "2"
    experiment: str | None = None
    note: str | None = None


def planning_form(store: Store, params: Mapping[str, str]) -> PlanningForm:
    """The form's values: the query's, else those of ``?experiment=KEY``'s hypothesis and data, else defaults.

    Raises:
        NotFoundError: ``experiment`` names no experiment.
    """
    values: dict[str, str] = {}
    note = None
    key = params.get("experiment")
    if key:
        record = experiments.get_experiment(store, key)
        spec = _spec_of(record)
        hypothesis = spec.hypothesis
        values["variants"] = str(len(spec.variants))
        if hypothesis is not None:
            values |= {"mde": f"{hypothesis.mde:g}", "mde_type": hypothesis.mde_type}
            values |= {"alpha": f"{hypothesis.alpha:g}", "power": f"{hypothesis.power:g}"}
            if hypothesis.baseline is not None:
                values["baseline"] = f"{hypothesis.baseline:g}"
        phases = experiments.phases(store, key)
        exposed = sum(store.exposures.variant_counts(experiment_keys=[key]).get(key, {}).values())
        if phases and exposed:
            days = max((datetime.now(UTC) - phases[0].started_at).total_seconds() / 86_400, 1.0)
            values["daily_units"] = f"{exposed / days:.0f}"
            note = f"Prefilled from {key}: its hypothesis, and {exposed:,} units over {days:.1f} days."
        else:
            note = f"Prefilled from {key}'s hypothesis (no exposures yet for daily units)."
    fields_ = PlanningForm.__dataclass_fields__
    values |= {name: params[name] for name in fields_ if name in params and name not in ("experiment", "note")}
    return PlanningForm(**values, experiment=key or None, note=note)


def plan(form: PlanningForm) -> SampleSizePlan:
    """The sample size plan of the form's inputs: ``splitlab sample-size``'s call for a proportion metric.

    Raises:
        ValueError: An input that is not a number, or out of its bounds (the message names it).
    """
    from splitlab.stats.power import plan_sample_size

    numbers = {}
    for name in ("baseline", "mde", "alpha", "power", "daily_units"):
        try:
            numbers[name] = float(getattr(form, name))
        except ValueError:
            msg = f"{name} == {getattr(form, name)!r}, must be a number"
            raise ValueError(msg) from None
        if not math.isfinite(numbers[name]):
            msg = f"{name} == {getattr(form, name)!r}, must be finite"
            raise ValueError(msg)
    try:
        variants = int(form.variants)
    except ValueError:
        msg = f"variants == {form.variants!r}, must be an integer"
        raise ValueError(msg) from None
    if form.mde_type not in ("relative", "absolute"):
        msg = f"mde_type == {form.mde_type!r}, must be relative or absolute"
        raise ValueError(msg)
    if numbers["daily_units"] <= 0:
        msg = f"daily_units == {form.daily_units!r}, must be > 0"
        raise ValueError(msg)
    return plan_sample_size(
        "proportion",
        numbers["mde"],
        baseline=numbers["baseline"],
        relative=form.mde_type == "relative",
        alpha=numbers["alpha"],
        power=numbers["power"],
        variants=variants,
        daily_traffic=(numbers["daily_units"],),
    )
