"""The current weights of bandit experiments, computed from the store's counters at most once per ``ttl``.

A contextual bandit has no weights of its own but a policy that gives each unit its weights from its
attributes: the policy is cached the same way (:meth:`BanditWeightsCache.allocation`).

Weights are fixed within a window (see :mod:`splitlab.operations.bandits`), so a worker may reuse them for
``cache_seconds``; with Redis every worker uses the first weights computed for a window.
"""

from __future__ import annotations

import logging
from typing import Any

from splitlab.operations.bandits import BanditWeights, ContextualAllocation, current_allocation, current_weights
from splitlab.service.caches.shared import RedisCache
from splitlab.service.caches.timed import TimedCache
from splitlab.service.hot_path.experiment_cache import CachedExperiment
from splitlab.storage import Store

__all__ = ["BanditWeightsCache"]


def _weights_from(data: dict[str, Any]) -> BanditWeights:
    """:meth:`BanditWeights.to_dict` read back (lists become tuples)."""
    return BanditWeights(
        experiment_key=str(data["experiment_key"]),
        window=int(data["window"]),
        variants=tuple(data["variants"]),
        weights=tuple(float(w) for w in data["weights"]),
        phase=str(data["phase"]),
        winner=data["winner"],
        p_best=tuple(float(p) for p in data["p_best"]),
        expected_loss=tuple(float(x) for x in data["expected_loss"]),
        units=int(data["units"]),
    )


_log = logging.getLogger("splitlab.service")


class BanditWeightsCache:
    """Weights by (experiment, version), re-computed after ``ttl`` seconds."""

    def __init__(self, store: Store, shared: RedisCache | None, *, ttl: float) -> None:
        self._store = store
        self._shared = shared
        self._cache: TimedCache[tuple[str, int], BanditWeights] = TimedCache(ttl=ttl, max_size=1_000)
        self._policies: TimedCache[tuple[str, int], ContextualAllocation] = TimedCache(ttl=ttl, max_size=1_000)

    async def allocation(self, experiment: CachedExperiment) -> ContextualAllocation:
        """A contextual bandit's policy for the window now falls in (per-unit weights from attributes)."""
        return await self._policies.get(
            (experiment.key, experiment.record.current_version),
            lambda _: current_allocation(self._store, experiment.key),
        )

    async def get(self, experiment: CachedExperiment) -> BanditWeights:
        """The weights of the window now falls in (the experiment must be a bandit experiment)."""
        return await self._cache.get(
            (experiment.key, experiment.record.current_version), lambda _: self.compute(experiment)
        )

    def current(self, experiment: CachedExperiment) -> BanditWeights:
        """:meth:`get`, blocking (for worker threads)."""
        cached = self._cache.fresh((experiment.key, experiment.record.current_version))
        return self.compute(experiment) if cached is None else cached.value

    def compute(self, experiment: CachedExperiment) -> BanditWeights:
        """Compute (blocking) and cache the weights; with Redis, adopt the window's first weights."""
        weights = current_weights(self._store, experiment.key)
        if self._shared is not None:
            try:
                shared = self._shared.weights(
                    experiment.key, experiment.bucket_version, weights.window, weights.to_dict()
                )
                weights = _weights_from(shared)
            except Exception as exc:
                _log.warning("splitlab: Redis bandit weights unavailable (%s); using this worker's", exc)
        self._cache.put((experiment.key, experiment.record.current_version), weights)
        return weights
