"""Allocation phases: one row per period in which an experiment's variant weights were fixed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _weights(spec: dict[str, Any]) -> dict[str, float] | None:
    """The spec's fixed weights (an equal split when none is given); None for a bandit."""
    if (spec.get("allocation") or {}).get("method") == "bandit":
        return None
    variants = [v for v in spec.get("variants") or [] if isinstance(v, dict) and "key" in v]
    if not variants:
        return None
    return {str(v["key"]): float(v.get("weight", 1 / len(variants))) for v in variants}


def _backfill(table: sa.Table) -> None:
    """Phases of the experiments that ran before phases were recorded, replayed from their audit log.

    The rule is the one ``splitlab.operations.experiments`` applies from now on: the first move to
    ``running`` starts phase 1, and every later version whose weights differ starts the next one.
    """
    versions = sa.table(
        "experiment_versions",
        sa.column("experiment_key", sa.String()),
        sa.column("version", sa.Integer()),
        sa.column("spec", _json()),
        sa.column("status", sa.String()),
        sa.column("changed_at", sa.DateTime(timezone=True)),
    )
    rows = op.get_bind().execute(sa.select(versions).order_by(versions.c.experiment_key, versions.c.version)).all()
    phases: list[dict[str, Any]] = []
    current: dict[str, dict[str, float] | None] = {}
    numbers: dict[str, int] = {}
    for row in rows:
        key = row.experiment_key
        started = key in numbers
        if not started and row.status != "running":
            continue
        weights = _weights(row.spec)
        if weights is None or (started and current.get(key) == weights):
            continue
        numbers[key] = numbers.get(key, 0) + 1
        current[key] = weights
        phase = {"phase": numbers[key], "started_at": row.changed_at, "spec_version": row.version, "weights": weights}
        phases.append({"experiment_key": key, **phase})
    if phases:
        op.bulk_insert(table, phases)


def upgrade() -> None:
    """Create ``allocation_phases`` (experiment, phase, start, spec version, weights); fill it from history."""
    table = op.create_table(
        "allocation_phases",
        sa.Column("experiment_key", sa.String(), nullable=False),
        sa.Column("phase", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("spec_version", sa.Integer(), nullable=False),
        sa.Column("weights", _json(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_key"], ["experiments.key"], name="fk_allocation_phases_experiment_key_experiments"
        ),
        sa.PrimaryKeyConstraint("experiment_key", "phase", name="pk_allocation_phases"),
    )
    _backfill(table)


def downgrade() -> None:
    """Drop ``allocation_phases``."""
    op.drop_table("allocation_phases")
