"""splitlab.operations.bandits on a real store (SQLite and PostgreSQL): settings, sticky units, windows, rewards."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from splitlab.bandits import period_weighted_estimates
from splitlab.operations.assignment import UnitAssignment, assign
from splitlab.operations.bandits import (
    SETTINGS,
    bandit_estimates,
    bandit_settings,
    current_weights,
    record_events,
    record_reward,
    record_rewards,
)
from splitlab.operations.errors import ConflictError, InvalidInputError
from splitlab.specs import ExperimentSpec
from splitlab.stats.statistics import MeanStatistic
from splitlab.storage import Event, NotFoundError, Store, open_store


def assign_unit(store: Store, key: str, unit: str) -> UnitAssignment:
    """A unit as the service assigns it: recorded, so it keeps its variant."""
    return assign(store, key, unit, record=True)


def spec(key: str = "cta", variants: tuple[str, ...] = ("a", "b"), **bandit: Any) -> dict[str, Any]:
    options = {"policy": "thompson", "draws": 1000} | bandit
    return {
        "key": key,
        "variants": [{"key": v} for v in variants],
        "allocation": {"method": "bandit", "bandit": options},
    }


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with open_store(database_url) as opened:
        yield opened


def create(store: Store, status: str = "running", **bandit: Any) -> str:
    store.experiments.create(key="cta", spec=spec(**bandit), actor="ana", status=status)
    return "cta"


def reward_rows(store: Store, key: str = "cta") -> dict[str, tuple[int, float]]:
    """The bandit state but the windows' frozen weights (``~weight:<variant>@<window>``)."""
    return {
        arm: (row.n, row.sum)
        for arm, row in store.bandits.get(experiment_key=key).items()
        if not arm.startswith("~weight:")
    }


# ------------------------------------------------------------------------------------------
# Settings (no store)


def test_settings_defaults() -> None:
    settings = bandit_settings(ExperimentSpec.model_validate(spec()))
    assert (settings.policy, settings.update_minutes, settings.update_every, settings.seed) == (
        "thompson",
        60.0,
        None,
        0,
    )
    assert (settings.production.floor, settings.production.statistics) == (0.01, "within-period")
    full = spec(
        policy="epsilon-greedy", options={"epsilon": 0.2}, metric="purchase", update_every=500, burn_in=1000,
        floor=0.05, stop_p_best=0.95, stop_expected_loss=0.001, statistics="period-weighted", seed=7,
    )  # fmt: skip
    settings = bandit_settings(ExperimentSpec.model_validate(full))
    assert set(full["allocation"]["bandit"]) <= set(SETTINGS)
    assert settings.make_policy(2).epsilon == 0.2  # type: ignore[attr-defined]
    assert (settings.update_minutes, settings.update_every, settings.production.burn_in) == (None, 500, 1000)


def test_settings_are_checked_with_the_spec() -> None:
    # Bounds and unknown keys are the spec's (tests/specs/test_model.py); what reaches here is valid.
    settings = bandit_settings(ExperimentSpec.model_validate(spec(variants=("a", "b", "c", "d"), floor=0.25)))
    assert settings.production.floor == 0.25
    with pytest.raises(
        ValueError, match=r"allocation\.bandit\.floor\n  Value error, floor == 0\.3, must be <= 1/4 for 4 variants"
    ):
        ExperimentSpec.model_validate(spec(variants=("a", "b", "c", "d"), floor=0.3))


def test_a_stored_spec_with_an_unknown_setting_is_refused_on_read(store: Store) -> None:
    # Stored before the spec checked allocation.bandit: re-validated on every read, named.
    create(store, colour="red")
    with pytest.raises(ValueError, match=r"allocation\.bandit\.colour\n  Extra inputs are not permitted"):
        assign_unit(store, "cta", "user-1")


def test_a_spec_without_bandit_allocation_is_refused() -> None:
    plain = ExperimentSpec.model_validate({"key": "x", "variants": [{"key": "a"}, {"key": "b"}]})
    with pytest.raises(ValueError, match=r"allocation\.method == 'hash', must be 'bandit'"):
        bandit_settings(plain)


# ------------------------------------------------------------------------------------------
# Assignment, windows, rewards


def test_assignment_is_sticky_while_the_weights_move(store: Store) -> None:
    key = create(store, update_every=40, floor=0.05)
    units = [f"u{i}" for i in range(40)]
    first = {u: assign_unit(store, key, u).variant for u in units}
    assert set(first.values()) == {"a", "b"}
    assert {u: store.assignments.get(experiment_key=key, unit_id=u).variant for u in units} == first  # type: ignore[union-attr]
    record_rewards(store, key, {u: float(v == "b") for u, v in first.items()})
    assert current_weights(store, key).by_variant()["b"] > 0.9
    again = [assign_unit(store, key, u) for u in units]
    assert [a.variant for a in again] == [first[u] for u in units]
    assert {a.reason for a in again} == {"sticky"}
    newcomers = [assign_unit(store, key, f"new{i}").variant for i in range(100)]
    assert newcomers.count("b") > 80


def test_an_inactive_experiment_assigns_nobody(store: Store) -> None:
    key = create(store, status="draft")
    result = assign_unit(store, key, "u1")
    assert (result.enrolled, result.reason) == (False, "inactive")
    assert store.assignments.get(experiment_key=key, unit_id="u1") is None
    assert assign(store, key, "u1", preview=True).enrolled
    assert store.assignments.get(experiment_key=key, unit_id="u1") is None  # a preview records nothing


def test_count_based_windows_start_when_enough_rewards_are_in(store: Store) -> None:
    key = create(store, update_every=20)
    units = [f"u{i}" for i in range(30)]
    variants = {u: assign_unit(store, key, u).variant for u in units}
    assert current_weights(store, key).phase == "burn-in"
    record_rewards(store, key, dict.fromkeys(units[:19], 1.0))
    assert current_weights(store, key).window == 0
    record_rewards(store, key, {units[19]: 1.0})
    weights = current_weights(store, key)
    assert (weights.window, weights.phase, weights.units) == (1, "adaptive", 20)
    rows = reward_rows(store, key)
    assert rows["~count@0"] == (20, 0.0)
    assert set(rows) >= {"~start@1"}
    late = [f"late{i}" for i in range(5)]
    for unit in late:
        variants[unit] = assign_unit(store, key, unit).variant
    record_rewards(store, key, dict.fromkeys([*late, *units[20:]], 0.0))
    rows = reward_rows(store, key)
    assert sum(n for arm, (n, _) in rows.items() if arm.endswith("@1") and not arm.startswith("~")) == 5
    assert sum(n for arm, (n, _) in rows.items() if arm.endswith("@0") and not arm.startswith("~")) == 30


def test_time_windows_use_the_earlier_windows(store: Store) -> None:
    key = create(store, update_minutes=60, floor=0.02)
    units = [f"u{i}" for i in range(60)]
    variants = {u: assign_unit(store, key, u).variant for u in units}
    record_rewards(store, key, {u: float(v == "a") for u, v in variants.items()})
    now = datetime.now(UTC)
    assert current_weights(store, key, now=now - timedelta(hours=1)).phase == "burn-in"
    later = current_weights(store, key, now=now + timedelta(hours=2))
    assert (later.phase, later.units) == ("adaptive", 60)
    assert later.weights[0] == pytest.approx(0.98, abs=1e-9)
    assert later.weights == current_weights(store, key, now=now + timedelta(hours=2)).weights  # same window, same seed


def test_the_stopping_rule_hands_the_winner_everything_for_good(store: Store) -> None:
    key = create(store, update_every=60, stop_p_best=0.99)
    units = [f"u{i}" for i in range(60)]
    variants = {u: assign_unit(store, key, u).variant for u in units}
    record_rewards(store, key, {u: float(v == "b") for u, v in variants.items()})
    weights = current_weights(store, key)
    assert (weights.phase, weights.winner, weights.weights) == ("stopped", "b", (0.0, 1.0))
    assert "~winner@b" in reward_rows(store, key)
    newcomers = [f"n{i}" for i in range(60)]
    assert {assign_unit(store, key, u).variant for u in newcomers} == {"b"}
    record_rewards(store, key, dict.fromkeys(newcomers, 0.0))
    assert current_weights(store, key).weights == (0.0, 1.0)


def test_rewards_from_metric_events(store: Store) -> None:
    key = create(store, metric="purchase")
    for unit in ("u1", "u2", "u3"):
        assign_unit(store, key, unit)
    at = datetime(2024, 5, 1, tzinfo=UTC)
    events = [
        Event(event_id="e1", unit_id="u1", name="purchase", timestamp=at),
        Event(event_id="e2", unit_id="u1", name="purchase", timestamp=at),  # converted is converted: capped at 1
        Event(event_id="e3", unit_id="u2", name="purchase", value=0.25, timestamp=at),
        Event(event_id="e4", unit_id="u3", name="page_view", timestamp=at),
        Event(event_id="e5", unit_id="stranger", name="purchase", timestamp=at),
    ]
    report = record_events(store, key, events)
    assert (report.recorded, report.skipped) == (2, ("stranger",))
    rows = [row for arm, row in reward_rows(store, key).items() if not arm.startswith("~")]
    assert (sum(n for n, _ in rows), sum(s for _, s in rows)) == (2, 1.25)


def test_estimates_are_period_weighted_over_the_windows(store: Store) -> None:
    key = create(store, update_every=10)
    rng = np.random.default_rng(0)
    for window in range(3):
        units = [f"w{window}-{i}" for i in range(10)]
        variants = {u: assign_unit(store, key, u).variant for u in units}
        record_rewards(store, key, {u: float(rng.random() < (0.7 if v == "a" else 0.4)) for u, v in variants.items()})
    rows = reward_rows(store, key)
    periods = [
        [MeanStatistic(*rows.get(f"{v}@{w}", (0, 0.0)), sum_sq=rows.get(f"{v}@{w}", (0, 0.0))[1]) for v in "ab"]
        for w in range(3)
    ]
    expected = period_weighted_estimates(periods)
    estimates = bandit_estimates(store, key)
    assert list(estimates) == ["a", "b"]
    assert [e.mean for e in estimates.values()] == pytest.approx([e.mean for e in expected], rel=1e-12)


def test_bad_rewards_and_missing_things_are_refused(store: Store) -> None:
    key = create(store)
    assign_unit(store, key, "u1")
    with pytest.raises(ValueError, match="unit 'ghost' has no assignment"):
        record_reward(store, key, "ghost", 1.0)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\] for policy 'thompson'"):
        record_reward(store, key, "u1", 2.0)
    with pytest.raises(ValueError, match="must be a finite number"):
        record_reward(store, key, "u1", float("nan"))
    with pytest.raises(ValueError, match="has no rewards yet"):
        bandit_estimates(store, key)
    with pytest.raises(ValueError, match=r"allocation\.bandit\.metric is not set"):
        record_events(store, key, [])
    with pytest.raises(NotFoundError, match="'nope' does not exist"):
        current_weights(store, "nope")
    with pytest.raises(ValueError, match=r"now == .*, must be timezone-aware"):
        current_weights(store, key, now=datetime(2024, 1, 1))
    assert reward_rows(store, key) == {}


def test_a_batch_is_refused_whole_naming_each_bad_reward_by_position(store: Store) -> None:
    key = create(store)
    for unit in ("u1", "u2"):
        assign_unit(store, key, unit)
    with pytest.raises(InvalidInputError) as refused:
        record_rewards(store, key, [("u1", 1.0), ("u2", 2.0), ("u1", float("inf"))])
    assert [field for field, _ in refused.value.problems] == ["rewards.1.reward", "rewards.2.reward"]
    assert reward_rows(store, key) == {}
    # A unit listed twice keeps its first reward; the repeat counts as a duplicate.
    report = record_rewards(store, key, [("u1", 1.0), ("u2", 0.0), ("u1", 0.0)])
    assert (report.recorded, report.duplicates) == (2, 1)


def test_rewards_of_an_experiment_that_is_not_a_bandit_are_a_conflict(store: Store) -> None:
    spec = {"key": "plain", "variants": [{"key": "a"}, {"key": "b"}]}
    store.experiments.create(key="plain", spec=spec, actor="ana", status="running")
    with pytest.raises(ConflictError, match=r"has allocation\.method 'hash'; weights and rewards are for bandit"):
        record_rewards(store, "plain", {"u1": 1.0})
    with pytest.raises(ConflictError):
        current_weights(store, "plain")


# ------------------------------------------------------------------------------------------
# Two processes at once


def test_two_processes_lose_no_reward_and_agree_on_assignments(
    database_url: str,
    store: Store,
    run_python: Callable[..., list[subprocess.CompletedProcess[str]]],
    start_together: Callable[[int, int], str],
) -> None:
    key = create(store)
    own = [[f"p{p}-{i}" for i in range(60)] for p in range(2)]
    for units in own:
        for unit in units:
            assign_unit(store, key, unit)
    shared = [f"shared-{i}" for i in range(30)]
    code = (
        "import json\n"
        "from splitlab.operations.assignment import assign\n"
        "from splitlab.operations.bandits import record_reward\n"
        "from splitlab.storage import open_store\n"
        f"store = open_store({database_url!r})\n"
        "{barrier}"
        "seen = {{}}\n"
        "for i, unit in enumerate({units!r}):\n"
        f"    record_reward(store, {key!r}, unit, (i % 3) / 2)\n"
        "    if i < {shared_count}:\n"
        f"        shared = 'shared-' + str(i)\n"
        f"        seen[shared] = assign(store, {key!r}, shared, record=True).variant\n"
        "print(json.dumps(seen))\n"
        "store.close()\n"
    )
    results = run_python(
        *(code.format(barrier=start_together(2, p), units=own[p], shared_count=len(shared)) for p in range(2))
    )
    for result in results:
        assert result.returncode == 0, result.stderr
    rows = [row for arm, row in reward_rows(store, key).items() if not arm.startswith("~")]
    assert sum(n for n, _ in rows) == 120
    assert sum(s for _, s in rows) == pytest.approx(2 * sum((i % 3) / 2 for i in range(60)), abs=1e-9)
    seen = [json.loads(result.stdout) for result in results]
    stored = {u: store.assignments.get(experiment_key=key, unit_id=u).variant for u in shared}  # type: ignore[union-attr]
    assert seen[0] == seen[1] == stored
