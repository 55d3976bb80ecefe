"""``splitlab assign``: which variant a unit gets, computed as an application would."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
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
    unit: Annotated[str | None, typer.Argument(help="The unit id (user, device, session ...); or give --file.")] = None,
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
    population: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="CSV or Parquet of a known population (unit_id plus attribute columns): assigned at once, "
            "balanced within each stratum of the spec's stratify_by, and recorded (allocation 'random').",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    database: DatabaseOption = None,
) -> None:
    """Assign a unit to a variant of a stored experiment (honours its sticky assignment), or a population file."""
    from splitlab.operations.assignment import assign as assign_unit
    from splitlab.operations.experiments import get_experiment
    from splitlab.storage import open_store

    if population is not None:
        _assign_file(key, unit, population, attr=attr, as_json=as_json, database=database)
        return
    with user_errors():
        if unit is None:
            msg = "UNIT is missing: give a unit id, or --file with a population"
            raise ValueError(msg)
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


def _assign_file(
    key: str, unit: str | None, path: Path, *, attr: list[str] | None, as_json: bool, database: str | None
) -> None:
    from splitlab.operations.assignment import assign_population
    from splitlab.storage import open_store
    from splitlab.storage.importing import read_table

    with user_errors():
        if unit is not None or attr:
            msg = "--file assigns the units the file lists: give no UNIT and no --attr with it"
            raise ValueError(msg)
        frame = read_table(path)
        if "unit_id" not in frame.columns:
            msg = f"{path}: no unit_id column (columns: {', '.join(map(str, frame.columns))})"
            raise ValueError(msg)
        names = [c for c in frame.columns if c != "unit_id"]
        # Cells read as --attr values are: JSON when they parse (numbers, true/false), else text; empty is absent.
        rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
        units = [(str(row["unit_id"]), _attributes(row, names)) for row in rows]
        with open_store(database) as store:
            outcome = assign_population(store, key, units)
    if as_json:
        data = {
            "experiment": key,
            "units": [
                {"unit_id": r.unit_id, "variant": r.variant, "enrolled": r.enrolled, "reason": r.reason}
                for r in outcome.units
            ],
            "strata": [{"stratum": list(s), "variants": counts} for s, counts in outcome.strata.items()],
        }
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    enrolled = sum(r.enrolled for r in outcome.units)
    typer.echo(f"{key}: {len(outcome.units):,} units, {enrolled:,} enrolled and recorded")
    for stratum, counts in outcome.strata.items():
        split = ", ".join(f"{variant}={n:,}" for variant, n in counts.items())
        typer.echo(f"  {' / '.join(stratum) or 'all'}: {split}")


def _attributes(row: Mapping[Any, Any], names: list[str]) -> dict[str, Any]:
    present = {n: row[n] for n in names if row[n] not in ("", None)}
    return {n: _attribute_value(v) if isinstance(v, str) else v for n, v in present.items()}
