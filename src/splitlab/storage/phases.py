"""Allocation phases: the periods in which an experiment's variant weights were fixed.

A phase starts when the weights in force change (and when the experiment first starts); it is
written by :class:`~splitlab.storage.experiments.ExperimentRepository` in the same transaction
as the version that changed the weights, so the phases never lag the audit log. Each unit
belongs to the phase of its first exposure: the analysis checks the split and estimates effects
phase by phase (docs/aggregation.md, "Allocation phases").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from splitlab.storage.tables import allocation_phases

__all__ = ["AllocationPhase"]


@dataclass(frozen=True, slots=True)
class AllocationPhase:
    """One period of fixed weights.

    Attributes:
        experiment_key: The experiment.
        phase: 1, 2, ... in time order.
        started_at: When the weights took effect (the time of the version that set them).
        spec_version: The experiment version that started the phase.
        weights: ``variant -> weight`` in force during the phase.
    """

    experiment_key: str
    phase: int
    started_at: datetime
    spec_version: int
    weights: dict[str, float]


def check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """``weights`` as a plain dict; TypeError or ValueError naming ``phase_weights`` when they are not shares."""
    if not isinstance(weights, Mapping) or not weights:
        msg = f"phase_weights == {weights!r}, must be a non-empty mapping of variant to weight"
        raise TypeError(msg)
    out: dict[str, float] = {}
    for variant, weight in weights.items():
        if not isinstance(variant, str) or isinstance(weight, bool) or not isinstance(weight, int | float):
            msg = f"phase_weights[{variant!r}] == {weight!r}, must map a variant key to a number"
            raise TypeError(msg)
        if not (math.isfinite(weight) and 0 <= weight <= 1):
            msg = f"phase_weights[{variant!r}] == {weight!r}, must be in [0, 1]"
            raise ValueError(msg)
        out[variant] = float(weight)
    return out


def start_phase(
    conn: Connection, *, key: str, weights: dict[str, float], spec_version: int, started_at: datetime
) -> AllocationPhase | None:
    """Start a phase with ``weights`` unless they are the weights of the current phase; returns it, or None.

    Runs inside the caller's write transaction (which holds the experiment's row or the database's
    write lock), so two changes cannot both start phase ``n``.
    """
    last = conn.execute(
        select(allocation_phases)
        .where(allocation_phases.c.experiment_key == key)
        .order_by(allocation_phases.c.phase.desc())
        .limit(1)
    ).first()
    if last is not None and dict(last.weights) == weights:
        return None
    number = 1 if last is None else last.phase + 1
    conn.execute(
        allocation_phases.insert().values(
            experiment_key=key, phase=number, started_at=started_at, spec_version=spec_version, weights=weights
        )
    )
    return AllocationPhase(key, number, started_at, spec_version, weights)


def read_phases(conn: Connection, *, key: str) -> list[AllocationPhase]:
    """The experiment's phases in order (empty before it starts)."""
    rows = conn.execute(
        select(allocation_phases).where(allocation_phases.c.experiment_key == key).order_by(allocation_phases.c.phase)
    ).all()
    return [_phase(row) for row in rows]


def _phase(row: Any) -> AllocationPhase:
    weights = {str(k): float(v) for k, v in dict(row.weights).items()}
    return AllocationPhase(row.experiment_key, row.phase, row.started_at, row.spec_version, weights)
