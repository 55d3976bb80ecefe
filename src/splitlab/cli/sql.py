"""``splitlab sql``: the aggregation statement of an experiment in a warehouse's SQL."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from splitlab.cli._common import user_errors
from splitlab.cli._store import DatabaseOption

DIALECT_HELP = "sqlite, postgresql, duckdb, spark, databricks, bigquery, snowflake or trino."


def sql(
    key: Annotated[str, typer.Argument(help="The experiment key.")],
    dialect: Annotated[str, typer.Option(help=f"The engine whose SQL to write: {DIALECT_HELP}")] = "duckdb",
    source: Annotated[
        Path | None,
        typer.Option(help="Source file mapping your exposure and event tables (its database is not opened)."),
    ] = None,
    segment: Annotated[
        list[str] | None, typer.Option("--segment", help="Segment dimension (exposure attribute; repeat).")
    ] = None,
    database: DatabaseOption = None,
) -> None:
    """Print the one aggregation query `splitlab analyze` runs, for a warehouse splitlab does not connect to.

    Its rows are the sufficient statistics per variant, segment, allocation phase and day
    (docs/aggregation.md); docs/scale.md says how to run it in BigQuery, Snowflake, Trino or Databricks.
    """
    from splitlab.operations.analysis import aggregation_statement
    from splitlab.storage import open_store

    with user_errors(), open_store(database) as store:
        statement = aggregation_statement(store, key, dialect=dialect, source=source, segments=segment)
    typer.echo(statement)
