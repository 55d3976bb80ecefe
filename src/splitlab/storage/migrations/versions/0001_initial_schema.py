"""Initial schema: experiments and versions, assignments, exposures, events, snapshots, bandit state.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = "status IN ('draft', 'running', 'paused', 'stopped', 'archived')"


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create every table."""
    op.create_table(
        "experiments",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("spec", _json(), nullable=False),
        sa.Column("bucket_version", sa.Integer(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.Column("created_by", sa.String(), nullable=False),
        sa.CheckConstraint(_STATUSES, name="ck_experiments_status"),
        sa.PrimaryKeyConstraint("key", name="pk_experiments"),
    )
    op.create_table(
        "experiment_versions",
        sa.Column("experiment_key", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("spec", _json(), nullable=False),
        sa.Column("diff", _json(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("changed_by", sa.String(), nullable=False),
        sa.Column("changed_at", _time(), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.CheckConstraint(_STATUSES, name="ck_experiment_versions_status"),
        sa.ForeignKeyConstraint(
            ["experiment_key"], ["experiments.key"], name="fk_experiment_versions_experiment_key_experiments"
        ),
        sa.PrimaryKeyConstraint("experiment_key", "version", name="pk_experiment_versions"),
    )
    op.create_table(
        "assignments",
        sa.Column("experiment_key", sa.String(), nullable=False),
        sa.Column("unit_id", sa.String(), nullable=False),
        sa.Column("variant", sa.String(), nullable=False),
        sa.Column("bucket_version", sa.Integer(), nullable=False),
        sa.Column("assigned_at", _time(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_key"], ["experiments.key"], name="fk_assignments_experiment_key_experiments"
        ),
        sa.PrimaryKeyConstraint("experiment_key", "unit_id", name="pk_assignments"),
    )
    op.create_table(
        "exposures",
        sa.Column("experiment_key", sa.String(), nullable=False),
        sa.Column("unit_id", sa.String(), nullable=False),
        sa.Column("variant", sa.String(), nullable=False),
        sa.Column("first_exposed_at", _time(), nullable=False),
        sa.Column("attributes", _json(), nullable=True),
        sa.Column("multiple_variants", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_key"], ["experiments.key"], name="fk_exposures_experiment_key_experiments"
        ),
        sa.PrimaryKeyConstraint("experiment_key", "unit_id", name="pk_exposures"),
    )
    op.create_table(
        "exposure_conflicts",
        sa.Column("experiment_key", sa.String(), nullable=False),
        sa.Column("unit_id", sa.String(), nullable=False),
        sa.Column("variant", sa.String(), nullable=False),
        sa.Column("first_seen_at", _time(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_key", "unit_id"],
            ["exposures.experiment_key", "exposures.unit_id"],
            name="fk_exposure_conflicts_experiment_key_unit_id_exposures",
        ),
        sa.PrimaryKeyConstraint("experiment_key", "unit_id", "variant", name="pk_exposure_conflicts"),
    )
    op.create_table(
        "events",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("unit_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("timestamp", _time(), nullable=False),
        sa.Column("properties", _json(), nullable=True),
        sa.Column("ingested_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
    )
    op.create_index("ix_events_name_unit_id_timestamp", "events", ["name", "unit_id", "timestamp"])
    op.create_table(
        "analysis_snapshots",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("experiment_key", sa.String(), nullable=False),
        sa.Column("spec_version", sa.Integer(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_key"], ["experiments.key"], name="fk_analysis_snapshots_experiment_key_experiments"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_analysis_snapshots"),
    )
    op.create_index("ix_analysis_snapshots_experiment_key_id", "analysis_snapshots", ["experiment_key", "id"])
    op.create_table(
        "bandit_state",
        sa.Column("experiment_key", sa.String(), nullable=False),
        sa.Column("arm", sa.String(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("sum", sa.Double(), nullable=False),
        sa.Column("sum_sq", sa.Double(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_key"], ["experiments.key"], name="fk_bandit_state_experiment_key_experiments"
        ),
        sa.PrimaryKeyConstraint("experiment_key", "arm", name="pk_bandit_state"),
    )


def downgrade() -> None:
    """Drop every table (all data is lost)."""
    for table in (
        "bandit_state",
        "analysis_snapshots",
        "events",
        "exposure_conflicts",
        "exposures",
        "assignments",
        "experiment_versions",
        "experiments",
    ):
        op.drop_table(table)
