"""The store's schema as SQLAlchemy Core tables: one definition for SQLite and PostgreSQL.

Alembic's migrations (``splitlab/storage/migrations``) create exactly these tables; a test
compares the migrated database with this metadata, so the two cannot drift apart.

Times are timezone-aware UTC in Python. PostgreSQL stores them as ``timestamptz``; SQLite has no
time type, so they are stored as fixed-width UTC text ``YYYY-MM-DD HH:MM:SS.ffffff``, which sorts
and compares in time order. JSON columns are ``jsonb`` on PostgreSQL and JSON text on SQLite.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "EXPERIMENT_STATUSES",
    "MONITOR_ACTIONS",
    "NOTIFICATION_STATUSES",
    "UtcDateTime",
    "allocation_phases",
    "analysis_snapshots",
    "api_keys",
    "assignments",
    "bandit_rewards",
    "bandit_state",
    "deployment",
    "events",
    "experiment_versions",
    "experiments",
    "exposure_conflicts",
    "exposures",
    "metadata",
    "metric_definitions",
    "monitor_actions",
    "monitor_state",
    "notification_deliveries",
    "notification_outbox",
]

EXPERIMENT_STATUSES = ("draft", "running", "paused", "stopped", "archived", "rolled_out")
"""The lifecycle states an experiment can be in; which transitions are allowed is the domain's rule."""

NOTIFICATION_STATUSES = ("pending", "delivered", "failed")
"""The states of a notification in the outbox: waiting to be (re)sent, delivered, or given up."""


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC time on every backend; naive times are refused, not guessed.

    Bound values are converted to UTC (and stored without offset on SQLite); loaded values are
    always returned with ``tzinfo=UTC``, whatever the PostgreSQL session time zone.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """UTC; naive on SQLite (which cannot store an offset)."""
        if value is None:
            return None
        utc = to_utc(value, name="timestamp")
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:  # noqa: ARG002
        """Always aware UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def to_utc(value: object, *, name: str) -> datetime:
    """``value`` as an aware UTC datetime.

    Raises:
        TypeError: ``value`` is not a datetime.
        ValueError: ``value`` is naive (no time zone); the message names ``name``.
    """
    if not isinstance(value, datetime):
        msg = f"{name} == {value!r}, must be a timezone-aware datetime"
        raise TypeError(msg)
    if value.tzinfo is None or value.utcoffset() is None:
        msg = f"{name} == {value.isoformat()}, must be timezone-aware (e.g. datetime.now(UTC))"
        raise ValueError(msg)
    return value.astimezone(UTC)


def _json() -> TypeEngine[Any]:
    """``jsonb`` on PostgreSQL, JSON text on SQLite; a Python None is SQL NULL, not the JSON literal null."""
    return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_statuses = ", ".join(f"'{s}'" for s in EXPERIMENT_STATUSES)
# SQLite makes only an INTEGER PRIMARY KEY an alias of the rowid (auto-incrementing); BIGINT is not.
_BigId = BigInteger().with_variant(Integer(), "sqlite")

experiments = Table(
    "experiments",
    metadata,
    Column("key", String, primary_key=True),
    Column("status", String, nullable=False),
    Column("current_version", Integer, nullable=False),
    Column("spec", _json(), nullable=False),
    Column("bucket_version", Integer, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("created_by", String, nullable=False),
    Column("rolled_out_variant", String, nullable=True),  # the variant served to every unit while rolled_out
    CheckConstraint(f"status IN ({_statuses})", name="status"),
)

experiment_versions = Table(
    "experiment_versions",
    metadata,
    Column("experiment_key", String, ForeignKey("experiments.key"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("spec", _json(), nullable=False),
    Column("diff", _json(), nullable=False),
    Column("status", String, nullable=False),
    Column("changed_by", String, nullable=False),
    Column("changed_at", UtcDateTime(), nullable=False),
    Column("reason", String, nullable=True),
    CheckConstraint(f"status IN ({_statuses})", name="status"),
)

allocation_phases = Table(
    "allocation_phases",
    metadata,
    Column("experiment_key", String, ForeignKey("experiments.key"), primary_key=True),
    Column("phase", Integer, primary_key=True),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("spec_version", Integer, nullable=False),
    Column("weights", _json(), nullable=False),
)

assignments = Table(
    "assignments",
    metadata,
    Column("experiment_key", String, ForeignKey("experiments.key"), primary_key=True),
    Column("unit_id", String, primary_key=True),
    Column("variant", String, nullable=False),
    Column("bucket_version", Integer, nullable=False),
    Column("assigned_at", UtcDateTime(), nullable=False),
)

exposures = Table(
    "exposures",
    metadata,
    Column("experiment_key", String, ForeignKey("experiments.key"), primary_key=True),
    Column("unit_id", String, primary_key=True),
    Column("variant", String, nullable=False),
    Column("first_exposed_at", UtcDateTime(), nullable=False),
    Column("attributes", _json(), nullable=True),
    Column("multiple_variants", Boolean, nullable=False),
)

exposure_conflicts = Table(
    "exposure_conflicts",
    metadata,
    Column("experiment_key", String, primary_key=True),
    Column("unit_id", String, primary_key=True),
    Column("variant", String, primary_key=True),
    Column("first_seen_at", UtcDateTime(), nullable=False),
    ForeignKeyConstraint(["experiment_key", "unit_id"], ["exposures.experiment_key", "exposures.unit_id"]),
)

events = Table(
    "events",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("event_id", String, nullable=False),
    Column("unit_id", String, nullable=False),
    Column("name", String, nullable=False),
    Column("value", Double, nullable=True),
    Column("timestamp", UtcDateTime(), nullable=False),
    Column("properties", _json(), nullable=True),
    Column("ingested_at", UtcDateTime(), nullable=False),
    UniqueConstraint("event_id"),
    Index(None, "name", "unit_id", "timestamp"),
)

analysis_snapshots = Table(
    "analysis_snapshots",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("experiment_key", String, ForeignKey("experiments.key"), nullable=False),
    Column("spec_version", Integer, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("payload", _json(), nullable=False),
    Index(None, "experiment_key", "id"),
)

bandit_state = Table(
    "bandit_state",
    metadata,
    Column("experiment_key", String, ForeignKey("experiments.key"), primary_key=True),
    Column("arm", String, primary_key=True),
    Column("n", BigInteger, nullable=False),
    Column("sum", Double, nullable=False),
    Column("sum_sq", Double, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

bandit_rewards = Table(
    "bandit_rewards",
    metadata,
    Column("experiment_key", String, ForeignKey("experiments.key"), primary_key=True),
    Column("bucket_version", Integer, primary_key=True),
    Column("unit_id", String, primary_key=True),
    Column("arm", String, nullable=False),
    Column("reward", Double, nullable=False),
    Column("recorded_at", UtcDateTime(), nullable=False),
)

deployment = Table(
    "deployment",
    metadata,
    Column("id", String, primary_key=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("session_secret", String, nullable=False),
)

metric_definitions = Table(
    "metric_definitions",
    metadata,
    Column("name", String, primary_key=True),
    Column("definition", _json(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("updated_by", String, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String, primary_key=True),
    Column("name", String, nullable=False),
    Column("role", String, nullable=False),
    Column("secret_hash", String, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("created_by", String, nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
    CheckConstraint("role IN ('admin', 'sdk', 'viewer')", name="role"),
)

_notification_statuses = ", ".join(f"'{s}'" for s in NOTIFICATION_STATUSES)

notification_outbox = Table(
    "notification_outbox",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("dedupe_key", String, nullable=False),
    Column("experiment_key", String, nullable=True),
    Column("kind", String, nullable=False),
    Column("snapshot_id", BigInteger, nullable=True),
    Column("target_name", String, nullable=False),
    Column("target_url", String, nullable=False),
    Column("format", String, nullable=False),
    Column("secret_env", String, nullable=True),
    Column("body", _json(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("status", String, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    Column("last_error", String, nullable=True),
    Column("delivered_at", UtcDateTime(), nullable=True),
    UniqueConstraint("dedupe_key"),
    CheckConstraint(f"status IN ({_notification_statuses})", name="status"),
    CheckConstraint("format IN ('json', 'slack')", name="format"),
    Index(None, "status", "next_attempt_at"),
    Index(None, "experiment_key", "id"),
)

notification_deliveries = Table(
    "notification_deliveries",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("outbox_id", BigInteger, ForeignKey("notification_outbox.id"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("attempted_at", UtcDateTime(), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", String, nullable=True),
    Column("duration_ms", Double, nullable=False),
    Index(None, "outbox_id", "attempt"),
)

MONITOR_ACTIONS = ("stop", "rollback", "promote", "ramp")
"""What the monitor does to an experiment: stop it, roll it back (pause it), promote a winner (roll it out), ramp a
canary to its next step."""

monitor_state = Table(
    "monitor_state",
    metadata,
    Column("experiment_key", String, ForeignKey("experiments.key"), primary_key=True),
    Column("next_run_at", UtcDateTime(), nullable=False),
    Column("last_run_at", UtcDateTime(), nullable=True),
    Column("lease_owner", String, nullable=True),
    Column("lease_until", UtcDateTime(), nullable=True),
    Column("last_snapshot_id", BigInteger, nullable=True),
    Column("last_decision", String, nullable=True),
    Column("conditions", _json(), nullable=False),
    Column("summary", _json(), nullable=True),
    Column("last_error", String, nullable=True),
    Column("runs", Integer, nullable=False),
)

_monitor_actions = ", ".join(f"'{a}'" for a in MONITOR_ACTIONS)

monitor_actions = Table(
    "monitor_actions",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("experiment_key", String, ForeignKey("experiments.key"), nullable=False),
    Column("action", String, nullable=False),
    Column("variant", String, nullable=True),
    Column("snapshot_id", BigInteger, nullable=True),
    Column("decision", String, nullable=True),
    Column("reasons", _json(), nullable=False),
    Column("actor", String, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("experiment_version", Integer, nullable=True),
    CheckConstraint(f"action IN ({_monitor_actions})", name="action"),
    Index(None, "experiment_key", "id"),
)
