"""The readout as one self-contained HTML page: inline CSS and inline SVG charts, nothing fetched.

The page opens offline (no CDN, script, web font or external style sheet) and every text from the
readout is escaped with :func:`html.escape`. Its sections (``*_section``) are public: the
dashboard (:mod:`splitlab.service.dashboard`) places the same fragments in its own pages. Charts
colour their series with the classes ``s0`` to ``s7`` (and ``good``/``bad`` rows), so a page's
style sheet chooses the palette.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from statistics import NormalDist

from splitlab.analysis.format import num, pct, share
from splitlab.analysis.readout import ExperimentReadout, MetricResult
from splitlab.analysis.report._svg import Band, BarGroup, IntervalRow, band_chart, bar_chart, interval_chart
from splitlab.analysis.report._tables import (
    GUARDRAIL_COLUMNS,
    HEALTH_COLUMNS,
    METRIC_COLUMNS,
    PHASE_COLUMNS,
    ROLES,
    SEGMENT_COLUMNS,
    TRAFFIC_COLUMNS,
    Columns,
    Row,
    actual_shares,
    by_role,
    configured_shares,
    guardrail_row,
    guardrail_state,
    health_rows,
    metric_row,
    phase_rows,
    segment_groups,
    segment_row,
    summary_line,
    tone,
    traffic_line,
    traffic_rows,
)

_CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #ffffff; --panel: #f6f8fa;
  --good: #1a7f37; --bad: #cf222e; --warn: #9a6700; --info: #0969da; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1040px; padding: 24px; color: var(--fg); background: var(--bg);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid
  var(--line); padding-bottom: 4px; } h3 { font-size: 14px; margin: 16px 0 4px; }
.meta, .caption { color: var(--muted); } .caption { font-size: 12px; margin: 2px 0 8px; }
.decision { border: 1px solid var(--line); border-left: 6px solid var(--muted); border-radius: 6px;
  padding: 12px 16px; background: var(--panel); margin: 16px 0; }
.decision h2 { border: 0; margin: 0 0 6px; padding: 0; }
.decision ul { margin: 0; padding-left: 20px; }
.cat-STRONG_LAUNCH, .cat-LAUNCH { border-left-color: var(--good); }
.cat-CONSIDER_LAUNCH { border-left-color: var(--warn); }
.cat-EXTEND_TEST { border-left-color: var(--info); }
.cat-ROLLBACK, .cat-INVALID { border-left-color: var(--bad); }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; background: var(--line); }
table { border-collapse: collapse; width: 100%; margin: 4px 0 12px; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--panel); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.good td:first-child { box-shadow: inset 3px 0 var(--good); }
tr.bad td:first-child { box-shadow: inset 3px 0 var(--bad); }
tr.fail td { color: var(--bad); font-weight: 600; }
.chart { max-width: 100%; height: auto; display: block; font-size: 11px; }
.chart .tick, .chart .legend, .chart .value { fill: var(--muted); }
.chart .label { fill: var(--fg); }
.chart .axis { stroke: var(--muted); } .chart .grid { stroke: var(--line); stroke-width: 0.5; }
.chart .reference { stroke: var(--fg); stroke-dasharray: 4 3; }
.chart .whisker { stroke-width: 2; fill: none; } .chart .line { fill: none; stroke-width: 2; }
.chart .band { stroke: none; opacity: 0.18; }
.s0 { stroke: #0969da; fill: #0969da; } .s1 { stroke: #d1242f; fill: #d1242f; }
.s2 { stroke: #1a7f37; fill: #1a7f37; } .s3 { stroke: #8250df; fill: #8250df; }
.s4 { stroke: #bc4c00; fill: #bc4c00; } .s5 { stroke: #1b7c83; fill: #1b7c83; }
.s6 { stroke: #bf3989; fill: #bf3989; } .s7 { stroke: #6e7781; fill: #6e7781; }
.flag { color: var(--warn); font-weight: 600; }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _table(table: Columns, rows: Sequence[Row], classes: Sequence[str] = ()) -> str:
    head = "".join(f'<th scope="col">{_e(column.name)}</th>' for column in table)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{_e(classes[i])}"' if i < len(classes) and classes[i] else ""
        cells = "".join(
            f'<td class="num">{_e(cell)}</td>' if column.numeric else f"<td>{_e(cell)}</td>"
            for column, cell in zip(table, row, strict=True)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def decision_section(readout: ExperimentReadout) -> str:
    """The decision, its variant and its reasons (an ``h2`` and a list)."""
    decision = readout.decision
    if decision is None:
        return '<section class="decision"><h2>Decision: not made yet</h2></section>'
    variant = f' <span class="badge">{_e(decision.variant)}</span>' if decision.variant else ""
    reasons = "".join(f"<li>{_e(r)}</li>" for r in decision.reasons)
    return (
        f'<section class="decision cat-{_e(decision.category)}"><h2>Decision: {_e(decision.category)}{variant}</h2>'
        f"<ul>{reasons}</ul></section>"
    )


def health_section(readout: ExperimentReadout) -> str:
    """The health checks as a table (failed ones marked), under an ``h2``."""
    health = health_rows(readout)
    classes = ["fail" if r[1] == "FAIL" else "" for r in health]
    table = _table(HEALTH_COLUMNS, health, classes) if health else "<p>No health checks ran.</p>"
    return f"<h2>Health checks</h2>{table}"


def traffic_section(readout: ExperimentReadout) -> str:
    """Configured vs actual split (chart and table) with the SRM line and the allocation phases."""
    configured, actual = configured_shares(readout), actual_shares(readout)
    groups = [BarGroup(v, (configured[v], actual[v])) for v in readout.variants]
    chart = bar_chart(groups, title="Traffic split: configured vs actual", legend=("configured", "actual"), fmt=share)
    phases = phase_rows(readout)
    by_phase = (
        "<h3>Allocation phases</h3><p>The split is checked per phase, against its weights.</p>"
        f"{_table(PHASE_COLUMNS, phases)}"
        if phases
        else ""
    )
    return (
        f"<h2>Traffic split</h2><p>{_e(traffic_line(readout))}</p>{chart}"
        f"{_table(TRAFFIC_COLUMNS, traffic_rows(readout))}{by_phase}"
    )


def _std_errors(m: MetricResult) -> tuple[float, float]:
    """Standard errors of the two estimates: given, or the binomial ``sqrt(p (1 - p) / n)``, else NaN."""
    if m.std_errors is not None:
        return m.std_errors
    e = m.effect
    if m.kind == "binary":
        return tuple(  # type: ignore[return-value]
            math.sqrt(p * (1 - p) / n) if n > 0 and 0 <= p <= 1 else math.nan
            for p, n in ((e.control_mean, e.control_n), (e.treatment_mean, e.treatment_n))
        )
    return (math.nan, math.nan)


def _means_chart(metric: str, readouts: Sequence[MetricResult], variants: Sequence[str]) -> str:
    """Per-variant estimates with their CIs (the distribution of each variant's mean)."""
    first = readouts[0]
    z = NormalDist().inv_cdf(1 - first.effect.alpha / 2)
    control_se = _std_errors(first)[0]
    index = {v: i for i, v in enumerate(variants)}
    mean = first.effect.control_mean
    rows = [
        IntervalRow(
            first.control,
            mean,
            mean - z * control_se,
            mean + z * control_se,
            index.get(first.control, 0),
            f" (n = {first.effect.control_n:,})",
        )
    ]
    for m in readouts:
        se, value = _std_errors(m)[1], m.effect.treatment_mean
        rows.append(
            IntervalRow(
                m.variant,
                value,
                value - z * se,
                value + z * se,
                index.get(m.variant, 0),
                f" (n = {m.effect.treatment_n:,})",
            )
        )
    title = f"{metric}: estimate per variant with {1 - first.effect.alpha:.0%} CI"
    # The title promises an interval per variant: say which ones the data could not give.
    missing = [row.label for row in rows if not (math.isfinite(row.low) and math.isfinite(row.high))]
    if missing:
        title += f" (no CI for {', '.join(missing)}: standard error n/a)"
    return interval_chart(rows, title=title, fmt=num)


def metrics_section(readout: ExperimentReadout, *, roles: Sequence[str] = ("goal", "secondary", "guardrail")) -> str:
    """The metric tables of ``roles`` (coloured by outcome, the test and CUPED named) and each metric's chart."""
    out = []
    for role, title in ROLES:
        metrics = by_role(readout, role) if role in roles else []
        if not metrics:
            continue
        out.append(f"<h2>{_e(title)}</h2>")
        if role == "guardrail":
            states = [guardrail_state(m) for m in metrics]
            classes = ["bad" if s == "breached" else "good" if s == "ok" else "" for s in states]
            out.append(_table(GUARDRAIL_COLUMNS, [guardrail_row(m) for m in metrics], classes))
        else:
            out.append(_table(METRIC_COLUMNS, [metric_row(m) for m in metrics], [tone(m) for m in metrics]))
        names = list(dict.fromkeys(m.metric for m in metrics))
        for name in names:
            mine = [m for m in metrics if m.metric == name]
            out.append(f"<h3>{_e(name)}</h3>{_means_chart(name, mine, readout.variants)}")
        out.append(
            '<p class="caption">Dots: each variant\'s estimate (CUPED-adjusted where the test is); '
            "bars: its confidence interval.</p>"
        )
    return "".join(out)


def timeline_section(readout: ExperimentReadout) -> str:
    """The cumulative relative lift of each goal metric by day with its CI band (empty without a timeline)."""
    if not readout.timeline:
        return ""
    out = ["<h2>Cumulative lift over time</h2>"]
    metrics = list(dict.fromkeys(p.metric for p in readout.timeline))
    for metric in metrics:
        points = sorted((p for p in readout.timeline if p.metric == metric), key=lambda p: p.day)
        series = []
        for variant in dict.fromkeys(p.variant for p in points):
            mine = [p for p in points if p.variant == variant]
            series.append(
                Band(
                    variant,
                    tuple(p.day for p in mine),
                    tuple(p.relative_effect for p in mine),
                    tuple(p.relative_ci[0] for p in mine),
                    tuple(p.relative_ci[1] for p in mine),
                )
            )
        chart = band_chart(series, title=f"{metric}: cumulative relative lift with CI, by day", fmt=lambda v: pct(v, 1))
        out.append(f"<h3>{_e(metric)}</h3>{chart}")
    names = {p.interval for p in readout.timeline}
    band = (
        f"band: its {next(iter(names))} (valid at every look)"
        if names and "ci" not in names
        else "band: its CI (not corrected for looking every day)"
    )
    out.append(
        f'<p class="caption">Line: relative lift of each treatment over control on the data up to that day; {band}.</p>'
    )
    return "".join(out)


def segments_section(readout: ExperimentReadout) -> str:
    """Per-segment effects (charts, heterogeneity flag, table); empty without segments."""
    if not readout.segments:
        return ""
    overall = {(m.metric, m.variant): m for m in readout.metrics}
    out = ["<h2>Segments</h2>"]
    for (metric, variant, dimension), members in segment_groups(readout).items():
        heterogeneous = any(m.heterogeneous for m in members)
        rows = [
            IntervalRow(m.segment[1] if m.segment else "-", m.effect.relative_effect, *m.effect.relative_ci, series=0)
            for m in members
        ]
        if (metric, variant) in overall:
            whole = overall[(metric, variant)].effect
            rows.append(IntervalRow("overall", whole.relative_effect, *whole.relative_ci, series=7))
        flag = ' <span class="flag">heterogeneous effects</span>' if heterogeneous else ""
        title = f"{metric}, {variant} vs {readout.control}, by {dimension}: relative effect with CI"
        chart = interval_chart(rows, title=title, fmt=lambda v: pct(v, 1), reference=0.0)
        out.append(f"<h3>{_e(metric)} · {_e(variant)} · by {_e(dimension)}{flag}</h3>{chart}")
    out.append(
        '<p class="caption">Relative effect per segment level with its CI (corrected across the family '
        "where the analysis says so); dashed line: no effect. Heterogeneity: Cochran's Q across levels.</p>"
    )
    out.append(_table(SEGMENT_COLUMNS, [segment_row(m) for m in readout.segments]))
    return "".join(out)


def to_html(readout: ExperimentReadout) -> str:
    """One self-contained HTML page: decision, health, traffic, metrics, lift over time, segments.

    Charts are inline SVG drawn in Python; styles are inline CSS; nothing is fetched, so the file
    opens offline. Every text of the readout is escaped.
    """
    sections = [
        decision_section(readout),
        health_section(readout),
        traffic_section(readout),
        metrics_section(readout),
        timeline_section(readout),
        segments_section(readout),
    ]
    if readout.notes:
        sections.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in readout.notes) + "</ul>")
    title = f"{readout.name} · splitlab readout"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f'<header><h1>{_e(readout.name)}</h1><p class="meta">{_e(readout.experiment_key)} · '
        f"{_e(summary_line(readout))}</p></header>"
        f"{''.join(sections)}"
        f"<footer>splitlab readout of {_e(readout.experiment_key)}, spec v{readout.spec_version}, analysed "
        f"{_e(readout.analysed_at.isoformat(timespec='seconds'))}.</footer></body></html>\n"
    )
