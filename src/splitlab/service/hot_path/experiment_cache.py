"""Experiments as the hot path needs them: compiled once per version, re-checked every ``cache_seconds``.

Besides the compiled plan, each entry knows whether stored (sticky) assignments can differ from
what the plan gives now. They cannot while every version of the spec that ran under the current
bucket version allocates units the same way (same variants and weights, coverage, targeting,
namespace, holdout, seed; edits of a draft or a paused experiment enrolled nobody): then a unit's
stored variant is the one its hash gives, and ``/assign`` need not read it. Under random or
bandit allocation, whose answers no hash reproduces, stored assignments are read for every unit.

After a change of weights or coverage while running, under allocation ``hash``, a stored variant
is still one that a hash gave: the one of some version that ran (its ``earlier`` plan). The hash
of a unit (seed, bucket version, unit id) is the same under every such version, and so are its
targeting, namespace and holdout; so a unit the current plan enrols, and whose hash falls in the
same variant (or outside coverage) under every earlier plan, has no other variant stored, and
only the others are read (:meth:`CachedExperiment.read_for`). Like the case without a change,
this takes a stored variant to be one a hash gave: one written by ``/assign``, ``splitlab
assign`` or an exposure logged by an SDK that evaluates the same specs. Under allocation
``attributes`` (the hash of attribute values a unit may send differently another time) and
after any other change, every unit is read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from splitlab.assignment import CompiledPlan, ExperimentPlan, Variant, compile_plan
from splitlab.operations.assignment import Unit, UnitAssignment, evaluate
from splitlab.operations.bandits import BanditSettings, bandit_settings
from splitlab.service.caches.timed import TimedCache
from splitlab.specs import ExperimentSpec, to_plan
from splitlab.storage import ExperimentRecord, NotFoundError, Store

__all__ = ["CachedExperiment", "ExperimentCache", "allocation_of"]


@dataclass(frozen=True, slots=True)
class CachedExperiment:
    """One version of a stored experiment, ready to assign units.

    Attributes:
        record: The stored experiment.
        spec: Its validated spec.
        plan: The compiled plan (inactive unless the experiment is running; a rolled-out one serves
            its rolled-out variant to every unit).
        sticky_reads: Whether stored assignments must be read (they may differ from the plan's answer).
        bandit: The bandit settings of a bandit experiment, else None.
        earlier: With ``sticky_reads`` under allocation ``hash``, when the versions that ran under
            this bucket version differ from this one only in weights and coverage: their plans
            (active, distinct), the only sources of a stored variant; else None (every unit is read).
    """

    record: ExperimentRecord
    spec: ExperimentSpec
    plan: CompiledPlan
    sticky_reads: bool
    bandit: BanditSettings | None
    earlier: tuple[CompiledPlan, ...] | None = None

    @property
    def key(self) -> str:
        """The experiment key."""
        return self.record.key

    @property
    def running(self) -> bool:
        """Whether the experiment enrols units."""
        return self.record.status == "running"

    @property
    def bucket_version(self) -> int:
        """The bucket version stored assignments are made under."""
        return self.record.bucket_version

    @property
    def reproducible(self) -> bool:
        """Whether every worker computes a new unit's variant from the spec alone (allocation hash or attributes)."""
        return self.plan.allocation in ("hash", "attributes")

    def read_for(self, units: Sequence[Unit], hashed: Sequence[UnitAssignment]) -> list[str]:
        """The units whose stored variant may differ from ``hashed``, the plan's answers without stored ones.

        Every unit unless ``earlier`` is known; then those the plan does not enrol, and those that
        some earlier plan put in another variant (see the module docstring).
        """
        if self.earlier is None:
            return [unit_id for unit_id, _ in units]
        settled = [r.reason == "enrolled" for r in hashed]
        for plan in self.earlier:
            then = evaluate(plan, units)
            settled = [s and t.variant in (None, r.variant) for s, t, r in zip(settled, then, hashed, strict=True)]
        return [unit_id for (unit_id, _), s in zip(units, settled, strict=True) if not s]


def allocation_of(spec: ExperimentSpec) -> ExperimentPlan:
    """What decides a unit's variant in ``spec``: its plan, active, without payloads."""
    plan = to_plan(spec, active=True)
    return dataclasses.replace(plan, variants=tuple(Variant(v.key, v.weight) for v in plan.variants))


class ExperimentCache:
    """Compiled experiments by key, each re-checked against the store after ``ttl`` seconds.

    A re-check reads the experiment's row; only a new version or status compiles it again.
    Unknown keys are remembered too, so a stream of requests for a missing experiment costs one
    read per ``ttl``.
    """

    def __init__(self, store: Store, *, ttl: float) -> None:
        self._store = store
        self._entries: TimedCache[str, CachedExperiment | None] = TimedCache(ttl=ttl, max_size=10_000)

    async def get(self, key: str) -> CachedExperiment:
        """The experiment ``key``; at most ``ttl`` seconds old.

        Raises:
            NotFoundError: No experiment ``key``.
            ValueError: Its stored spec no longer validates (the message says why).
        """
        entry = await self._entries.get(key, self.load)
        if entry is None:
            msg = f"experiment {key!r} does not exist"
            raise NotFoundError(msg)
        return entry

    def load(self, key: str) -> CachedExperiment | None:
        """Read ``key`` from the store now (blocking), reusing the compiled entry when nothing changed."""
        generation = self._entries.generation  # an invalidate() while we read: do not cache what we read
        record = self._store.experiments.get(key=key)
        cached = self._entries.stale(key)
        previous = None if cached is None else cached.value
        if record is None:
            entry = None
        elif (
            previous is not None
            and previous.record.current_version == record.current_version
            and previous.record.status == record.status
        ):
            entry = previous
        else:
            entry = self._build(record)
        self._entries.put(key, entry, generation=generation)
        return entry

    def invalidate(self, key: str | None = None) -> None:
        """Forget ``key`` (or all): this worker changed it."""
        self._entries.invalidate(key)

    def _build(self, record: ExperimentRecord) -> CachedExperiment:
        try:
            spec = ExperimentSpec.model_validate(record.spec)
        except ValidationError as exc:
            msg = f"the stored spec of experiment {record.key!r} is not valid: {exc}"
            raise ValueError(msg) from None
        plan = compile_plan(to_plan(spec, active=record.status == "running", rolled_out=record.rolled_out_variant))
        method = spec.allocation.method
        bandit = bandit_settings(spec) if method == "bandit" else None
        current = allocation_of(spec)
        earlier = self._earlier_allocations(record, spec, current)
        sticky_reads = method in ("random", "bandit") or earlier is None or bool(earlier)
        return CachedExperiment(
            record=record,
            spec=spec,
            plan=plan,
            sticky_reads=sticky_reads,
            bandit=bandit,
            earlier=_reweighted_plans(method, earlier, current),
        )

    def _earlier_allocations(
        self, record: ExperimentRecord, spec: ExperimentSpec, current: ExperimentPlan
    ) -> list[ExperimentPlan] | None:
        """The allocations other than ``current`` of the versions that ran under the same bucket version.

        Only versions that were running can have recorded assignments: edits of a draft (or of a
        paused experiment, until it is started again) moved nobody. None when a version cannot be
        read (then stored assignments are read, the safe side).
        """
        if record.current_version == 1:
            return []
        allocations: list[ExperimentPlan] = []
        for version in self._store.experiments.history(key=record.key):
            if version.status != "running":
                continue
            try:
                earlier = ExperimentSpec.model_validate(version.spec)
            except ValidationError:
                return None
            if earlier.bucket_version != spec.bucket_version:
                continue
            allocation = allocation_of(earlier)
            if allocation not in (current, *allocations):
                allocations.append(allocation)
        return allocations


def _reweighted_plans(
    method: str, earlier: list[ExperimentPlan] | None, current: ExperimentPlan
) -> tuple[CompiledPlan, ...] | None:
    """``earlier``, compiled, when under allocation hash they differ from ``current`` in weights and coverage only."""
    if method != "hash" or not earlier or not all(_reweighted(e, current) for e in earlier):
        return None
    try:
        return tuple(compile_plan(e) for e in earlier)
    except ValueError:  # a spec that ran but that today's rules refuse: what it did cannot be told
        return None


def _reweighted(earlier: ExperimentPlan, current: ExperimentPlan) -> bool:
    """Whether ``earlier`` differs from ``current`` in variant weights and coverage only (same variants, in order)."""
    if [v.key for v in earlier.variants] != [v.key for v in current.variants]:
        return False
    return dataclasses.replace(earlier, variants=current.variants, coverage=current.coverage) == current
