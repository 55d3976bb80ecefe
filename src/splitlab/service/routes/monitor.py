"""``GET /experiments/{key}/actions``: what the monitor did to an experiment and whom it told (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from splitlab.operations.experiments import get_experiment
from splitlab.service.deps import AdminKey, StoreDep
from splitlab.service.errors import ERRORS
from splitlab.service.routes import API_PREFIX

router = APIRouter(prefix=f"{API_PREFIX}/experiments", tags=["monitor"], responses=ERRORS)


class ActionPublic(BaseModel):
    """An automatic action: stop, rollback (paused) or promote (the winner rolled out)."""

    id: int
    action: str
    variant: str | None
    decision: str | None
    reasons: list[str]
    snapshot_id: int | None
    actor: str
    created_at: datetime
    experiment_version: int | None


class NotificationPublic(BaseModel):
    """A notification in the outbox and where its delivery stands (the target's URL is not shown)."""

    id: int
    kind: str
    target: str
    snapshot_id: int | None
    created_at: datetime
    status: str
    attempts: int
    delivered_at: datetime | None
    last_error: str | None


class ActionsPublic(BaseModel):
    """The monitor's record of one experiment: actions and notifications, newest first, and its last run."""

    experiment: str
    last_run_at: datetime | None
    next_run_at: datetime | None
    last_decision: str | None
    last_error: str | None
    actions: list[ActionPublic]
    notifications: list[NotificationPublic]


@router.get("/{key}/actions", summary="The monitor's automatic actions and notifications of an experiment")
def actions(
    key: str, store: StoreDep, _key: AdminKey, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> ActionsPublic:
    """The latest ``limit`` actions and notifications of experiment ``key`` (404 when there is no such experiment)."""
    get_experiment(store, key)
    state = store.monitor.states(keys=[key]).get(key)
    return ActionsPublic(
        experiment=key,
        last_run_at=None if state is None else state.last_run_at,
        next_run_at=None if state is None else state.next_run_at,
        last_decision=None if state is None else state.last_decision,
        last_error=None if state is None else state.last_error,
        actions=[
            ActionPublic(
                id=a.id,
                action=a.action,
                variant=a.variant,
                decision=a.decision,
                reasons=list(a.reasons),
                snapshot_id=a.snapshot_id,
                actor=a.actor,
                created_at=a.created_at,
                experiment_version=a.experiment_version,
            )
            for a in store.monitor.actions(key=key, limit=limit)
        ],
        notifications=[
            NotificationPublic(
                id=n.id,
                kind=n.kind,
                target=n.target_name,
                snapshot_id=n.snapshot_id,
                created_at=n.created_at,
                status=n.status,
                attempts=n.attempts,
                delivered_at=n.delivered_at,
                last_error=n.last_error,
            )
            for n in store.notifications.list(experiment_key=key, limit=limit)
        ],
    )
