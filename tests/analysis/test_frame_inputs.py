"""``splitlab.analyze`` on every kind of input: the same rows give the same statistics and results.

The pandas frame is the reference (its path is cross-checked against scipy and statsmodels in
test_analyze.py); every other input must match it to 1e-9, and the engine inputs (polars
LazyFrame, Ibis tables, DuckDB relation) must be aggregated in their engine: what comes back to
Python is one row per variant, not the units.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree as ET

import duckdb
import ibis
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import splitlab
from splitlab.analysis.backends import frame_source
from splitlab.analysis.metrics import parse_metrics
from splitlab.analysis.readout import Decision, ExperimentReadout, HealthCheck, Verdict
from splitlab.stats.statistics import MeanStatistic, ProportionStatistic

N = 3_000
VARIANTS = ("control", "b", "c")
METRICS: dict[str, Any] = {
    "conversion": "converted",  # 0/1 integers: a proportion, kind inferred
    "clicked": "clicked",  # booleans: a proportion
    "revenue": "revenue:mean",
    "aov": ("revenue", "orders"),  # a ratio
    "revenue_cuped": splitlab.mean("revenue", covariate="pre_revenue"),
    "conversion_cuped": splitlab.proportion("converted", covariate="pre_revenue"),
    "aov_cuped": splitlab.ratio("revenue", "orders", covariate=("pre_revenue", "pre_orders")),
}


def _frame(seed: int = 19) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    variant = rng.choice(np.array(VARIANTS, dtype=object), N)
    variant[rng.choice(N, 7, replace=False)] = None  # rows without a variant: left out everywhere
    pre = rng.gamma(2.0, 10.0, N)
    revenue = 0.6 * pre + rng.gamma(2.0, 5.0, N) + np.where(variant == "c", 1.5, 0.0)
    revenue[rng.choice(N, 11, replace=False)] = np.nan  # missing values: excluded from that metric
    return pd.DataFrame(
        {
            "variant": variant,
            "converted": (rng.random(N) < np.where(variant == "b", 0.14, 0.11)).astype(np.int64),
            "clicked": rng.random(N) < 0.4,
            "revenue": revenue,
            "orders": rng.poisson(2.0, N) + 1.0,
            "pre_revenue": pre,
            "pre_orders": rng.poisson(2.0, N) + 1.0,
            "day": rng.integers(0, 5, N),
            "city": rng.choice(["x", "y"], N),
        }
    )


FRAME = _frame()


def _duckdb_relation(frame: pd.DataFrame) -> Any:
    connection = duckdb.connect()
    connection.register("units", frame)
    return connection.sql("SELECT * FROM units")


def _ibis_duckdb(frame: pd.DataFrame) -> Any:
    # A table stored in a DuckDB database (not a memtable). Ibis 12 with DuckDB 2 cannot create it
    # from a pandas frame directly ("DROP VIEW IF EXISTS" without a name), so through a memtable.
    return ibis.duckdb.connect().create_table("units", ibis.memtable(frame))


INPUTS: dict[str, Callable[[pd.DataFrame], Any]] = {
    "polars": pl.from_pandas,
    "polars-lazy": lambda frame: pl.from_pandas(frame).lazy(),
    "pyarrow": lambda frame: pa.Table.from_pandas(frame, preserve_index=False),
    "ibis-memtable": ibis.memtable,
    "ibis-duckdb": _ibis_duckdb,
    "duckdb-relation": _duckdb_relation,
}
ENGINES = ("polars-lazy", "ibis-memtable", "ibis-duckdb", "duckdb-relation")


@functools.cache
def _input(kind: str) -> Any:
    """FRAME as input ``kind``, made once per test run (engines are set up once, as a notebook would)."""
    return FRAME if kind == "pandas" else INPUTS[kind](FRAME)


def _flat(value: Any) -> Iterator[Any]:
    """Every number of a (nested) statistics record or result, in a fixed order."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _flat(getattr(value, field.name))
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _flat(item)
    else:
        yield value


def _close(expected: Any, actual: Any) -> bool:
    if isinstance(expected, float) and isinstance(actual, float):
        if math.isnan(expected):
            return math.isnan(actual)
        return math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-12)
    return bool(expected == actual)


def _assert_same(expected: Any, actual: Any) -> None:
    left, right = list(_flat(expected)), list(_flat(actual))
    assert len(left) == len(right)
    different = [(i, a, b) for i, (a, b) in enumerate(zip(left, right, strict=True)) if not _close(a, b)]
    assert not different, different[:5]


@pytest.fixture(scope="module")
def reference() -> splitlab.AnalysisResult:
    return splitlab.analyze(FRAME, metrics=METRICS, control="control")


@pytest.mark.parametrize("kind", INPUTS)
def test_every_input_gives_the_pandas_statistics(kind: str) -> None:
    specs = parse_metrics(METRICS)
    expected = frame_source(FRAME).aggregate(specs, variant="variant", time_column=None)
    actual = frame_source(_input(kind)).aggregate(specs, variant="variant", time_column=None)
    assert actual.specs == expected.specs  # kinds inferred alike (0/1 integers and booleans: proportions)
    assert (actual.unlabelled, actual.specs[0].kind, actual.specs[1].kind) == (7, "proportion", "proportion")
    # An engine gives its labels in natural order; in memory they come in order of appearance.
    order = [expected.labels.index(label) for label in actual.labels]
    assert sorted(actual.labels) == sorted(expected.labels)
    assert actual.counts == tuple(expected.counts[g] for g in order)
    for mine, theirs in zip(actual.metrics, expected.metrics, strict=True):
        assert mine.excluded == tuple(theirs.excluded[g] for g in order)
        _assert_same([theirs.statistics[g] for g in order], mine.statistics)


@pytest.mark.parametrize("kind", INPUTS)
def test_every_input_gives_the_pandas_result(kind: str, reference: splitlab.AnalysisResult) -> None:
    result = splitlab.analyze(_input(kind), metrics=METRICS, control="control")
    assert [(m.metric, m.variant, m.kind, m.effect.test, m.effect.cuped) for m in result.metrics] == [
        (m.metric, m.variant, m.kind, m.effect.test, m.effect.cuped) for m in reference.metrics
    ]
    _assert_same(reference, result)
    assert result.unlabelled_rows == 7


def test_engine_statistics_match_an_independent_group_by() -> None:
    # Not only the same as the pandas path: the figures a pandas group-by gives directly.
    for kind in ENGINES:
        aggregation = frame_source(_input(kind)).aggregate(
            parse_metrics({"revenue": "revenue:mean", "conversion": "converted"}), variant="variant", time_column=None
        )
        g = aggregation.labels.index("b")
        rows = FRAME[FRAME.variant == "b"]
        revenue = rows.revenue.dropna()
        expected_mean = MeanStatistic(len(revenue), float(revenue.sum()), float((revenue**2).sum()))
        _assert_same(expected_mean, aggregation.metrics[0].statistics[g])
        assert aggregation.metrics[1].statistics[g] == ProportionStatistic(len(rows), float(rows.converted.sum()))
        assert aggregation.metrics[0].excluded[g] == int(rows.revenue.isna().sum())


@pytest.mark.parametrize("kind", ENGINES)
def test_sequential_looks_are_grouped_in_the_engine(kind: str) -> None:
    options: dict[str, Any] = {"control": "control", "sequential": "gst-obf", "planned_n": 6_000, "time_column": "day"}
    metrics = {"conversion": "converted", "revenue": "revenue:mean"}
    expected = splitlab.analyze(FRAME, metrics=metrics, **options)
    result = splitlab.analyze(_input(kind), metrics=metrics, **options)
    assert all(m.sequential is not None and len(m.sequential.looks) == 5 for m in result.metrics)
    _assert_same(expected, result)


@pytest.mark.parametrize("kind", ["polars-lazy", "ibis-duckdb"])
def test_tests_on_unit_values(kind: str) -> None:
    metrics = {"revenue": splitlab.mean("revenue", test="mann-whitney"), "orders": splitlab.mean("orders")}
    expected = splitlab.analyze(FRAME, metrics=metrics, control="control")
    result = splitlab.analyze(_input(kind), metrics=metrics, control="control")
    assert result.metrics[0].effect.test == "mann-whitney"
    _assert_same(expected, result)


def test_bootstrap_on_a_lazy_frame_reads_the_rows_in_order() -> None:
    # polars keeps row order, so the seeded resamples are those of the frame.
    metrics = {"revenue": splitlab.mean("revenue", test="bootstrap")}
    frame = FRAME.iloc[:600]
    expected = splitlab.analyze(frame, metrics=metrics, control="control")
    result = splitlab.analyze(pl.from_pandas(frame).lazy(), metrics=metrics, control="control")
    assert result.metrics[0].effect.test == "bootstrap-bca"
    _assert_same(expected, result)


def test_a_lazy_frame_is_collected_aggregated(monkeypatch: pytest.MonkeyPatch) -> None:
    collected: list[tuple[int, int]] = []
    collect = pl.LazyFrame.collect

    def spy(self: pl.LazyFrame, *args: Any, **kwargs: Any) -> Any:
        answer = collect(self, *args, **kwargs)
        collected.append(answer.shape)
        return answer

    monkeypatch.setattr(pl.LazyFrame, "collect", spy)
    splitlab.analyze(_input("polars-lazy"), metrics=METRICS, control="control")
    # One query for all seven metrics; its answer has a row per variant, and the rows without one.
    assert len(collected) == 1
    assert collected[0][0] == len(VARIANTS) + 1
    collected.clear()
    metrics = {"revenue": splitlab.mean("revenue", test="mann-whitney")}
    splitlab.analyze(_input("polars-lazy"), metrics=metrics, control="control")
    # A test on unit values reads two columns of every row, and only those.
    assert [height for height, _ in collected] == [len(VARIANTS) + 1, N]
    assert collected[1][1] == 2


def test_an_ibis_table_is_aggregated_in_its_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    answers: list[tuple[int, int]] = []
    to_pyarrow = ibis.expr.types.Table.to_pyarrow

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        answer = to_pyarrow(self, *args, **kwargs)
        answers.append((answer.num_rows, answer.num_columns))
        return answer

    monkeypatch.setattr(ibis.expr.types.Table, "to_pyarrow", spy)
    monkeypatch.setattr(ibis.expr.types.Table, "to_pandas", lambda *_, **__: pytest.fail("rows fetched as pandas"))
    monkeypatch.setattr(ibis.expr.types.Table, "execute", lambda *_, **__: pytest.fail("rows fetched by execute"))
    splitlab.analyze(_input("ibis-duckdb"), metrics=METRICS, control="control")
    assert len(answers) == 1
    assert answers[0][0] == len(VARIANTS) + 1


@pytest.mark.parametrize("kind", [*INPUTS, "pandas"])
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metrics": {"x": "nope"}}, r"metrics\['x'\]: column 'nope' is not in the data"),
        ({"metrics": {"x": ("revenue", "nope")}}, r"metrics\['x'\]: column 'nope' is not in the data"),
        ({"metrics": {"x": splitlab.mean("revenue", covariate="nope")}}, "column 'nope' is not in the data"),
        ({"metrics": {"x": "revenue"}, "variant": "arm"}, "column 'arm' is not in the data"),
        ({"metrics": {"x": "city:mean"}}, r"metrics\['x'\]: column 'city' is not numeric"),
        ({"metrics": {"x": "revenue:proportion"}}, "needs 0/1 values"),
        ({"metrics": {"x": "revenue"}, "control": "zzz"}, "control == 'zzz'"),
    ],
)
def test_caller_mistakes_name_the_column(kind: str, kwargs: dict[str, Any], match: str) -> None:
    data = _input(kind)
    with pytest.raises(ValueError, match=match):
        splitlab.analyze(data, **{"control": "control", **kwargs})


@pytest.mark.parametrize("kind", ENGINES)
def test_missing_times_and_a_single_variant_are_errors(kind: str) -> None:
    frame = FRAME.assign(day=FRAME.day.astype(float))
    frame.loc[3, "day"] = np.nan
    options: dict[str, Any] = {"sequential": "msprt", "planned_n": 6_000, "time_column": "day"}
    with pytest.raises(ValueError, match="column 'day' has missing values in 1 rows"):
        splitlab.analyze(INPUTS[kind](frame), metrics={"c": "converted"}, **options)
    alone = FRAME[FRAME.variant == "b"]
    with pytest.raises(ValueError, match=r"has 1 variant label\(s\) \['b'\]"):
        splitlab.analyze(INPUTS[kind](alone), metrics={"c": "converted"})


def _nan_and_null() -> tuple[pa.Table, pd.DataFrame]:
    """Revenue with NaNs and nulls as an Arrow table, and as pandas has it (both NaN)."""
    values = FRAME.revenue.to_numpy().copy()
    null = np.zeros(N, dtype=bool)
    null[[1, 2, 3]] = True  # nulls besides the NaNs
    table = pa.table(
        {
            "variant": pa.array(FRAME.variant, from_pandas=True),
            "revenue": pa.array(values, mask=null, from_pandas=False),  # NaN stays NaN
            "orders": pa.array(FRAME.orders.to_numpy()),
        }
    )
    assert pa.compute.sum(pa.compute.is_nan(table["revenue"])).as_py() == 11
    return table, FRAME.assign(revenue=np.where(null, np.nan, values))


def test_nan_and_null_are_both_missing() -> None:
    # pandas holds either as NaN; an engine keeps them apart, and both must leave the unit out.
    table, frame = _nan_and_null()
    metrics: dict[str, Any] = {"revenue": "revenue:mean", "aov": ("revenue", "orders")}
    expected = splitlab.analyze(frame, metrics=metrics, control="control")
    assert expected.metrics[0].excluded_units != (0, 0)
    lazy = pl.from_arrow(table).lazy()  # type: ignore[union-attr]
    for data in (table, lazy, ibis.memtable(table), duckdb.connect().from_arrow(table)):
        _assert_same(expected, splitlab.analyze(data, metrics=metrics, control="control"))


# --- in a notebook: HTML tables and the forest plot --------------------------------------------

EVIL = "<script>alert('x')</script>"
SVG = "{http://www.w3.org/2000/svg}"


def _evil_result() -> splitlab.AnalysisResult:
    frame = FRAME.assign(variant=FRAME.variant.replace({"c": "<b>c</b>"}))
    return splitlab.analyze(frame, metrics={"conversion": "converted", EVIL: "revenue:mean"}, control="control")


def _readout(result: splitlab.AnalysisResult) -> ExperimentReadout:
    units = dict(zip(result.srm.variants, result.srm.counts, strict=True))
    return ExperimentReadout(
        experiment_key="checkout",
        name=f"Checkout {EVIL}",
        spec_version=1,
        status="running",
        analysed_at=datetime(2024, 5, 1, tzinfo=UTC),
        days_running=7.0,
        control=result.control,
        variants=result.variants,
        configured_weights={v: 1 / len(units) for v in units},
        units=units,
        excluded_units=0,
        planned_units_per_variant=None,
        daily_units=400.0,
        srm=result.srm,
        health=(HealthCheck("srm", True, "error", f"split as configured {EVIL}"),),
        metrics=tuple(dataclasses.replace(m, role="goal") for m in result.metrics),
        decision=Verdict(category=Decision.EXTEND_TEST, reasons=(f"not yet {EVIL}",)),
    )


@pytest.mark.parametrize("make", [lambda r: r, _readout], ids=["result", "readout"])
def test_repr_html_is_a_table_with_every_text_escaped(make: Callable[[Any], Any]) -> None:
    result = _evil_result()
    page = make(result)._repr_html_()
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&lt;b&gt;c&lt;/b&gt;" in page
    assert "<b>" not in page
    assert page.startswith('<div class="splitlab">')
    assert page.endswith("</div>")
    # Every rule of its style sheet is scoped: the output styles nothing else of the notebook.
    style = page.split("<style>", 1)[1].split("</style>", 1)[0]
    selectors = [s.strip() for rule in style.split("}") if "{" in rule for s in rule.split("{")[0].split(",")]
    assert selectors
    assert all(s.startswith(".splitlab") for s in selectors)
    table = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert table.count("<tr") == len(result.metrics) == 4
    assert "conversion" in table


@pytest.mark.parametrize("make", [lambda r: r, _readout], ids=["result", "readout"])
def test_plot_is_a_forest_plot_of_every_metric_and_treatment(make: Callable[[Any], Any], tmp_path: Any) -> None:
    result = _evil_result()
    plot = make(result).plot()
    root = ET.fromstring(plot._repr_svg_())  # noqa: S314 - our own output: a well-formed standalone SVG document
    assert root.tag == f"{SVG}svg"
    assert root.find(f"{SVG}style") is not None
    intervals = [e for e in root.iter(f"{SVG}line") if "ci" in e.get("class", "").split()]
    assert len(intervals) == len(result.metrics)
    (zero,) = [e for e in root.iter(f"{SVG}line") if e.get("class") == "reference"]
    labels = [e.text for e in root.iter(f"{SVG}text") if e.get("class") == "label"]
    assert labels == [f"{m.metric}: {m.variant}" for m in result.metrics]
    dots = [float(e.get("cx", "nan")) for e in root.iter(f"{SVG}circle")]
    for m, dot, line in zip(result.metrics, dots, intervals, strict=True):
        low, high = m.effect.relative_ci
        # Right of the zero line exactly when the effect is positive; the interval around the dot.
        assert (dot > float(zero.get("x1", "nan"))) == (m.effect.relative_effect > 0)
        assert float(line.get("x1", "nan")) <= dot <= float(line.get("x2", "nan"))
        assert low < m.effect.relative_effect < high
    assert plot.save(tmp_path / "effects.svg").read_text(encoding="utf-8") == plot.to_svg()
    absolute = make(result).plot(effect="absolute")
    assert [row.estimate for row in absolute.rows] == [m.effect.absolute_effect for m in result.metrics]
    with pytest.raises(ValueError, match="effect == 'lift', must be 'relative' or 'absolute'"):
        make(result).plot(effect="lift")


def test_an_ibis_table_in_postgresql(postgres_schemas: Any, reference: splitlab.AnalysisResult) -> None:
    # Another SQL engine under the same plan: booleans, integer sums and NaN as PostgreSQL has them.
    url = postgres_schemas.base
    connection = ibis.postgres.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database
    )
    try:
        table = connection.create_table("splitlab_frame_inputs", ibis.memtable(FRAME), temp=True)
        _assert_same(reference, splitlab.analyze(table, metrics=METRICS, control="control"))
        arrow, frame = _nan_and_null()
        nan_table = connection.create_table("splitlab_frame_inputs_nan", ibis.memtable(arrow), temp=True)
        nans = connection.raw_sql("SELECT count(*) FROM splitlab_frame_inputs_nan WHERE revenue = 'NaN'").fetchone()
        assert nans == (11,)
        metrics: dict[str, Any] = {"aov": ("revenue", "orders"), "test": splitlab.mean("revenue", test="mann-whitney")}
        expected = splitlab.analyze(frame, metrics=metrics, control="control")
        _assert_same(expected, splitlab.analyze(nan_table, metrics=metrics, control="control"))
    finally:
        connection.disconnect()
