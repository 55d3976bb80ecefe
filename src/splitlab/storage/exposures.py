"""Exposures: which variant each unit saw first, and when; units seen in two variants are flagged."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, bindparam, func, select, update
from sqlalchemy.engine import Connection

from splitlab.storage._sql import (
    Transactions,
    before_start,
    chunks,
    encode_json,
    in_future,
    not_running,
    now,
    undeclared_variant,
    unknown_experiment,
    upsert,
    variant_keys,
)
from splitlab.storage.errors import RefusedRowsError
from splitlab.storage.records import Exposure, ExposureConflict, StoredExposure, WriteResult
from splitlab.storage.tables import experiment_versions, experiments, exposure_conflicts, exposures

__all__ = ["CLOCK_SKEW", "EARLIEST_TIME", "ExperimentState", "ExposureRepository", "time_problem"]

CLOCK_SKEW = timedelta(minutes=5)
"""How far past the store's clock an exposure may be dated (the default of every writer's ``clock_skew``)."""

EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
"""The earliest time of an exposure the store takes (backfills included), and of an event the service takes.

Earlier times are mistakes (a zero date, a time in seconds read as milliseconds) that would
stretch an experiment's days running and daily series over centuries.
"""


def time_problem(time: datetime, *, latest: datetime, clock_skew: timedelta) -> tuple[str, str] | None:
    """``(reason, message)`` for a time outside the store's range, or None.

    The range runs from :data:`EARLIEST_TIME` [``too_early``] to ``latest``, the store's clock
    plus ``clock_skew`` [``in_future``].
    """
    if time < EARLIEST_TIME:
        return "too_early", f"{time.isoformat()} is before {EARLIEST_TIME:%Y-%m-%dT%H:%M:%SZ}, the earliest time taken"
    if time > latest:
        return "in_future", in_future(time, latest, clock_skew)
    return None


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

    The store takes exposures only while their experiment runs, dated from its start (the time it
    first became running; a pause and a resume do not move it; never before :data:`EARLIEST_TIME`)
    to now plus a clock-skew allowance (see :func:`check_experiments`).
    """

    def __init__(self, tx: Transactions) -> None:
        self._tx = tx

    def log(self, exposure: Exposure) -> WriteResult:
        """Log one exposure (see :meth:`log_many`)."""
        return self.log_many([exposure])

    def log_many(
        self, exposures_: Iterable[Exposure], *, clock_skew: timedelta = CLOCK_SKEW, backfill: bool = False
    ) -> WriteResult:
        """Log a batch of exposures atomically and idempotently.

        The batch is validated first (known and running experiments, variants declared in the spec
        when it lists them, times from the experiment's start to now plus ``clock_skew``, JSON
        attributes); any problem raises before anything is written.

        Args:
            exposures_: The exposures.
            clock_skew: How far past the store's clock a time may be (clients' clocks run fast);
                default :data:`CLOCK_SKEW`, 5 minutes.
            backfill: Synthetic or historical traffic written on purpose (the simulation plays the
                days up to now of an experiment it has just started): times before the start are
                taken. The experiment must still be running and no time may be in the future.
                Default False, as for live ingestion.

        Returns:
            Rows received, new (experiment, unit) rows inserted, and conflicts (rows of a unit in
            another variant than its recorded one).

        Raises:
            TypeError: An item is not an :class:`Exposure`.
            RefusedRowsError: Rows the experiments refuse (see :func:`check_experiments`), every one
                with its index and field.
            ValueError: Attributes that are not JSON, or a negative ``clock_skew``.
        """
        if clock_skew < timedelta(0):
            msg = f"clock_skew == {clock_skew}, must be >= 0"
            raise ValueError(msg)
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
            check_experiments(conn, rows, clock_skew=clock_skew, backfill=backfill)
            inserted, conflicts = write_exposures(conn, rows, dialect=self._tx.dialect)
        return WriteResult(received=len(rows), inserted=inserted, conflicts=conflicts)

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

    def missing_attributes(self, *, experiment_key: str, names: Iterable[str]) -> builtins.list[str]:
        """Those of ``names`` that no exposure of the experiment carries as an attribute (one query per name)."""
        missing = []
        with self._tx.read() as conn:
            for name in dict.fromkeys(names):
                carried = select(exposures.c.unit_id).where(
                    exposures.c.experiment_key == experiment_key, exposures.c.attributes[name].as_string().is_not(None)
                )
                if conn.execute(carried.limit(1)).first() is None:
                    missing.append(name)
        return missing

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


@dataclass(frozen=True, slots=True)
class ExperimentState:
    """What the exposure checks read of an experiment: its spec, status and start (None: never ran)."""

    spec: Any
    status: str
    started_at: datetime | None


def check_experiments(
    conn: Connection, rows: Sequence[dict[str, Any]], *, clock_skew: timedelta, backfill: bool = False
) -> None:
    """Refuse the batch unless every row fits its experiment; the one place these rules are written.

    A row is refused, with the first reason that applies (its code in brackets), when its
    experiment does not exist [``unknown_experiment``], its variant is not declared by a spec that
    lists variants [``undeclared_variant``], the experiment is not running [``not_running``], its
    time is out of the store's range (:func:`time_problem`: before :data:`EARLIEST_TIME`
    [``too_early``], or later than now plus ``clock_skew`` [``in_future``]), or its time is before
    the experiment started, that is first became running [``before_start``; not checked with
    ``backfill``].

    Raises:
        RefusedRowsError: Every refused row, with its index, field and reason.
    """
    states = experiment_states(conn, {row["experiment_key"] for row in rows})
    latest = now() + clock_skew
    problems: list[tuple[int, str, str]] = []
    reasons: list[str] = []
    for index, row in enumerate(rows):
        state = states.get(row["experiment_key"])
        problem = _problem(row, state, latest=latest, clock_skew=clock_skew, backfill=backfill)
        if problem is not None:
            field, message, reason = problem
            problems.append((index, field, message))
            reasons.append(reason)
    if problems:
        raise RefusedRowsError("exposures", problems, reasons=reasons)


def _problem(
    row: dict[str, Any], state: ExperimentState | None, *, latest: datetime, clock_skew: timedelta, backfill: bool
) -> tuple[str, str, str] | None:
    """``(field, message, reason)`` of the first rule of :func:`check_experiments` the row breaks, or None."""
    key, variant, time = row["experiment_key"], row["variant"], row["first_exposed_at"]
    if state is None:
        return "experiment", unknown_experiment(key), "unknown_experiment"
    if (declared := variant_keys(state.spec)) is not None and variant not in declared:
        return "variant", undeclared_variant(variant, key, declared), "undeclared_variant"
    if state.status != "running" or state.started_at is None:
        return "experiment", not_running(key, state.status), "not_running"
    if (out_of_range := time_problem(time, latest=latest, clock_skew=clock_skew)) is not None:
        reason, message = out_of_range
        return "timestamp", message, reason
    if not backfill and time < state.started_at:
        return "timestamp", before_start(time, key, state.started_at), "before_start"
    return None


def experiment_states(conn: Connection, keys: Iterable[str]) -> dict[str, ExperimentState]:
    """The spec, status and start of those of ``keys`` that exist (two queries per chunk of keys)."""
    found: dict[str, ExperimentState] = {}
    for chunk in chunks(sorted(set(keys))):
        starts = dict(
            conn.execute(
                select(experiment_versions.c.experiment_key, func.min(experiment_versions.c.changed_at))
                .where(experiment_versions.c.experiment_key.in_(chunk), experiment_versions.c.status == "running")
                .group_by(experiment_versions.c.experiment_key)
            ).all()
        )
        query = select(experiments.c.key, experiments.c.spec, experiments.c.status).where(experiments.c.key.in_(chunk))
        found.update(
            (row.key, ExperimentState(spec=row.spec, status=row.status, started_at=starts.get(row.key)))
            for row in conn.execute(query)
        )
    return found


def write_exposures(conn: Connection, rows: Sequence[dict[str, Any]], *, dialect: str) -> tuple[int, int]:
    """Apply validated exposure rows in the caller's transaction.

    Returns:
        How many (experiment, unit) are new, and how many rows named another variant than the
        unit's recorded one (conflicts).

    Each (experiment, unit)'s earliest row is its candidate first exposure. Candidates are
    inserted, and every write is issued, in key order, so concurrent batches on PostgreSQL lock
    rows in the same order and cannot deadlock.
    """
    if not rows:
        return 0, 0
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
    if inserted == len(rows):
        return inserted, 0
    return inserted, _reconcile(conn, by_time, dialect=dialect)


def _reconcile(conn: Connection, rows: Sequence[dict[str, Any]], *, dialect: str) -> int:
    """Rows (in time order) that met a stored exposure: move the first time back, or record a second variant.

    Returns the rows in another variant than the stored one (conflicts).

    A stored row's variant never changes, so comparing with it after the insert is safe under
    concurrency; the UPDATEs re-check their condition in SQL.
    """
    stored = _stored_variants(conn, {(r["experiment_key"], r["unit_id"]) for r in rows})
    earlier: dict[tuple[str, str], dict[str, Any]] = {}
    seconds: dict[tuple[str, str, str], datetime] = {}
    conflicts = 0
    for row in rows:
        key = (row["experiment_key"], row["unit_id"])
        variant, first = stored[key]
        if row["variant"] == variant:
            if row["first_exposed_at"] < first:
                earlier.setdefault(key, row)  # time order: the first one found is the earliest
        else:
            conflicts += 1
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

    return conflicts


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
