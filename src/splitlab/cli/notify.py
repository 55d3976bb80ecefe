"""``splitlab notify test`` and ``splitlab notifications list``: try the targets, read the outbox."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from splitlab.cli._common import show_rows, user_errors
from splitlab.cli._store import DatabaseOption

if TYPE_CHECKING:
    from splitlab.storage import OutboxNotification

notify_app = typer.Typer(help="Notifications to webhooks and Slack.", no_args_is_help=True)
notifications_app = typer.Typer(help="The notification outbox and its deliveries.", no_args_is_help=True)

NotificationsOption = Annotated[
    Path | None,
    typer.Option(
        "--notifications",
        help="The global targets file (default: $SPLITLAB_NOTIFICATIONS_FILE).",
        show_default=False,
    ),
]


@notify_app.command("test")
def send_test_notification(
    target: Annotated[str | None, typer.Option("--target", help="Only this target (by name).")] = None,
    experiment: Annotated[
        str | None,
        typer.Option("--experiment", help="The targets this experiment notifies (default: every global target)."),
    ] = None,
    notifications: NotificationsOption = None,
    database: DatabaseOption = None,
) -> None:
    """Send a test notification to each target now and print what each answered.

    Exits with status 1 when a target did not take it (the notification stays in the outbox and
    is retried like any other).
    """
    from splitlab.notify import global_targets, send_test
    from splitlab.operations.experiments import get_experiment
    from splitlab.specs import ExperimentSpec
    from splitlab.storage import open_store

    with user_errors(), open_store(database) as store:
        shared = global_targets(notifications)
        spec = None if experiment is None else ExperimentSpec.model_validate(get_experiment(store, experiment).spec)
        report = send_test(store, spec=spec, target=target, global_targets=shared)
    for attempt in report.attempts:
        sent = attempt.notification
        outcome = f"delivered (HTTP {attempt.status_code})" if attempt.delivered else f"not delivered: {attempt.error}"
        typer.echo(f"{sent.target_name} ({sent.target_url}): {outcome}, {attempt.duration_ms:.0f} ms")
    if report.delivered < len(report.attempts):
        raise typer.Exit(code=1)


def _time(value: Any) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")


def _row(notification: OutboxNotification) -> dict[str, Any]:
    return {
        "id": notification.id,
        "created_at": _time(notification.created_at),
        "experiment": notification.experiment_key,
        "kind": notification.kind,
        "snapshot_id": notification.snapshot_id,
        "target": notification.target_name,
        "status": notification.status,
        "attempts": notification.attempts,
        "next_attempt_at": _time(notification.next_attempt_at) if notification.status == "pending" else None,
        "delivered_at": _time(notification.delivered_at),
        "last_error": notification.last_error,
    }


@notifications_app.command("list")
def list_notifications(
    experiment: Annotated[str | None, typer.Option("--experiment", help="Only this experiment's.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="pending, delivered or failed.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="The newest this many.", min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    database: DatabaseOption = None,
) -> None:
    """List the outbox, newest first: each notification's target, status, attempts and last error."""
    from splitlab.storage import open_store

    with user_errors(), open_store(database) as store:
        rows = [_row(n) for n in store.notifications.list(experiment_key=experiment, status=status, limit=limit)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    headers = ("id", "created", "experiment", "kind", "target", "status", "attempts", "next / delivered", "last error")
    body = [
        (
            str(r["id"]),
            r["created_at"],
            r["experiment"] or "-",
            r["kind"],
            r["target"],
            r["status"],
            str(r["attempts"]),
            r["delivered_at"] or r["next_attempt_at"] or "-",
            r["last_error"] or "",
        )
        for r in rows
    ]

    show_rows(headers, body, empty="no notifications")
