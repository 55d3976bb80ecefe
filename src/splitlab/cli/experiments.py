"""Experiments as code: ``apply``, ``list``, ``show`` and the lifecycle commands."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from splitlab.cli._common import show, user_errors
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
            help="Allow changes that move units (unit, variant keys, seed ...) by bumping the bucket version.",
        ),
    ] = False,
    actor: ActorOption = None,
    database: DatabaseOption = None,
) -> None:
    """Create or update experiments from YAML specs and print what changed."""
    from splitlab.specs import ExperimentSpec, has_run, load_catalog, plan_update

    with user_errors():
        if not path.exists():
            msg = f"PATH {str(path)!r} does not exist"
            raise FileNotFoundError(msg)
        catalog = load_catalog(path)
        who = actor_name(actor)
        with _open(database) as store:
            if catalog.metrics:
                typer.echo(f"metrics: {len(catalog.metrics)} definitions ({', '.join(catalog.metrics)})")
                if not dry_run:
                    definitions = [m.model_dump(mode="json") for m in catalog.metrics.values()]
                    store.metrics.put_many(definitions=definitions, actor=who)
            for key, spec in catalog.experiments.items():
                record = store.experiments.get(key=key)
                current = None if record is None else ExperimentSpec.model_validate(record.spec)
                has_run_ = record is not None and has_run(record.status)
                plan = plan_update(current, spec, has_run=has_run_, rerandomize=rerandomize)
                if record is None:
                    typer.echo(f"+ {key}: create (version 1, status draft, {len(spec.variants)} variants)")
                    if not dry_run:
                        store.experiments.create(key=key, spec=spec.model_dump(mode="json"), actor=who)
                    continue
                if plan.action == "unchanged":
                    typer.echo(f"= {key}: unchanged (version {record.current_version})")
                    continue
                note = " (re-randomised)" if plan.rerandomized else ""
                typer.echo(f"~ {key}: update to version {record.current_version + 1}{note}")
                for change in plan.changes:
                    typer.echo(f"    {change.path}: {_value(change.old)} -> {_value(change.new)}")
                if not dry_run:
                    store.experiments.update(
                        key=key, spec=plan.spec.model_dump(mode="json"), diff=[asdict(c) for c in plan.changes],
                        actor=who, expected_version=record.current_version, rerandomize=plan.rerandomized,
                    )  # fmt: skip
        if dry_run:
            typer.echo("(dry run: nothing written)")


def list_experiments(
    status: Annotated[str | None, typer.Option(help="Only experiments with this status (draft, running ...).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    database: DatabaseOption = None,
) -> None:
    """List the experiments in the store."""
    with user_errors(), _open(database) as store:
        records = store.experiments.list(status=status)
    rows = [
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

    def plain() -> str:
        if not body:
            return "no experiments" + (f" with status {status}" if status else "")
        widths = [max(len(row[i]) for row in [headers, *body]) for i in range(len(headers))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [headers, *body]]
        return "\n".join(lines)

    def table() -> Any:
        from rich.table import Table

        rich_table = Table(*headers)
        for row in body:
            rich_table.add_row(*row)
        return rich_table if body else plain()

    show(table(), plain)


def show_experiment(
    key: Annotated[str, typer.Argument(help="The experiment key.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (record, spec and history).")] = False,
    database: DatabaseOption = None,
) -> None:
    """Show an experiment: status, versions, the spec, and its audit log."""
    from splitlab.specs import ExperimentSpec, dump_spec

    with user_errors(), _open(database) as store:
        record = store.experiments.get(key=key)
        if record is None:
            msg = f"experiment {key!r} is not in the store; `splitlab apply` creates it"
            raise ValueError(msg)
        history = store.experiments.history(key=key)
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
    from splitlab.specs import apply_action

    with user_errors(), _open(database) as store:
        record = store.experiments.get(key=key)
        if record is None:
            msg = f"experiment {key!r} is not in the store; `splitlab apply` creates it"
            raise ValueError(msg)
        status = apply_action(record.status, action)
        version = store.experiments.set_status(key=key, status=str(status), actor=actor_name(actor), reason=reason)
    typer.echo(f"{key}: {record.status} -> {status} (version {version.version})")


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
    """Stop an experiment for good (it can then only be archived)."""
    _lifecycle("stop", key, actor, database, reason)


def archive(
    key: KeyArgument, actor: ActorOption = None, reason: ReasonOption = None, database: DatabaseOption = None
) -> None:
    """Archive a draft or stopped experiment."""
    _lifecycle("archive", key, actor, database, reason)
