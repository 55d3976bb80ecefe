"""Experiments as the hot path needs them: compiled once per version, re-checked every ``cache_seconds``.

Besides the compiled plan, each entry knows whether stored (sticky) assignments can differ from
what the plan gives now. They cannot while every version of the spec that ran under the current
bucket version allocates units the same way (same variants and weights, coverage, targeting,
namespace, holdout, seed; edits of a draft or a paused experiment enrolled nobody): then a unit's
stored variant is the one its hash gives, and ``/assign`` need not read it. After a weight
change while running (or under random or bandit allocation, whose answers no hash reproduces)
stored assignments are read for every unit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pydantic import ValidationError

from splitlab.assignment import CompiledPlan, ExperimentPlan, Variant, compile_plan
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
        plan: The compiled plan (inactive unless the experiment is running).
        sticky_reads: Whether stored assignments must be read (they may differ from the plan's answer).
        bandit: The bandit settings of a bandit experiment, else None.
    """

    record: ExperimentRecord
    spec: ExperimentSpec
    plan: CompiledPlan
    sticky_reads: bool
    bandit: BanditSettings | None

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
        plan = compile_plan(to_plan(spec, active=record.status == "running"))
        method = spec.allocation.method
        bandit = bandit_settings(spec) if method == "bandit" else None
        sticky_reads = method in ("random", "bandit") or self._allocation_changed(record, spec)
        return CachedExperiment(record=record, spec=spec, plan=plan, sticky_reads=sticky_reads, bandit=bandit)

    def _allocation_changed(self, record: ExperimentRecord, spec: ExperimentSpec) -> bool:
        """Whether a version that ran under the same bucket version allocated units differently.

        Only versions that were running can have recorded assignments: edits of a draft (or of a
        paused experiment, until it is started again) moved nobody.
        """
        if record.current_version == 1:
            return False
        current = allocation_of(spec)
        for version in self._store.experiments.history(key=record.key):
            if version.status != "running":
                continue
            try:
                earlier = ExperimentSpec.model_validate(version.spec)
            except ValidationError:
                return True  # cannot tell: read stored assignments, the safe side
            if earlier.bucket_version == spec.bucket_version and allocation_of(earlier) != current:
                return True
        return False
