"""The monitor's state per experiment (schedule, lease, last readout, active conditions) and its actions.

A monitor works on an experiment only under a lease: :meth:`MonitorRepository.claim` takes it in
one conditional ``UPDATE`` (the row's schedule is due and no other lease is alive), so two monitors
on one database never work on one experiment at once; a monitor that dies leaves its lease to
expire (``lease_seconds``) and the next one takes over. An action is written by
:meth:`MonitorRepository.record_action` inside the transaction that changes the experiment's
status (and enqueues its notifications), so the three commit together or not at all.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.engine import Connection

from splitlab.storage._sql import Transactions, upsert
from splitlab.storage.tables import MONITOR_ACTIONS, monitor_actions, monitor_state

__all__ = ["MonitorAction", "MonitorRepository", "MonitorState"]


@dataclass(frozen=True, slots=True)
class MonitorState:
    """Where the monitor stands with one experiment.

    Attributes:
        experiment_key: The experiment.
        next_run_at: When it is due for its next analysis.
        last_run_at: When it was last analysed by the monitor (None: never).
        lease_owner, lease_until: The monitor working on it now, and until when its lease holds.
        last_snapshot_id: The snapshot of the last analysis.
        last_decision: The decision category of the last analysis.
        conditions: The conditions found at the last analysis (``srm_detected``,
            ``guardrail_harm``, ``sample_reached``): a notification goes out when one appears.
        summary: What the last analysis found, for dashboards and Prometheus: ``{"primary":
            {variant: {"p_value", "lift"}}, "guardrails": {"metric/variant": state}}``.
        last_error: Why the last run failed, or None.
        runs: How many runs finished.
    """

    experiment_key: str
    next_run_at: datetime
    last_run_at: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    last_snapshot_id: int | None
    last_decision: str | None
    conditions: tuple[str, ...]
    summary: dict[str, Any] | None
    last_error: str | None
    runs: int


@dataclass(frozen=True, slots=True)
class MonitorAction:
    """One automatic action: what was done to which experiment, on which readout, and why."""

    id: int
    experiment_key: str
    action: str
    variant: str | None
    snapshot_id: int | None
    decision: str | None
    reasons: tuple[str, ...]
    actor: str
    created_at: datetime
    experiment_version: int | None


class MonitorRepository:
    """Leases, schedules and actions of the monitor (see the module docstring)."""

    def __init__(self, tx: Transactions) -> None:
        self._tx = tx

    def claim(
        self, *, key: str, owner: str, now: datetime, lease_seconds: float, due_only: bool = True
    ) -> MonitorState | None:
        """Take the lease on experiment ``key`` for ``lease_seconds`` if it is due and nobody holds it.

        The experiment's row is made on its first claim (due at once).

        Args:
            key: The experiment.
            owner: Who claims (a monitor's id).
            now: The monitor's clock.
            lease_seconds: How long the lease holds unless released.
            due_only: Claim only when ``next_run_at <= now`` (False: whenever no lease is alive).

        Returns:
            The state as it was before this run (lease taken), or None when not due or leased.
        """
        with self._tx.write() as conn:
            first = upsert(monitor_state, self._tx.dialect).values(
                experiment_key=key, next_run_at=now, conditions=[], runs=0
            )
            conn.execute(first.on_conflict_do_nothing(index_elements=["experiment_key"]))
            free = or_(monitor_state.c.lease_until.is_(None), monitor_state.c.lease_until < now)
            condition = and_(monitor_state.c.experiment_key == key, free)
            if due_only:
                condition = and_(condition, monitor_state.c.next_run_at <= now)
            before = conn.execute(select(monitor_state).where(condition)).first()
            if before is None:
                return None
            taken = conn.execute(
                update(monitor_state)
                .where(condition)
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
            )
            if taken.rowcount != 1:  # another monitor took it between the read and the update
                return None
        return _state(before)

    def finish(
        self,
        *,
        key: str,
        owner: str,
        now: datetime,
        next_run_at: datetime,
        snapshot_id: int | None = None,
        decision: str | None = None,
        conditions: Sequence[str] | None = None,
        summary: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        """Record a run of ``owner`` and release its lease; False when the lease was no longer its own.

        ``snapshot_id``, ``decision``, ``conditions`` and ``summary`` are kept from the previous run
        when None (a failed run changes only ``last_error``).
        """
        values: dict[str, Any] = {
            "lease_owner": None,
            "lease_until": None,
            "next_run_at": next_run_at,
            "last_run_at": now,
            "last_error": error,
            "runs": monitor_state.c.runs + 1,
        }
        if snapshot_id is not None:
            values["last_snapshot_id"] = snapshot_id
        if decision is not None:
            values["last_decision"] = decision
        if conditions is not None:
            values["conditions"] = sorted(set(conditions))
        if summary is not None:
            values["summary"] = dict(summary)
        with self._tx.write() as conn:
            result = conn.execute(
                update(monitor_state)
                .where(monitor_state.c.experiment_key == key, monitor_state.c.lease_owner == owner)
                .values(**values)
            )
        return result.rowcount == 1

    def record_action(
        self,
        conn: Connection,
        *,
        key: str,
        action: str,
        reasons: Sequence[str],
        actor: str,
        at: datetime,
        variant: str | None = None,
        snapshot_id: int | None = None,
        decision: str | None = None,
        experiment_version: int | None = None,
    ) -> int:
        """Write one action in the caller's open write transaction ``conn``; its id.

        Raises:
            ValueError: ``action`` is not one of ``MONITOR_ACTIONS``.
        """
        if action not in MONITOR_ACTIONS:
            msg = f"action == {action!r}, must be one of {', '.join(MONITOR_ACTIONS)}"
            raise ValueError(msg)
        row = {
            "experiment_key": key,
            "action": action,
            "variant": variant,
            "snapshot_id": snapshot_id,
            "decision": decision,
            "reasons": list(reasons),
            "actor": actor,
            "created_at": at,
            "experiment_version": experiment_version,
        }
        return int(conn.execute(insert(monitor_actions).values(row).returning(monitor_actions.c.id)).scalar_one())

    def actions(self, *, key: str | None = None, limit: int = 100) -> builtins.list[MonitorAction]:
        """The latest actions (of experiment ``key``, or of all), newest first."""
        query = select(monitor_actions).order_by(monitor_actions.c.id.desc()).limit(limit)
        if key is not None:
            query = query.where(monitor_actions.c.experiment_key == key)
        with self._tx.read() as conn:
            return [_action(row) for row in conn.execute(query).all()]

    def states(self, *, keys: Sequence[str] | None = None) -> dict[str, MonitorState]:
        """The monitor's state of every experiment it has seen (or of ``keys``), by experiment."""
        query = select(monitor_state)
        if keys is not None:
            query = query.where(monitor_state.c.experiment_key.in_(list(keys)))
        with self._tx.read() as conn:
            return {row.experiment_key: _state(row) for row in conn.execute(query).all()}


def _state(row: Any) -> MonitorState:
    conditions: Sequence[str] = row.conditions or ()
    return MonitorState(
        experiment_key=row.experiment_key,
        next_run_at=row.next_run_at,
        last_run_at=row.last_run_at,
        lease_owner=row.lease_owner,
        lease_until=row.lease_until,
        last_snapshot_id=row.last_snapshot_id,
        last_decision=row.last_decision,
        conditions=tuple(conditions),
        summary=row.summary,
        last_error=row.last_error,
        runs=row.runs,
    )


def _action(row: Any) -> MonitorAction:
    return MonitorAction(
        id=row.id,
        experiment_key=row.experiment_key,
        action=row.action,
        variant=row.variant,
        snapshot_id=row.snapshot_id,
        decision=row.decision,
        reasons=tuple(row.reasons or ()),
        actor=row.actor,
        created_at=row.created_at,
        experiment_version=row.experiment_version,
    )
