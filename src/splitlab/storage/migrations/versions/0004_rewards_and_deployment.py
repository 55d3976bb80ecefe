"""Bandit rewards recorded once per unit, and the deployment's identity.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``bandit_rewards`` and ``deployment`` (one row: a random id for this store)."""
    op.create_table(
        "bandit_rewards",
        sa.Column("experiment_key", sa.String(), nullable=False),
        sa.Column("bucket_version", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.String(), nullable=False),
        sa.Column("arm", sa.String(), nullable=False),
        sa.Column("reward", sa.Double(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_key"], ["experiments.key"], name="fk_bandit_rewards_experiment_key_experiments"
        ),
        sa.PrimaryKeyConstraint("experiment_key", "bucket_version", "unit_id", name="pk_bandit_rewards"),
    )
    deployment = op.create_table(
        "deployment",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deployment"),
    )
    op.bulk_insert(deployment, [{"id": uuid.uuid4().hex, "created_at": datetime.now(UTC)}])


def downgrade() -> None:
    """Drop ``deployment`` and ``bandit_rewards``."""
    op.drop_table("deployment")
    op.drop_table("bandit_rewards")
