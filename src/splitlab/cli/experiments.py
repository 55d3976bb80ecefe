"""Experiments as code: ``apply``, ``list``, ``show`` and the lifecycle commands."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from splitlab.cli._common import show, show_rows, user_errors
from splitlab.cli._store import ActorOption, DatabaseOption, actor_name


def _open(database: str | None) -> Any:
    from splitlab.storage import open_store

    return open_store(database)


def _value(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def apply(
    path: Annotated[Path, typer.Argument(help="A YAML spec file, or a folder of them (with metrics.yaml).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the changes; write nothing.")] = False,
    rerandomize: Annotated[
        bool,
        typer.Option(
            "--rerandomize",
            help="Allow changes that move units (unit, variant keys, seed ...) of experiments that have run, "
            "by bumping their bucket version (only those whose change needs it).",
        ),
    ] = False,
    actor: ActorOption = None,
    database: DatabaseOption = None,
) -> None:
    """Create or update experiments from YAML specs and print what changed."""
    from splitlab.operations.experiments import apply_catalog, read_catalog

    with user_errors(), _open(database) as store:
        catalog = read_catalog(store, path)
        outcome = apply_catalog(store, catalog, actor=actor_name(actor), rerandomize=rerandomize, dry_run=dry_run)
    if outcome.metrics:
        typer.echo(f"metrics: {len(outcome.metrics)} definitions ({', '.join(outcome.metrics)})")
    for experiment in outcome.experiments:
        if experiment.action == "created":
            typer.echo(f"+ {experiment.key}: create (version 1, status draft, {experiment.variants} variants)")
        elif experiment.action == "unchanged":
            typer.echo(f"= {experiment.key}: unchanged (version {experiment.version})")
        else:
            note = " (re-randomised)" if experiment.rerandomized else ""
            typer.echo(f"~ {experiment.key}: update to version {experiment.version}{note}")
            for change in experiment.changes:
                typer.echo(f"    {change.path}: {_value(change.old)} -> {_value(change.new)}")
        for note in experiment.notes:
            typer.echo(f"    note: {note}")
    if dry_run:
        typer.echo("(dry run: nothing written)")


def list_experiments(
    status: Annotated[str | None, typer.Option(help="Only experiments with this status (draft, running ...).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    database: DatabaseOption = None,
) -> None:
    """List the experiments in the store."""
    from splitlab.operations.experiments import list_experiments as stored_experiments

    with user_errors(), _open(database) as store:
        records = stored_experiments(store, status=status)
    rows: list[dict[str, Any]] = [
        {
            "key": r.key,
            "name": r.spec.get("name") or r.key,
            "status": r.status,
            "version": r.current_version,
            "variants": [v["key"] for v in r.spec.get("variants", [])],
            "updated_at": r.updated_at.isoformat(timespec="seconds"),
        }
        for r in records
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    headers = ("key", "status", "version", "variants", "updated", "name")
    body = [
        (r["key"], r["status"], str(r["version"]), ", ".join(r["variants"]), r["updated_at"], r["name"]) for r in rows
    ]

    show_rows(headers, body, empty="no experiments" + (f" with status {status}" if status else ""))


def show_experiment(
    key: Annotated[str, typer.Argument(help="The experiment key.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (record, spec and history).")] = False,
    database: DatabaseOption = None,
) -> None:
    """Show an experiment: status, versions, the spec, and its audit log."""
    from splitlab.operations.experiments import get_experiment
    from splitlab.operations.experiments import history as audit_log
    from splitlab.specs import ExperimentSpec, dump_spec

    with user_errors(), _open(database) as store:
        record = get_experiment(store, key)
        history = audit_log(store, key)
    if as_json:
        payload = {
            "key": record.key, "status": record.status, "version": record.current_version,
            "bucket_version": record.bucket_version, "created_by": record.created_by,
            "created_at": record.created_at.isoformat(), "updated_at": record.updated_at.isoformat(),
            "spec": record.spec,
            "history": [{**asdict(h), "changed_at": h.changed_at.isoformat()} for h in history],
        }  # fmt: skip
        typer.echo(json.dumps(payload, indent=2, default=str))
        return
    lines = [
        f"{record.key}: {record.status}, version {record.current_version}, bucket version {record.bucket_version}",
        f"created by {record.created_by} at {record.created_at:%Y-%m-%d %H:%M} UTC",
        "",
        dump_spec(ExperimentSpec.model_validate(record.spec)).rstrip(),
        "",
        "history:",
    ]
    for h in history:
        what = ", ".join(str(change.get("path")) for change in h.diff) or "created"
        lines.append(f"  v{h.version} {h.changed_at:%Y-%m-%d %H:%M} {h.changed_by}: {h.status}; {what}")
    text = "\n".join(lines)
    show(text, lambda: text)


def _lifecycle(action: str, key: str, actor: str | None, database: str | None, reason: str | None) -> None:
    from splitlab.operations.experiments import change_status

    with user_errors(), _open(database) as store:
        moved = change_status(store, key=key, action=action, actor=actor_name(actor), reason=reason)
    typer.echo(f"{key}: {moved.old_status} -> {moved.record.status} (version {moved.record.current_version})")


ReasonOption = Annotated[str | None, typer.Option(help="A note for the audit log.")]
KeyArgument = Annotated[str, typer.Argument(help="The experiment key.")]


def start(
    key: KeyArgument, actor: ActorOption = None, reason: ReasonOption = None, database: DatabaseOption = None
) -> None:
    """Start (or resume) an experiment: it begins enrolling units."""
    _lifecycle("start", key, actor, database, reason)


def pause(
    key: KeyArgument, actor: ActorOption = None, reason: ReasonOption = None, database: DatabaseOption = None
) -> None:
    """Pause a running experiment: no new units are enrolled; assigned units keep their variant."""
    _lifecycle("pause", key, actor, database, reason)


def stop(
    key: KeyArgument, actor: ActorOption = None, reason: ReasonOption = None, database: DatabaseOption = None
) -> None:
    """Stop an experiment for good (it can then only be archived); a rolled-out one stops serving its variant."""
    _lifecycle("stop", key, actor, database, reason)


def archive(
    key: KeyArgument, actor: ActorOption = None, reason: ReasonOption = None, database: DatabaseOption = None
) -> None:
    """Archive a draft, stopped or rolled-out experiment."""
    _lifecycle("archive", key, actor, database, reason)


def roll_out(
    key: KeyArgument,
    variant: Annotated[str, typer.Option("--variant", help="The variant to serve to every unit (the winner).")],
    actor: ActorOption = None,
    reason: ReasonOption = None,
    database: DatabaseOption = None,
) -> None:
    """Roll a variant out: the experiment stops enrolling and every unit is served that variant from now on."""
    from splitlab.operations.experiments import roll_out as roll_out_variant

    with user_errors(), _open(database) as store:
        moved = roll_out_variant(store, key=key, variant=variant, actor=actor_name(actor), reason=reason)
    record = moved.record
    typer.echo(
        f"{key}: {moved.old_status} -> {record.status} (version {record.current_version}), "
        f"serving {record.rolled_out_variant} to every unit"
    )
