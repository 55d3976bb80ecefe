"""Reports of a hand-built readout: JSON, Markdown, the self-contained HTML page, and the terminal forms."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import fields, replace
from datetime import UTC, date, datetime, timedelta
from html import unescape
from html.parser import HTMLParser
from statistics import NormalDist

import pytest
from rich.console import Console, RenderableType
from rich.table import Table

from splitlab.analysis.readout import (
    Decision,
    ExperimentReadout,
    HealthCheck,
    MetricResult,
    PhaseSummary,
    TimelinePoint,
    Verdict,
)
from splitlab.analysis.render import rich_report
from splitlab.analysis.report import readout_to_dict, rich_readout, to_html, to_json, to_markdown, to_text
from splitlab.analysis.report._svg import Scale, domain, ticks
from splitlab.analysis.report._tables import COLUMNS
from splitlab.analysis.results import AnalysisResult
from splitlab.stats.results import EffectResult
from splitlab.stats.sequential.monitor import MonitorLook, MonitorResult
from splitlab.stats.srm import srm_test

Z = NormalDist().inv_cdf(0.975)
EVIL = "<script>alert('x')</script>"


def effect(rel: float, se: float, *, control_mean: float = 0.1, n: int = 10_000) -> EffectResult:
    abs_effect, abs_se = rel * control_mean, se * control_mean
    return EffectResult(
        "pooled-z", "two-sided", 0.05, control_mean, control_mean + abs_effect, n, n, abs_effect,
        (abs_effect - Z * abs_se, abs_effect + Z * abs_se), rel, (rel - Z * se, rel + Z * se), "delta",
        rel / se, 2 * (1 - NormalDist().cdf(abs(rel) / se)),
    )  # fmt: skip


def metric(name: str, rel: float, se: float = 0.01, *, role: str = "goal", variant: str = "treatment",
           **kwargs: object) -> MetricResult:  # fmt: skip
    return MetricResult(
        metric=name, role=role, kind="binary", variant=variant, control="control",  # type: ignore[arg-type]
        higher_is_better=kwargs.pop("higher_is_better", True), effect=effect(rel, se),  # type: ignore[arg-type]
        chance_to_win=0.9, expected_loss=0.001, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def timeline() -> tuple[TimelinePoint, ...]:
    start = date(2024, 4, 1)
    return tuple(
        TimelinePoint(start + timedelta(days=d), "conversion", "treatment", 1000 * (d + 1), 0.05,
                      (0.05 - 0.2 / (d + 1), 0.05 + 0.2 / (d + 1)))
        for d in range(7)
    )  # fmt: skip


def make_readout(**changes: object) -> ExperimentReadout:
    units = {"control": 10_000, "treatment": 10_000}
    weights = {"control": 0.5, "treatment": 0.5}
    look = MonitorLook(1, 20_000, 0.5, 0.005, 3.2, 0.05, 0.01, (0.001, 0.009), "continue")
    sequential = MonitorResult("msprt", 0.05, "two-sided", False, 40_000, True, (look,))
    base = ExperimentReadout(
        experiment_key="checkout", name="Checkout | test", spec_version=3, status="running",
        analysed_at=datetime(2024, 5, 1, 12, 30, tzinfo=UTC), days_running=7.5, control="control",
        variants=("control", "treatment"), configured_weights=weights, units=units, excluded_units=12,
        planned_units_per_variant=15_000, daily_units=2_666.7, srm=srm_test(units, weights),
        health=(HealthCheck("srm", True, "error", "split as configured", 0.78),
                HealthCheck("multiple_exposures", False, "warning", "0.06% of units", 0.0006)),
        metrics=(
            metric("conversion", 0.05, sequential=sequential),
            metric("revenue", 0.01, role="secondary", std_errors=(0.5, 0.52)),
            metric(EVIL, 0.03, role="guardrail", higher_is_better=False, max_degradation=0.01),
            metric("latency", 0.0, role="guardrail", higher_is_better=False, max_degradation=0.05),
        ),
        segments=(
            metric("conversion", 0.12, 0.02, segment=("country", "DE"), heterogeneous=True),
            metric("conversion", -0.02, 0.02, segment=("country", "US"), heterogeneous=True),
            metric("conversion", 0.04, 0.02, segment=("platform", "[b]ios[/b] | x"), heterogeneous=False),
        ),
        timeline=timeline(),
        decision=Verdict(category=Decision.ROLLBACK, reasons=("Roll back 'treatment': a guardrail is harmed.",
                                                              f"Guardrail {EVIL} breached."), variant="treatment"),
        notes=("CUPED on revenue", ),
    )  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


# --- JSON ---------------------------------------------------------------------------------------


def test_readout_to_dict_is_json_ready() -> None:
    nan_effect = replace(effect(0.0, 0.01), p_value=math.nan, relative_ci=(-math.inf, math.inf))
    readout = make_readout(metrics=(MetricResult(metric="conversion", role="goal", kind="binary", variant="treatment",
                                                 control="control", effect=nan_effect, chance_to_win=math.nan,
                                                 expected_loss=math.inf),))  # fmt: skip
    data = readout_to_dict(readout)
    json.dumps(data, allow_nan=False)  # raises on any NaN or infinity left
    m = data["metrics"][0]
    assert m["effect"]["p_value"] is None
    assert m["effect"]["relative_ci"] == [None, None]
    assert m["chance_to_win"] is None
    assert m["expected_loss"] is None
    assert m["effect"]["significant"] is False
    assert data["analysed_at"] == "2024-05-01T12:30:00+00:00"
    assert data["timeline"][0]["day"] == "2024-04-01"
    assert data["timeline"][0]["relative_ci"] == [pytest.approx(-0.15), pytest.approx(0.25)]


def test_readout_to_dict_shape() -> None:
    data = readout_to_dict(make_readout())
    # every field of the record, and no other key
    assert set(data) == {f.name for f in fields(ExperimentReadout)}
    assert set(data) >= {
        "experiment_key", "name", "spec_version", "status", "analysed_at", "days_running", "control", "variants",
        "configured_weights", "units", "excluded_units", "planned_units_per_variant", "daily_units", "srm", "health",
        "metrics", "segments", "timeline", "decision", "notes", "min_duration_days", "max_duration_days",
    }  # fmt: skip
    assert data["decision"] == {"category": "ROLLBACK", "reasons": list(make_readout().decision.reasons),  # type: ignore[union-attr]
                                "variant": "treatment"}  # fmt: skip
    assert data["units"] == {"control": 10_000, "treatment": 10_000}
    assert data["srm"]["variants"] == ["control", "treatment"]
    first = data["metrics"][0]
    assert first["effect"]["significant"] is True
    assert first["sequential"]["decision"] == "continue"
    assert first["sequential"]["looks"][0]["ci"] == [0.001, 0.009]
    assert data["metrics"][1]["std_errors"] == [0.5, 0.52]
    assert data["segments"][0]["segment"] == ["country", "DE"]
    assert data["health"][1] == {"name": "multiple_exposures", "passed": False, "severity": "warning",
                                 "message": "0.06% of units", "value": 0.0006}  # fmt: skip


def test_to_json_round_trips() -> None:
    readout = make_readout()
    text = to_json(readout)
    assert json.loads(text) == readout_to_dict(readout)
    assert "NaN" not in text
    assert "\n" not in to_json(readout, indent=None)


# --- Markdown -----------------------------------------------------------------------------------


def test_markdown_puts_the_decision_and_reasons_first() -> None:
    text = to_markdown(make_readout())
    lines = text.splitlines()
    assert lines[0] == "# Checkout \\| test (checkout)"
    assert lines[2] == "**Decision: ROLLBACK** · variant treatment"
    assert lines[4] == "- Roll back 'treatment': a guardrail is harmed."
    headings = [line for line in lines if line.startswith("## ")]
    assert headings == ["## Health checks", "## Traffic split", "## Goal metrics", "## Secondary metrics",
                        "## Guardrails", "## Segments", "## Notes"]  # fmt: skip
    assert text.index("Decision") < text.index("## Health checks")


def _table_after(text: str, heading: str) -> list[list[str]]:
    block = text.split(heading + "\n\n", 1)[1].split("\n\n", 1)[0]
    rows = [re.split(r"(?<!\\) \| ", line.strip("| ")) for line in block.splitlines()]
    return [rows[0], *rows[2:]]


def test_markdown_tables_per_role() -> None:
    text = to_markdown(make_readout())
    goal = _table_after(text, "## Goal metrics")
    assert goal[0][:3] == ["metric", "variant", "control"]
    assert goal[1][:2] == ["conversion", "treatment"]
    # a sequential metric: the confidence sequence [+0.001, +0.009] of a 0.1 mean and its p, as the decision quotes them
    assert goal[1][5:8] == ["+5.00%", "[+1.00%, +9.00%]", "0.0100"]
    assert goal[1][-1] == "not significant yet (pooled-z, msprt confidence sequence, always-valid p)"
    guardrails = _table_after(text, "## Guardrails")
    assert guardrails[0][-1] == "status"
    assert len(guardrails) == 3
    assert guardrails[1][0] == "&lt;script>alert('x')&lt;/script>"
    assert guardrails[1][-1] == "harmed beyond tolerance"
    assert guardrails[2][-1] == "shown within tolerance"
    segments = _table_after(text, "## Segments")
    assert [row[3] for row in segments[1:]] == ["DE", "US", "[b]ios[/b] \\| x"]
    assert "Configured: control=50.0%, treatment=50.0% / Actual: control=50.0%, treatment=50.0%" in text


def test_markdown_escapes_injection() -> None:
    text = to_markdown(make_readout())
    assert "<script>" not in text
    assert "\\| x" in text  # the pipe of a segment level cannot break the table


def test_markdown_without_decision_or_extras() -> None:
    text = to_markdown(make_readout(decision=None, segments=(), notes=(), health=()))
    assert "**Decision: not made yet**" in text
    assert "## Segments" not in text
    assert "No health checks ran." in text


# --- HTML ---------------------------------------------------------------------------------------


VOID = {"meta", "br", "hr", "img", "input", "link", "area", "base", "col", "embed", "source", "track", "wbr"}
SVG_EMPTY = {"line", "circle", "rect", "path", "polygon", "polyline"}


class Page(HTMLParser):
    """Collects tags, attributes and text, and checks that every element is closed in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


@pytest.fixture(scope="module")
def html() -> str:
    return to_html(make_readout())


def test_html_parses_with_every_element_closed(html: str) -> None:
    page = parse(html)
    assert page.errors == []
    assert page.stack == []
    assert html.startswith("<!DOCTYPE html>")
    assert [t for t, _ in page.tags[:4]] == ["html", "head", "meta", "meta"]


def test_html_is_self_contained(html: str) -> None:
    page = parse(html)
    for tag, attrs in page.tags:
        for name in ("src", "href", "xlink:href", "action", "data"):
            value = attrs.get(name) or ""
            assert not re.match(r"\s*(https?:)?//", value), (tag, name, value)
    assert not {t for t, _ in page.tags} & {"script", "link", "iframe", "img", "object"}
    assert not re.search(r"https?://", html)
    assert "url(" not in html
    assert "@import" not in html
    styles = [t for t, _ in page.tags if t == "style"]
    assert styles == ["style"]


def test_html_escapes_every_text(html: str) -> None:
    page = parse(html)
    assert "script" not in {t for t, _ in page.tags}
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    text = "".join(page.text)
    assert f"Guardrail {EVIL} breached." in text  # shown as text, verbatim
    assert "[b]ios[/b] | x" in text


def test_html_has_the_four_kinds_of_plot(html: str) -> None:
    page = parse(html)
    titles = [attrs.get("aria-label") or "" for tag, attrs in page.tags if tag == "svg"]
    assert "Traffic split: configured vs actual" in titles
    assert "conversion: estimate per variant with 95% CI" in titles
    assert "conversion: cumulative relative lift with CI, by day" in titles
    assert "conversion, treatment vs control, by country: relative effect with CI" in titles
    assert "conversion, treatment vs control, by platform: relative effect with CI" in titles
    assert sum(1 for tag, _ in page.tags if tag == "polygon") == 1  # the CI band of the one timeline series
    assert html.count("heterogeneous effects</span>") == 1  # country is flagged, platform is not


def test_html_decision_comes_first(html: str) -> None:
    assert html.index("Decision: ROLLBACK") < html.index("Health checks") < html.index("Goal metrics")
    assert 'class="decision cat-ROLLBACK"' in html


def _circle_titles(html: str, chart: str) -> list[str]:
    svg = re.search(r'<svg[^>]*aria-label="' + re.escape(chart) + r'".*?</svg>', html, flags=re.DOTALL)
    assert svg is not None
    return re.findall(r"<circle[^>]*><title>(.*?)</title>", svg.group(0))


def test_per_variant_intervals_are_binomial_for_binary_metrics(html: str) -> None:
    # conversion is binary: the control's CI is 0.1 -/+ 1.96 sqrt(0.1 * 0.9 / 10000)
    half = Z * math.sqrt(0.1 * 0.9 / 10_000)
    titles = _circle_titles(html, "conversion: estimate per variant with 95% CI")
    assert titles[0] == f"control: 0.1 [{0.1 - half:.4g}, {0.1 + half:.4g}] (n = 10,000)"
    assert len(titles) == 2


def test_per_variant_intervals_use_given_standard_errors(html: str) -> None:
    titles = _circle_titles(html, "revenue: estimate per variant with 95% CI")
    assert titles[1] == f"treatment: 0.101 [{0.101 - Z * 0.52:.4g}, {0.101 + Z * 0.52:.4g}] (n = 10,000)"


def test_svg_coordinates_are_finite(html: str) -> None:
    infinite = make_readout(segments=(replace(make_readout().segments[0], effect=replace(
        effect(0.1, 0.02), relative_ci=(0.02, math.inf))),))  # fmt: skip
    page = parse(to_html(infinite) + html)
    for tag, attrs in page.tags:
        if tag in SVG_EMPTY:
            for name in ("x", "y", "x1", "x2", "y1", "y2", "cx", "cy", "width", "points", "d"):
                value = attrs.get(name) or ""
                assert not re.search(r"nan|inf", value), (tag, name, value)
    assert "<path" in to_html(infinite)  # the open end of an unbounded CI is an arrow


def test_html_without_optional_parts() -> None:
    html = to_html(make_readout(decision=None, segments=(), timeline=(), notes=(), health=()))
    page = parse(html)
    assert page.errors == []
    assert "Decision: not made yet" in html
    assert "Cumulative lift" not in html
    assert "<h2>Segments</h2>" not in html


def test_scale_ticks_and_domain() -> None:
    scale = Scale(0.0, 2.0, 100.0, 300.0)
    assert (scale(0.0), scale(1.0), scale(2.0), scale(5.0), scale(-1.0)) == (100.0, 200.0, 300.0, 300.0, 100.0)
    assert ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert ticks(-0.013, 0.047) == [-0.01, 0.0, 0.01, 0.02, 0.03, 0.04]
    assert ticks(3.0, 3.0) == [3.0]
    assert domain([math.nan, math.inf]) == (-1.0, 1.0)
    assert domain([1.0, 3.0], include=[0.0]) == pytest.approx((-0.18, 3.18))
    assert domain([2.0]) == pytest.approx((1.8, 2.2))


# --- terminal -----------------------------------------------------------------------------------


def test_plain_text_form() -> None:
    text = to_text(make_readout())
    lines = text.splitlines()
    assert lines[0] == "Checkout | test (checkout)"
    assert lines[3] == "Decision: ROLLBACK (treatment)"
    assert lines[4] == "  - Roll back 'treatment': a guardrail is harmed."
    order = ["Health checks:", "Configured:", "Goal metrics:", "Secondary metrics:", "Guardrails:", "Segments:",
             "Notes:"]  # fmt: skip
    positions = [text.index(word) for word in order]
    assert positions == sorted(positions)
    assert "\x1b[" not in text


def test_rich_renderables_show_text_verbatim() -> None:
    console = Console(record=True, width=220, color_system=None)
    for renderable in rich_readout(make_readout()):
        console.print(renderable)
    out = console.export_text()
    assert "Decision: ROLLBACK (treatment)" in out
    assert "[b]ios[/b] | x" in out  # brackets are not read as rich markup
    assert EVIL in out
    assert "harmed beyond tolerance" in out
    assert "Configured: control=50.0%, treatment=50.0%" in out


# --- one alignment per column -------------------------------------------------------------------


def _rich_alignment(renderables: Iterable[RenderableType]) -> dict[str, bool]:
    """Header -> right-aligned, for every rich table among the renderables."""
    return {str(c.header): c.justify == "right" for r in renderables if isinstance(r, Table) for c in r.columns}


def _html_alignment(page: str) -> dict[str, bool]:
    """Header -> right-aligned (``td.num``), read from the first body row of every table."""
    alignment = {}
    for table in re.findall(r"<table>(.*?)</table>", page):
        names = [unescape(h) for h in re.findall(r"<th(?: [^>]*)?>(.*?)</th>", table)]
        first = re.search(r"<tbody><tr[^>]*>(.*?)</tr>", table)
        assert first is not None
        cells = re.findall(r'<td( class="num")?>', first.group(1))
        alignment.update({name: bool(num) for name, num in zip(names, cells, strict=True)})
    return alignment


def test_every_form_right_aligns_the_same_columns(html: str) -> None:
    readout = make_readout()
    frame = AnalysisResult(
        control="control",
        variants=readout.variants,
        srm=readout.srm,
        metrics=readout.metrics,
        alpha=0.05,
        correction="none",
    )
    start = readout.analysed_at - timedelta(days=7)
    ramp = tuple(
        PhaseSummary(
            phase=i + 1,
            started_at=start + timedelta(days=3 * i),
            spec_version=2 + i,
            weights=dict(zip(readout.variants, weights, strict=True)),
            units=dict.fromkeys(readout.variants, 100),
            srm_p_value=0.5,
        )
        for i, weights in enumerate(((0.9, 0.1), (0.5, 0.5)))
    )
    phased = replace(readout, phases=ramp)
    forms = {
        "html": _html_alignment(html),
        "rich readout": _rich_alignment(rich_readout(readout)),
        "frame table": _rich_alignment(rich_report(frame)),
        "html with phases": _html_alignment(to_html(phased)),
        "rich readout with phases": _rich_alignment(rich_readout(phased)),
    }
    seen: dict[str, set[bool]] = {}
    for alignment in forms.values():
        for name, right in alignment.items():
            seen.setdefault(name, set()).add(right)
    assert {name: len(ways) for name, ways in seen.items() if len(ways) > 1} == {}
    assert {name: right for name, (right,) in seen.items()} == {name: COLUMNS[name].numeric for name in seen}
    assert set(seen) == set(COLUMNS)  # every declared column is rendered somewhere
    assert all(alignment["rel. CI"] for alignment in forms.values())
    assert not any(alignment["metric"] for alignment in forms.values())
