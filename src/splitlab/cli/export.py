"""``splitlab export`` and ``splitlab export-catalog``: results tables and spec files for the data platform."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from splitlab.cli._common import user_errors
from splitlab.cli._store import DatabaseOption


def _target(to: str, schema: str | None) -> Any:
    """``--to`` parsed; a bad one is one line naming ``--to`` (or ``--schema``)."""
    from splitlab.operations.errors import InvalidInputError
    from splitlab.operations.export import export_target

    try:
        return export_target(to, schema)
    except InvalidInputError as error:
        raise ValueError("; ".join(f"--{field}: {message}" for field, message in error.problems)) from None


def export(
    key: Annotated[str, typer.Argument(help="The experiment key.")],
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="postgresql+psycopg://USER@HOST/DB[?schema=S], duckdb:///FILE.duckdb, parquet:///DIR or a "
            "directory, spark:DATABASE.",
            show_default=False,
        ),
    ],
    schema: Annotated[
        str | None, typer.Option(help="Schema of the tables (Spark: database), unless --to names one.")
    ] = None,
    all_snapshots: Annotated[
        bool, typer.Option("--all-snapshots/--latest", help="Every stored readout, or only the latest.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
    database: DatabaseOption = None,
) -> None:
    """Write an experiment's stored readouts as normalised results tables (docs/export.md).

    Tables splitlab_experiments, splitlab_results, splitlab_decisions and splitlab_health_checks
    are created when missing; exporting a snapshot again replaces its rows.
    """
    from splitlab.operations.export import ExportFailedError, export_results
    from splitlab.storage import open_store

    with user_errors():
        target = _target(to, schema)
        with open_store(database) as store:
            try:
                outcome = export_results(store, key, to=target, all_snapshots=all_snapshots)
            except ExportFailedError as error:
                raise ValueError(f"--to: {error.target} cannot be written: {error.reason}") from None
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "experiment": outcome.experiment,
                    "target": outcome.target,
                    "snapshot_ids": list(outcome.snapshot_ids),
                    "rows": outcome.rows,
                },
                indent=2,
            )
        )
        return
    count = len(outcome.snapshot_ids)
    rows = ", ".join(f"{name} {n}" for name, n in outcome.rows.items())
    typer.echo(f"{key}: {count} snapshot{'s' if count != 1 else ''} exported to {outcome.target} (rows: {rows})")


def export_catalog(
    directory: Annotated[Path, typer.Argument(help="Where to write KEY/vN.yaml and index.json.")],
    experiment: Annotated[
        list[str] | None, typer.Option("--experiment", help="Only this experiment (repeat); default all.")
    ] = None,
    database: DatabaseOption = None,
) -> None:
    """Write every version of every experiment's spec as DIR/KEY/vN.yaml, with DIR/index.json."""
    from splitlab.operations.export import export_catalog as write_catalog
    from splitlab.storage import open_store

    with user_errors(), open_store(database) as store:
        outcome = write_catalog(store, directory, keys=experiment)
    versions = sum(len(files) for files in outcome.files.values())
    typer.echo(f"{len(outcome.files)} experiments, {versions} spec versions written to {directory} ({outcome.index})")
