"""Allocation phases: a ramp raises no false SRM and no Simpson's-paradox bias; an SRM inside a phase is caught.

Three kinds of evidence: the period-weighted combination against the bandits' estimator and by
hand; a calibration simulation (a 10/90 -> 50/50 ramp over a drifting baseline, fixed seeds,
tolerances from the simulation's own error); and the whole path through a real store (SQLite and
PostgreSQL): apply, start, ramp, exposures and events, analyse.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest

from splitlab.analysis.comparison import PHASED_TEST, PRIOR_DF, Options, compare, compare_phases, period_weighted
from splitlab.analysis.experiment import analyze_experiment
from splitlab.analysis.readout import Decision
from splitlab.analysis.report import readout_to_dict
from splitlab.bandits.estimates import period_weighted_estimates
from splitlab.operations.experiments import apply_spec, change_status, define_metrics, phases
from splitlab.specs import ExperimentSpec, MetricDefinition
from splitlab.stats.srm import phased_srm_test, srm_test
from splitlab.stats.statistics import MeanStatistic, ProportionStatistic
from splitlab.storage import Event, Exposure, Store, open_store

ALPHA = 0.05


def test_the_combination_is_the_bandits_period_weighting() -> None:
    rng = np.random.default_rng(5)
    periods = []
    for _ in range(3):
        row = []
        for _ in range(2):
            values = rng.normal(rng.uniform(1, 3), 1.0, int(rng.integers(20, 200)))
            row.append(MeanStatistic.from_values(values))
        periods.append(row)
    control, treatment = period_weighted([(c, t, c.n + t.n) for c, t in periods])
    expected = period_weighted_estimates(periods)
    assert control.mean == pytest.approx(expected[0].mean, rel=1e-12)
    assert treatment.mean == pytest.approx(expected[1].mean, rel=1e-12)
    shares = [(c.n + t.n) / sum(c.n + t.n for c, t in periods) for c, t in periods]
    by_hand = 0.0
    for w, (c, t) in zip(shares, periods, strict=True):
        squares_c, squares_t = c.sum_sq - c.sum**2 / c.n, t.sum_sq - t.sum**2 / t.n
        phase = (squares_c + squares_t) / (c.n + t.n - 2)  # the phase's pooled within-group variance
        by_hand += w * w * (squares_c + PRIOR_DF * phase) / (c.n - 1 + PRIOR_DF) / c.n
    assert control.variance == pytest.approx(by_hand, rel=1e-12)


def test_one_phase_is_the_plain_comparison() -> None:
    control, treatment = ProportionStatistic(4000, 400), ProportionStatistic(4100, 451)
    phased = compare_phases([(control, treatment, 8100)], options=Options(), metric="m", kind="binary",
                            variant="b", control="a")  # fmt: skip
    plain = compare(control, treatment, options=Options(), metric="m", kind="binary", variant="b", control="a")
    assert phased.effect.test == PHASED_TEST
    assert phased.effect.absolute_effect == pytest.approx(plain.effect.absolute_effect, rel=1e-12)
    assert phased.absolute_se == pytest.approx(plain.absolute_se, rel=1e-12)


def _ramp(rng: np.random.Generator, replications: int) -> np.ndarray:
    """(units, conversions) per replication, phase and variant: an A/A 10/90 -> 50/50 ramp, baseline 10 % -> 20 %."""
    out = np.zeros((replications, 2, 2, 2))
    for p, (share, baseline) in enumerate([(0.1, 0.10), (0.5, 0.20)]):
        control = rng.binomial(4000, share, replications)
        out[:, p, 0, 0], out[:, p, 1, 0] = control, 4000 - control
        out[:, p, 0, 1] = rng.binomial(control, baseline)
        out[:, p, 1, 1] = rng.binomial(4000 - control, baseline)
    return out


def test_a_ramp_over_a_drift_biases_the_pooled_effect_not_the_phased_one() -> None:
    replications = 1500
    phased, errors, pooled, rejected = [], [], [], 0
    for rep in _ramp(np.random.default_rng(20261209), replications):
        parts = [
            (ProportionStatistic(int(c[0]), c[1]), ProportionStatistic(int(t[0]), t[1]), int(c[0] + t[0]))
            for c, t in rep
        ]
        result = compare_phases(
            parts, options=Options(alpha=ALPHA), metric="m", kind="binary", variant="b", control="a"
        )
        phased.append(result.effect.absolute_effect)
        errors.append(result.absolute_se)
        rejected += result.effect.p_value < ALPHA
        total = rep.sum(axis=0)
        pooled.append(total[1, 1] / total[1, 0] - total[0, 1] / total[0, 0])
    estimates = np.array(phased)
    se = float(np.mean(errors))
    # phased: unbiased within 4 standard errors of the simulation's mean
    assert abs(estimates.mean()) < 4 * estimates.std(ddof=1) / math.sqrt(replications)
    # pooled: the drift leaks into it (about -0.048, eight standard errors of one experiment)
    assert np.mean(pooled) / se < -3
    # A/A: the phased test's false-positive rate within alpha + 3 simulation standard errors
    assert rejected / replications <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / replications)
    # and its standard error is the spread it claims (within 10 %)
    assert estimates.std(ddof=1) == pytest.approx(se, rel=0.1)


def test_an_srm_inside_one_phase_is_caught() -> None:
    ramp = [({"a": 1000, "b": 9000}, {"a": 0.1, "b": 0.9}), ({"a": 5000, "b": 5000}, {"a": 0.5, "b": 0.5})]
    overall, _per_phase = phased_srm_test(ramp)
    assert not overall.flag
    assert overall.p_value == pytest.approx(1.0)
    assert srm_test({"a": 6000, "b": 14000}, {"a": 0.5, "b": 0.5}).flag  # against the latest weights: a false SRM
    broken = [ramp[0], ({"a": 5000, "b": 5600}, {"a": 0.5, "b": 0.5})]
    overall, (first, second) = phased_srm_test(broken)
    assert overall.flag
    assert second.flag
    assert not first.flag
    assert (overall.statistic, overall.df) == pytest.approx((first.statistic + second.statistic, 2))
    assert overall.counts == (6000, 14600)
    with pytest.raises(ValueError, match=r"phases\[1\] names the variants \['a', 'c'\], must name \['a', 'b'\]"):
        phased_srm_test([ramp[0], ({"a": 1, "c": 1}, {"a": 0.5, "c": 0.5})])


# --- through the store ----------------------------------------------------------------------------


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with open_store(database_url) as opened:
        yield opened


def _spec(control: float) -> ExperimentSpec:
    variants = [{"key": "control", "weight": control}, {"key": "treatment", "weight": round(1 - control, 10)}]
    return ExperimentSpec.model_validate({"key": "ramp", "variants": variants, "metrics": {"goal": ["conversion"]}})


def _traffic(store: Store, at: object, phase: int, counts: dict[str, int], rate: float) -> None:
    exposures, events = [], []
    for variant, n in counts.items():
        for i in range(n):
            unit = f"p{phase}-{variant}-{i}"
            exposures.append(Exposure(experiment_key="ramp", unit_id=unit, variant=variant, timestamp=at))  # type: ignore[arg-type]
            if i < round(n * rate):
                events.append(
                    Event(event_id=f"e-{unit}", unit_id=unit, name="purchase", timestamp=at + timedelta(microseconds=1))
                )  # type: ignore[operator]
    store.exposures.log_many(exposures)
    store.events.log_many(events)


def _ramped(store: Store, phase_two: dict[str, int]) -> None:
    define_metrics(store, [MetricDefinition(name="conversion", kind="binary", event="purchase", window_days=7)],
                   actor="ana")  # fmt: skip
    apply_spec(store, _spec(0.1), actor="ana")
    change_status(store, key="ramp", action="start", actor="ana")
    apply_spec(store, _spec(0.5), actor="ana")
    first, second = phases(store, "ramp")
    # exactly 10 % convert in phase 1 and 30 % in phase 2, in both variants: no effect, a strong drift
    _traffic(
        store,
        first.started_at + (second.started_at - first.started_at) / 2,
        1,
        {"control": 300, "treatment": 2700},
        0.1,
    )
    _traffic(store, second.started_at + timedelta(microseconds=1), 2, phase_two, 0.3)


def test_a_ramp_through_the_store_is_valid_and_unbiased(store: Store) -> None:
    _ramped(store, {"control": 1500, "treatment": 1500})
    readout = analyze_experiment(store, "ramp", save=False)
    assert [p.units for p in readout.phases] == [
        {"control": 300, "treatment": 2700},
        {"control": 1500, "treatment": 1500},
    ]
    assert [p.weights for p in readout.phases] == [
        {"control": 0.1, "treatment": 0.9},
        {"control": 0.5, "treatment": 0.5},
    ]
    assert [p.srm_p_value for p in readout.phases] == pytest.approx([1.0, 1.0])
    assert not readout.srm.flag
    assert readout.srm.df == 2
    assert all(check.passed for check in readout.health if check.name in ("srm", "sequential_srm"))
    [conversion] = readout.metrics
    assert conversion.effect.test == PHASED_TEST
    assert conversion.effect.absolute_effect == pytest.approx(0.0, abs=1e-12)  # pooled: 0.171 - 0.267
    assert readout.decision is not None
    assert readout.decision.category is not Decision.INVALID
    summary = readout.status_summary()
    assert [p["units"] for p in summary["phases"]] == [p.units for p in readout.phases]
    assert readout_to_dict(readout)["phases"][1]["weights"] == {"control": 0.5, "treatment": 0.5}


def test_an_srm_planted_in_the_second_phase_is_caught_through_the_store(store: Store) -> None:
    _ramped(store, {"control": 1500, "treatment": 1800})
    readout = analyze_experiment(store, "ramp", save=False)
    assert readout.srm.flag
    assert readout.phases[1].srm_p_value < 1e-5 < readout.phases[0].srm_p_value
    assert readout.decision is not None
    assert readout.decision.category is Decision.INVALID


def test_status_shows_the_phases(database_url: str) -> None:
    from typer.testing import CliRunner

    from splitlab.cli import app

    with open_store(database_url) as opened:
        _ramped(opened, {"control": 1500, "treatment": 1500})
    shown = CliRunner().invoke(app, ["status", "ramp", "--database", database_url])
    assert shown.exit_code == 0, shown.output
    assert "SRM: p = 1 (ok)" in shown.output
    assert "Phases: 2 (SRM and effects phase by phase)" in shown.output
    assert "control=10%, treatment=90%; units control=300, treatment=2,700; SRM p = 1" in shown.output
    assert "control=50%, treatment=50%; units control=1,500, treatment=1,500; SRM p = 1" in shown.output


def test_every_report_shows_the_phases_table(store: Store) -> None:
    from splitlab.analysis.report import to_html, to_markdown, to_text

    _ramped(store, {"control": 1500, "treatment": 1500})
    readout = analyze_experiment(store, "ramp", save=False)
    text, markdown, html = to_text(readout), to_markdown(readout), to_html(readout)
    for rendered in (text, markdown, html):
        assert "control=10.0%, treatment=90.0%" in rendered
        assert "control=1,500, treatment=1,500" in rendered
    assert "Allocation phases (split checked per phase):" in text
    assert "## Allocation phases" in markdown
    assert html.count("<h3>Allocation phases</h3>") == 1
    one_phase = replace(readout, phases=readout.phases[:1])
    assert "Allocation phases" not in to_text(one_phase) + to_markdown(one_phase) + to_html(one_phase)
