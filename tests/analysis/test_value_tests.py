"""Tests on unit-level values named per metric: Mann-Whitney and the bootstrap, in a frame and a store.

Cross-checks against scipy on the same values (the frame's columns; the events written to a real
store on SQLite and PostgreSQL), the one-query fetch of one metric's unit values, and the
refusals of a test that has no single value per unit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy import stats as sps

import splitlab
from splitlab.analysis.experiment import analyze_experiment
from splitlab.analysis.metrics import VALUE_TESTS
from splitlab.analysis.report import readout_to_dict
from splitlab.analysis.sql import Source, unit_values
from splitlab.analysis.value_tests import BOOTSTRAP_RESAMPLES, BOOTSTRAP_TEST
from splitlab.operations.experiments import apply_spec, change_status, define_metrics
from splitlab.specs import ExperimentSpec, MetricDefinition
from splitlab.specs.model import METRIC_TESTS
from splitlab.stats.nonparametric import bootstrap_effect
from splitlab.storage import Event, Exposure, Store, open_store


def _frame(n: int = 300, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "variant": np.repeat(["a", "b"], n),
            "revenue": np.r_[rng.exponential(1.0, n), rng.exponential(1.25, n)],
        }
    )


def _split(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    values = frame["revenue"].to_numpy()
    return values[frame["variant"] == "a"], values[frame["variant"] == "b"]


def test_mann_whitney_in_a_frame_is_scipys_test_with_the_mean_difference_kept() -> None:
    frame = _frame()
    control, treatment = _split(frame)
    result = splitlab.analyze(
        frame, metrics={"rank": splitlab.mean("revenue", test="mann-whitney"), "welch": "revenue"}, control="a"
    )
    rank, welch = result.metrics
    assert rank.effect.test == "mann-whitney"
    assert rank.effect.p_value == pytest.approx(sps.mannwhitneyu(treatment, control).pvalue, rel=1e-9)
    u = sps.mannwhitneyu(treatment, control).statistic
    assert rank.probability_of_superiority == pytest.approx(u / (control.size * treatment.size), rel=1e-12)
    assert rank.probability_of_superiority is not None
    assert rank.probability_of_superiority_ci is not None
    low, high = rank.probability_of_superiority_ci
    assert low < rank.probability_of_superiority < high
    assert rank.effect.absolute_ci == welch.effect.absolute_ci
    assert rank.chance_to_win == welch.chance_to_win
    record = rank.to_dict()
    assert record["test"] == "mann-whitney"
    assert record["probability_of_superiority"] == pytest.approx(rank.probability_of_superiority)
    assert "probability_of_superiority" not in welch.to_dict()


def test_bootstrap_in_a_frame_is_the_seeded_bca_bootstrap_absolute_and_relative() -> None:
    frame = _frame()
    control, treatment = _split(frame)
    [result] = splitlab.analyze(frame, metrics={"m": splitlab.mean("revenue", test="bootstrap")}, control="a").metrics
    absolute = bootstrap_effect(control, treatment, n_resamples=BOOTSTRAP_RESAMPLES, seed=0)
    relative = bootstrap_effect(control, treatment, relative=True, n_resamples=BOOTSTRAP_RESAMPLES, seed=0)
    e = result.effect
    assert e.test == BOOTSTRAP_TEST
    assert e.absolute_ci == absolute.ci
    assert e.relative_ci == relative.ci
    assert e.absolute_effect == pytest.approx(treatment.mean() - control.mean(), rel=1e-12)
    assert result.absolute_se == absolute.standard_error
    z = absolute.effect / absolute.standard_error
    assert e.p_value == pytest.approx(2 * sps.norm.sf(abs(z)), rel=1e-12)
    # The BCa bounds are not the Welch ones: the skewed data make them asymmetric about the effect.
    assert e.absolute_ci[1] - e.absolute_effect != pytest.approx(e.absolute_effect - e.absolute_ci[0], rel=1e-3)


def test_a_one_sided_bootstrap_keeps_one_bound_of_the_doubled_level() -> None:
    frame = _frame()
    control, treatment = _split(frame)
    [result] = splitlab.analyze(
        frame, metrics={"m": splitlab.mean("revenue", test="bootstrap")}, control="a", alternative="greater"
    ).metrics
    two_sided = bootstrap_effect(control, treatment, n_resamples=BOOTSTRAP_RESAMPLES, alpha=0.1, seed=0)
    assert result.effect.absolute_ci == (two_sided.ci[0], math.inf)
    assert result.effect.p_value == pytest.approx(sps.norm.sf(two_sided.effect / two_sided.standard_error))


def test_a_test_on_unit_values_needs_one_value_per_unit() -> None:
    with pytest.raises(ValueError, match="test == 'bootstrap' needs one value per unit, not a ratio metric"):
        splitlab.analyze(_frame(), metrics={"r": splitlab.ratio("revenue", "revenue", test="bootstrap")})
    with pytest.raises(ValueError, match="not a metric with a covariate"):
        splitlab.mean("revenue", covariate="pre", test="mann-whitney")
    with pytest.raises(ValueError, match="must be one of welch-t, z, mann-whitney, bootstrap"):
        splitlab.analyze(_frame(), metrics={"m": splitlab.mean("revenue", test="wilcoxon")})


def test_a_metric_definition_names_its_test_and_refuses_one_it_cannot_run() -> None:
    assert METRIC_TESTS == VALUE_TESTS
    revenue = MetricDefinition(name="revenue", kind="sum", event="purchase", test="bootstrap")
    assert revenue.test == "bootstrap"
    with pytest.raises(ValidationError, match="test 'mann-whitney' needs one value per unit, kind 'ratio' has two"):
        MetricDefinition.model_validate(
            {"name": "aov", "kind": "ratio", "test": "mann-whitney", "numerator": {"event": "p"},
             "denominator": {"event": "p", "aggregation": "count"}}
        )  # fmt: skip
    with pytest.raises(ValidationError, match="does not use a covariate"):
        MetricDefinition(name="r", kind="sum", event="p", test="bootstrap", covariate={"pre_window_days": 7})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="test"):
        MetricDefinition(name="r", kind="sum", event="p", test="t-test")  # type: ignore[arg-type]


# --- through the store ----------------------------------------------------------------------------


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with open_store(database_url) as opened:
        yield opened


METRICS = [
    MetricDefinition(name="revenue", kind="sum", event="purchase", test="mann-whitney"),
    MetricDefinition(name="p75", kind="quantile", event="purchase", quantile=0.75, test="bootstrap"),
    MetricDefinition(name="orders", kind="count", event="purchase"),
]


def _running(store: Store) -> tuple[dict[str, list[float]], datetime]:
    define_metrics(store, METRICS, actor="ana")
    spec = ExperimentSpec.model_validate(
        {
            "key": "shop",
            "variants": [{"key": "control"}, {"key": "treatment"}],
            "metrics": {"goal": ["revenue"], "secondary": ["p75", "orders"]},
        }
    )
    apply_spec(store, spec, actor="ana")
    change_status(store, key="shop", action="start", actor="ana")
    at = datetime.now(UTC)
    rng = np.random.default_rng(8)
    values: dict[str, list[float]] = {"control": [], "treatment": []}
    exposures, events = [], []
    for variant, scale in (("control", 10.0), ("treatment", 13.0)):
        for i in range(120):
            unit = f"{variant}-{i}"
            exposures.append(Exposure(experiment_key="shop", unit_id=unit, variant=variant, timestamp=at))
            # a third of the units buy nothing: their value is 0, which the rank test must see too
            amount = 0.0 if i % 3 == 0 else round(float(rng.exponential(scale)), 2)
            values[variant].append(amount)
            if amount:
                events.append(
                    Event(event_id=f"e-{unit}", unit_id=unit, name="purchase", value=amount,
                          timestamp=at + timedelta(microseconds=1))
                )  # fmt: skip
    store.exposures.log_many(exposures)
    store.events.log_many(events)
    return values, at


def test_unit_values_fetches_one_metric_per_unit_in_one_query(store: Store) -> None:
    values, _ = _running(store)
    fetched = unit_values(store.engine, experiment_key="shop", metric=METRICS[0], source=Source.splitlab_store())
    assert set(fetched) == {"control", "treatment"}
    for variant, expected in values.items():
        assert list(fetched[variant]) == pytest.approx(sorted(expected), rel=1e-12)  # sorted by the query


def test_a_stored_experiment_runs_the_tests_its_metrics_name(store: Store) -> None:
    values, _ = _running(store)
    readout = analyze_experiment(store, "shop", save=False)
    by_name = {m.metric: m for m in readout.metrics}
    control, treatment = np.sort(values["control"]), np.sort(values["treatment"])
    revenue = by_name["revenue"]
    assert revenue.effect.test == "mann-whitney"
    assert revenue.effect.p_value == pytest.approx(sps.mannwhitneyu(treatment, control).pvalue, rel=1e-9)
    assert revenue.effect.absolute_effect == pytest.approx(treatment.mean() - control.mean(), rel=1e-9)
    p75 = by_name["p75"]
    expected = bootstrap_effect(control, treatment, statistic=0.75, n_resamples=BOOTSTRAP_RESAMPLES, seed=0)
    assert p75.effect.test == BOOTSTRAP_TEST
    assert p75.effect.absolute_ci == pytest.approx(expected.ci, rel=1e-9)
    assert p75.effect.control_mean == pytest.approx(np.quantile(control, 0.75), rel=1e-12)
    assert by_name["orders"].effect.test == "welch-t"
    record = next(r for r in readout_to_dict(readout)["metrics"] if r["metric"] == "revenue")
    assert record["effect"]["test"] == "mann-whitney"
    assert record["probability_of_superiority"] == pytest.approx(revenue.probability_of_superiority)


def test_analyze_file_names_a_test_per_metric(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from splitlab.cli import app

    frame = _frame()
    path = tmp_path / "units.csv"
    frame.to_csv(path, index=False)
    command = ["analyze-file", str(path), "-m", "rev=revenue:mean", "-m", "plain=revenue:mean"]
    shown = CliRunner().invoke(app, [*command, "--test", "rev=mann-whitney", "--json"])
    assert shown.exit_code == 0, shown.output
    rev, plain = json.loads(shown.output)["metrics"]
    control, treatment = _split(frame)
    assert rev["test"] == "mann-whitney"
    assert rev["p_value"] == pytest.approx(sps.mannwhitneyu(treatment, control).pvalue, rel=1e-9)
    assert rev["probability_of_superiority"] is not None
    assert plain["test"] == "welch-t"
    table = CliRunner().invoke(app, [*command, "--test", "rev=bootstrap"])
    assert "bootstrap-bca" in table.output
    refused = CliRunner().invoke(app, [*command, "--test", "nope=bootstrap"])
    assert refused.exit_code == 2
    assert "tests['nope'] refers to no metric" in refused.output
