"""Notifications into the outbox: one row per target, written in the caller's transaction when it passes one.

Example:
    >>> from splitlab.specs import ExperimentSpec
    >>> from splitlab.storage import open_store
    >>> spec = ExperimentSpec(
    ...     key="checkout", variants=[{"key": "a"}, {"key": "b"}], monitoring={"notify": ["team"]},
    ...     notifications=[{"name": "team", "url": "https://hooks.example.com/team"}],
    ... )
    >>> with open_store("sqlite://") as store:
    ...     first = notify(store, spec, kind="srm_detected", text="p = 0.0004", snapshot_id=3)
    ...     again = notify(store, spec, kind="srm_detected", text="p = 0.0004", snapshot_id=3)
    ...     queued = store.notifications.list()
    >>> first, again, [(n.target_name, n.status, n.dedupe_key) for n in queued]
    (1, 0, [('team', 'pending', 'checkout|srm_detected|3|team')])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection

from splitlab.notify.formats import content
from splitlab.notify.targets import targets_for
from splitlab.specs import ExperimentSpec, NotificationKind, NotificationTarget
from splitlab.storage import NewNotification, Store

__all__ = ["build_notifications", "notify"]


def build_notifications(
    spec: ExperimentSpec | None,
    *,
    kind: NotificationKind | str,
    text: str,
    data: Mapping[str, Any] | None = None,
    snapshot_id: int | None = None,
    occasion: str | None = None,
    global_targets: Sequence[NotificationTarget] = (),
    targets: Sequence[NotificationTarget] | None = None,
) -> list[NewNotification]:
    """The outbox rows of one notification: one per target that takes it (:func:`~splitlab.notify.targets_for`).

    Pure: nothing is written, so a caller can build them (and meet any error) before it opens the
    transaction that writes them with its own change.

    Args:
        spec: The experiment the notification is about; None: every global target.
        kind: What happened (:class:`~splitlab.specs.NotificationKind`).
        text: One or two sentences saying what happened, for people.
        data: Facts for programs, a JSON object (the ``data`` of the JSON body).
        snapshot_id: The analysis snapshot it is about, if any (part of the dedupe key).
        occasion: What tells apart notifications not about a snapshot (part of the dedupe key;
            e.g. the monitor tick's time for a ``monitor_error``).
        global_targets: The global targets (:func:`~splitlab.notify.global_targets`).
        targets: The targets to send to, instead of those the spec names (``splitlab notify test --target``).

    Raises:
        ValueError: An unknown kind, an empty text, or a target name nobody defines.
    """
    kind = NotificationKind(kind)
    experiment_key = None if spec is None else spec.key
    body = content(kind, experiment_key, text, data)
    return [
        NewNotification(
            experiment_key=experiment_key,
            kind=kind.value,
            target_name=target.name,
            target_url=target.url,
            format=target.format,
            secret_env=target.secret_env,
            body=body,
            snapshot_id=snapshot_id,
            occasion=occasion,
        )
        for target in (targets_for(spec, kind, global_targets) if targets is None else targets)
    ]


def notify(
    store: Store,
    spec: ExperimentSpec | None,
    *,
    kind: NotificationKind | str,
    text: str,
    data: Mapping[str, Any] | None = None,
    snapshot_id: int | None = None,
    occasion: str | None = None,
    global_targets: Sequence[NotificationTarget] = (),
    conn: Connection | None = None,
) -> int:
    """Enqueue one notification for every target that takes it; returns the rows added (0 when deduplicated).

    With ``conn`` (an open write transaction of ``store``), the rows are written in it and commit
    or roll back with the caller's own change. Delivery is :func:`~splitlab.notify.deliver_due`'s job.
    The arguments are :func:`build_notifications`'s.

    Raises:
        ValueError: As :func:`build_notifications`.
    """
    notifications = build_notifications(
        spec,
        kind=kind,
        text=text,
        data=data,
        snapshot_id=snapshot_id,
        occasion=occasion,
        global_targets=global_targets,
    )
    return store.notifications.enqueue(notifications=notifications, conn=conn)
