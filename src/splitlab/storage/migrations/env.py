"""Alembic environment: migrate over the connection that :func:`splitlab.storage.upgrade` passes in.

The caller holds the transaction (and the migration lock), so Alembic runs inside it: on both
SQLite and PostgreSQL the DDL is transactional and a failed migration leaves nothing behind.
"""

from __future__ import annotations

from alembic import context
from alembic.config import Config
from sqlalchemy.engine import Connection

from splitlab.storage.tables import metadata


def run_migrations(config: Config) -> None:
    """Run the migrations over ``config.attributes["connection"]``."""
    connection = config.attributes.get("connection")
    if not isinstance(connection, Connection):
        msg = "splitlab migrations run over a connection: use splitlab.storage.upgrade(engine)"
        raise TypeError(msg)
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs by copying the table
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


# Alembic sets `context.config` only while it executes this file; a plain import (doctest
# collection, documentation tools) must not start a migration.
_config = getattr(context, "config", None)
if isinstance(_config, Config):
    run_migrations(_config)
