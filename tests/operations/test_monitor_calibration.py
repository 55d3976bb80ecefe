"""The monitor's automatic actions, calibrated by simulation: a small seeded run of benchmarks/monitor_calibration.py.

The benchmark's own functions watch seeded experiments day by day (the analysis engine's readout,
the monitor's ``plan_action``) on a smaller design than the benchmark's, so that its planned
sample comes on day 4 rather than day 15: the A/A experiments, the harmed guardrail and the real
effect, then a few of them again through the monitor itself on a SQLite store, which must take
the same actions on the same days. The rollback of the harmed guardrail is an expected failure of
today's analysis (the reason is on the test); the benchmark's default run shows it at scale.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def _benchmark() -> ModuleType:
    path = Path(__file__).parents[2] / "benchmarks" / "monitor_calibration.py"
    spec = importlib.util.spec_from_file_location("benchmarks_monitor_calibration", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


bench = _benchmark()

# Relative MDE and lift 30 % on a 10 % conversion: 1,774 units planned per variant, reached on day 4.
DESIGN = bench.Design(daily_units=1_000, days=8, min_days=3, mde=0.3)
SEED = 16
AA, HARMED, LIFTED = 60, 8, 8
CROSS_CHECKED = {"aa": 2, "harm": 1, "lift": 2}


@pytest.fixture(scope="module")
def watches() -> dict[str, list[Any]]:
    ran = bench.run({"aa": AA, "harm": HARMED, "lift": LIFTED}, design=DESIGN, seed=SEED)
    by: dict[str, list[Any]] = {key: [] for key in bench.SCENARIOS}
    for watch in ran:
        by[watch.scenario].append(watch)
    return by


def test_wrong_actions_in_aa_are_within_alpha_plus_3_se(watches: dict[str, list[Any]]) -> None:
    aa = watches["aa"]
    summary = bench.summarize(aa)["aa"]
    wrong = [w for w in aa if w.wrong_in_aa]
    limit = bench.ALPHA + 3 * math.sqrt(bench.ALPHA * (1 - bench.ALPHA) / AA)
    assert summary["wrong"] == len(wrong)
    assert len(wrong) / AA <= limit, [w.outcome for w in wrong]
    # The policy acts: an A/A that reached its plan without an effect is stopped (NO_LAUNCH), not left running.
    stopped = [w for w in aa if w.outcome == "stop (NO_LAUNCH)"]
    assert len(stopped) >= 0.8 * AA, summary["outcomes"]
    # No launch or no-launch category before min_duration_days, so no stop by the policy before it either.
    assert all(w.day >= DESIGN.min_days for w in stopped)


def test_a_guardrail_harmed_by_twice_its_tolerance_is_rolled_back(watches: dict[str, list[Any]]) -> None:
    figures = bench.summarize(watches["harm"])["harm"]
    assert figures["acted"] > HARMED / 2, figures["outcomes"]


def test_a_real_effect_is_promoted(watches: dict[str, list[Any]]) -> None:
    lift = watches["lift"]
    figures = bench.summarize(lift)["lift"]
    assert figures["acted"] > LIFTED / 2, figures["outcomes"]
    promoted = [w for w in lift if w.action == "promote"]
    assert all(w.day >= DESIGN.min_days for w in promoted)
    assert all(w.decision in ("LAUNCH", "STRONG_LAUNCH") for w in promoted)


def test_the_monitor_itself_takes_the_same_actions_on_the_same_days(watches: dict[str, list[Any]]) -> None:
    by_monitor = bench.run(CROSS_CHECKED, design=DESIGN, seed=SEED, via="monitor")
    expected = [w for key, count in CROSS_CHECKED.items() for w in watches[key][:count]]

    def seen(w: Any) -> tuple[Any, ...]:
        return (w.scenario, w.index, w.action, w.day, w.decision, w.scheduled)

    assert [seen(w) for w in by_monitor] == [seen(w) for w in expected]
    # Seeds under which these cover every action: a stop and a rollback by the policy, a promote, a scheduled stop.
    assert {w.action for w in by_monitor} == {"stop", "rollback", "promote"}
    assert any(w.scheduled for w in by_monitor)
