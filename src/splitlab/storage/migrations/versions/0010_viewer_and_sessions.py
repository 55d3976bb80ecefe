"""Read-only ``viewer`` API keys, and the secret that signs the dashboard's sessions.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = ("admin", "sdk")
_AFTER = (*_BEFORE, "viewer")
# 0003's explicit name went through the metadata's naming convention once more (as 0008's did, see
# 0009); from here on the check carries the name the metadata gives it, and a downgrade restores 0003's.
_NAME_BEFORE = "ck_api_keys_ck_api_keys_role"
_NAME_AFTER = "ck_api_keys_role"


def _roles(allowed: Sequence[str]) -> str:
    return "role IN ({})".format(", ".join(f"'{role}'" for role in allowed))


def _allow(allowed: Sequence[str], *, name: str, old_name: str) -> None:
    # Nothing refers to api_keys, so batch mode's copy and rename works on SQLite too.
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint(op.f(old_name), type_="check")
        batch.create_check_constraint(op.f(name), _roles(allowed))


def upgrade() -> None:
    """Allow role ``viewer``; give the deployment a random session secret (every worker of it reads the same one)."""
    _allow(_AFTER, name=_NAME_AFTER, old_name=_NAME_BEFORE)
    with op.batch_alter_table("deployment") as batch:
        batch.add_column(sa.Column("session_secret", sa.String(), nullable=True))
    deployment = sa.table("deployment", sa.column("session_secret", sa.String()))
    op.execute(deployment.update().values(session_secret=secrets.token_hex(32)))
    with op.batch_alter_table("deployment") as batch:
        batch.alter_column("session_secret", existing_type=sa.String(), nullable=False)


def downgrade() -> None:
    """Drop the session secret (every dashboard session ends) and role ``viewer`` (viewer keys are deleted)."""
    with op.batch_alter_table("deployment") as batch:
        batch.drop_column("session_secret")
    op.execute("DELETE FROM api_keys WHERE role = 'viewer'")
    _allow(_BEFORE, name=_NAME_BEFORE, old_name=_NAME_AFTER)
