"""Bandit rewards are bounded: the spec's reward range, the refusal of a batch, the store's finite totals.

One reward of 1.5e308 used to make an arm's sum of squares infinite, and the weights of every later
window NaN-driven 50/50 (issue 15). Each layer is tested on its own, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from sqlalchemy import update

from splitlab.operations.assignment import assign
from splitlab.operations.bandits import bandit_estimates, bandit_settings, current_weights, record_rewards
from splitlab.operations.errors import InvalidInputError
from splitlab.specs import Bandit, ExperimentSpec
from splitlab.storage import BanditReward, Store, open_store
from splitlab.storage.bandits import NonFiniteTotalsError
from splitlab.storage.tables import bandit_state

LIMIT = Bandit.REWARD_LIMIT


def spec(**bandit: Any) -> dict[str, Any]:
    return {
        "key": "cta",
        "variants": [{"key": "a"}, {"key": "b"}],
        "allocation": {"method": "bandit", "bandit": {"policy": "gaussian-thompson", "draws": 1000} | bandit},
    }


def errors(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        ExperimentSpec.model_validate(data)
    return {".".join(map(str, e["loc"])): e["msg"] for e in info.value.errors()}


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with open_store(database_url) as opened:
        yield opened


def create(store: Store, **bandit: Any) -> str:
    store.experiments.create(key="cta", spec=spec(**bandit), actor="ana", status="running")
    return "cta"


def reward_cells(store: Store) -> dict[str, tuple[int, float, float]]:
    """The (variant, window) totals: the state but its bookkeeping rows (``~weight:``, ``~count@`` ...)."""
    return {k: (a.n, a.sum, a.sum_sq) for k, a in store.bandits.get(experiment_key="cta").items() if "~" not in k}


# ------------------------------------------------------------------------------------------
# The spec: allocation.bandit.reward_range


@pytest.mark.parametrize(
    ("reward_range", "field", "message"),
    [
        ([5, 1], "allocation.bandit.reward_range", r"reward_range == \[5, 1\], must be \[low, high\] with low < high"),
        ([2, 2], "allocation.bandit.reward_range", r"must be \[low, high\] with low < high"),
        ([0, 1e13], "allocation.bandit.reward_range", r"must lie within \[-1e\+12, 1e\+12\] \(the hard bound\)"),
        ([0, math.inf], "allocation.bandit.reward_range.1", "finite number"),
        ([math.nan, 1], "allocation.bandit.reward_range.0", "finite number"),
        ([1], "allocation.bandit.reward_range.1", "Field required"),
        ([0, 1, 2], "allocation.bandit.reward_range", "at most 2 items"),
        (5, "allocation.bandit.reward_range", "valid tuple"),
        (["0", 1], "allocation.bandit.reward_range.0", "valid number"),
        ([True, 2], "allocation.bandit.reward_range.0", "valid number"),
    ],
)
def test_a_bad_reward_range_is_named(reward_range: object, field: str, message: str) -> None:
    found = errors(spec(reward_range=reward_range))
    assert list(found) == [field]
    assert re.search(message, found[field]), found[field]


@pytest.mark.parametrize(
    ("policy", "options"),
    [("thompson", {}), ("top-two-thompson", {}), ("ucb1-tuned", {})],
)
def test_a_bernoulli_policy_takes_a_range_within_the_unit_interval_only(policy: str, options: dict[str, Any]) -> None:
    found = errors(spec(policy=policy, options=options, reward_range=[0, 10]))
    assert list(found) == ["allocation.bandit.reward_range"]
    assert f"must lie within [0, 1] for policy {policy!r}" in found["allocation.bandit.reward_range"]
    narrower = ExperimentSpec.model_validate(spec(policy=policy, reward_range=[0, 0.5]))
    assert bandit_settings(narrower).reward_bounds(2) == (0.0, 0.5)


@pytest.mark.parametrize(
    ("bandit", "bounds"),
    [
        ({"policy": "thompson"}, (0.0, 1.0)),
        ({"policy": "top-two-thompson", "options": {"likelihood": "gaussian"}}, (-LIMIT, LIMIT)),
        ({"policy": "gaussian-thompson"}, (-LIMIT, LIMIT)),
        ({"policy": "epsilon-greedy"}, (-LIMIT, LIMIT)),
        ({"policy": "linucb", "context": ["age"]}, (-LIMIT, LIMIT)),
        ({"policy": "gaussian-thompson", "reward_range": [-5, 250.5]}, (-5.0, 250.5)),
        ({"policy": "top-two-thompson", "options": {"likelihood": "gaussian"}, "reward_range": [0, 1e12]}, (0, LIMIT)),
    ],
)
def test_the_bounds_of_a_reward_default_by_policy(bandit: dict[str, Any], bounds: tuple[float, float]) -> None:
    settings = bandit_settings(ExperimentSpec.model_validate(spec(**bandit)))
    assert settings.reward_bounds(2) == bounds
    assert LIMIT == 1e12


# ------------------------------------------------------------------------------------------
# The operation: a batch is checked whole against the bounds


def test_the_reproduction_is_refused_whole_naming_the_reward(store: Store) -> None:
    key = create(store, update_every=40)
    for unit in ("u1", "u2", "u3"):
        assign(store, key, unit, record=True)
    with pytest.raises(InvalidInputError) as refused:
        record_rewards(store, key, [("u1", 3.0), ("u2", 1.5e308), ("u3", -2e12)])
    assert [field for field, _ in refused.value.problems] == ["rewards.1.reward", "rewards.2.reward"]
    message = refused.value.problems[0][1]
    assert message.startswith("reward of unit 'u2' == 1.5e+308, must be in [-1e+12, 1e+12] (the default bound")
    assert "allocation.bandit.reward_range" in message
    assert reward_cells(store) == {}  # nothing of the batch, u1 included
    assert record_rewards(store, key, [("u1", 3.0), ("u2", 1e12), ("u3", -1e12)]).recorded == 3  # at the bounds


def test_a_declared_range_takes_its_bounds_and_refuses_past_them(store: Store) -> None:
    key = create(store, reward_range=[0, 100])
    for unit in ("u1", "u2", "u3"):
        assign(store, key, unit, record=True)
    with pytest.raises(InvalidInputError) as refused:
        record_rewards(store, key, {"u1": 0.0, "u2": 100.0, "u3": 100.5})
    assert refused.value.problems == (
        ("rewards.2.reward", "reward of unit 'u3' == 100.5, must be in [0, 100] (allocation.bandit.reward_range)"),
    )
    with pytest.raises(InvalidInputError, match=r"rewards\.0\.reward: reward of unit 'u3' == -1e-09"):
        record_rewards(store, key, {"u3": -1e-9})
    assert reward_cells(store) == {}
    assert record_rewards(store, key, {"u1": 0.0, "u2": 100.0}).recorded == 2
    assert sorted((n, s) for n, s, _ in reward_cells(store).values()) in ([(1, 0.0), (1, 100.0)], [(2, 100.0)])


# ------------------------------------------------------------------------------------------
# The store: no total that is not finite is ever committed, whoever the caller


def test_the_store_refuses_an_increment_that_overflows_and_keeps_the_totals(store: Store) -> None:
    key = create(store)
    assert store.bandits.add(experiment_key=key, arm="b@0", n=1, sum=1.5e308, sum_sq=0.0).sum == 1.5e308
    # SQLite adds to infinity, PostgreSQL raises "value out of range: overflow": both are refused alike.
    with pytest.raises(NonFiniteTotalsError, match=r"the totals of arm 'b@0' of experiment 'cta' would not be finite"):
        store.bandits.add(experiment_key=key, arm="b@0", n=1, sum=1.5e308, sum_sq=0.0)
    store.bandits.add(experiment_key=key, arm="a@0", n=1, sum=0.0, sum_sq=1e308)
    with pytest.raises(NonFiniteTotalsError, match=r"arm 'a@0' of experiment 'cta' would not be finite"):
        store.bandits.add(experiment_key=key, arm="a@0", n=1, sum=0.0, sum_sq=1e308)
    assert reward_cells(store) == {"a@0": (1, 0.0, 1e308), "b@0": (1, 1.5e308, 0.0)}


def test_the_store_refuses_a_batch_whose_totals_overflow_and_stores_none_of_it(store: Store) -> None:
    key = create(store)
    huge = [BanditReward("u1", "b", "b@0", 1.0), BanditReward("u2", "b", "b@0", 1.5e308)]
    with pytest.raises(NonFiniteTotalsError, match=r"arm 'b@0'.*adding sum == 1\.5e\+308, sum_sq == inf"):
        store.bandits.add_rewards(experiment_key=key, bucket_version=1, rewards=huge)
    assert reward_cells(store) == {}
    clean = [BanditReward("u1", "b", "b@0", 1.0), BanditReward("u2", "b", "b@0", 2.0)]
    assert len(store.bandits.add_rewards(experiment_key=key, bucket_version=1, rewards=clean)) == 2  # none kept before
    assert reward_cells(store) == {"b@0": (2, 3.0, 5.0)}


# ------------------------------------------------------------------------------------------
# A store poisoned before the bounds: the poisoned cell is left out, the weights still move


def _assign_window(store: Store, key: str, prefix: str, rng: np.random.Generator, *, lift: float) -> dict[str, float]:
    rewards = {}
    for i in range(20):
        unit = f"{prefix}{i}"
        variant = assign(store, key, unit, record=True).variant
        rewards[unit] = float(rng.normal()) + (lift if variant == "b" else 0.0)
    return rewards


def test_a_total_poisoned_before_the_bounds_is_left_out_with_a_warning(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    key = create(store, update_every=20, seed=3)
    rng = np.random.default_rng(11)
    first = _assign_window(store, key, "w0-", rng, lift=0.0)
    late = next(u for u in (f"late{i}" for i in range(100)) if assign(store, key, u, record=True).variant == "b")
    assert record_rewards(store, key, first).recorded == 20  # window 0 full; the late unit is of window 0 too
    with store.engine.begin() as conn:  # what a store written before the bounds holds after a reward of 1.5e308
        conn.execute(
            update(bandit_state)
            .where(bandit_state.c.experiment_key == key, bandit_state.c.arm == "b@0")
            .values(sum=1.5e308, sum_sq=math.inf)
        )
    assert record_rewards(store, key, _assign_window(store, key, "w1-", rng, lift=10.0)).recorded == 20
    with caplog.at_level(logging.WARNING, logger="splitlab.operations"):
        weights = current_weights(store, key)
        estimates = bandit_estimates(store, key)
    assert weights.window == 2
    assert weights.by_variant()["b"] > 0.95  # a clean experiment's answer; the NaN statistics gave about 50/50
    assert all(math.isfinite(e.mean) for e in estimates.values())
    assert estimates["b"].mean - estimates["a"].mean == pytest.approx(10.0, abs=1.5)
    assert any("'b@0'" in r.getMessage() and "not finite" in r.getMessage() for r in caplog.records)
    # A late reward for the poisoned cell cannot be added to it: the store refuses, the operation names the batch.
    before = reward_cells(store)
    with pytest.raises(InvalidInputError) as refused:
        record_rewards(store, key, {late: 1.0})
    [(field, message)] = refused.value.problems
    assert (field, "the totals of arm 'b@0' of experiment 'cta' would not be finite" in message) == ("rewards", True)
    assert reward_cells(store) == before
