"""Analysis snapshots: stored results of an experiment's analysis, newest last."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Row, select

from splitlab.storage._sql import Transactions, encode_json, now
from splitlab.storage.errors import NotFoundError
from splitlab.storage.records import Snapshot
from splitlab.storage.tables import analysis_snapshots, experiments

__all__ = ["SnapshotRepository"]


class SnapshotRepository:
    """Append-only analysis results; ``payload`` is whatever JSON the analysis layer writes."""

    def __init__(self, tx: Transactions) -> None:
        self._tx = tx

    def add(self, *, experiment_key: str, spec_version: int, payload: Mapping[str, Any]) -> Snapshot:
        """Store a snapshot of the experiment analysed at ``spec_version``.

        Raises:
            NotFoundError: No experiment ``experiment_key``.
            ValueError: ``spec_version`` < 1, or a payload that is not JSON.
        """
        if isinstance(spec_version, bool) or not isinstance(spec_version, int) or spec_version < 1:
            msg = f"spec_version == {spec_version!r}, must be an integer >= 1"
            raise ValueError(msg)
        if not isinstance(payload, Mapping):
            msg = f"payload must be a mapping (JSON object), got {type(payload).__name__}"
            raise TypeError(msg)
        body = dict(payload)
        encode_json(body, name="payload")
        stamp = now()
        with self._tx.write() as conn:
            if conn.execute(select(experiments.c.key).where(experiments.c.key == experiment_key)).first() is None:
                msg = f"experiment {experiment_key!r} does not exist"
                raise NotFoundError(msg)
            new_id = conn.execute(
                analysis_snapshots.insert()
                .values(experiment_key=experiment_key, spec_version=spec_version, created_at=stamp, payload=body)
                .returning(analysis_snapshots.c.id)
            ).scalar_one()
        return Snapshot(
            id=int(new_id), experiment_key=experiment_key, spec_version=spec_version, created_at=stamp, payload=body
        )

    def latest(self, *, experiment_key: str) -> Snapshot | None:
        """The most recent snapshot of the experiment, or None."""
        query = (
            select(analysis_snapshots)
            .where(analysis_snapshots.c.experiment_key == experiment_key)
            .order_by(analysis_snapshots.c.id.desc())
            .limit(1)
        )
        with self._tx.read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _snapshot(row)

    def list(self, *, experiment_key: str) -> builtins.list[Snapshot]:
        """All snapshots of the experiment, oldest first."""
        query = (
            select(analysis_snapshots)
            .where(analysis_snapshots.c.experiment_key == experiment_key)
            .order_by(analysis_snapshots.c.id)
        )
        with self._tx.read() as conn:
            return [_snapshot(r) for r in conn.execute(query)]


def _snapshot(row: Row[Any]) -> Snapshot:
    return Snapshot(
        id=int(row.id),
        experiment_key=row.experiment_key,
        spec_version=row.spec_version,
        created_at=row.created_at,
        payload=row.payload,
    )
