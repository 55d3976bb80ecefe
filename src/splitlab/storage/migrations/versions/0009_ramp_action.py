"""The monitor's ``ramp`` action: a canary moved to its next step.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = ("stop", "rollback", "promote")
_AFTER = (*_BEFORE, "ramp")


def _actions(allowed: Sequence[str]) -> str:
    return "action IN ({})".format(", ".join(f"'{action}'" for action in allowed))


# 0008's explicit name went through the metadata's naming convention once more; from here on the
# check carries the name the metadata gives it (storage/tables.py), and a downgrade restores 0008's.
_NAME_BEFORE = "ck_monitor_actions_ck_monitor_actions_action"
_NAME_AFTER = "ck_monitor_actions_action"


def _allow(allowed: Sequence[str], *, name: str, old_name: str) -> None:
    # Nothing refers to monitor_actions, so batch mode's copy and rename works on SQLite too.
    with op.batch_alter_table("monitor_actions") as batch:
        batch.drop_constraint(op.f(old_name), type_="check")
        batch.create_check_constraint(op.f(name), _actions(allowed))


def upgrade() -> None:
    """Allow action ``ramp``."""
    _allow(_AFTER, name=_NAME_AFTER, old_name=_NAME_BEFORE)


def downgrade() -> None:
    """Drop ``ramp``: the ramps recorded are deleted (their experiment versions keep the weights and reasons)."""
    op.execute("DELETE FROM monitor_actions WHERE action = 'ramp'")
    _allow(_BEFORE, name=_NAME_BEFORE, old_name=_NAME_AFTER)
