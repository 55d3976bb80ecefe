"""The experiment registry: current specs and their audit log of versions."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.engine import Connection

from splitlab.storage._sql import Transactions, encode_json, now, upsert
from splitlab.storage.errors import AlreadyExistsError, NotFoundError, VersionConflictError
from splitlab.storage.phases import AllocationPhase, check_weights, read_phases, start_phase
from splitlab.storage.records import ExperimentRecord, ExperimentVersion, check_text
from splitlab.storage.tables import EXPERIMENT_STATUSES, experiment_versions, experiments

__all__ = ["ExperimentRepository"]


class ExperimentRepository:
    """Experiments and their versions. Every change writes a numbered version with its diff.

    Versions start at 1 (creation) and increase by one per change, spec update or status change
    alike, in one transaction with the change itself, so the audit log is never behind the
    current state. Which status transitions are allowed is the lifecycle's rule (the specs layer);
    the store only refuses unknown statuses, and a ``rolled_out`` status without the variant it
    serves (:meth:`set_status`).

    A change given ``phase_weights`` (the variant weights in force after it) starts an allocation
    phase when those weights differ from the current phase's, or when there is no phase yet, in
    the same transaction as its version (:mod:`splitlab.storage.phases`). When a phase starts is
    the domain's rule (``splitlab.operations.experiments``).
    """

    def __init__(self, tx: Transactions) -> None:
        self._tx = tx

    def create(
        self, *, key: str, spec: Mapping[str, Any], actor: str, status: str = "draft", reason: str | None = None
    ) -> ExperimentRecord:
        """Register a new experiment at version 1.

        Args:
            key: The experiment key (unique).
            spec: The experiment spec as a JSON-able mapping.
            actor: Who creates it (kept as ``created_by`` and in the audit log).
            status: Initial status, default ``"draft"``.
            reason: Optional note for the audit log.

        Raises:
            AlreadyExistsError: ``key`` is taken.
            ValueError: A bad key, actor, status or a spec that is not JSON.
        """
        check_text(key, name="key")
        check_text(actor, name="actor")
        _check_status(status)
        spec_dict = _json_object(spec, name="spec")
        stamp = now()
        row = {
            "key": key,
            "status": status,
            "current_version": 1,
            "spec": spec_dict,
            "bucket_version": 1,
            "created_at": stamp,
            "updated_at": stamp,
            "created_by": actor,
        }
        with self._tx.write() as conn:
            # ON CONFLICT rather than a prior SELECT: two processes creating the same key at once
            # get one winner and one clear error, never an aborted transaction.
            statement = upsert(experiments, self._tx.dialect).values(row).on_conflict_do_nothing()
            if conn.execute(statement.returning(experiments.c.key)).first() is None:
                msg = f"experiment {key!r} already exists"
                raise AlreadyExistsError(msg)
            _add_version(conn, key=key, version=1, spec=spec_dict, diff=[], status=status, actor=actor, reason=reason)
            return _record(_current(conn, key))

    def update(
        self,
        *,
        key: str,
        spec: Mapping[str, Any],
        diff: Sequence[Mapping[str, Any]],
        actor: str,
        reason: str | None = None,
        expected_version: int | None = None,
        rerandomize: bool = False,
        phase_weights: Mapping[str, float] | None = None,
        then: Callable[[Connection, ExperimentVersion], None] | None = None,
    ) -> ExperimentVersion:
        """Replace an experiment's spec; returns the new version (current version + 1).

        Args:
            key: The experiment key.
            spec: The new spec (JSON-able mapping).
            diff: The change from the previous spec, as computed by the caller (list of JSON objects).
            actor: Who changes it.
            reason: Optional note for the audit log.
            expected_version: If given, the update applies only when this is still the current
                version (optimistic concurrency); otherwise :class:`VersionConflictError`.
            rerandomize: Bump the bucket version (every unit is re-bucketed; sticky assignments
                recorded under the old bucket version no longer hold). Default False.
            phase_weights: The weights in force after the change; a new allocation phase starts
                at this version when they differ from the current phase's. Default None: no phase.
            then: Called with the connection and the new version inside the same write
                transaction (the monitor records its action there): what it writes commits with
                the change or not at all.

        Raises:
            NotFoundError: No experiment ``key``.
            VersionConflictError: ``expected_version`` is not the current version.
        """
        check_text(actor, name="actor")
        spec_dict = _json_object(spec, name="spec")
        diff_list = _json_list(diff, name="diff")
        weights = None if phase_weights is None else check_weights(phase_weights)
        with self._tx.write() as conn:
            values: dict[str, Any] = {
                "current_version": experiments.c.current_version + 1,
                "spec": spec_dict,
                "updated_at": now(),
            }
            if rerandomize:
                values["bucket_version"] = experiments.c.bucket_version + 1
            row = _bump(conn, key=key, values=values, expected_version=expected_version)
            version = _add_version(
                conn,
                key=key,
                version=row.current_version,
                spec=spec_dict,
                diff=diff_list,
                status=row.status,
                actor=actor,
                reason=reason,
            )
            if weights is not None:
                start_phase(conn, key=key, weights=weights, spec_version=version.version, started_at=version.changed_at)
            if then is not None:
                then(conn, version)
            return version

    def set_status(
        self,
        *,
        key: str,
        status: str,
        actor: str,
        reason: str | None = None,
        phase_weights: Mapping[str, float] | None = None,
        rolled_out_variant: str | None = None,
        expected_version: int | None = None,
        then: Callable[[Connection, ExperimentVersion], None] | None = None,
    ) -> ExperimentVersion:
        """Change an experiment's status; the change is a new version with diff ``[{"path": "status", ...}]``.

        Args:
            key: The experiment key.
            status: The new status, one of ``EXPERIMENT_STATUSES``.
            actor: Who changes it.
            reason: Optional note for the audit log.
            phase_weights: As in :meth:`update` (starting an experiment starts its first phase).
            rolled_out_variant: The variant served to every unit; required with status
                ``rolled_out`` and refused with any other (leaving ``rolled_out`` clears it). Whether
                it is one of the spec's variants is the caller's rule. A change of it is in the
                version's diff (path ``rolled_out_variant``), so the audit log says what was served.
            expected_version: As in :meth:`update`: the change applies only while this is the
                current version (the status the caller checked its move against is still the status).
            then: Called with the connection and the new version inside the same write
                transaction, after the version (and any phase) is written: what it writes commits
                with the status change or not at all, and an exception it raises rolls both back.
                Default None.

        Raises:
            NotFoundError: No experiment ``key``.
            VersionConflictError: ``expected_version`` is not the current version.
            ValueError: ``status`` is not one of ``EXPERIMENT_STATUSES``, or ``rolled_out_variant``
                is missing with status ``rolled_out`` or given with another.
        """
        _check_status(status)
        check_text(actor, name="actor")
        if status == "rolled_out":
            check_text(rolled_out_variant, name="rolled_out_variant")
        elif rolled_out_variant is not None:
            msg = f"rolled_out_variant == {rolled_out_variant!r}, only status 'rolled_out' takes one, not {status!r}"
            raise ValueError(msg)
        weights = None if phase_weights is None else check_weights(phase_weights)
        with self._tx.write() as conn:
            old = _current(conn, key, lock=True)
            row = _bump(
                conn,
                key=key,
                values={
                    "current_version": experiments.c.current_version + 1,
                    "status": status,
                    "rolled_out_variant": rolled_out_variant,
                    "updated_at": now(),
                },
                expected_version=expected_version,
            )
            diff = [{"path": "status", "old": old.status, "new": status}]
            if old.rolled_out_variant != rolled_out_variant:
                diff.append({"path": "rolled_out_variant", "old": old.rolled_out_variant, "new": rolled_out_variant})
            version = _add_version(
                conn,
                key=key,
                version=row.current_version,
                spec=row.spec,
                diff=diff,
                status=status,
                actor=actor,
                reason=reason,
            )
            if weights is not None:
                start_phase(conn, key=key, weights=weights, spec_version=version.version, started_at=version.changed_at)
            if then is not None:
                then(conn, version)
            return version

    def get(self, *, key: str) -> ExperimentRecord | None:
        """The experiment's current state, or None if there is no such key."""
        with self._tx.read() as conn:
            row = conn.execute(select(experiments).where(experiments.c.key == key)).first()
        return None if row is None else _record(row)

    def history(self, *, key: str) -> builtins.list[ExperimentVersion]:
        """All versions of the experiment, oldest first.

        Raises:
            NotFoundError: No experiment ``key``.
        """
        with self._tx.read() as conn:
            _current(conn, key)
            rows = conn.execute(
                select(experiment_versions)
                .where(experiment_versions.c.experiment_key == key)
                .order_by(experiment_versions.c.version)
            ).all()
        return [_version(r) for r in rows]

    def phases(self, *, key: str) -> builtins.list[AllocationPhase]:
        """The experiment's allocation phases in time order (empty until it starts).

        Raises:
            NotFoundError: No experiment ``key``.
        """
        with self._tx.read() as conn:
            _current(conn, key)
            return read_phases(conn, key=key)

    def list(self, *, status: str | None = None) -> builtins.list[ExperimentRecord]:
        """All experiments ordered by key, or only those with ``status``."""
        query = select(experiments).order_by(experiments.c.key)
        if status is not None:
            _check_status(status)
            query = query.where(experiments.c.status == status)
        with self._tx.read() as conn:
            return [_record(r) for r in conn.execute(query).all()]


def _check_status(status: str) -> None:
    if status not in EXPERIMENT_STATUSES:
        msg = f"status == {status!r}, must be one of {', '.join(EXPERIMENT_STATUSES)}"
        raise ValueError(msg)


def _json_object(value: Mapping[str, Any], *, name: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        msg = f"{name} must be a mapping (JSON object), got {type(value).__name__}"
        raise TypeError(msg)
    result = dict(value)
    encode_json(result, name=name)
    return result


def _json_list(value: Sequence[Mapping[str, Any]], *, name: str) -> builtins.list[dict[str, Any]]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        msg = f"{name} must be a list of mappings (JSON objects), got {type(value).__name__}"
        raise TypeError(msg)
    result = [_json_object(item, name=f"{name}[{i}]") for i, item in enumerate(value)]
    encode_json(result, name=name)
    return result


def _current(conn: Connection, key: str, *, lock: bool = False) -> Row[Any]:
    query = select(experiments).where(experiments.c.key == key)
    if lock:  # PostgreSQL: hold the row until commit (SQLite's write transaction already holds the file)
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        msg = f"experiment {key!r} does not exist"
        raise NotFoundError(msg)
    return row


def _bump(conn: Connection, *, key: str, values: dict[str, Any], expected_version: int | None) -> Row[Any]:
    """Apply ``values`` and return the new row; the UPDATE's row lock orders concurrent changes."""
    statement = update(experiments).where(experiments.c.key == key)
    if expected_version is not None:
        statement = statement.where(experiments.c.current_version == expected_version)
    row = conn.execute(statement.values(**values).returning(*experiments.c)).first()
    if row is not None:
        return row
    current = _current(conn, key)  # raises NotFoundError when the key is unknown
    msg = f"experiment {key!r} is at version {current.current_version}, not expected_version == {expected_version}"
    raise VersionConflictError(msg)


def _add_version(
    conn: Connection,
    *,
    key: str,
    version: int,
    spec: dict[str, Any],
    diff: builtins.list[dict[str, Any]],
    status: str,
    actor: str,
    reason: str | None,
) -> ExperimentVersion:
    record = ExperimentVersion(
        experiment_key=key,
        version=version,
        spec=spec,
        diff=diff,
        status=status,
        changed_by=actor,
        changed_at=now(),
        reason=reason,
    )
    conn.execute(
        experiment_versions.insert().values(
            experiment_key=key,
            version=version,
            spec=spec,
            diff=diff,
            status=status,
            changed_by=actor,
            changed_at=record.changed_at,
            reason=reason,
        )
    )
    return record


def _record(row: Row[Any]) -> ExperimentRecord:
    return ExperimentRecord(
        key=row.key,
        status=row.status,
        current_version=row.current_version,
        bucket_version=row.bucket_version,
        spec=row.spec,
        created_at=row.created_at,
        updated_at=row.updated_at,
        created_by=row.created_by,
        rolled_out_variant=row.rolled_out_variant,
    )


def _version(row: Row[Any]) -> ExperimentVersion:
    return ExperimentVersion(
        experiment_key=row.experiment_key,
        version=row.version,
        spec=row.spec,
        diff=row.diff,
        status=row.status,
        changed_by=row.changed_by,
        changed_at=row.changed_at,
        reason=row.reason,
    )
