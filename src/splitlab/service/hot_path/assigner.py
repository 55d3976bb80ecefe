"""Assigning units over HTTP without touching the store on the hot path.

The experiment comes compiled from the :class:`~splitlab.service.hot_path.experiment_cache.ExperimentCache`;
stored assignments are read only when they can differ from the hash (see that module); new
enrolments of a running experiment are recorded in batches by the
:class:`~splitlab.service.hot_path.recorder.AssignmentRecorder` (when the settings say so). Every worker
computes the same hash, so several workers, or several machines, agree without talking.

A new unit's answer waits for its write only under random and bandit allocation, where the
store's first record is the unit's variant. Under hash and attributes allocation it never waits,
even after a weight change: a unit enrolled earlier is read before the answer and keeps its
stored variant (units that cannot have another one are not read; see the experiment cache), and
a new unit gets the variant that every worker's hash gives under the current weights. Waiting
would only settle races near a change. Two workers that enrol the same new unit at the same
moment under different weights (one still serving the previous version, for up to twice
``cache_seconds``) both answer; the store keeps the first write, and the unit's later requests
get that one. A unit enrolled by one worker less than ``record_interval`` before a change made
through another can be read before its write lands, and be answered from the new weights once.
The recorder's own trade-off applies too: a worker killed within ``record_interval`` of
enrolling units loses their records (see :mod:`~splitlab.service.hot_path.recorder`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import numpy as np

from splitlab.operations.assignment import Unit, UnitAssignment, evaluate, new_enrolments, settle
from splitlab.service.hot_path.bandit_weights import BanditWeightsCache
from splitlab.service.hot_path.experiment_cache import CachedExperiment, ExperimentCache
from splitlab.service.hot_path.recorder import RECORD_TIMEOUT_SECONDS, AssignmentRecorder, write_failures_as_503
from splitlab.service.hot_path.sticky import StickyAssignments

__all__ = ["Assigner"]


class Assigner:
    """Assigns units of stored experiments (see the module docstring)."""

    def __init__(
        self,
        experiments: ExperimentCache,
        sticky: StickyAssignments,
        bandit_weights: BanditWeightsCache,
        recorder: AssignmentRecorder | None,
    ) -> None:
        self._experiments = experiments
        self._sticky = sticky
        self._bandit_weights = bandit_weights
        self._recorder = recorder
        self._rng = np.random.default_rng()

    async def assign(self, key: str, units: Sequence[Unit]) -> list[UnitAssignment]:
        """Assign ``units`` to variants of experiment ``key``, in order.

        Raises:
            NotFoundError: No experiment ``key``.
            ValueError: The stored spec cannot be evaluated for these units (the message says why).
            OperationalError: The store is unreachable (only where a stored assignment is needed).
            UnavailableError: The units' records could not be written in time, or the service is stopping.
        """
        experiment = await self._experiments.get(key)
        plan = experiment.plan
        sticky: dict[str, str] = {}
        hashed = None  # the answers without stored assignments, when they decide which units are read
        if plan.active and experiment.sticky_reads:
            read = [unit_id for unit_id, _ in units]
            if experiment.earlier is not None:
                hashed = self._evaluate(experiment, units, {}, None)
                read = experiment.read_for(units, hashed)
            if read:
                sticky = await self._sticky.lookup(key, experiment.bucket_version, read)
        weights = None
        unit_weights = None
        if plan.active and experiment.bandit is not None:
            if experiment.bandit.context:  # a contextual policy: each new unit's weights from its attributes
                allocation = await self._bandit_weights.allocation(experiment)
                new = [(i, a) for i, (u, a) in enumerate(units) if u not in sticky]
                own = dict(zip([i for i, _ in new], allocation.unit_weights([a for _, a in new]), strict=True))
                unit_weights = [own.get(i) for i in range(len(units))]
            else:
                weights = (await self._bandit_weights.get(experiment)).weights
        if hashed is not None and not sticky:
            results = hashed
        else:
            results = self._evaluate(experiment, units, sticky, weights, unit_weights)
        if self._recorder is None or not experiment.running:
            return results
        fresh = new_enrolments(results, sticky)
        if experiment.reproducible:  # see the module docstring
            fresh = {u: v for u, v in fresh.items() if not self._recorder.seen(key, experiment.bucket_version, u)}
            self._recorder.submit(key, experiment.bucket_version, fresh, wait=False)
            return results
        future = self._recorder.submit(key, experiment.bucket_version, fresh, wait=True)
        stored: dict[str, str] = {}
        if future is not None:
            with write_failures_as_503("the assignments", "experiment"):
                stored = await asyncio.wait_for(asyncio.wrap_future(future), RECORD_TIMEOUT_SECONDS)
        return settle(plan, units, results, stored, weights=weights)

    def _evaluate(
        self,
        experiment: CachedExperiment,
        units: Sequence[Unit],
        sticky: Mapping[str, str],
        weights: Sequence[float] | None,
        unit_weights: Sequence[Sequence[float] | None] | None = None,
    ) -> list[UnitAssignment]:
        return evaluate(
            experiment.plan, units, sticky=sticky, weights=weights, unit_weights=unit_weights, rng=self._rng
        )
