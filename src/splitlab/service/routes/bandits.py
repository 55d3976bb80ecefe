"""Bandit experiments: the current weights (what SDKs allocate with) and rewards (sdk or admin key)."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Path, status
from fastapi.concurrency import run_in_threadpool

from splitlab.operations.bandits import BanditSettings, record_rewards
from splitlab.service.deps import AnyKey, RuntimeDep
from splitlab.service.errors import ERRORS, http_error
from splitlab.service.hot_path.experiment_cache import CachedExperiment
from splitlab.service.routes import API_PREFIX
from splitlab.service.runtime import Runtime
from splitlab.service.schemas import BanditWeightsPublic, RewardBatch, RewardsPublic
from splitlab.storage import NotFoundError

router = APIRouter(prefix=f"{API_PREFIX}/experiments", tags=["bandits"], responses=ERRORS)

KeyPath = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[a-z0-9][a-z0-9_-]*$")]


async def _bandit(runtime: Runtime, key: str) -> tuple[CachedExperiment, BanditSettings]:
    try:
        experiment = await runtime.experiments.get(key)
    except NotFoundError as exc:
        raise http_error(status.HTTP_404_NOT_FOUND, "key", str(exc)) from None
    except ValueError as exc:  # settings that do not validate
        raise http_error(status.HTTP_409_CONFLICT, "allocation.bandit", str(exc)) from None
    if experiment.bandit is None:
        message = (
            f"experiment {key!r} has allocation.method {experiment.spec.allocation.method!r}; "
            "weights and rewards are for bandit experiments"
        )
        raise http_error(status.HTTP_409_CONFLICT, "allocation.method", message)
    return experiment, experiment.bandit


def _finite(values: tuple[float, ...]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values]


@router.get("/{key}/weights", summary="A bandit experiment's current weights")
async def get_weights(key: KeyPath, runtime: RuntimeDep, _key: AnyKey) -> BanditWeightsPublic:
    """The allocation of the current window: weights, phase (burn-in, adaptive, stopped), winner,
    each variant's chance to be best and expected loss, and the rewarded units they rest on.
    """  # noqa: D205
    experiment, _ = await _bandit(runtime, key)
    weights = await runtime.bandit_weights.get(experiment)
    return BanditWeightsPublic(
        experiment=key,
        window=weights.window,
        variants=list(weights.variants),
        weights=list(weights.weights),
        phase=weights.phase,
        winner=weights.winner,
        p_best=_finite(weights.p_best),
        expected_loss=_finite(weights.expected_loss),
        units=weights.units,
    )


@router.post("/{key}/rewards", summary="Record rewards of a bandit experiment")
async def post_rewards(key: KeyPath, batch: RewardBatch, runtime: RuntimeDep, _key: AnyKey) -> RewardsPublic:
    """Record one reward per unit (1 or 0 for a conversion, else the value), in the arm and window of the
    unit's assignment; all or nothing. A unit's first reward is its reward: re-sending adds nothing.
    Each reward must lie in the experiment's reward range (``allocation.bandit.reward_range``; by
    default [0, 1] for a Bernoulli policy, [-1e12, 1e12] otherwise): one outside it refuses the
    batch (422, naming ``rewards.<i>.reward``). Units with no assignment are listed in ``skipped``;
    the rules are those of :func:`splitlab.operations.bandits.record_rewards`.
    """  # noqa: D205
    limit = runtime.settings.max_batch_size
    if len(batch.rewards) > limit:
        raise http_error(
            status.HTTP_413_CONTENT_TOO_LARGE, "rewards", f"{len(batch.rewards)} rewards, at most {limit} per request"
        )
    pairs = [(item.unit_id, item.reward) for item in batch.rewards]
    recorded = await run_in_threadpool(record_rewards, runtime.store, key, pairs)
    runtime.telemetry.bandit_rewards.labels(key).inc(recorded.recorded)
    return RewardsPublic(
        received=len(batch.rewards),
        recorded=recorded.recorded,
        duplicates=recorded.duplicates,
        skipped=list(recorded.skipped),
    )
