"""Results and readouts in a Jupyter notebook: HTML tables (``_repr_html_``) and a forest plot (``.plot()``).

The tables are the report's own (:mod:`splitlab.analysis.report.html` sections, the frame table of
:mod:`splitlab.analysis.render`), inside a ``<div class="splitlab">`` with a style sheet whose every
rule starts with ``.splitlab``, so the output styles itself and nothing else of the notebook.
Every text is escaped with :func:`html.escape`.

``.plot()`` returns a :class:`ForestPlot`, not a matplotlib Figure: splitlab already draws its
charts in Python as self-contained SVG (:mod:`splitlab.analysis.report._svg`, the HTML report's
and the dashboard's forest plots), so the notebook shows the same chart as the report, with no
plotting library to install and nothing fetched. Jupyter displays it through ``_repr_svg_``;
:meth:`ForestPlot.save` writes an ``.svg`` file; ``to_frame()`` of a result gives the figures to
anyone who wants to draw them with another library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from splitlab.analysis.format import num, p_value, pct
from splitlab.analysis.render import FRAME_COLUMNS, _footer, rows, srm_line
from splitlab.analysis.report._svg import IntervalRow, interval_chart
from splitlab.analysis.report._tables import summary_line, tone
from splitlab.analysis.report.html import _table, decision_section, health_section, metrics_section, traffic_section

if TYPE_CHECKING:
    from splitlab.analysis.readout import ExperimentReadout
    from splitlab.analysis.results import AnalysisResult, MetricResult

Effect = Literal["relative", "absolute"]

# Colour-blind-safe series (Okabe-Ito), text in the notebook's own colour so a dark theme reads.
STYLE = """
.splitlab { font-size: 13px; }
.splitlab td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.splitlab tr.good td:first-child { box-shadow: inset 3px 0 #009E73; }
.splitlab tr.bad td:first-child, .splitlab tr.fail td:first-child { box-shadow: inset 3px 0 #D55E00; }
.splitlab .decision { border-left: 5px solid #999999; padding: 2px 12px; margin: 8px 0; }
.splitlab .cat-STRONG_LAUNCH, .splitlab .cat-LAUNCH { border-left-color: #009E73; }
.splitlab .cat-CONSIDER_LAUNCH, .splitlab .cat-EXTEND_TEST { border-left-color: #E69F00; }
.splitlab .cat-ROLLBACK, .splitlab .cat-INVALID { border-left-color: #D55E00; }
.splitlab .flag { color: #D55E00; font-weight: 600; }
.splitlab .caption { opacity: 0.75; font-size: 12px; }
.splitlab .chart, .splitlab.chart { max-width: 100%; height: auto; font-size: 11px; }
.splitlab .chart text, .splitlab text { fill: currentColor; }
.splitlab .tick, .splitlab .legend, .splitlab .value { opacity: 0.7; }
.splitlab .axis { stroke: currentColor; stroke-opacity: 0.6; }
.splitlab .grid { stroke: currentColor; stroke-opacity: 0.15; stroke-width: 0.5; }
.splitlab .reference { stroke: currentColor; stroke-dasharray: 4 3; }
.splitlab .whisker { stroke-width: 2; fill: none; } .splitlab .line { fill: none; stroke-width: 2; }
.splitlab .band { stroke: none; opacity: 0.2; }
.splitlab .s0 { stroke: #0072B2; fill: #0072B2; } .splitlab .s1 { stroke: #D55E00; fill: #D55E00; }
.splitlab .s2 { stroke: #009E73; fill: #009E73; } .splitlab .s3 { stroke: #CC79A7; fill: #CC79A7; }
.splitlab .s4 { stroke: #E69F00; fill: #E69F00; } .splitlab .s5 { stroke: #56B4E9; fill: #56B4E9; }
.splitlab .s6 { stroke: #F0E442; fill: #F0E442; } .splitlab .s7 { stroke: #7F7F7F; fill: #7F7F7F; }
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _block(body: str) -> str:
    return f'<div class="splitlab"><style>{STYLE}</style>{body}</div>'


def result_html(result: AnalysisResult) -> str:
    """``splitlab.analyze``'s result as HTML: the SRM verdict, the table of effects, and the footer."""
    srm = f'<p class="flag">{_e(srm_line(result))}</p>' if result.srm.flag else f"<p>{_e(srm_line(result))}</p>"
    table = _table(FRAME_COLUMNS, rows(result), [tone(m) for m in result.metrics])
    return _block(f'{srm}{table}<p class="caption">{_e(_footer(result))}</p>')


def readout_html(readout: ExperimentReadout) -> str:
    """An experiment's readout as HTML: decision, metric tables and charts, health checks and traffic.

    The lift over time and the segments are left to the full page (``splitlab.analysis.report.to_html``).
    """
    head = f"<p><strong>{_e(readout.name)}</strong> · {_e(readout.experiment_key)} · {_e(summary_line(readout))}</p>"
    sections = (decision_section(readout), metrics_section(readout), health_section(readout), traffic_section(readout))
    return _block(head + "".join(sections))


@dataclass(frozen=True, slots=True)
class ForestPlot:
    """Effects with their intervals, one row per metric and treatment, and a line at zero.

    Attributes:
        title: the chart's title (and accessible name).
        rows: the plotted rows: label, estimate, interval ends, series (the treatment's colour).
        effect: ``relative`` (a share of the control's mean, comparable across metrics) or
            ``absolute`` (in each metric's units).
    """

    title: str
    rows: tuple[IntervalRow, ...]
    effect: Effect

    def to_svg(self) -> str:
        """A standalone SVG document: its style sheet inside, so it renders the same in a file or a notebook."""
        fmt = (lambda v: pct(v, 1)) if self.effect == "relative" else num
        chart = interval_chart(self.rows, title=self.title, fmt=fmt, reference=0.0)
        # The chart is made to sit in a page that styles it; alone it carries the namespace a file
        # needs and a style sheet scoped to itself (Jupyter puts the SVG inline in its page).
        opening, rest = chart.split(">", 1)
        opening = opening.replace(
            '<svg class="chart"', '<svg xmlns="http://www.w3.org/2000/svg" class="chart splitlab"'
        )
        return f"{opening}><style>{STYLE}</style>{rest}"

    def _repr_svg_(self) -> str:
        return self.to_svg()

    def save(self, path: str | Path) -> Path:
        """Write the SVG to ``path`` (e.g. ``effects.svg``) and return it."""
        target = Path(path)
        target.write_text(self.to_svg(), encoding="utf-8")
        return target


def forest_plot(
    metrics: Sequence[MetricResult], *, variants: Sequence[str], control: str, effect: Effect
) -> ForestPlot:
    """One row per metric and treatment: its effect and CI (corrected across treatments where the analysis was).

    Args:
        metrics: the records to plot, in order.
        variants: every variant, control first: each treatment keeps one colour across metrics.
        control: the control's label, for the title.
        effect: ``relative`` or ``absolute``.
    """
    if effect not in ("relative", "absolute"):
        msg = f"effect == {effect!r}, must be 'relative' or 'absolute'"
        raise ValueError(msg)
    series = {variant: i for i, variant in enumerate(v for v in variants if v != control)}
    plotted = []
    for m in metrics:
        e = m.effect
        value, (low, high) = (
            (e.relative_effect, e.relative_ci) if effect == "relative" else (e.absolute_effect, e.absolute_ci)
        )
        plotted.append(
            IntervalRow(
                f"{m.metric}: {m.variant}",
                value,
                low,
                high,
                series.get(m.variant, 0),
                f" (p = {p_value(e.p_value)})",
            )
        )
    levels = {f"{1 - m.effect.alpha:.0%}" for m in metrics}
    level = f"{levels.pop()} CI" if len(levels) == 1 else "CI"
    title = f"{effect.capitalize()} effect vs {control} with {level}, by metric and treatment"
    return ForestPlot(title=title, rows=tuple(plotted), effect=effect)
