"""plan_experiment on a simulated history with known baseline, variance and traffic, on SQLite and PostgreSQL.

The estimates are checked against numpy on the same rows: each unit's first event in the window
is its entry time, and its metric values are computed here from the event arrays directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from splitlab.operations.experiments import apply_spec, change_status, define_metrics
from splitlab.operations.planning import VERDICTS, plan_experiment
from splitlab.specs.model import ExperimentSpec, MetricDefinition
from splitlab.stats.power import minimum_detectable_effect, plan_sample_size, power_at
from splitlab.storage import NotFoundError, Store, open_store

DAY_US = 86_400_000_000
START = datetime(2024, 3, 1, tzinfo=UTC)  # the history window of the tests: [START, START + 14 days)
EPOCH = np.datetime64("2024-03-01T00:00:00", "us")

METRICS = [
    MetricDefinition.model_validate(data)
    for data in (
        {"name": "conversion", "kind": "binary", "event": "purchase", "window_days": 7},
        {"name": "revenue", "kind": "sum", "event": "purchase", "window_days": 7, "covariate": {"pre_window_days": 14}},
        {"name": "basket", "kind": "mean", "event": "purchase", "window_days": 7},
        {
            "name": "aov",
            "kind": "ratio",
            "numerator": {"event": "purchase"},
            "denominator": {"event": "purchase", "aggregation": "count"},
        },
    )
]


@dataclass
class History:
    """The rows written to the store, as arrays: unit index, event name, time (us from START), value."""

    unit: np.ndarray
    name: np.ndarray
    us: np.ndarray
    value: np.ndarray


def _history(seed: int = 11, units: int = 1_500) -> History:
    """Visits and purchases before, in and after the window; a unit's spending rate carries over (CUPED)."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(1.0, 1.0, units)  # purchases a week: the per-unit propensity the covariate sees
    basket = rng.lognormal(3.0, 0.7, units)  # and the unit's typical order value
    parts: list[tuple[np.ndarray, str, np.ndarray, np.ndarray]] = []
    # 80 % of the units visit in the window, the others 14-28 days after it (they must be ignored).
    late = rng.random(units) < 0.2
    visit = np.where(late, rng.uniform(14, 28, units), rng.uniform(0, 14, units))
    ids = np.arange(units)
    parts.append((ids, "visit", visit, np.ones(units)))
    for lo, hi in ((-14.0, 0.0), (0.0, 28.0)):  # the pre-period, then the window and the weeks after
        count = rng.poisson(rate * (hi - lo) / 7)
        owner = np.repeat(ids, count)
        when = rng.uniform(lo, hi, owner.size)
        parts.append((owner, "purchase", when, np.round(basket[owner] * rng.lognormal(0.0, 0.3, owner.size), 2)))
    unit = np.concatenate([p[0] for p in parts])
    name = np.concatenate([np.full(p[0].size, p[1]) for p in parts])
    us = np.concatenate([np.floor(p[2] * DAY_US).astype(np.int64) for p in parts])
    value = np.concatenate([p[3] for p in parts])
    return History(unit, name, us, value)


def _write(store: Store, history: History) -> None:
    store.events.log_columns(
        event_id=[f"e{i}" for i in range(history.unit.size)],
        unit_id=[f"u{u}" for u in history.unit.tolist()],
        name=history.name.tolist(),
        timestamp=EPOCH + history.us.astype("timedelta64[us]"),
        value=history.value,
    )


def _spec(key: str, *, primary: str = "revenue", max_days: int | None = 60, **extra: Any) -> ExperimentSpec:
    data: dict[str, Any] = {
        "key": key,
        "variants": [{"key": "control"}, {"key": "treatment"}],
        "coverage": 0.5,
        "hypothesis": {"primary_metric": primary, "direction": "increase", "mde": 0.1},
        "metrics": {"goal": [primary, *(m.name for m in METRICS if m.name != primary)]},
        "schedule": {} if max_days is None else {"max_duration_days": max_days},
    }
    return ExperimentSpec.model_validate(data | extra)


@pytest.fixture(scope="module")
def history() -> History:
    return _history()


@pytest.fixture
def store(database_url: str, history: History) -> Iterator[Store]:
    with open_store(database_url) as opened:
        define_metrics(opened, METRICS, actor="test")
        apply_spec(opened, _spec("exp"), actor="test")
        _write(opened, history)
        yield opened


def _unit_values(h: History, start_day: float = 0.0, days: float = 14.0) -> dict[str, np.ndarray]:
    """Per-unit values computed in numpy from the rows: entry at the first event in the window."""
    lo, hi = round(start_day * DAY_US), round((start_day + days) * DAY_US)
    inside = (h.us >= lo) & (h.us < hi)
    units = np.unique(h.unit[inside])
    entry = np.full(h.unit.max() + 1, np.iinfo(np.int64).max)
    np.minimum.at(entry, h.unit[inside], h.us[inside])
    x = entry[h.unit]
    buy = h.name == "purchase"
    week = 7 * DAY_US
    post = buy & (h.us >= x) & (h.us < x + week) & (h.us < hi)
    pre = buy & (h.us >= x - 2 * week) & (h.us < x)
    everything = buy & (h.us >= x) & (h.us < hi)  # aov: no window

    def per_unit(mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        return np.asarray(np.bincount(h.unit[mask], weights=None if weights is None else weights[mask],
                                      minlength=entry.size)[units])  # fmt: skip

    return {
        "conversion": (per_unit(post) > 0).astype(float),
        "revenue": per_unit(post, h.value),
        "revenue_units": per_unit(post),
        "revenue_pre": per_unit(pre, h.value),
        "aov_num": per_unit(everything, h.value),
        "aov_den": per_unit(everything),
        "units": units,
    }


def test_estimates_match_numpy_on_the_same_rows(store: Store, history: History) -> None:
    plan = plan_experiment(store, "exp", reference=START + timedelta(days=14), days=14)
    values = _unit_values(history)
    n = values["units"].size
    assert plan.traffic.units == n
    assert plan.traffic.daily_units == pytest.approx(n / 14 * 0.5, rel=1e-12)
    assert sum(units for _, units in plan.traffic.per_day) == n
    assert plan.reference_source == "option"
    estimates = {m.metric: m for m in plan.metrics}
    assert plan.metrics[0].metric == "revenue"
    assert estimates["revenue"].role == "primary"
    revenue = values["revenue"]
    assert estimates["revenue"].units == n
    assert estimates["revenue"].baseline == pytest.approx(revenue.mean(), rel=1e-9)
    assert estimates["revenue"].variance == pytest.approx(revenue.var(ddof=1), rel=1e-9)
    rho = np.corrcoef(revenue, values["revenue_pre"])[0, 1] ** 2
    assert estimates["revenue"].covariate == "spec"
    assert estimates["revenue"].rho_squared == pytest.approx(rho, rel=1e-9)
    assert rho > 0.2  # the propensity carries over: CUPED has something to remove
    conversion = values["conversion"]
    assert estimates["conversion"].baseline == pytest.approx(conversion.mean(), rel=1e-9)
    assert estimates["conversion"].variance == pytest.approx(conversion.var(), rel=1e-9)  # p (1 - p)
    assert estimates["conversion"].covariate == "suggested"
    num, den = values["aov_num"], values["aov_den"]
    ratio = num.sum() / den.sum()
    linearised = (num - ratio * den) / den.mean()
    assert estimates["aov"].baseline == pytest.approx(ratio, rel=1e-9)
    assert estimates["aov"].variance == pytest.approx(linearised.var(ddof=1), rel=1e-9)

    # The sample size is plan_sample_size's at those estimates, with and without CUPED.
    std = math.sqrt(revenue.var(ddof=1))
    traffic = [plan.traffic.daily_units]
    plain = plan_sample_size("mean", 0.1, baseline=revenue.mean(), std=std, relative=True, daily_traffic=traffic)
    cuped = plan_sample_size("mean", 0.1, baseline=revenue.mean(), std=std, relative=True, daily_traffic=traffic,
                             variance_reduction=float(rho))  # fmt: skip
    assert plan.sample_size is not None
    assert plan.sample_size_cuped is not None
    assert plan.sample_size.per_variant == plain.per_variant
    assert plan.sample_size_cuped.per_variant == cuped.per_variant
    assert plan.units_needed == plain.total
    assert plan.days_needed == plain.durations[0][1] == math.ceil(plain.total / plan.traffic.daily_units)
    n_planned = 0.5 * plan.traffic.daily_units * 60
    assert plan.mde_at_planned == pytest.approx(
        minimum_detectable_effect(n_planned, metric="mean", baseline=revenue.mean(), std=std, relative=True), rel=1e-9
    )
    assert plan.power_at_planned == pytest.approx(
        power_at(n_planned, 0.1, metric="mean", baseline=revenue.mean(), std=std, relative=True), rel=1e-9
    )
    assert plan.verdict in VERDICTS
    assert plan.sequential is None


def test_feasibility_flips_with_the_planned_duration(database_url: str, history: History) -> None:
    with open_store(database_url) as store:
        define_metrics(store, METRICS, actor="test")
        _write(store, history)
        apply_spec(store, _spec("probe", max_days=None), actor="test")
        reference = START + timedelta(days=14)
        probe = plan_experiment(store, "probe", reference=reference, days=14)
        assert probe.days_needed is not None
        assert probe.days_needed_cuped is not None
        assert probe.days_needed_cuped < probe.days_needed
        assert probe.planned_days_source == "window"
        for key, days, verdict in (
            ("long", probe.days_needed, "FEASIBLE"),
            ("cuped", probe.days_needed_cuped, "FEASIBLE_WITH_CUPED"),
            ("short", probe.days_needed_cuped - 1, "NOT_FEASIBLE"),
        ):
            apply_spec(store, _spec(key, max_days=days), actor="test")
            plan = plan_experiment(store, key, reference=reference, days=14)
            assert plan.verdict == verdict, (key, plan.reasons)
            assert plan.planned_days == days
        assert any("rho^2" in reason for reason in plan.reasons)
        assert any("not reachable in" in reason for reason in plan.reasons)


def test_reference_date_picks_the_window(store: Store, history: History) -> None:
    first = plan_experiment(store, "exp", reference=START + timedelta(days=14), days=14)
    later = plan_experiment(store, "exp", reference=(START + timedelta(days=28)).date(), days=14)
    assert later.traffic.window_start == START + timedelta(days=14)
    values = _unit_values(history, start_day=14.0)
    assert later.traffic.units == values["units"].size
    assert later.traffic.units != first.traffic.units
    assert later.metrics[0].baseline == pytest.approx(values["revenue"].mean(), rel=1e-9)
    # Events after the reference change nothing: the first window's plan is the same with or without them.
    assert first.traffic.units == _unit_values(history)["units"].size


def test_empty_history_says_which_metric_and_window(store: Store) -> None:
    change_status(store, key="exp", action="start", actor="test")
    plan = plan_experiment(store, "exp")  # the window before its start, today: the 2024 history is outside
    assert plan.reference_source == "experiment start"
    assert plan.started_at is not None
    assert plan.reference == plan.started_at
    assert plan.traffic.days == 60  # schedule.max_duration_days
    assert plan.verdict is None
    assert plan.error_code == "NO_HISTORY"
    assert plan.error_message is not None
    assert "'revenue'" in plan.error_message
    assert "60 days from" in plan.error_message
    assert plan.to_dict()["sample_size"] is None


@pytest.mark.parametrize("backend", ["sqlite"])
def test_caller_mistakes(store: Store) -> None:
    with pytest.raises(NotFoundError, match="'nope' does not exist"):
        plan_experiment(store, "nope")
    with pytest.raises(ValueError, match=r"days == 0, must be a number > 0"):
        plan_experiment(store, "exp", days=0)
    bare = ExperimentSpec.model_validate({"key": "bare", "variants": [{"key": "a"}, {"key": "b"}]})
    apply_spec(store, bare, actor="test")
    with pytest.raises(ValueError, match="has no hypothesis"):
        plan_experiment(store, "bare")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sequential_designs(store: Store) -> None:
    reference = START + timedelta(days=14)
    apply_spec(store, _spec("fixed", primary="conversion"), actor="test")
    fixed = plan_experiment(store, "fixed", reference=reference, days=14)
    assert fixed.days_needed is not None
    results = {}
    for method in ("msprt", "gst-obf", "gst-pocock"):
        # Enough days to reach the planned size: the designs' power is then close to the fixed test's 80 %.
        spec = _spec(f"seq-{method}", primary="conversion", max_days=fixed.days_needed + 2,
                     analysis={"method": "sequential", "sequential": method})  # fmt: skip
        apply_spec(store, spec, actor="test")
        plan = plan_experiment(store, spec.key, reference=reference, days=14)
        seq = plan.sequential
        assert seq is not None
        assert seq.reaches_planned_n
        assert not seq.cuped  # conversion has no covariate in its definition
        assert fixed.sample_size is not None
        assert seq.planned_n == 2 * fixed.sample_size.per_variant
        assert seq.expected_units_alternative < seq.planned_n
        results[method] = seq
    msprt = results["msprt"]
    assert msprt.computation == "simulation"
    assert msprt.simulations == 20_000
    # The hybrid mSPRT keeps most of the fixed test's power (docs: about 79 % where it has 80 %).
    assert 0.70 < msprt.power < 0.82
    assert msprt.type_i_error <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / msprt.simulations)
    for method in ("gst-obf", "gst-pocock"):
        gst = results[method]
        assert gst.computation == "exact"
        assert gst.type_i_error == pytest.approx(0.05, abs=1e-3)
        assert 0.6 < gst.power < 0.8
    # Pocock spends early: it stops sooner at the MDE, and has less power at the same maximum.
    assert results["gst-pocock"].expected_units_alternative < results["gst-obf"].expected_units_alternative
    assert results["gst-pocock"].power < results["gst-obf"].power


@pytest.mark.parametrize("backend", ["sqlite"])
def test_to_dict_keys(store: Store) -> None:
    data = plan_experiment(store, "exp", reference=START + timedelta(days=14), days=14).to_dict()
    assert {"experiment_key", "reference", "traffic", "metrics", "sample_size", "sample_size_cuped", "days_needed",
            "days_needed_cuped", "mde_at_planned", "power_at_planned", "sequential", "verdict", "reasons",
            "error_code"} <= set(data)  # fmt: skip
    assert data["traffic"]["window_start"] == "2024-03-01T00:00:00+00:00"
    assert data["metrics"][0]["metric"] == "revenue"
    assert data["sample_size"]["per_variant"] > 0


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_mean_metric_counts_the_units_with_a_value(store: Store, history: History) -> None:
    apply_spec(store, _spec("basket", primary="basket"), actor="test")
    plan = plan_experiment(store, "basket", reference=START + timedelta(days=14), days=14)
    values = _unit_values(history)
    has_value = values["revenue_units"] > 0
    basket = values["revenue"][has_value] / values["revenue_units"][has_value]
    estimate = plan.metrics[0]
    assert estimate.units == int(has_value.sum()) < plan.traffic.units
    assert estimate.baseline == pytest.approx(basket.mean(), rel=1e-9)
    assert estimate.variance == pytest.approx(basket.var(ddof=1), rel=1e-9)
    assert plan.sample_size is not None
    share = estimate.units / plan.traffic.units
    assert plan.units_needed == math.ceil(plan.sample_size.total / share)
    assert any("have a value of metric 'basket'" in reason for reason in plan.reasons)
