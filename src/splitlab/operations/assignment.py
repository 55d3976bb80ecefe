"""Assign units to variants of stored experiments, for every allocation method.

The rules, written once:

* a unit with a stored assignment under the experiment's current bucket version keeps it
  (sticky: a later weight change or ramp does not move it);
* ``hash`` and ``attributes`` allocations hash; ``random`` draws from a generator (so only a
  recorded assignment makes the unit keep its variant); ``bandit`` hashes within the weights of
  the current window (:mod:`splitlab.operations.bandits`); a contextual bandit hashes within the
  unit's own weights, from its attributes;
* an experiment enrols only while it runs (``preview`` evaluates as if it ran, and never records);
* a rolled-out experiment serves its rolled-out variant to every unit but forced ones, enrolling
  nobody (``preview`` shows what it served while it ran);
* a recorded assignment is first-writer-wins: when another process recorded the unit first, its
  variant is the answer.

:func:`evaluate` is the one evaluation of a compiled experiment for one unit or many; the HTTP
service calls it with its cached plan, sticky assignments and weights, and :func:`assign` calls
it with what it reads from the store.

Example:
    >>> from splitlab.storage import open_store
    >>> spec = {"key": "cta", "variants": [{"key": "a"}, {"key": "b"}], "allocation": {"method": "random"}}
    >>> with open_store("sqlite://") as store:
    ...     _ = store.experiments.create(key="cta", spec=spec, actor="ana", status="running")
    ...     first = assign(store, "cta", "user-1", record=True)
    ...     again = assign(store, "cta", "user-1")
    >>> (first.reason, again.reason, first.variant == again.variant)
    ('enrolled', 'sticky', True)
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from splitlab.assignment import REASONS, CompiledPlan, assign_batch, compile_plan
from splitlab.operations.bandits import current_allocation, current_weights
from splitlab.operations.errors import ConflictError, InvalidInputError
from splitlab.operations.experiments import experiment_with_allocation, get_experiment
from splitlab.specs import ExperimentSpec, to_plan
from splitlab.storage import Store

__all__ = [
    "PopulationAssignment",
    "Unit",
    "UnitAssignment",
    "assign",
    "assign_population",
    "evaluate",
    "new_enrolments",
    "settle",
]

Unit = tuple[str, Mapping[str, Any] | None]
"""A unit id and its attributes."""


@dataclass(frozen=True, slots=True)
class UnitAssignment:
    """One unit's outcome.

    Attributes:
        unit_id: The unit.
        variant: Its variant key, or None when it gets none.
        payload: The variant's payload, or None.
        enrolled: Whether the unit is in a variant (one served a rolled-out variant is not).
        bucket: The unit's hash in [0, 1) (a uniform draw under ``random``), or None.
        reason: One of :data:`splitlab.assignment.REASONS` (``enrolled``, ``sticky``, ``inactive`` ...).
        variation_index: The variant's position in the spec (GrowthBook's variation id), or None.
    """

    unit_id: str
    variant: str | None
    payload: Any
    enrolled: bool
    bucket: float | None
    reason: str
    variation_index: int | None = None


def evaluate(
    plan: CompiledPlan,
    units: Sequence[Unit],
    *,
    sticky: Mapping[str, str] | None = None,
    weights: Sequence[float] | None = None,
    unit_weights: Sequence[Sequence[float] | None] | None = None,
    rng: np.random.Generator | None = None,
) -> list[UnitAssignment]:
    """Each unit's variant under ``plan``, in order, given sticky assignments and (for a bandit) weights.

    ``weights`` are a bandit's weights for every unit; ``unit_weights`` one set per unit, in order
    (a contextual bandit's, :meth:`splitlab.operations.bandits.ContextualAllocation.unit_weights`;
    None for a unit with a sticky assignment).
    Either way the unit's hash picks within its weights, so its draw is deterministic. ``rng`` is
    used by allocation ``random`` only (a fresh generator when None) and ignored otherwise.

    Raises:
        ValueError: Attribute values that targeting cannot compare (the message says which).
    """
    if unit_weights is not None:
        if len(unit_weights) != len(units):
            msg = f"len(unit_weights) == {len(unit_weights)}, must equal len(units) == {len(units)}"
            raise ValueError(msg)
        return [
            result
            for unit, own in zip(units, unit_weights, strict=True)
            for result in evaluate(plan, [unit], sticky=sticky, weights=own)
        ]
    sticky = sticky or {}
    if plan.allocation != "random":
        rng = None
    elif rng is None:
        rng = np.random.default_rng()
    try:
        if len(units) == 1:
            unit_id, attributes = units[0]
            one = plan.assign(unit_id, attributes, sticky=sticky.get(unit_id), weights=weights, rng=rng)
            return [
                UnitAssignment(
                    unit_id, one.variant, one.payload, one.enrolled, one.bucket, one.reason, one.variation_index
                )
            ]
        batch = assign_batch(
            plan,
            [u for u, _ in units],
            [dict(a or {}) for _, a in units],
            sticky=sticky or None,
            weights=weights,
            rng=rng,
        )
    except TypeError as exc:  # attribute values of a type targeting cannot compare
        raise ValueError(str(exc)) from exc
    keys, payloads = plan.keys, plan.payloads
    results = []
    for (unit_id, _), index, enrolled, bucket, reason in zip(
        units,
        batch.variation_index.tolist(),
        batch.enrolled.tolist(),
        batch.bucket.tolist(),
        batch.reason.tolist(),
        strict=True,
    ):
        served = index >= 0
        results.append(
            UnitAssignment(
                unit_id,
                keys[index] if served else None,
                payloads[index] if served else None,
                enrolled,
                None if math.isnan(bucket) else bucket,
                REASONS[reason],
                index if served else None,
            )
        )
    return results


def new_enrolments(results: Sequence[UnitAssignment], sticky: Mapping[str, str]) -> dict[str, str]:
    """The assignments to record: units enrolled now that no stored assignment held (unit id -> variant)."""
    return {
        r.unit_id: r.variant
        for r in results
        if r.variant is not None and r.reason == "enrolled" and r.unit_id not in sticky
    }


def settle(
    plan: CompiledPlan,
    units: Sequence[Unit],
    results: list[UnitAssignment],
    recorded: Mapping[str, str],
    *,
    weights: Sequence[float] | None = None,
) -> list[UnitAssignment]:
    """``results`` once their new enrolments are recorded: the first writer wins.

    ``recorded`` is what the store kept for each unit written (unit id -> variant). A unit that
    another process recorded first, with another variant, is evaluated again with that variant
    as its sticky assignment; the others keep their result.
    """
    if not recorded:
        return results
    by_unit = {r.unit_id: r for r in results}
    moved = {u: v for u, v in recorded.items() if u in by_unit and v != by_unit[u].variant}
    if not moved:
        return results
    again = evaluate(plan, [unit for unit in units if unit[0] in moved], sticky=moved, weights=weights)
    by_unit.update((r.unit_id, r) for r in again)
    return [by_unit[r.unit_id] for r in results]


def assign(
    store: Store,
    key: str,
    unit_id: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    record: bool = False,
    preview: bool = False,
    now: datetime | None = None,
    rng: np.random.Generator | None = None,
) -> UnitAssignment:
    """Assign one unit of the stored experiment ``key`` (see the module docstring for the rules).

    Args:
        store: The store.
        key: The experiment.
        unit_id: The unit's id.
        attributes: The unit's attributes, for targeting and attribute hashing.
        record: Keep a new enrolment in the store, so the unit keeps its variant (running experiments only).
        preview: Evaluate as if the experiment were running, whatever its status; records nothing.
        now: The time that picks a bandit's window (default: now).
        rng: The generator of allocation ``random`` (default: a fresh one).

    Raises:
        NotFoundError: No experiment ``key``.
        ValueError: Attribute values that targeting cannot compare.
    """
    experiment = get_experiment(store, key)
    spec = ExperimentSpec.model_validate(experiment.spec)
    running = experiment.status == "running"
    rolled_out = None if preview else experiment.rolled_out_variant
    plan = compile_plan(to_plan(spec, active=preview or running, rolled_out=rolled_out))
    stored = store.assignments.get(experiment_key=key, unit_id=unit_id)
    sticky = {unit_id: stored.variant} if stored is not None and stored.bucket_version == spec.bucket_version else {}
    weights = None
    units = [(unit_id, attributes)]
    bandit = spec.allocation.bandit
    if plan.active and bandit is not None and not sticky:
        if bandit.contextual:
            weights = current_allocation(store, key, now=now).unit_weights([attributes])[0]
        else:
            weights = current_weights(store, key, now=now).weights
    results = evaluate(plan, units, sticky=sticky, weights=weights, rng=rng)
    fresh = new_enrolments(results, sticky) if record and running and not preview else {}
    if fresh:
        kept = store.assignments.record(
            experiment_key=key, unit_id=unit_id, variant=fresh[unit_id], bucket_version=spec.bucket_version
        )
        results = settle(plan, units, results, {unit_id: kept}, weights=weights)
    return results[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class PopulationAssignment:
    """What assigning a known population did.

    Attributes:
        units: Each unit's outcome, in the order given.
        strata: Per stratum (the values of ``stratify_by``, as text), units per variant among the
            units enrolled by this call and those that already had an assignment.
    """

    units: tuple[UnitAssignment, ...]
    strata: dict[tuple[str, ...], dict[str, int]]


def assign_population(store: Store, key: str, units: Sequence[Unit]) -> PopulationAssignment:
    """Assign a known population at once, balanced within each stratum of the spec's ``stratify_by``.

    Complete randomisation within strata: the eligible units of a stratum (targeting, coverage,
    namespace and holdout apply) that have no assignment yet are put in a random order, seeded by
    the experiment's seed, bucket version and the stratum, so the same file gives the same
    assignment on every machine, and dealt to the variants in proportion to their weights
    (largest remainders), so each stratum's split is as close to the weights as whole units allow.
    Each is recorded as the unit's sticky assignment (the first writer wins). Without
    ``stratify_by`` the whole population is one stratum.

    Only experiments with ``allocation.method: random`` take a population: their units are always
    read back from the store by every front end (the CLI, ``/assign``), so a recorded balanced
    assignment is the one served; a hash-allocated unit is served its hash, and a bandit its weights.

    Raises:
        NotFoundError: No experiment ``key``.
        ConflictError: The experiment is not running, or its allocation is not ``random``.
        InvalidInputError: A unit id given twice.
        ValueError: Attribute values that targeting cannot compare.
    """
    why = (
        "a population is assigned to experiments with allocation.method 'random', "
        "whose recorded assignments every front end serves"
    )
    experiment, spec = experiment_with_allocation(store, key, "random", why=why)
    if experiment.status != "running":
        message = f"experiment {key!r} is {experiment.status}, not running: start it first"
        raise ConflictError("status", message)
    first: dict[str, int] = {}
    repeated = [
        (f"units.{i}.unit_id", f"{u!r} is given twice (first at units.{first[u]})")
        for i, (u, _) in enumerate(units)
        if first.setdefault(u, i) != i
    ]
    if repeated:
        raise InvalidInputError(repeated[:20])
    plan = compile_plan(to_plan(spec, active=True))
    stored = store.assignments.get_many(experiment_key=key, unit_ids=[u for u, _ in units])
    sticky = {u: a.variant for u, a in stored.items() if a.bucket_version == spec.bucket_version}
    eligible = evaluate(plan, units, sticky=sticky, rng=np.random.default_rng(0))
    attributes = dict(units)
    by_stratum: dict[tuple[str, ...], list[str]] = {}
    for result in eligible:
        if result.enrolled:
            values = attributes[result.unit_id] or {}
            stratum = tuple(str(values.get(name)) for name in spec.stratify_by)
            by_stratum.setdefault(stratum, []).append(result.unit_id)
    keys, weights = spec.variant_keys, [v.weight for v in spec.variants]
    balanced: dict[str, str] = {}
    strata: dict[tuple[str, ...], dict[str, int]] = {}
    for stratum, members in sorted(by_stratum.items()):
        fresh = sorted(u for u in members if u not in sticky)
        order = _stratum_rng(spec, stratum).permutation(len(fresh))
        dealt = _deal(len(fresh), weights)
        for position, unit_index in enumerate(order):
            balanced[fresh[unit_index]] = keys[dealt[position]]
        strata[stratum] = dict.fromkeys(keys, 0)
        for unit_id in members:
            strata[stratum][sticky.get(unit_id) or balanced[unit_id]] += 1
    kept = (
        store.assignments.record_many(experiment_key=key, variants=balanced, bucket_version=spec.bucket_version)
        if balanced
        else {}
    )
    results = evaluate(plan, units, sticky={**sticky, **kept}, rng=np.random.default_rng(0))
    new = {u for u, v in kept.items() if v == balanced[u]}
    return PopulationAssignment(
        units=tuple(dataclasses.replace(r, reason="enrolled") if r.unit_id in new else r for r in results),
        strata=strata,
    )


def _stratum_rng(spec: ExperimentSpec, stratum: tuple[str, ...]) -> np.random.Generator:
    """A generator that depends only on the experiment's seed, bucket version and the stratum."""
    text = "\x1f".join((spec.seed or spec.key, str(spec.bucket_version), *stratum))
    return np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big"))


def _deal(count: int, weights: Sequence[float]) -> list[int]:
    """Variant indexes for ``count`` units in proportion to ``weights`` (largest remainders), in variant order."""
    total = math.fsum(weights)
    quotas = [count * w / total for w in weights]
    sizes = [math.floor(q) for q in quotas]
    by_remainder = sorted(range(len(weights)), key=lambda i: (sizes[i] - quotas[i], i))
    for i in by_remainder[: count - sum(sizes)]:
        sizes[i] += 1
    return [i for i, size in enumerate(sizes) for _ in range(size)]
