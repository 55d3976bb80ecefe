"""Alembic migrations of the store, run by :func:`splitlab.storage.upgrade` (no alembic.ini needed).

To add one, write ``versions/NNNN_<what>.py`` by hand or generate it against a database at head::

    from alembic import command
    from splitlab.storage import alembic_config, create_store_engine, resolve_url

    with create_store_engine(resolve_url("sqlite:///dev.db")).begin() as conn:
        command.revision(alembic_config(conn), message="what changes", autogenerate=True)

then review it, and keep ``splitlab/storage/tables.py`` and the migration in step (a test
compares the migrated schema with the tables).
"""
