"""Values that are not finite, or whose squares overflow, are NON_FINITE (not ZERO_VARIANCE), never a crash."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import splitlab
from splitlab.cli import app
from splitlab.stats import ErrorCode
from splitlab.stats.statistics import MeanStatistic, RatioStatistic, is_finite


def _frame(value: float) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {"variant": ["a"] * 200 + ["b"] * 200, "x": rng.normal(10, 2, 400), "d": 1.0 + rng.random(400)}
    )
    frame.loc[5, "x"] = value
    return frame


@pytest.mark.parametrize("value", [math.inf, -math.inf, 1e308, 1e200, 1e100])
def test_the_python_api_reports_non_finite(value: float) -> None:
    result = splitlab.analyze(_frame(value), metrics={"x": "x:mean", "ratio": ("x", "d")}, control="a")
    assert [m.effect.error_code for m in result.metrics] == [ErrorCode.NON_FINITE] * 2
    assert all(math.isnan(m.effect.p_value) for m in result.metrics)


def test_finite_values_keep_their_result() -> None:
    result = splitlab.analyze(_frame(12.0), metrics={"x": "x:mean"}, control="a")
    assert result.metrics[0].effect.error_code is None


def test_statistics_say_whether_they_are_finite() -> None:
    assert is_finite(RatioStatistic.from_values([1.0, 2.0], [1.0, 1.0]))
    with np.errstate(over="ignore"):
        overflowing = RatioStatistic.from_values([1e300, 2.0], [1.0, 1.0])
    assert not is_finite(overflowing)  # the numerator's sum of squares overflows
    assert not is_finite(MeanStatistic(3, math.inf, 1.0))


def test_analyze_file_reports_non_finite(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    _frame(1e308).to_csv(path, index=False)
    args = ["analyze-file", str(path), "--control", "a", "--metric", "x=x:mean", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    [metric] = json.loads(result.output)["metrics"]
    assert metric["error_code"] == "NON_FINITE"
