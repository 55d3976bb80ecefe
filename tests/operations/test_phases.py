"""Allocation phases are recorded by the use cases every front end calls (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from splitlab.operations.experiments import apply_spec, change_status, history, phases
from splitlab.specs import ExperimentSpec
from splitlab.storage import Store, open_store


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with open_store(database_url) as opened:
        yield opened


def _spec(control: float = 0.1, **changes: Any) -> ExperimentSpec:
    variants = [{"key": "control", "weight": control}, {"key": "treatment", "weight": round(1 - control, 10)}]
    return ExperimentSpec.model_validate({"key": "ramp", "variants": variants, **changes})


def test_start_and_each_change_of_weights_start_a_phase_with_their_version(store: Store) -> None:
    apply_spec(store, _spec(0.5), actor="ana")
    apply_spec(store, _spec(0.1), actor="ana")  # a draft: the weights in force are those at the start
    assert phases(store, "ramp") == []
    started = change_status(store, key="ramp", action="start", actor="ana")
    apply_spec(store, _spec(0.1, coverage=0.5), actor="ana")  # a coverage ramp keeps the weights
    country = {"attribute": "country", "operator": "in", "value": ["FR"]}
    apply_spec(store, _spec(0.1, targeting={"include": [country]}), actor="ana")
    ramped = apply_spec(store, _spec(0.5), actor="bo")
    change_status(store, key="ramp", action="pause", actor="ana")
    change_status(store, key="ramp", action="start", actor="ana")  # resumed with the same weights
    recorded = phases(store, "ramp")
    assert [(p.phase, p.spec_version, p.weights) for p in recorded] == [
        (1, started.record.current_version, {"control": 0.1, "treatment": 0.9}),
        (2, ramped.version, {"control": 0.5, "treatment": 0.5}),
    ]
    versions = {v.version: v.changed_at for v in history(store, "ramp")}
    assert [p.started_at for p in recorded] == [versions[p.spec_version] for p in recorded]


def test_a_bandit_has_no_phases_its_windows_move_the_weights(store: Store) -> None:
    bandit = {"method": "bandit", "bandit": {"policy": "thompson", "metric": "signup"}}
    apply_spec(store, _spec(0.5, allocation=bandit), actor="ana")
    change_status(store, key="ramp", action="start", actor="ana")
    assert phases(store, "ramp") == []
