"""Assigning units over HTTP: the stored spec's plan, sticky assignments honoured and recorded.

A unit keeps the variant recorded for it under the experiment's current bucket version, so weight
changes never move an assigned unit; new enrolments of a running experiment are recorded (when the
settings say so). Every process computes the same hash, so several workers agree without talking.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from splitlab.assignment import REASONS, assign, assign_batch
from splitlab.assignment.config import ExperimentPlan
from splitlab.specs import ExperimentSpec, to_plan
from splitlab.storage import NotFoundError, Store

__all__ = ["UnitAssignment", "assign_units"]


@dataclass(frozen=True, slots=True)
class UnitAssignment:
    """One unit's outcome, as the API reports it."""

    unit_id: str
    variant: str | None
    payload: Any
    enrolled: bool
    bucket: float | None
    reason: str


def assign_units(
    store: Store, *, key: str, units: Sequence[tuple[str, Mapping[str, Any] | None]], record: bool
) -> list[UnitAssignment]:
    """Assign ``units`` (unit id, attributes) to variants of experiment ``key``, in order.

    Raises:
        NotFoundError: No experiment ``key``.
        ValueError: The stored spec cannot be evaluated for these units (the message says why).
    """
    experiment = store.experiments.get(key=key)
    if experiment is None:
        msg = f"experiment {key!r} does not exist"
        raise NotFoundError(msg)
    spec = ExperimentSpec.model_validate(experiment.spec)
    plan = to_plan(spec, active=experiment.status == "running")
    ids = [unit_id for unit_id, _ in units]
    stored = store.assignments.get_many(experiment_key=key, unit_ids=ids)
    sticky = {u: a.variant for u, a in stored.items() if a.bucket_version == spec.bucket_version}
    results = _evaluate(plan, units, sticky)
    fresh = {r.unit_id: r.variant for r in results if r.enrolled and r.variant is not None and r.reason != "sticky"}
    if record and fresh and experiment.status == "running":
        kept = store.assignments.record_many(experiment_key=key, variants=fresh, bucket_version=spec.bucket_version)
        moved = {u: v for u, v in kept.items() if v != fresh[u]}  # another request recorded first: it wins
        if moved:
            again = {r.unit_id: r for r in _evaluate(plan, [(u, None) for u in moved], moved)}
            results = [again.get(r.unit_id, r) for r in results]
    return results


def _evaluate(
    plan: ExperimentPlan, units: Sequence[tuple[str, Mapping[str, Any] | None]], sticky: Mapping[str, str]
) -> list[UnitAssignment]:
    rng = np.random.default_rng() if plan.allocation == "random" else None
    payloads = [v.payload for v in plan.variants]
    try:
        if len(units) == 1:
            unit_id, attributes = units[0]
            one = assign(plan, unit_id, attributes, sticky=sticky.get(unit_id), rng=rng)
            return [UnitAssignment(unit_id, one.variant, one.payload, one.enrolled, one.bucket, one.reason)]
        batch = assign_batch(
            plan, [u for u, _ in units], [dict(a or {}) for _, a in units], sticky=sticky or None, rng=rng
        )
    except TypeError as exc:  # attribute values of a type targeting cannot compare
        raise ValueError(str(exc)) from exc
    results = []
    for (unit_id, _), index, bucket, reason in zip(
        units, batch.variation_index.tolist(), batch.bucket.tolist(), batch.reason.tolist(), strict=True
    ):
        enrolled = index >= 0
        results.append(
            UnitAssignment(
                unit_id,
                plan.variants[index].key if enrolled else None,
                payloads[index] if enrolled else None,
                enrolled,
                None if math.isnan(bucket) else bucket,
                REASONS[reason],
            )
        )
    return results
