"""Notifications: the outbox (written with the event that causes it) and the log of delivery attempts.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-16
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create ``notification_outbox`` (one row per notification and target) and ``notification_deliveries``."""
    op.create_table(
        "notification_outbox",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("dedupe_key", sa.String(), nullable=False),
        sa.Column("experiment_key", sa.String(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("snapshot_id", sa.BigInteger(), nullable=True),
        sa.Column("target_name", sa.String(), nullable=False),
        sa.Column("target_url", sa.String(), nullable=False),
        sa.Column("format", sa.String(), nullable=False),
        sa.Column("secret_env", sa.String(), nullable=True),
        sa.Column("body", _json(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="ck_notification_outbox_status"),
        sa.CheckConstraint("format IN ('json', 'slack')", name="ck_notification_outbox_format"),
        sa.PrimaryKeyConstraint("id", name="pk_notification_outbox"),
        sa.UniqueConstraint("dedupe_key", name="uq_notification_outbox_dedupe_key"),
    )
    op.create_index(
        "ix_notification_outbox_status_next_attempt_at", "notification_outbox", ["status", "next_attempt_at"]
    )
    op.create_index("ix_notification_outbox_experiment_key_id", "notification_outbox", ["experiment_key", "id"])
    op.create_table(
        "notification_deliveries",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("outbox_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("duration_ms", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["outbox_id"], ["notification_outbox.id"], name="fk_notification_deliveries_outbox_id_notification_outbox"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_notification_deliveries"),
    )
    op.create_index("ix_notification_deliveries_outbox_id_attempt", "notification_deliveries", ["outbox_id", "attempt"])


def downgrade() -> None:
    """Drop the two tables."""
    op.drop_table("notification_deliveries")
    op.drop_table("notification_outbox")
