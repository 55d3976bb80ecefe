"""Bandit experiments analysed as bandits: the split per window, period-weighted effects, never INVALID.

A simulated bandit run goes through the real operations: each count-based window's weights from
:func:`splitlab.operations.bandits.current_weights`, units hashed within them and recorded, their
exposures and purchases logged, their rewards recorded (which closes the window), then
:func:`splitlab.operations.analysis.analyze`. Conversion drifts upwards over the windows while
Thompson sampling moves traffic to the better treatment, so the treatment's units come late: the
pooled difference is biased upwards, the period-weighted one is not.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from splitlab.analysis.comparison import PHASED_TEST
from splitlab.analysis.readout import Decision, ExperimentReadout
from splitlab.assignment import compile_plan
from splitlab.operations.analysis import analyze
from splitlab.operations.assignment import evaluate
from splitlab.operations.bandits import current_weights, record_rewards, window_phases
from splitlab.operations.experiments import apply_spec, change_status, define_metrics
from splitlab.specs import ExperimentSpec, MetricDefinition, to_plan
from splitlab.stats.srm import srm_test
from splitlab.storage import Event, Exposure, Store, open_store

CONVERSION = MetricDefinition(name="conversion", kind="binary", event="purchase", window_days=7)
EFFECT = 0.05


def bandit_spec(key: str, *, per_window: int, seed: int = 0) -> ExperimentSpec:
    bandit = {"policy": "thompson", "metric": "purchase", "update_every": per_window, "floor": 0.1, "draws": 1000}
    return ExperimentSpec.model_validate(
        {
            "key": key,
            "variants": [{"key": "control"}, {"key": "treatment"}],
            "metrics": {"goal": ["conversion"]},
            "allocation": {"method": "bandit", "bandit": bandit | {"seed": seed}},
        }
    )


@dataclass(frozen=True)
class Run:
    readout: ExperimentReadout
    pooled: float  # the naive difference of pooled conversion rates
    units: dict[str, int]


def simulate_bandit(
    store: Store,
    key: str,
    rng: np.random.Generator,
    *,
    windows: int = 6,
    per_window: int = 200,
    drift: tuple[float, float] = (0.10, 0.50),
    lost_control: tuple[int, float] | None = None,
) -> Run:
    """Run a bandit experiment window by window through the store and analyse it.

    ``lost_control = (window, share)`` drops that share of control's exposures in one window: a
    real sample ratio mismatch (the bandit still sees every reward).
    """
    spec = bandit_spec(key, per_window=per_window)
    apply_spec(store, spec, actor="ana")
    change_status(store, key=key, action="start", actor="ana")
    plan = compile_plan(to_plan(spec))
    conversions: dict[str, list[int]] = {"control": [0, 0], "treatment": [0, 0]}
    for window in range(windows):
        weights = current_weights(store, key).weights
        units = [(f"{key}-{window}-{i}", None) for i in range(per_window)]
        variants = {r.unit_id: str(r.variant) for r in evaluate(plan, units, weights=weights)}
        store.assignments.record_many(experiment_key=key, variants=variants, bucket_version=spec.bucket_version)
        at = datetime.now(UTC)
        base = drift[0] + (drift[1] - drift[0]) * window / max(windows - 1, 1)
        rewards: dict[str, float] = {}
        exposures, events = [], []
        for unit, variant in variants.items():
            converted = rng.random() < base + (EFFECT if variant == "treatment" else 0.0)
            rewards[unit] = float(converted)
            if lost_control and lost_control[0] == window and variant == "control" and rng.random() < lost_control[1]:
                continue
            conversions[variant][0] += 1
            conversions[variant][1] += converted
            exposures.append(Exposure(experiment_key=key, unit_id=unit, variant=variant, timestamp=at))
            if converted:
                events.append(
                    Event(event_id=f"e-{unit}", unit_id=unit, name="purchase", timestamp=at + timedelta(microseconds=1))
                )
        store.exposures.log_many(exposures)
        store.events.log_many(events)
        record_rewards(store, key, rewards)  # closes the window: the next one starts now
    readout = analyze(store, key, save=False).readout
    (nc, sc), (nt, st) = conversions["control"], conversions["treatment"]
    return Run(readout, st / nt - sc / nc, {"control": nc, "treatment": nt})


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with open_store(database_url) as opened:
        define_metrics(opened, [CONVERSION], actor="ana")
        yield opened


def test_a_bandit_doing_its_job_is_valid_with_the_split_checked_per_window(store: Store) -> None:
    run = simulate_bandit(store, "cta", np.random.default_rng(1))
    readout = run.readout
    phases = window_phases(store, "cta")
    assert len(readout.phases) == len(phases) >= 4  # window 0 (equal weights), then adaptive windows
    assert [p.weights for p in readout.phases] == [p.weights for p in phases]
    assert readout.phases[0].weights == {"control": 0.5, "treatment": 0.5}
    assert readout.phases[-1].weights["treatment"] > 0.6  # traffic moved to the better arm
    assert sum(sum(p.units.values()) for p in readout.phases) == sum(readout.units.values()) == 1200
    # against the spec's equal weights, the whole history is a mismatch; per window it is not
    assert srm_test(readout.units, {"control": 0.5, "treatment": 0.5}).flag
    assert not readout.srm.flag
    assert readout.srm.df == len(readout.phases)
    assert all(check.passed for check in readout.health if check.name in ("srm", "sequential_srm"))
    assert readout.configured_weights == readout.phases[-1].weights
    [conversion] = readout.metrics
    assert conversion.effect.test == PHASED_TEST
    assert readout.decision is not None
    assert readout.decision.category is not Decision.INVALID
    assert readout.status_summary()["srm_flag"] is False


def test_an_srm_planted_inside_one_window_is_caught(store: Store) -> None:
    run = simulate_bandit(store, "cta", np.random.default_rng(1), per_window=300, lost_control=(2, 0.9))
    readout = run.readout
    assert readout.srm.flag
    assert readout.phases[2].weights["control"] < 0.2  # an adaptive window, control at about its floor
    assert readout.phases[2].srm_p_value < 1e-6
    assert all(p.srm_p_value > 0.01 for p in readout.phases if p.phase != 3)
    assert readout.decision is not None
    assert readout.decision.category is Decision.INVALID


def test_period_weighted_effects_are_unbiased_where_pooled_means_are_not() -> None:
    """Seeded replications: the readout's effect is centred on the truth, the pooled difference is not."""
    replications = 24
    rng = np.random.default_rng(20261209)
    effects: list[float] = []
    errors: list[float] = []
    pooled: list[float] = []
    flagged = 0
    with open_store("sqlite://") as store:
        define_metrics(store, [CONVERSION], actor="ana")
        for r in range(replications):
            run = simulate_bandit(store, f"cta-{r}", rng, per_window=150)
            [conversion] = run.readout.metrics
            effects.append(conversion.effect.absolute_effect)
            errors.append(float(conversion.absolute_se or math.nan))
            pooled.append(run.pooled)
            flagged += run.readout.srm.flag
    estimates, naive = np.array(effects), np.array(pooled)
    spread = estimates.std(ddof=1) / math.sqrt(replications)
    assert abs(estimates.mean() - EFFECT) < 4 * spread
    bias = naive - estimates  # paired: the same units, pooled minus period-weighted
    assert bias.mean() > 4 * bias.std(ddof=1) / math.sqrt(replications)  # late traffic, high baseline
    assert naive.mean() - EFFECT > 0.5 * EFFECT
    assert estimates.std(ddof=1) == pytest.approx(np.mean(errors), rel=0.35)  # the SE it claims
    assert flagged == 0
