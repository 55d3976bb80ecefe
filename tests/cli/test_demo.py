"""``splitlab demo`` tells the truth: planned traffic, the stated baselines, and the verdicts its plantings call for."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from splitlab.cli.demo import MARGIN, SCENARIOS, Scenario, examples_path, plan_traffic
from splitlab.specs import load_catalog
from splitlab.storage import open_store

if TYPE_CHECKING:
    from tests.conftest import DemoRun

CATALOG = load_catalog(examples_path())
README = (examples_path() / "README.md").read_text(encoding="utf-8")


def test_the_demo_reaches_the_verdicts_it_plants_on_the_traffic_its_specs_plan(demo_run: DemoRun) -> None:
    # `splitlab demo` from the installed wheel, run once for this test and tests/test_packaging.py (tests/conftest.py).
    assert demo_run.process.returncode == 0, demo_run.process.stdout + demo_run.process.stderr
    output = demo_run.process.stdout
    lines = output.splitlines()
    with open_store(f"sqlite:///{demo_run.database}") as store:
        for key, spec in CATALOG.experiments.items():
            scenario = SCENARIOS[key]
            # The verdict is printed beside what was planted, and it is the one the planting calls for.
            assert f"{key}: {scenario.expected}    planted: {scenario.planted()}" in lines
            snapshot = store.snapshots.latest(experiment_key=key)
            assert snapshot is not None
            readout = snapshot.payload
            assert readout["decision"]["category"] == scenario.expected, readout["decision"]["reasons"]
            planned = readout["planned_units_per_variant"]
            assert planned == plan_traffic(spec).planned_per_variant
            if spec.monitoring.auto_rollback:
                # Watched daily by the monitor, which rolled it back (paused) at the look it acted on,
                # before the plan: a sequential test may act at any look, and a ROLLBACK at any time.
                [action] = store.monitor.actions(key=key)
                assert (action.action, action.actor, action.snapshot_id) == ("rollback", "monitor", snapshot.id)
                assert store.experiments.get(key=key).status == "paused"
                assert re.search(r"monitor: watched daily; on day \d+ it rolled back", output)
            else:
                # The plan is met (every variant has its planned units) over the schedule's minimum duration.
                assert min(readout["units"].values()) >= planned
                assert readout["days_running"] >= (spec.schedule.min_duration_days or 0)
            # The primary metric's control mean is the hypothesis baseline, within 3 standard errors.
            assert spec.hypothesis is not None
            assert spec.hypothesis.baseline is not None
            primary = next(
                m for m in readout["metrics"] if m["metric"] == spec.hypothesis.primary_metric and not m["segment"]
            )
            control_se = primary["std_errors"][0]
            assert abs(primary["effect"]["control_mean"] - spec.hypothesis.baseline) < 3 * control_se
    # The monitor's notifications reached the demo's webhook receiver, signed.
    deliveries = [line for line in lines if line.startswith("  - ") and "[signature " in line]
    assert any(line.startswith("  - action_taken: checkout-one-page was rolled back") for line in deliveries)
    assert all(line.endswith("[signature verified]") for line in deliveries)


@pytest.mark.parametrize("key", sorted(CATALOG.experiments))
def test_the_traffic_is_the_plan_over_the_enrolled_share(key: str) -> None:
    spec = CATALOG.experiments[key]
    traffic = plan_traffic(spec)
    smallest = min(v.weight for v in spec.variants)
    enrolled = traffic.units * traffic.enrolled_share * smallest
    assert traffic.planned_per_variant * (1 + MARGIN) <= enrolled < traffic.planned_per_variant * (1 + MARGIN) + 1
    assert traffic.days == spec.schedule.min_duration_days
    assert plan_traffic(spec, scale=0.5).units == pytest.approx(traffic.units / 2, abs=1)


def test_the_examples_readme_states_what_the_demo_plants() -> None:
    section = README.split("## What the demo plants and what it should find", 1)[1]
    rows = re.findall(r"^\| `([\w-]+)` \| (.+?) \| (\w+) \|$", section, flags=re.MULTILINE)
    assert {key: (planted, verdict) for key, planted, verdict in rows} == {
        key: (scenario.planted(), scenario.expected) for key, scenario in SCENARIOS.items()
    }
    assert set(SCENARIOS) == set(CATALOG.experiments)
    # Three experiments, three different verdicts: each one shows another rule at work.
    assert len({scenario.expected for scenario in SCENARIOS.values()}) == len(SCENARIOS)


def test_planted_effects_read_as_the_readme_writes_them() -> None:
    scenario = Scenario(
        expected="LAUNCH", effects={"conversion": 0.1, "aov": -0.02}, segment_effects={"device": {"mobile": 2.0}}
    )
    assert scenario.planted() == "conversion +10% (device: mobile x2), aov -2%"
    assert Scenario(expected="NO_LAUNCH", effects={}).planted() == "nothing (A/A)"
