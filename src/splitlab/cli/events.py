"""``splitlab events import``: load exposures or events from CSV or Parquet into the store."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from splitlab.cli._common import user_errors
from splitlab.cli._store import DatabaseOption

if TYPE_CHECKING:
    from splitlab.storage import ImportReport

app = typer.Typer(help="Exposures and events in the store.", no_args_is_help=True)
MAX_SHOWN = 20


@app.command("import")
def import_events(
    path: Annotated[Path, typer.Argument(help="CSV (.csv, .csv.gz) or Parquet file.")],
    kind: Annotated[str | None, typer.Option(help="exposures or events (default: inferred from the columns).")] = None,
    clock_skew: Annotated[
        float, typer.Option(help="Seconds past now an exposure may be dated (clients' clocks run fast).", min=0)
    ] = 300.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    database: DatabaseOption = None,
) -> None:
    """Import exposures or events from a file.

    Exposures have columns experiment, unit_id, variant, timestamp (plus attributes kept for
    segments); events have event_id, unit_id, event, value, timestamp (plus properties).
    Valid rows are written in one transaction; rejected rows are reported with their row number
    (the header is row 1) and the reason, and make the exit status 1 (so a scheduled import
    notices). Exposures are taken while their experiment runs, dated from its start to now plus
    --clock-skew seconds. Exposures of a unit in another variant than its recorded one are
    reported as conflicts (the unit is left out of analysis). A malformed file writes nothing.
    """
    from splitlab.storage import import_file, open_store

    with user_errors(), open_store(database) as store:
        report = import_file(store, path, kind=kind, clock_skew=timedelta(seconds=clock_skew))  # type: ignore[arg-type]
    if as_json:
        data = {
            "kind": report.kind,
            "rows": report.rows,
            "inserted": report.inserted,
            "duplicates": report.duplicates,
            "conflicts": report.conflicts,
            "rejected": [{"row": r.row_number, "reason": r.reason} for r in report.rejected],
        }
        typer.echo(json.dumps(data, indent=2))
    else:
        _print_report(report)
    if report.rejected:
        raise typer.Exit(code=1)


def _print_report(report: ImportReport) -> None:
    conflicts = f"{report.conflicts} conflicts, " if report.kind == "exposures" else ""
    typer.echo(
        f"{report.kind}: {report.rows} rows, {report.inserted} inserted, {report.duplicates} already stored, "
        f"{conflicts}{len(report.rejected)} rejected"
    )
    if report.conflicts:
        typer.echo(
            f"  {report.conflicts} exposures name another variant than their unit's first one: "
            "those units are left out of analysis"
        )
    for rejected in report.rejected[:MAX_SHOWN]:
        typer.echo(f"  row {rejected.row_number}: {rejected.reason}")
    if len(report.rejected) > MAX_SHOWN:
        typer.echo(f"  ... and {len(report.rejected) - MAX_SHOWN} more (use --json for all)")
