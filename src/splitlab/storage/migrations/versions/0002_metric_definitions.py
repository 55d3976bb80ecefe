"""Metric definitions, so an experiment can be analysed from the store alone.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    """Create ``metric_definitions``."""
    op.create_table(
        "metric_definitions",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("definition", _json(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_metric_definitions"),
    )


def downgrade() -> None:
    """Drop ``metric_definitions``."""
    op.drop_table("metric_definitions")
