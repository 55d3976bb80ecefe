"""Sticky assignments: the variant a unit was given, kept so later spec changes do not move it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import Row, bindparam, select
from sqlalchemy.engine import Connection

from splitlab.storage._sql import (
    Transactions,
    chunks,
    now,
    sqlite_time,
    undeclared_variant,
    unknown_experiment,
    upsert,
    variant_keys,
)
from splitlab.storage.errors import NotFoundError
from splitlab.storage.records import StoredAssignment, check_text
from splitlab.storage.tables import assignments, experiments

__all__ = ["AssignmentRepository"]


class AssignmentRepository:
    """At most one stored assignment per (experiment, unit); the first one recorded wins.

    ``record_many`` inserts only where no assignment exists under the same or a newer bucket
    version, and returns what is stored afterwards: when two processes assign the same unit at
    once, both get the first writer's variant. An assignment recorded under an older bucket
    version (before a re-randomisation) is replaced.
    """

    def __init__(self, tx: Transactions) -> None:
        self._tx = tx

    def get(self, *, experiment_key: str, unit_id: str) -> StoredAssignment | None:
        """The unit's stored assignment, or None."""
        with self._tx.read() as conn:
            row = conn.execute(
                select(assignments).where(
                    assignments.c.experiment_key == experiment_key, assignments.c.unit_id == unit_id
                )
            ).first()
        return None if row is None else _assignment(row)

    def get_many(self, *, experiment_key: str, unit_ids: Iterable[str]) -> dict[str, StoredAssignment]:
        """Stored assignments of the given units that have one, by unit id."""
        with self._tx.read() as conn:
            return _stored(conn, experiment_key, list(dict.fromkeys(unit_ids)))

    def record(self, *, experiment_key: str, unit_id: str, variant: str, bucket_version: int = 1) -> str:
        """Record one assignment if the unit has none; returns the variant stored (maybe an earlier one)."""
        stored = self.record_many(
            experiment_key=experiment_key, variants={unit_id: variant}, bucket_version=bucket_version
        )
        return stored[unit_id]

    def record_many(
        self, *, experiment_key: str, variants: Mapping[str, str], bucket_version: int = 1
    ) -> dict[str, str]:
        """Record assignments (unit id -> variant) where none is stored yet, atomically.

        Args:
            experiment_key: The experiment.
            variants: The variant of each unit.
            bucket_version: The experiment's bucket version the assignments were made under
                (default 1). A stored assignment with an older bucket version is replaced.

        Returns:
            The stored variant of every unit in ``variants``: the given one where it was new,
            the earlier one where the unit was already assigned.

        Raises:
            NotFoundError: No experiment ``experiment_key``.
            ValueError: An empty unit id or variant, or a variant not in the experiment's spec.
        """
        _check_batch(variants, bucket_version)
        if not variants:
            return {}
        stamp = now()
        rows = [
            {
                "experiment_key": experiment_key,
                "unit_id": unit_id,
                "variant": variant,
                "bucket_version": bucket_version,
                "assigned_at": stamp,
            }
            for unit_id, variant in sorted(variants.items())  # key order: concurrent batches cannot deadlock
        ]
        statement = _upsert_statement(self._tx.dialect)
        with self._tx.write() as conn:
            _check_variants(conn, experiment_key, set(variants.values()))
            conn.execute(statement, rows)
            stored = _stored(conn, experiment_key, list(variants))
        return {unit_id: stored[unit_id].variant for unit_id in variants}

    def add_many(self, *, experiment_key: str, variants: Mapping[str, str], bucket_version: int = 1) -> int:
        """:meth:`record_many` without reading back what is stored: for writers nobody waits on.

        The same rule (a unit keeps the first assignment recorded under its bucket version) and
        the same checks, but no second query and no per-row statement: on SQLite the batch is one
        JSON parameter that ``json_each`` unpacks, on PostgreSQL one driver-level ``executemany``.
        So a service records thousands of enrolments a second in the background, and (on SQLite)
        the writing thread releases and retakes the GIL once per batch, not once per row, which
        would stall the thread serving requests at every hand-over.

        Returns:
            Rows written (units that had no assignment, or one under an older bucket version).
        """
        _check_batch(variants, bucket_version)
        if not variants:
            return 0
        stamp = now()
        if self._tx.dialect == "sqlite":
            params = (experiment_key, bucket_version, sqlite_time(stamp), json.dumps(variants, ensure_ascii=False))
            with self._tx.write() as conn:
                _check_variants(conn, experiment_key, set(variants.values()))
                return int(conn.exec_driver_sql(_SQLITE_JSON_UPSERT, params).rowcount)
        rows = [(experiment_key, u, v, bucket_version, stamp) for u, v in sorted(variants.items())]
        with self._tx.write() as conn:
            _check_variants(conn, experiment_key, set(variants.values()))
            sql, to_params = _compiled_upsert(conn)
            result = conn.exec_driver_sql(sql, [to_params(row) for row in rows])
            return int(result.rowcount)


def _check_batch(variants: Mapping[str, str], bucket_version: int) -> None:
    if isinstance(bucket_version, bool) or not isinstance(bucket_version, int) or bucket_version < 1:
        msg = f"bucket_version == {bucket_version!r}, must be an integer >= 1"
        raise ValueError(msg)
    for unit_id, variant in variants.items():
        # The common case in one cheap test (a service records thousands a second); check_text words the rest.
        if type(unit_id) is not str or type(variant) is not str or not unit_id.strip() or not variant.strip():
            check_text(unit_id, name="unit_id")
            check_text(variant, name=f"variant of unit {unit_id!r}")


_COLUMNS = ("experiment_key", "unit_id", "variant", "bucket_version", "assigned_at")


def _upsert_statement(dialect: str) -> Any:
    statement = upsert(assignments, dialect)
    return statement.on_conflict_do_update(
        index_elements=[assignments.c.experiment_key, assignments.c.unit_id],
        set_={
            "variant": statement.excluded.variant,
            "bucket_version": statement.excluded.bucket_version,
            "assigned_at": statement.excluded.assigned_at,
        },
        where=assignments.c.bucket_version < statement.excluded.bucket_version,
    )


# The first-writer-wins upsert of _upsert_statement, fed by one JSON object (unit id -> variant).
# "WHERE true" is SQLite's required disambiguation of INSERT ... SELECT ... ON CONFLICT.
_SQLITE_JSON_UPSERT = """
INSERT INTO assignments (experiment_key, unit_id, variant, bucket_version, assigned_at)
SELECT ?1, unit.key, unit.value, ?2, ?3 FROM json_each(?4) AS unit WHERE true
ON CONFLICT (experiment_key, unit_id) DO UPDATE SET
    variant = excluded.variant, bucket_version = excluded.bucket_version, assigned_at = excluded.assigned_at
WHERE assignments.bucket_version < excluded.bucket_version
"""


def _compiled_upsert(conn: Connection) -> tuple[str, Callable[[tuple[Any, ...]], Any]]:
    """The driver-level SQL of the first-writer-wins upsert, and how a row tuple becomes its parameters."""
    compiled = _upsert_statement(conn.dialect.name).compile(
        dialect=conn.dialect, column_keys=list(_COLUMNS), for_executemany=True
    )
    positions = compiled.positiontup
    if positions is None:  # named parameters (psycopg)
        return compiled.string, lambda row: dict(zip(_COLUMNS, row, strict=True))
    order = [_COLUMNS.index(name) for name in positions]
    return compiled.string, lambda row: tuple(row[i] for i in order)


_SPEC_OF = select(experiments.c.spec).where(experiments.c.key == bindparam("experiment_key"))
"""Built once: building a select costs more than running it."""


def _check_variants(conn: Connection, experiment_key: str, used: set[str]) -> None:
    spec = conn.execute(_SPEC_OF, {"experiment_key": experiment_key}).scalar()
    if spec is None:
        raise NotFoundError(unknown_experiment(experiment_key))
    known = variant_keys(spec)
    if known is not None and not used <= known:
        raise ValueError(
            "; ".join(undeclared_variant(variant, experiment_key, known) for variant in sorted(used - known))
        )


def _stored(conn: Connection, experiment_key: str, unit_ids: list[str]) -> dict[str, StoredAssignment]:
    found: dict[str, StoredAssignment] = {}
    for chunk in chunks(unit_ids):
        query = select(assignments).where(
            assignments.c.experiment_key == experiment_key, assignments.c.unit_id.in_(chunk)
        )
        found.update((row.unit_id, _assignment(row)) for row in conn.execute(query))
    return found


def _assignment(row: Row[Any]) -> StoredAssignment:
    return StoredAssignment(
        experiment_key=row.experiment_key,
        unit_id=row.unit_id,
        variant=row.variant,
        bucket_version=row.bucket_version,
        assigned_at=row.assigned_at,
    )
