"""Warehouse-native analysis: read exposures and events from the user's own tables, read-only.

A YAML file names the database and maps its tables and columns::

    database: duckdb:///warehouse.duckdb        # or postgresql+psycopg://..., sqlite:///...
    exposures: {table: analytics.exposures, unit: user_id, variant: arm, timestamp: exposed_at,
                experiment: experiment_id, segments: [device, country]}
    events: {table: analytics.events, unit: user_id, name: event_name, timestamp: ts, value: amount}

The experiment's spec and metric definitions still come from the splitlab store; only the data is
read from the warehouse, with one aggregation query (see docs/aggregation.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from splitlab.analysis.sql import Source

DUCKDB_PREFIX = "duckdb:///"


@contextmanager
def warehouse(path: str | Path) -> Iterator[tuple[Any, Source]]:
    """Open the database a warehouse file names (read-only where the driver allows) with its mapping."""
    file = Path(path)
    if not file.exists():
        msg = f"source file {str(file)!r} does not exist"
        raise FileNotFoundError(msg)
    try:
        config = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        msg = f"source file {str(file)!r} is not valid YAML: {error}"
        raise ValueError(msg) from error
    if not isinstance(config, dict) or not isinstance(config.get("database"), str):
        msg = f"source file {str(file)!r} needs a 'database' URL and 'exposures' and 'events' sections"
        raise ValueError(msg)  # noqa: TRY004 - a config mistake, reported as ValueError like the others
    url = config.pop("database")
    source = Source.from_config(config)
    if url.startswith(DUCKDB_PREFIX):
        import duckdb

        connection = duckdb.connect(url[len(DUCKDB_PREFIX) :], read_only=True)
        try:
            yield connection, source
        finally:
            connection.close()
        return
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        yield engine, source
    finally:
        engine.dispose()
