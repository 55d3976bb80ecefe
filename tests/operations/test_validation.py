"""``splitlab validate`` as an operation: a broken test fails its line, and A/A on a store's pre-period data.

The whole quick suite runs once, through the CLI (tests/cli/test_validate.py); here single lines
are run with the suite's band (``run_checks(..., lines=...)``) so a miscalibrated test is shown
to fail at the quick sizes, and the pre-period A/A runs on simulated traffic on both backends.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps

from splitlab.operations.errors import ConflictError, InvalidInputError
from splitlab.operations.experiments import apply_spec, change_status, define_metrics
from splitlab.operations.simulation import simulate
from splitlab.operations.validation import QUICK_REPS, _flatten, _rebuild, validate, validate_store
from splitlab.specs import ExperimentSpec, MetricDefinition
from splitlab.stats.calibration import band_z, calibration_checks, rate_outcome, run_checks
from splitlab.stats.frequentist import means_test
from splitlab.stats.statistics import CovariateStatistic, MeanStatistic, ProportionStatistic, RatioStatistic
from splitlab.storage import NotFoundError, open_store

METRICS: list[dict[str, Any]] = [
    {"name": "conversion", "kind": "binary", "event": "purchase", "window_days": 7},
    {"name": "revenue", "kind": "sum", "event": "purchase", "window_days": 7,
     "capping": {"type": "percentile", "upper": 0.99}},
    {"name": "order_value", "kind": "ratio", "numerator": {"event": "purchase", "aggregation": "sum"},
     "denominator": {"event": "purchase", "aggregation": "count"}},
    {"name": "sessions", "kind": "count", "event": "session_start", "covariate": {"pre_window_days": 7}},
    {"name": "revenue_ranks", "kind": "sum", "event": "purchase", "test": "mann-whitney"},
]  # fmt: skip
STORE_REPS = 200


def _inflated(factor: float) -> Any:
    """Welch's t with its p-value divided by ``factor``: rejects at 0.05 when the true p is below 0.05 x factor."""

    def test(control: MeanStatistic, treatment: MeanStatistic) -> Any:
        result = means_test(control, treatment)
        return replace(result, p_value=min(1.0, result.p_value / factor))

    return test


@pytest.mark.parametrize(("factor", "rate"), [(3.0, 0.15), (2.0, 0.10)])
def test_an_anti_conservative_test_fails_its_line_at_the_quick_size(factor: float, rate: float) -> None:
    checks = calibration_checks(reps=QUICK_REPS, quick=True, tests={"welch-t": _inflated(factor)})
    line = run_checks([c for c in checks if c.check == "welch-t"], seed=0, lines=len(checks) + 2)[0]
    assert line.verdict == "FAIL", line
    assert abs(line.estimate - rate) < 4 * math.sqrt(rate * (1 - rate) / QUICK_REPS)
    assert line.high < rate  # the band itself excludes the broken rate, not only this draw
    honest = run_checks([c for c in calibration_checks(reps=QUICK_REPS, quick=True) if c.check == "welch-t"], seed=0,
                        lines=len(checks) + 2)[0]  # fmt: skip
    assert honest.verdict == "PASS", honest


def test_the_band_is_bonferroni_over_the_lines_and_the_error_binomial() -> None:
    assert band_z(28) == pytest.approx(sps.norm.ppf(1 - 0.01 / 56), rel=1e-12)
    hits = np.arange(1000) < 70
    outcome = rate_outcome(hits, 0.05)
    assert outcome.estimate == pytest.approx(0.07)
    assert outcome.standard_error == pytest.approx(math.sqrt(0.07 * 0.93 / 1000))
    assert outcome.band_se == pytest.approx(math.sqrt(0.05 * 0.95 / 1000))


@pytest.mark.parametrize(
    "statistic",
    [
        MeanStatistic(3, 6.0, 14.0),
        ProportionStatistic(4, 1.0),
        RatioStatistic(MeanStatistic(2, 3.0, 5.0), MeanStatistic(2, 4.0, 10.0), 7.0),
        CovariateStatistic.from_values(([1.0, 2.0], [3.0, 1.0]), ([2.0, 2.0], [1.0, 5.0])),
    ],
    ids=["mean", "proportion", "ratio", "covariate"],
)
def test_per_unit_statistics_add_as_their_flattened_numbers(statistic: Any) -> None:
    assert _rebuild(statistic, iter(_flatten(statistic))) == statistic
    total = np.add(_flatten(statistic), _flatten(statistic))
    assert _rebuild(statistic, iter(total)) == statistic + statistic


def test_options_out_of_bounds_are_named() -> None:
    with pytest.raises(InvalidInputError, match=r"reps == 5, must be an integer >= 10"):
        validate(reps=5)
    with pytest.raises(InvalidInputError, match=r"tests\['nope'\]"):
        validate(quick=True, tests={"nope": means_test})


def _spec(key: str) -> ExperimentSpec:
    return ExperimentSpec.model_validate(
        {
            "key": key,
            "variants": [{"key": "control", "weight": 0.4}, {"key": "treatment", "weight": 0.6}],
            "metrics": {"goal": ["conversion"], "secondary": [m["name"] for m in METRICS[1:]]},
        }
    )


def test_pre_period_a_a_reports_the_false_positive_rate_of_each_metric_near_alpha(database_url: str) -> None:
    """Traffic simulated for one experiment (with a planted effect) is the pre-period of a draft one."""
    with open_store(database_url) as store:
        metrics = {m["name"]: MetricDefinition.model_validate(m) for m in METRICS}
        define_metrics(store, metrics.values(), actor="test")
        history = _spec("history")
        apply_spec(store, history, actor="test")
        change_status(store, key="history", action="start", actor="test")
        simulate(store, history, metrics, units=2_000, days=10, seed=3, effects={"conversion": 0.3})
        apply_spec(store, _spec("next"), actor="test")
        report = validate_store(store, "next", reps=STORE_REPS, seed=1)
        with pytest.raises(ConflictError, match=r"only 0 units had events .* too few to re-randomise"):
            validate_store(store, "next", reference_date=datetime.now(UTC) - timedelta(days=400))
        with pytest.raises(NotFoundError, match="nope"):
            validate_store(store, "nope")
    assert report.source == "store"
    assert report.units is not None
    assert 1_000 < report.units <= 2_000
    assert [line.check.split(" ")[0] for line in report.lines] == [m["name"] for m in METRICS]
    tests = {line.check.split(" ")[0]: line.check for line in report.lines}
    assert "cuped welch-t" in tests["sessions"]
    assert "mann-whitney" in tests["revenue_ranks"]
    se = math.sqrt(0.05 * 0.95 / STORE_REPS)
    for line in report.lines:
        assert line.verdict == "PASS", line
        assert line.reps == STORE_REPS, line
        assert abs(line.estimate - 0.05) < 4 * se, line
    assert report.passed
