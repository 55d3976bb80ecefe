"""A rolled-out experiment in the store: its variant kept with the status, the caller's writes in the
same transaction, and migration 0007 over a store holding rows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from sqlalchemy import insert, inspect, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from splitlab.storage import ExperimentVersion, Store, VersionConflictError, alembic_config
from splitlab.storage.tables import allocation_phases, assignments, experiment_versions, experiments

SPEC = {"key": "pricing", "variants": [{"key": "control"}, {"key": "cheaper"}]}
T0 = datetime(2024, 5, 1, tzinfo=UTC)


def _running(store: Store) -> None:
    store.experiments.create(key="pricing", spec=SPEC, actor="ana")
    store.experiments.set_status(key="pricing", status="running", actor="ana")


def test_the_variant_is_kept_with_the_status_and_cleared_when_it_leaves(store: Store) -> None:
    _running(store)
    rolled = store.experiments.set_status(
        key="pricing", status="rolled_out", actor="monitor", rolled_out_variant="cheaper", reason="LAUNCH"
    )
    assert rolled.diff == [
        {"path": "status", "old": "running", "new": "rolled_out"},
        {"path": "rolled_out_variant", "old": None, "new": "cheaper"},
    ]
    record = store.experiments.get(key="pricing")
    assert record is not None
    assert (record.status, record.rolled_out_variant, record.current_version) == ("rolled_out", "cheaper", 3)
    stopped = store.experiments.set_status(key="pricing", status="stopped", actor="ana")
    assert stopped.diff == [
        {"path": "status", "old": "rolled_out", "new": "stopped"},
        {"path": "rolled_out_variant", "old": "cheaper", "new": None},
    ]
    record = store.experiments.get(key="pricing")
    assert record is not None
    assert (record.status, record.rolled_out_variant) == ("stopped", None)
    assert [h.status for h in store.experiments.history(key="pricing")] == ["draft", "running", "rolled_out", "stopped"]


def test_rolled_out_takes_a_variant_and_nothing_else_does(store: Store) -> None:
    _running(store)
    with pytest.raises(TypeError, match="rolled_out_variant == None, must be a string"):
        store.experiments.set_status(key="pricing", status="rolled_out", actor="ana")
    with pytest.raises(ValueError, match="rolled_out_variant == 'cheaper', only status 'rolled_out' takes one"):
        store.experiments.set_status(key="pricing", status="paused", actor="ana", rolled_out_variant="cheaper")
    record = store.experiments.get(key="pricing")
    assert record is not None
    assert (record.status, record.current_version) == ("running", 2)


def test_then_writes_in_the_status_change_transaction(store: Store) -> None:
    _running(store)
    seen: list[int] = []

    def record_unit(conn: Connection, version: ExperimentVersion) -> None:
        seen.append(version.version)
        conn.execute(
            insert(assignments).values(
                experiment_key="pricing", unit_id="u1", variant="cheaper", bucket_version=1, assigned_at=T0
            )
        )

    store.experiments.set_status(
        key="pricing", status="rolled_out", actor="ana", rolled_out_variant="cheaper", then=record_unit
    )
    assert seen == [3]
    stored = store.assignments.get(experiment_key="pricing", unit_id="u1")
    assert stored is not None
    assert stored.variant == "cheaper"
    with pytest.raises(IntegrityError):  # a second row for u1: refused, and the status change with it
        store.experiments.set_status(key="pricing", status="stopped", actor="ana", then=record_unit)
    record = store.experiments.get(key="pricing")
    assert record is not None
    assert (record.status, record.rolled_out_variant, record.current_version) == ("rolled_out", "cheaper", 3)
    assert len(store.experiments.history(key="pricing")) == 3


def test_an_exception_raised_by_then_rolls_the_change_back(store: Store) -> None:
    _running(store)

    def refuse(conn: Connection, version: ExperimentVersion) -> None:
        conn.execute(
            insert(assignments).values(
                experiment_key="pricing", unit_id="u1", variant="cheaper", bucket_version=1, assigned_at=T0
            )
        )
        msg = f"not at version {version.version}"
        raise RuntimeError(msg)

    with pytest.raises(RuntimeError, match="not at version 3"):
        store.experiments.set_status(
            key="pricing", status="rolled_out", actor="ana", rolled_out_variant="cheaper", then=refuse
        )
    record = store.experiments.get(key="pricing")
    assert record is not None
    assert (record.status, record.rolled_out_variant, record.current_version) == ("running", None, 2)
    assert store.assignments.get(experiment_key="pricing", unit_id="u1") is None


def test_expected_version_refuses_a_status_change_on_a_moved_experiment(store: Store) -> None:
    _running(store)
    store.experiments.set_status(key="pricing", status="paused", actor="bo")
    with pytest.raises(VersionConflictError, match="'pricing' is at version 3, not expected_version == 2"):
        store.experiments.set_status(
            key="pricing", status="rolled_out", actor="ana", rolled_out_variant="cheaper", expected_version=2
        )
    record = store.experiments.get(key="pricing")
    assert record is not None
    assert (record.status, record.current_version) == ("paused", 3)


def _migrate(store: Store, revision: str) -> None:
    with store.engine.begin() as conn:
        if revision == "head":
            command.upgrade(alembic_config(conn), revision)
        else:
            command.downgrade(alembic_config(conn), revision)


def _rows_at_0006(conn: Connection) -> None:
    """What a store at 0006 holds: an experiment that ran (versions, a phase, an assignment) and a draft."""
    spec: dict[str, Any] = SPEC
    for key, status in (("pricing", "running"), ("draft", "draft")):
        conn.execute(
            insert(experiments).values(
                key=key,
                status=status,
                current_version=2 if status == "running" else 1,
                spec=spec | {"key": key},
                bucket_version=1,
                created_at=T0,
                updated_at=T0,
                created_by="ana",
            )
        )
    versions = [("pricing", 1, "draft", []), ("pricing", 2, "running", [{"path": "status"}]), ("draft", 1, "draft", [])]
    for key, version, status, diff in versions:
        conn.execute(
            insert(experiment_versions).values(
                experiment_key=key,
                version=version,
                spec=spec | {"key": key},
                diff=diff,
                status=status,
                changed_by="ana",
                changed_at=T0,
                reason=None,
            )
        )
    conn.execute(
        insert(allocation_phases).values(
            experiment_key="pricing", phase=1, started_at=T0, spec_version=2, weights={"control": 0.5, "cheaper": 0.5}
        )
    )
    conn.execute(
        insert(assignments).values(
            experiment_key="pricing", unit_id="u1", variant="cheaper", bucket_version=1, assigned_at=T0
        )
    )


def test_the_migration_upgrades_a_store_at_0006_with_rows_in_it(store: Store) -> None:
    _migrate(store, "0006")
    columns = {c["name"] for c in inspect(store.engine).get_columns("experiments")}
    assert "rolled_out_variant" not in columns
    with store.engine.begin() as conn:
        _rows_at_0006(conn)
    with pytest.raises(IntegrityError), store.engine.begin() as conn:  # 0006 knows no rolled_out
        conn.execute(update(experiments).where(experiments.c.key == "draft").values(status="rolled_out"))

    _migrate(store, "head")

    records = {r.key: r for r in store.experiments.list()}
    assert {k: (r.status, r.current_version, r.rolled_out_variant) for k, r in records.items()} == {
        "draft": ("draft", 1, None),
        "pricing": ("running", 2, None),
    }
    assert records["pricing"].spec == SPEC
    assert (records["pricing"].created_at, records["pricing"].created_by) == (T0, "ana")
    assert [(h.version, h.status, h.diff) for h in store.experiments.history(key="pricing")] == [
        (1, "draft", []),
        (2, "running", [{"path": "status"}]),
    ]
    assert [p.phase for p in store.experiments.phases(key="pricing")] == [1]
    stored = store.assignments.get(experiment_key="pricing", unit_id="u1")
    assert stored is not None
    assert stored.variant == "cheaper"
    inspector = inspect(store.engine)
    assert [c["name"] for c in inspector.get_check_constraints("experiments")] == ["ck_experiments_status"]
    assert [c["name"] for c in inspector.get_check_constraints("experiment_versions")] == [
        "ck_experiment_versions_status"
    ]
    # the rebuilt table is still the one every other table refers to, and its check still holds
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(
            insert(assignments).values(
                experiment_key="nope", unit_id="u1", variant="a", bucket_version=1, assigned_at=T0
            )
        )
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(text("UPDATE experiments SET status = 'launched' WHERE key = 'pricing'"))
    store.experiments.set_status(key="pricing", status="rolled_out", actor="ana", rolled_out_variant="cheaper")
    record = store.experiments.get(key="pricing")
    assert record is not None
    assert (record.status, record.rolled_out_variant) == ("rolled_out", "cheaper")


def test_a_downgrade_stops_rolled_out_experiments(store: Store) -> None:
    _running(store)
    store.experiments.set_status(key="pricing", status="rolled_out", actor="ana", rolled_out_variant="cheaper")
    _migrate(store, "0006")
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM experiments")).scalars().all() == ["stopped"]
        statuses = conn.execute(text("SELECT status FROM experiment_versions ORDER BY version")).scalars().all()
    assert statuses == ["draft", "running", "stopped"]
    _migrate(store, "head")
    record = store.experiments.get(key="pricing")
    assert record is not None
    assert (record.status, record.rolled_out_variant, record.current_version) == ("stopped", None, 3)
