"""Rolled-out experiments: status ``rolled_out`` and the variant then served to every unit.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-17
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = ("draft", "running", "paused", "stopped", "archived")
_AFTER = (*_BEFORE, "rolled_out")
# 0001's explicit names went through the metadata's naming convention once more; from here on the
# checks carry the names the metadata gives them (storage/tables.py), and a downgrade restores 0001's.
_NAMES_BEFORE = {
    "experiments": "ck_experiments_ck_experiments_status",
    "experiment_versions": "ck_experiment_versions_ck_experiment_versions_status",
}
_NAMES_AFTER = {"experiments": "ck_experiments_status", "experiment_versions": "ck_experiment_versions_status"}


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _statuses(allowed: Sequence[str]) -> str:
    return "status IN ({})".format(", ".join(f"'{status}'" for status in allowed))


def _rebuild_experiments_on_sqlite(allowed: Sequence[str], name: str, *, rolled_out_variant: bool) -> None:
    """Recreate ``experiments`` under the same name with ``allowed`` statuses: SQLite cannot alter a CHECK.

    Alembic's batch mode copies into a new table and renames it, which SQLite refuses while
    foreign keys are enforced (every other table refers to ``experiments``, and the migration runs
    inside the caller's transaction, where they cannot be switched off). Instead the rows are kept
    in a temporary table, the table is dropped and created again under its own name, and the rows
    are copied back; the foreign-key checks are deferred to the commit meanwhile, so every
    reference is still checked there, against the rows copied back.
    """
    columns = "key, status, current_version, spec, bucket_version, created_at, updated_at, created_by"
    op.execute("PRAGMA defer_foreign_keys = ON")  # ends with the transaction
    op.execute(f"CREATE TEMPORARY TABLE _experiments_0007 AS SELECT {columns} FROM experiments")  # noqa: S608
    op.drop_table("experiments")
    extra = [sa.Column("rolled_out_variant", sa.String(), nullable=True)] if rolled_out_variant else []
    op.create_table(
        "experiments",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("spec", _json(), nullable=False),
        sa.Column("bucket_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(), nullable=False),
        *extra,
        sa.CheckConstraint(_statuses(allowed), name=op.f(name)),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_experiments")),
    )
    op.execute(f"INSERT INTO experiments ({columns}) SELECT {columns} FROM _experiments_0007")  # noqa: S608
    op.execute("DROP TABLE _experiments_0007")


def _allow(
    allowed: Sequence[str], *, names: Mapping[str, str], old_names: Mapping[str, str], rolled_out_variant: bool
) -> None:
    """Set the status checks of both tables to ``allowed``; add or drop ``experiments.rolled_out_variant``."""
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_experiments_on_sqlite(allowed, names["experiments"], rolled_out_variant=rolled_out_variant)
    else:
        op.drop_constraint(op.f(old_names["experiments"]), "experiments", type_="check")
        op.create_check_constraint(op.f(names["experiments"]), "experiments", _statuses(allowed))
        if rolled_out_variant:
            op.add_column("experiments", sa.Column("rolled_out_variant", sa.String(), nullable=True))
        else:
            op.drop_column("experiments", "rolled_out_variant")
    # Nothing refers to experiment_versions, so batch mode's copy and rename works on SQLite too.
    with op.batch_alter_table("experiment_versions") as batch:
        batch.drop_constraint(op.f(old_names["experiment_versions"]), type_="check")
        batch.create_check_constraint(op.f(names["experiment_versions"]), _statuses(allowed))


def upgrade() -> None:
    """Allow status ``rolled_out`` in both tables; add ``experiments.rolled_out_variant``."""
    _allow(_AFTER, names=_NAMES_AFTER, old_names=_NAMES_BEFORE, rolled_out_variant=True)


def downgrade() -> None:
    """Drop ``rolled_out``: a rolled-out experiment becomes ``stopped``, in its current state and its audit log.

    The older schema has no way to serve a winner, and stopped is what it serves instead (nobody
    enrolled, no payload). Which variant had been rolled out is lost.
    """
    for table in ("experiments", "experiment_versions"):
        op.execute(f"UPDATE {table} SET status = 'stopped' WHERE status = 'rolled_out'")  # noqa: S608
    _allow(_BEFORE, names=_NAMES_BEFORE, old_names=_NAMES_AFTER, rolled_out_variant=False)
