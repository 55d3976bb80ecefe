"""splitlab.analyze on pandas and polars frames, against direct calls of the statistics engine."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import polars as pl
import pytest

import splitlab
from splitlab.datasets import load_checkout_data, make_checkout_data
from splitlab.stats.cuped import cuped_test
from splitlab.stats.frequentist import means_test, proportions_test, ratio_test
from splitlab.stats.statistics import CovariateStatistic, MeanStatistic, ProportionStatistic, RatioStatistic

REL = 1e-12
METRICS = {"conversion": "converted", "revenue": "revenue:mean", "aov": ("revenue", "orders")}


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return make_checkout_data(6000, seed=3)


def _by_metric(result: splitlab.AnalysisResult) -> dict[str, splitlab.MetricResult]:
    return {m.metric: m for m in result.metrics}


def test_results_equal_direct_engine_calls(data: pd.DataFrame) -> None:
    result = splitlab.analyze(data, metrics=METRICS, control="control", covariates={"revenue": "pre_revenue"})
    c, t = data[data.variant == "control"], data[data.variant == "free_shipping_35"]
    found = _by_metric(result)
    conversion = proportions_test(
        ProportionStatistic.from_values(c.converted), ProportionStatistic.from_values(t.converted)
    )
    assert found["conversion"].effect.p_value == pytest.approx(conversion.p_value, rel=REL)
    assert found["conversion"].effect.test == "pooled-z"
    revenue = cuped_test(CovariateStatistic.from_values(c.revenue, c.pre_revenue),
                         CovariateStatistic.from_values(t.revenue, t.pre_revenue))  # fmt: skip
    assert found["revenue"].effect.p_value == pytest.approx(revenue.p_value, rel=1e-9)
    assert found["revenue"].effect.cuped
    aov = ratio_test(RatioStatistic.from_values(c.revenue, c.orders), RatioStatistic.from_values(t.revenue, t.orders))
    assert found["aov"].effect.absolute_ci == pytest.approx(aov.absolute_ci, rel=1e-9)
    assert 0 <= found["conversion"].chance_to_win <= 1
    assert found["conversion"].expected_loss >= 0


def test_pandas_and_polars_agree(data: pd.DataFrame) -> None:
    a = splitlab.analyze(data, metrics=METRICS, control="control")
    b = splitlab.analyze(pl.from_pandas(data), metrics=METRICS, control="control")
    assert a.to_dict() == b.to_dict()


def test_json_has_the_documented_keys_and_is_strict(data: pd.DataFrame) -> None:
    result = splitlab.analyze(data, metrics=METRICS, control="control", alternative="greater")
    payload = json.loads(result.to_json())
    assert set(payload["srm"]) >= {"p_value", "counts", "flag"}
    keys = {"metric", "variant", "control_mean", "treatment_mean", "absolute_effect", "absolute_ci",
            "relative_effect", "relative_ci", "p_value", "test", "cuped", "chance_to_win", "expected_loss"}  # fmt: skip
    assert all(keys <= set(m) for m in payload["metrics"])
    assert payload["metrics"][0]["absolute_ci"][1] is None  # one-sided: +inf becomes null
    frame = result.to_frame()
    assert list(frame["metric"]) == ["conversion", "revenue", "aov"]


def test_three_variants_are_corrected_with_holm() -> None:
    data = make_checkout_data(9000, seed=5, variants=("control", "b", "c"))
    result = splitlab.analyze(data, metrics={"conversion": "converted"}, control="control")
    raw = splitlab.analyze(data, metrics={"conversion": "converted"}, control="control", correction="none")
    assert [m.variant for m in result.metrics] == ["b", "c"]
    raw_p = sorted(m.effect.p_value for m in raw.metrics)
    adjusted = sorted(m.effect.p_value for m in result.metrics)
    assert adjusted[0] == pytest.approx(min(1.0, 2 * raw_p[0]), rel=REL)
    assert all(m.effect.correction == "holm" for m in result.metrics)
    widths = [m.effect.absolute_ci[1] - m.effect.absolute_ci[0] for m in (result.metrics[0], raw.metrics[0])]
    assert widths[0] > widths[1]


def test_missing_values_are_excluded_and_counted() -> None:
    frame = pd.DataFrame({"variant": ["a"] * 50 + ["b"] * 50, "x": np.r_[np.arange(50.0), np.arange(50.0) + 3]})
    frame.loc[[0, 1, 60], "x"] = np.nan
    result = splitlab.analyze(frame, metrics={"x": "x"}, control="a")
    metric = result.metrics[0]
    assert metric.excluded_units == (2, 1)
    assert metric.effect.control_n == 48
    assert result.srm.counts == (50, 50)


def test_rows_without_a_variant_are_left_out_and_reported() -> None:
    frame = pl.DataFrame({"variant": ["a", None, "b", "a", "b", None] * 10, "y": [1, 0, 1, 0, 0, 1] * 10})
    result = splitlab.analyze(frame, metrics={"y": "y"}, control="a")
    assert result.unlabelled_rows == 20
    assert result.srm.counts == (20, 20)
    assert result.metrics[0].effect.control_n == 20
    assert "20 rows without a variant were left out" in str(result)


def test_auto_kind_and_integer_variant_labels() -> None:
    frame = pd.DataFrame({"group": [0, 1] * 100, "clicked": [True, False, True, True] * 50, "spend": np.arange(200.0)})
    result = splitlab.analyze(frame, variant="group", control=0, metrics={"clicked": "clicked", "spend": "spend"})
    kinds = {m.metric: (m.kind, m.effect.test) for m in result.metrics}
    assert kinds == {"clicked": ("proportion", "pooled-z"), "spend": ("mean", "welch-t")}
    assert result.control == "0"


def test_degenerate_metric_does_not_crash() -> None:
    frame = pd.DataFrame({"variant": ["a", "b"] * 20, "x": [1.0] * 40})
    result = splitlab.analyze(frame, metrics={"x": "x:mean"}, control="a")
    assert result.metrics[0].effect.error_code is not None
    assert math.isnan(result.metrics[0].effect.p_value)
    json.loads(result.to_json())


def test_srm_flag_on_a_skewed_split() -> None:
    frame = pd.DataFrame({"variant": ["a"] * 5200 + ["b"] * 4800, "x": np.ones(10_000)})
    result = splitlab.analyze(frame, metrics={"x": "x:mean"}, control="a")
    assert result.srm.flag
    assert "SAMPLE RATIO MISMATCH" in str(result)
    balanced = splitlab.analyze(frame, metrics={"x": "x:mean"}, control="a", weights={"a": 0.52, "b": 0.48})
    assert not balanced.srm.flag


def test_bundled_data_is_what_the_generator_makes() -> None:
    bundled = load_checkout_data()
    fresh = make_checkout_data()
    pd.testing.assert_frame_equal(bundled, fresh, check_dtype=False, rtol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metrics": {"x": "nope"}}, "column 'nope' is not in the data"),
        ({"metrics": {"x": "revenue"}, "control": "zzz"}, "control == 'zzz'"),
        ({"metrics": {"x": "revenue"}, "variant": "arm"}, "column 'arm'"),
        ({"metrics": {"x": "revenue:proportion"}}, "needs 0/1 values"),
        ({"metrics": {"x": "revenue:median"}}, "kind == 'median'"),
        ({"metrics": {"x": "revenue"}, "covariates": {"y": "pre_revenue"}}, r"covariates\['y'\]"),
        ({"metrics": {}}, "metrics is empty"),
        ({"metrics": {"x": "revenue"}, "alpha": 2.0}, "alpha == 2.0"),
        ({"metrics": {"x": "revenue"}, "correction": "fdr"}, "correction == 'fdr'"),
        ({"metrics": {"x": "revenue"}, "weights": {"control": 1.0}}, "weights must name every variant"),
    ],
)
def test_caller_mistakes_name_the_field(data: pd.DataFrame, kwargs: dict[str, object], match: str) -> None:
    kwargs = {"control": "control", **kwargs}
    with pytest.raises(ValueError, match=match):
        splitlab.analyze(data, **kwargs)  # type: ignore[arg-type]


def test_statistics_from_sql_rows_match_arrays(data: pd.DataFrame) -> None:
    rows = data.groupby("variant").agg(n=("revenue", "size"), sum=("revenue", "sum"),
                                        sum_sq=("revenue", lambda s: float((s * s).sum())))  # fmt: skip
    from_rows = [MeanStatistic.from_row(r) for r in rows.to_dict("records")]
    from_arrays = [MeanStatistic.from_values(data[data.variant == v].revenue) for v in rows.index]
    assert [s.n for s in from_rows] == [s.n for s in from_arrays]
    assert [s.sum_sq for s in from_rows] == pytest.approx([s.sum_sq for s in from_arrays], rel=1e-12)
    assert means_test(*from_rows).p_value == pytest.approx(means_test(*from_arrays).p_value, rel=1e-9)


@pytest.mark.parametrize("width", [80, 160])
def test_rich_rendering_keeps_every_figure_readable(data: pd.DataFrame, width: int) -> None:
    from rich.console import Console

    result = splitlab.analyze(data, metrics=METRICS, control="control")
    console = Console(width=width, record=True, color_system=None)
    console.print(result)
    text = console.export_text()
    for metric in result.metrics:
        assert metric.metric in text
        assert f"{metric.effect.relative_effect:+.2%}" in text
    assert "SRM check" in text


def test_sequential_monitor_over_daily_looks_matches_the_monitor() -> None:
    from splitlab.stats.sequential.monitor import monitor

    data = make_checkout_data(12_000, seed=8)
    data["day"] = (data["user_id"] - 1) // 1000
    result = splitlab.analyze(
        data, metrics={"conversion": "converted"}, control="control", sequential="gst-obf", planned_n=24_000,
        time_column="day",
    )  # fmt: skip
    looks = []
    for day in range(12):
        seen = data[data["day"] <= day]
        looks.append(tuple(ProportionStatistic.from_values(seen[seen.variant == v].converted)
                           for v in ("control", "free_shipping_35")))  # fmt: skip
    expected = monitor(looks, method="gst-obf", planned_n=24_000)
    assert result.metrics[0].sequential == expected
    single = splitlab.analyze(data, metrics={"conversion": "converted"}, control="control", sequential="msprt",
                              planned_n=24_000)  # fmt: skip
    assert single.metrics[0].sequential is not None
    assert len(single.metrics[0].sequential.looks) == 1


def test_sequential_parameters_are_checked(data: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="sequential == 'sprt'"):
        splitlab.analyze(data, metrics={"c": "converted"}, control="control", sequential="sprt", planned_n=10.0)
    with pytest.raises(ValueError, match="planned_n is required"):
        splitlab.analyze(data, metrics={"c": "converted"}, control="control", sequential="msprt")
