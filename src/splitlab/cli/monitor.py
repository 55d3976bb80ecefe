"""``splitlab monitor``: watch running experiments, act on their verdicts as their specs allow, notify people."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from splitlab.cli._common import user_errors
from splitlab.cli._store import DatabaseOption

if TYPE_CHECKING:
    from splitlab.operations.monitoring import MonitorReport

POLL_SECONDS = 30.0
"""How often the long-running monitor looks for due experiments and due deliveries."""


def monitor(
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit (for cron).")] = False,
    experiment: Annotated[
        str | None,
        typer.Option("--experiment", help="Watch this experiment only (--once: run it now, due or not)."),
    ] = None,
    poll: Annotated[
        float, typer.Option(min=0.1, help="Seconds between passes of the long-running monitor.")
    ] = POLL_SECONDS,
    notifications: Annotated[
        Path | None,
        typer.Option(
            "--notifications",
            help="The global targets file (default: $SPLITLAB_NOTIFICATIONS_FILE).",
            show_default=False,
        ),
    ] = None,
    database: DatabaseOption = None,
) -> None:
    """Analyse each running experiment on its schedule (spec monitoring.interval_minutes), store the snapshot,
    apply its automation policy (auto_stop, auto_rollback, auto_promote, max_duration_days) and deliver
    the notifications. Every action is in the audit log with actor 'monitor'; see docs/monitoring.md.
    """  # noqa: D205
    from splitlab.notify import global_targets
    from splitlab.operations.monitoring import monitor_and_deliver, watch
    from splitlab.storage import open_store

    with user_errors(), open_store(database) as store:
        targets = global_targets(notifications)
        if once:  # one experiment named: run it now; else the due ones
            _report(
                monitor_and_deliver(store, experiment=experiment, global_targets=targets, due_only=experiment is None)
            )
            return
        stopping = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.set())
        typer.echo(f"splitlab monitor: watching {'experiment ' + experiment if experiment else 'running experiments'}")
        watch(
            store,
            stopping,
            poll_seconds=poll,
            experiment=experiment,
            global_targets=targets,
            on_pass=lambda report: _report(report, quiet=True),
        )
        typer.echo("splitlab monitor: stopped")


def _report(report: MonitorReport, *, quiet: bool = False) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    for run in report.runs:
        if run.error is not None:
            typer.echo(f"{stamp} {run.experiment}: error: {run.error}", err=True)
            continue
        if run.decision is None and run.action is None:
            continue  # no longer running when its turn came
        line = f"{stamp} {run.experiment}: {run.decision or 'no decision'}"
        if run.conditions:
            line += f" [{', '.join(run.conditions)}]"
        if run.action is not None:
            target = f" {run.action.variant}" if run.action.action == "promote" else ""
            line += f"; action: {run.action.action}{target} ({run.action.reasons[0]})"
        typer.echo(line)
    if not quiet and not report.runs:
        typer.echo("nothing due" if report.skipped else "no running experiment")
