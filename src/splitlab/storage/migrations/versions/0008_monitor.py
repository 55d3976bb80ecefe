"""The monitor: each running experiment's schedule, lease and last readout, and the actions it took.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create ``monitor_state`` (one row per watched experiment) and ``monitor_actions``."""
    op.create_table(
        "monitor_state",
        sa.Column("experiment_key", sa.String(), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_snapshot_id", sa.BigInteger(), nullable=True),
        sa.Column("last_decision", sa.String(), nullable=True),
        sa.Column("conditions", _json(), nullable=False),
        sa.Column("summary", _json(), nullable=True),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_key"], ["experiments.key"], name="fk_monitor_state_experiment_key_experiments"
        ),
        sa.PrimaryKeyConstraint("experiment_key", name="pk_monitor_state"),
    )
    op.create_table(
        "monitor_actions",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("experiment_key", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("variant", sa.String(), nullable=True),
        sa.Column("snapshot_id", sa.BigInteger(), nullable=True),
        sa.Column("decision", sa.String(), nullable=True),
        sa.Column("reasons", _json(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("experiment_version", sa.Integer(), nullable=True),
        sa.CheckConstraint("action IN ('stop', 'rollback', 'promote')", name="ck_monitor_actions_action"),
        sa.ForeignKeyConstraint(
            ["experiment_key"], ["experiments.key"], name="fk_monitor_actions_experiment_key_experiments"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_monitor_actions"),
    )
    op.create_index("ix_monitor_actions_experiment_key_id", "monitor_actions", ["experiment_key", "id"])


def downgrade() -> None:
    """Drop the two tables."""
    op.drop_table("monitor_actions")
    op.drop_table("monitor_state")
