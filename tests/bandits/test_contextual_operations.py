"""Contextual bandits from a spec, through the store (SQLite and PostgreSQL): per-unit weights from attributes.

Arm ``a`` converts 70 % of units with ``x > 0`` and 30 % of the others, arm ``b`` the reverse:
after a few windows the policy sends each unit to its better arm, and the readout is still valid.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from splitlab.analysis.readout import Decision
from splitlab.assignment import compile_plan
from splitlab.operations.analysis import analyze
from splitlab.operations.assignment import assign, evaluate
from splitlab.operations.bandits import (
    current_allocation,
    current_weights,
    record_rewards,
    window_phases,
)
from splitlab.operations.errors import ConflictError
from splitlab.operations.experiments import apply_spec, change_status, define_metrics
from splitlab.specs import ExperimentSpec, MetricDefinition, to_plan
from splitlab.storage import Event, Exposure, Store, open_store

PER_WINDOW = 120


def contextual_spec(policy: str = "linucb") -> ExperimentSpec:
    bandit = {"policy": policy, "context": ["x"], "metric": "signup", "update_every": PER_WINDOW, "floor": 0.05}
    return ExperimentSpec.model_validate(
        {
            "key": "ctx",
            "variants": [{"key": "a"}, {"key": "b"}],
            "metrics": {"goal": ["signup_rate"]},
            "allocation": {"method": "bandit", "bandit": bandit},
        }
    )


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with open_store(database_url) as opened:
        define_metrics(opened, [MetricDefinition(name="signup_rate", kind="binary", event="signup")], actor="ana")
        yield opened


def run_windows(store: Store, spec: ExperimentSpec, rng: np.random.Generator, windows: int = 4) -> None:
    apply_spec(store, spec, actor="ana")
    change_status(store, key="ctx", action="start", actor="ana")
    plan = compile_plan(to_plan(spec))
    for window in range(windows):
        allocation = current_allocation(store, "ctx")
        attributes: list[dict[str, Any]] = [{"x": float(x)} for x in rng.uniform(-1, 1, PER_WINDOW)]
        units = [(f"w{window}-{i}", a) for i, a in enumerate(attributes)]
        results = evaluate(plan, units, unit_weights=allocation.unit_weights(attributes))
        variants = {r.unit_id: str(r.variant) for r in results}
        store.assignments.record_many(experiment_key="ctx", variants=variants)
        now = datetime.now(UTC)
        exposures, events, rewards = [], [], {}
        for (unit, attrs), variant in zip(units, variants.values(), strict=True):
            good = (attrs["x"] > 0) == (variant == "a")
            converted = bool(rng.random() < (0.7 if good else 0.3))
            rewards[unit] = float(converted)
            exposures.append(
                Exposure(experiment_key="ctx", unit_id=unit, variant=variant, timestamp=now, attributes=attrs)
            )
            if converted:
                events.append(Event(event_id=f"e-{unit}", unit_id=unit, name="signup", timestamp=now))
        store.exposures.log_many(exposures)
        store.events.log_many(events)
        assert record_rewards(store, "ctx", rewards).recorded == PER_WINDOW


@pytest.mark.parametrize("policy", ["linucb", "linear-thompson"])
def test_a_contextual_policy_learns_per_unit_weights_from_the_store(store: Store, policy: str) -> None:
    run_windows(store, contextual_spec(policy), np.random.default_rng(3))
    allocation = current_allocation(store, "ctx")
    assert allocation.window == 4
    positive, negative = allocation.unit_weights([{"x": 0.8}, {"x": -0.8}])
    assert positive[0] > 0.8
    assert negative[1] > 0.8
    assert min(positive + negative) >= 0.05 - 1e-12  # the floor
    # A unit's draw is its hash within its own weights: the same answer every time.
    first = assign(store, "ctx", "newcomer", {"x": 0.9}, preview=True)
    assert [assign(store, "ctx", "newcomer", {"x": 0.9}).variant for _ in range(3)] == [first.variant] * 3
    kept = assign(store, "ctx", "w0-0", {"x": 0.0})
    assert kept.reason == "sticky"  # an assigned unit keeps its variant whatever its context now


def test_the_readout_checks_each_window_against_its_mean_probabilities(store: Store) -> None:
    run_windows(store, contextual_spec(), np.random.default_rng(5))
    phases = window_phases(store, "ctx")
    assert len(phases) == 4
    assert phases[0].weights == pytest.approx({"a": 0.5, "b": 0.5})  # burn-in
    readout = analyze(store, "ctx", save=False).readout
    assert not readout.srm.flag
    assert readout.decision is not None
    assert readout.decision.category is not Decision.INVALID


def test_contextual_refusals_name_what_is_missing(store: Store) -> None:
    apply_spec(store, contextual_spec(), actor="ana")
    change_status(store, key="ctx", action="start", actor="ana")
    with pytest.raises(ValueError, match=r"attributes\.x == None, must be a finite number"):
        assign(store, "ctx", "u1", {"country": "FR"})
    with pytest.raises(ValueError, match=r"attributes\.x == 'high', must be a finite number"):
        assign(store, "ctx", "u1", {"x": "high"})
    with pytest.raises(ConflictError, match="its weights are per unit"):
        current_weights(store, "ctx")
    variant = str(assign(store, "ctx", "u1", {"x": 0.5}, record=True).variant)
    # The context is the one logged with the unit's exposure: no exposure, no reward yet.
    assert record_rewards(store, "ctx", {"u1": 1.0}).skipped == ("u1",)
    now = datetime.now(UTC)
    store.exposures.log(
        Exposure(experiment_key="ctx", unit_id="u1", variant=variant, timestamp=now, attributes={"x": 0.5})
    )
    assert record_rewards(store, "ctx", {"u1": 1.0}).recorded == 1
