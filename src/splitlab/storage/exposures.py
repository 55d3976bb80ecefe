"""Exposures: which variant each unit saw first, and when; units seen in two variants are flagged."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, bindparam, func, select, update
from sqlalchemy.engine import Connection

from splitlab.storage._sql import (
    Transactions,
    chunks,
    encode_json,
    undeclared_variant,
    unknown_experiment,
    upsert,
    variant_keys,
)
from splitlab.storage.errors import RefusedRowsError
from splitlab.storage.records import Exposure, ExposureConflict, StoredExposure, WriteResult
from splitlab.storage.tables import experiments, exposure_conflicts, exposures

__all__ = ["ExposureRepository"]


class ExposureRepository:
    """One row per (experiment, unit): the variant and the time the unit was first exposed.

    Rules, applied in one transaction per batch:

    - a new (experiment, unit) is inserted;
    - the same variant again keeps the earliest time (a later exposure never overwrites it; an
      earlier one that arrives late moves the time back, with its attributes);
    - another variant sets ``multiple_variants`` on the unit's row and records the variant and
      the time it was first seen in ``exposure_conflicts``; the recorded variant stays the first.
      Analysis excludes flagged units (their variant is ambiguous).

    Within a batch rows are applied in time order, so a unit's earliest exposure is its variant.
    Writes go in key order, so concurrent batches cannot deadlock on PostgreSQL.
    """

    def __init__(self, tx: Transactions) -> None:
        self._tx = tx

    def log(self, exposure: Exposure) -> WriteResult:
        """Log one exposure (see :meth:`log_many`)."""
        return self.log_many([exposure])

    def log_many(self, exposures_: Iterable[Exposure]) -> WriteResult:
        """Log a batch of exposures atomically and idempotently.

        The batch is validated first (known experiments, variants declared in the spec when it
        lists them, JSON attributes); any problem raises before anything is written.

        Returns:
            Rows received and new (experiment, unit) rows inserted.

        Raises:
            TypeError: An item is not an :class:`Exposure`.
            RefusedRowsError: Rows whose experiment does not exist or does not declare their variant
                (every such row, with its index and field).
            ValueError: Attributes that are not JSON.
        """
        batch = list(exposures_)
        for index, item in enumerate(batch):
            if not isinstance(item, Exposure):
                msg = f"exposures[{index}] is a {type(item).__name__}, must be an Exposure"
                raise TypeError(msg)
            if item.attributes is not None:
                encode_json(dict(item.attributes), name=f"exposures[{index}].attributes")
        rows = [
            {
                "experiment_key": e.experiment_key,
                "unit_id": e.unit_id,
                "variant": e.variant,
                "first_exposed_at": e.timestamp,
                "attributes": None if e.attributes is None else dict(e.attributes),
                "multiple_variants": False,
            }
            for e in batch
        ]
        with self._tx.write() as conn:
            check_experiments(conn, rows)
            inserted = write_exposures(conn, rows, dialect=self._tx.dialect)
        return WriteResult(received=len(rows), inserted=inserted)

    def get(self, *, experiment_key: str, unit_id: str) -> StoredExposure | None:
        """The unit's exposure to the experiment, or None."""
        with self._tx.read() as conn:
            row = conn.execute(
                select(exposures).where(exposures.c.experiment_key == experiment_key, exposures.c.unit_id == unit_id)
            ).first()
        return None if row is None else _exposure(row)

    def count(self, *, experiment_key: str, exclude_multiple: bool = False) -> int:
        """Exposed units of the experiment; with ``exclude_multiple``, only those seen in one variant."""
        query = select(func.count()).select_from(exposures).where(exposures.c.experiment_key == experiment_key)
        if exclude_multiple:
            query = query.where(exposures.c.multiple_variants.is_(False))
        with self._tx.read() as conn:
            return int(conn.execute(query).scalar_one())

    def variant_counts(self, *, experiment_keys: Iterable[str]) -> dict[str, dict[str, int]]:
        """Exposed units per variant of each experiment, units seen in several variants left out (one query)."""
        keys = builtins.list(dict.fromkeys(experiment_keys))
        counts: dict[str, dict[str, int]] = {key: {} for key in keys}
        with self._tx.read() as conn:
            for chunk in chunks(keys):
                query = (
                    select(exposures.c.experiment_key, exposures.c.variant, func.count())
                    .where(exposures.c.experiment_key.in_(chunk), exposures.c.multiple_variants.is_(False))
                    .group_by(exposures.c.experiment_key, exposures.c.variant)
                )
                for key, variant, n in conn.execute(query):
                    counts[key][variant] = int(n)
        return counts

    def conflicts(self, *, experiment_key: str) -> builtins.list[ExposureConflict]:
        """The extra variants units of the experiment were seen in, by unit then variant."""
        query = (
            select(exposure_conflicts)
            .where(exposure_conflicts.c.experiment_key == experiment_key)
            .order_by(exposure_conflicts.c.unit_id, exposure_conflicts.c.variant)
        )
        with self._tx.read() as conn:
            return [
                ExposureConflict(
                    experiment_key=r.experiment_key, unit_id=r.unit_id, variant=r.variant, first_seen_at=r.first_seen_at
                )
                for r in conn.execute(query)
            ]


def check_experiments(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Refuse the batch unless every row's experiment exists and (when the spec lists variants) declares its variant.

    Raises:
        RefusedRowsError: Every refused row, with its index and field.
    """
    specs = known_experiments(conn, {row["experiment_key"] for row in rows})
    problems: list[tuple[int, str, str]] = []
    for index, row in enumerate(rows):
        key, variant = row["experiment_key"], row["variant"]
        if key not in specs:
            problems.append((index, "experiment", unknown_experiment(key)))
        elif (declared := variant_keys(specs[key])) is not None and variant not in declared:
            problems.append((index, "variant", undeclared_variant(variant, key, declared)))
    if problems:
        raise RefusedRowsError("exposures", problems)


def known_experiments(conn: Connection, keys: Iterable[str]) -> dict[str, Any]:
    """The specs of those of ``keys`` that exist."""
    found: dict[str, Any] = {}
    for chunk in chunks(sorted(set(keys))):
        query = select(experiments.c.key, experiments.c.spec).where(experiments.c.key.in_(chunk))
        found.update((row.key, row.spec) for row in conn.execute(query))
    return found


def write_exposures(conn: Connection, rows: Sequence[dict[str, Any]], *, dialect: str) -> int:
    """Apply validated exposure rows in the caller's transaction; returns how many (experiment, unit) are new.

    Each (experiment, unit)'s earliest row is its candidate first exposure. Candidates are
    inserted, and every write is issued, in key order, so concurrent batches on PostgreSQL lock
    rows in the same order and cannot deadlock.
    """
    if not rows:
        return 0
    by_time = sorted(rows, key=lambda r: r["first_exposed_at"])
    earliest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in by_time:
        earliest.setdefault((row["experiment_key"], row["unit_id"]), row)
    statement = (
        upsert(exposures, dialect)
        .on_conflict_do_nothing(index_elements=[exposures.c.experiment_key, exposures.c.unit_id])
        .returning(exposures.c.unit_id)
    )
    # RETURNING gives the rows actually inserted on both backends (an executemany's rowcount
    # is not reported through SQLAlchemy's batched "insertmanyvalues" path on PostgreSQL).
    inserted = len(conn.execute(statement, [earliest[key] for key in sorted(earliest)]).all())
    if inserted < len(rows):
        _reconcile(conn, by_time, dialect=dialect)
    return inserted


def _reconcile(conn: Connection, rows: Sequence[dict[str, Any]], *, dialect: str) -> None:
    """Rows (in time order) that met a stored exposure: move the first time back, or record a second variant.

    A stored row's variant never changes, so comparing with it after the insert is safe under
    concurrency; the UPDATEs re-check their condition in SQL.
    """
    stored = _stored_variants(conn, {(r["experiment_key"], r["unit_id"]) for r in rows})
    earlier: dict[tuple[str, str], dict[str, Any]] = {}
    seconds: dict[tuple[str, str, str], datetime] = {}
    for row in rows:
        key = (row["experiment_key"], row["unit_id"])
        variant, first = stored[key]
        if row["variant"] == variant:
            if row["first_exposed_at"] < first:
                earlier.setdefault(key, row)  # time order: the first one found is the earliest
        else:
            seconds.setdefault((*key, row["variant"]), row["first_exposed_at"])
    if earlier:
        time = bindparam("b_time", type_=exposures.c.first_exposed_at.type)
        conn.execute(
            update(exposures)
            .where(
                exposures.c.experiment_key == bindparam("b_experiment"),
                exposures.c.unit_id == bindparam("b_unit"),
                exposures.c.first_exposed_at > time,
            )
            .values(first_exposed_at=time, attributes=bindparam("b_attributes")),
            [
                {"b_experiment": e, "b_unit": u, "b_time": r["first_exposed_at"], "b_attributes": r["attributes"]}
                for (e, u), r in sorted(earlier.items())
            ],
        )
    if seconds:
        conn.execute(
            update(exposures)
            .where(
                exposures.c.experiment_key == bindparam("b_experiment"),
                exposures.c.unit_id == bindparam("b_unit"),
                exposures.c.multiple_variants.is_(False),
            )
            .values(multiple_variants=True),
            [{"b_experiment": e, "b_unit": u} for e, u in sorted({(e, u) for e, u, _ in seconds})],
        )
        statement = upsert(exposure_conflicts, dialect)
        statement = statement.on_conflict_do_update(
            index_elements=[
                exposure_conflicts.c.experiment_key,
                exposure_conflicts.c.unit_id,
                exposure_conflicts.c.variant,
            ],
            set_={"first_seen_at": statement.excluded.first_seen_at},
            where=statement.excluded.first_seen_at < exposure_conflicts.c.first_seen_at,
        )
        conn.execute(
            statement,
            [
                {"experiment_key": e, "unit_id": u, "variant": v, "first_seen_at": t}
                for (e, u, v), t in sorted(seconds.items())
            ],
        )


def _stored_variants(conn: Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, datetime]]:
    by_experiment: dict[str, list[str]] = {}
    for experiment_key, unit_id in keys:
        by_experiment.setdefault(experiment_key, []).append(unit_id)
    found: dict[tuple[str, str], tuple[str, datetime]] = {}
    for experiment_key, unit_ids in by_experiment.items():
        for chunk in chunks(unit_ids):
            query = select(exposures.c.unit_id, exposures.c.variant, exposures.c.first_exposed_at).where(
                and_(exposures.c.experiment_key == experiment_key, exposures.c.unit_id.in_(chunk))
            )
            found.update(((experiment_key, r.unit_id), (r.variant, r.first_exposed_at)) for r in conn.execute(query))
    return found


def _exposure(row: Row[Any]) -> StoredExposure:
    return StoredExposure(
        experiment_key=row.experiment_key,
        unit_id=row.unit_id,
        variant=row.variant,
        first_exposed_at=row.first_exposed_at,
        attributes=row.attributes,
        multiple_variants=bool(row.multiple_variants),
    )
