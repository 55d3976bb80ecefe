"""Reports tell one story: every chart draws the intervals it promises, the decision and the tables quote the same."""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

from splitlab.analysis.decision import decide, guardrail_words
from splitlab.analysis.experiment import analyze_experiment
from splitlab.analysis.readout import ExperimentReadout, MetricResult
from splitlab.analysis.report import to_html, to_markdown, to_text
from splitlab.operations.simulation import simulate
from splitlab.specs import MetricDefinition, load_spec
from splitlab.stats.sequential.monitor import MonitorLook, MonitorResult
from splitlab.storage import open_store

from .test_report import make_readout, metric


class _Charts(HTMLParser):
    """Each inline SVG's title and the classes of the lines drawn in it."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: list[tuple[str, list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "svg":
            self.charts.append((values.get("aria-label") or "", []))
        elif tag == "line" and self.charts:
            self.charts[-1][1].append(values.get("class") or "")


def _charts(page: str) -> dict[str, int]:
    """Interval marks (``line.ci``) per chart title."""
    parser = _Charts()
    parser.feed(page)
    return {title: sum("ci" in cls.split() for cls in lines) for title, lines in parser.charts}


def _per_variant(page: str) -> dict[str, int]:
    return {title: n for title, n in _charts(page).items() if "estimate per variant" in title}


def test_every_per_variant_chart_draws_one_interval_per_variant() -> None:
    # Mean and ratio metrics carry their per-variant standard errors; three arms, so three intervals.
    arms = ("a", "b")
    metrics = tuple(
        replace(metric(name, 0.02, role=role, variant=v), kind=kind, std_errors=(0.4, 0.5))
        for name, kind, role in (("revenue", "mean", "goal"), ("aov", "ratio", "secondary"))
        for v in arms
    )
    readout = make_readout(
        variants=("control", *arms), metrics=metrics, units={"control": 10_000, "a": 10_000, "b": 10_000}
    )
    charts = _per_variant(to_html(readout))
    assert charts == {
        "revenue: estimate per variant with 95% CI": 3,
        "aov: estimate per variant with 95% CI": 3,
    }


def test_a_chart_without_an_interval_says_so_in_its_title() -> None:
    bare = replace(metric("latency_p90", 0.02), kind="quantile", std_errors=None)
    charts = _per_variant(to_html(make_readout(metrics=(bare,))))
    assert charts == {
        "latency_p90: estimate per variant with 95% CI (no CI for control, treatment: standard error n/a)": 0
    }


METRICS = {
    "conversion": {"name": "conversion", "kind": "binary", "event": "purchase", "window_days": 7},
    "revenue_per_user": {"name": "revenue_per_user", "kind": "sum", "event": "purchase", "window_days": 7},
    "average_order_value": {"name": "average_order_value", "kind": "ratio", "window_days": 7,
                            "numerator": {"event": "purchase", "aggregation": "sum"},
                            "denominator": {"event": "purchase", "aggregation": "count"}},
}  # fmt: skip
SPEC = """
key: story
variants: [{key: control}, {key: a}, {key: b}]
metrics:
  goal: [conversion]
  secondary: [revenue_per_user]
  guardrails: [{metric: average_order_value, max_degradation: 0.02}]
"""


def test_analysed_mean_and_ratio_metrics_draw_their_intervals(tmp_path: Path) -> None:
    spec = load_spec(SPEC)
    with open_store(f"sqlite:///{tmp_path / 'story.db'}") as store:
        store.metrics.put_many(definitions=list(METRICS.values()), actor="t")
        store.experiments.create(key=spec.key, spec=spec.model_dump(mode="json"), actor="t", status="running")
        definitions = {k: MetricDefinition.model_validate(v) for k, v in METRICS.items()}
        simulate(store, spec, definitions, units=6_000, effects={"conversion": 0.2}, seed=3)
        readout = analyze_experiment(store, "story", save=False)
    assert all(m.std_errors is not None for m in readout.metrics)
    assert _per_variant(to_html(readout)) == {
        f"{name}: estimate per variant with 95% CI": 3
        for name in ("conversion", "revenue_per_user", "average_order_value")
    }


def _sequential(method: str, p: float) -> MetricResult:
    # The fixed-horizon CI ([+3.04%, +6.96%], p < 0.0001) differs from the monitor's on purpose.
    look = MonitorLook(4, 16_000, 0.4, 0.005, 1.1, 2.5, p, (-0.0179, 0.0148), "continue")
    monitor = MonitorResult(method, 0.05, "two-sided", False, 40_000, True, (look,))
    return metric("conversion", 0.05, sequential=monitor)


def _decided(readout: ExperimentReadout) -> ExperimentReadout:
    return replace(readout, decision=decide(readout, hypothesis_mde=0.02))


@pytest.mark.parametrize(("method", "p", "label"), [("msprt", 0.63, "always-valid p = 0.6300"),
                                                    ("gst-obf", float("nan"), "stage-wise p = n/a")])  # fmt: skip
def test_decision_and_tables_quote_the_same_sequential_interval_and_p_value(method: str, p: float, label: str) -> None:
    readout = _decided(make_readout(metrics=(_sequential(method, p),)))
    assert readout.decision is not None
    reason = next(r for r in readout.decision.reasons if "'conversion'" in r)
    kind = "confidence sequence" if method == "msprt" else "repeated CI"
    assert f"{method} {kind} [-17.90%, +14.80%]" in reason
    assert label in reason
    shown = "0.6300" if method == "msprt" else "n/a"
    for form in (to_text(readout), to_markdown(readout)):
        row = next(line for line in form.splitlines() if line.lstrip("| ").startswith("conversion"))
        assert "[-17.90%, +14.80%]" in row
        assert shown in row
        assert "[+3.04%, +6.96%]" not in form
        assert "<0.0001" not in row
    assert re.search(
        r"<td class=\"num\">\[-17\.90%, \+14\.80%\]</td><td class=\"num\">" + re.escape(shown), to_html(readout)
    )


@pytest.mark.parametrize("rel", [0.0, 0.012, 0.03, 0.045, 0.06])
def test_decision_and_guardrail_table_use_the_same_words(rel: float) -> None:
    guard = metric("latency", rel, role="guardrail", higher_is_better=False, max_degradation=0.05)
    readout = _decided(make_readout(metrics=(metric("conversion", 0.05), guard)))
    assert readout.decision is not None
    words = guardrail_words(guard)
    row = next(line for line in to_text(readout).splitlines() if line.lstrip().startswith("latency"))
    assert row.rstrip().endswith(words)
    lines = [
        r for r in readout.decision.reasons if r.startswith(("guardrail: 'latency'", "guardrail breach: 'latency'"))
    ]
    if words == "shown within tolerance":
        assert lines == []  # nothing to warn about; the table says it is shown within tolerance
    else:
        assert len(lines) == 1
        assert f": {words} (tolerated degradation 5.0%" in lines[0]
