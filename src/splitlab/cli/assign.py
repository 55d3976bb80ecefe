"""``splitlab assign``: which variant a unit gets, computed as an application would."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from splitlab.cli._common import split_pair, user_errors
from splitlab.cli._store import DatabaseOption


def _attribute_value(text: str) -> Any:
    """JSON when it parses (numbers, true/false, lists), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def assign(
    key: Annotated[str, typer.Argument(help="The experiment key.")],
    unit: Annotated[str, typer.Argument(help="The unit id (user, device, session ...).")],
    attr: Annotated[
        list[str] | None, typer.Option("--attr", help="KEY=VALUE attribute for targeting (repeat); JSON values parse.")
    ] = None,
    preview: Annotated[
        bool, typer.Option("--preview", help="Evaluate as if the experiment were running, whatever its status.")
    ] = False,
    record: Annotated[
        bool,
        typer.Option(
            "--record",
            help="Record the assignment of a running experiment (sticky: later weight changes keep it).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    database: DatabaseOption = None,
) -> None:
    """Assign a unit to a variant of a stored experiment (honours its sticky assignment)."""
    from splitlab.operations.assignment import assign as assign_unit
    from splitlab.operations.experiments import get_experiment
    from splitlab.storage import open_store

    with user_errors():
        attributes = {}
        for item in attr or []:
            name, value = split_pair("--attr", item)
            attributes[name] = _attribute_value(value)
        with open_store(database) as store:
            result = assign_unit(store, key, unit, attributes, record=record, preview=preview)
            status = get_experiment(store, key).status
    payload = {
        "experiment": key,
        "unit_id": unit,
        "status": status,
        "variant": result.variant,
        "bucket": result.bucket,
        "enrolled": result.enrolled,
        "reason": result.reason,
        "variation_index": result.variation_index,
        "payload": result.payload,
    }
    if as_json:
        typer.echo(json.dumps(payload, default=str))
        return
    bucket = "-" if result.bucket is None else f"{result.bucket:.6f}"
    variant = result.variant if result.variant is not None else "(not enrolled)"
    typer.echo(f"{key} / {unit}: {variant} (reason: {result.reason}, bucket {bucket}, status {status})")
    if result.payload is not None:
        typer.echo(f"payload: {json.dumps(result.payload, default=str)}")
