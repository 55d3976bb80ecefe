"""Terminal forms of an analysis: a rich table for a TTY, aligned plain text otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from splitlab.analysis.format import aligned, interval, num, p_value, pct, share
from splitlab.analysis.report._tables import METRIC_HEADERS

if TYPE_CHECKING:
    from rich.console import RenderableType

    from splitlab.analysis.results import AnalysisResult, MetricResult

# The readout's metric columns, with the test's notes last.
HEADERS = (*METRIC_HEADERS[:-1], "note")


def rows(result: AnalysisResult) -> list[tuple[str, ...]]:
    """Formatted cells, one row per metric and treatment."""
    out: list[tuple[str, ...]] = []
    for m in result.metrics:
        e = m.effect
        notes = [e.test + (" +CUPED" if e.cuped else "")]
        if e.significant:
            notes.append("significant")
        if e.error_code is not None:
            notes.append(str(e.error_code))
        if m.sequential is not None and m.sequential.looks:
            last = m.sequential.looks[-1]
            notes.append(f"{m.sequential.method}: {m.sequential.decision}, p = {p_value(last.p_value)}")
        out.append(
            (
                m.metric,
                m.variant,
                num(e.control_mean),
                num(e.treatment_mean),
                num(e.absolute_effect),
                pct(e.relative_effect),
                interval(e.relative_ci),
                p_value(e.p_value),
                share(m.chance_to_win),
                ", ".join(notes),
            )
        )
    return out


def srm_line(result: AnalysisResult) -> str:
    """One line on the sample ratio check."""
    srm = result.srm
    counts = ", ".join(f"{v}={c}" for v, c in zip(srm.variants, srm.counts, strict=True))
    verdict = "SAMPLE RATIO MISMATCH: results are not trustworthy" if srm.flag else "ok"
    return f"SRM check: {counts}; p = {p_value(srm.p_value)} (flag below {srm.threshold:g}): {verdict}"


def _footer(result: AnalysisResult) -> str:
    footer = f"alpha = {result.alpha:g}; control = {result.control}"
    if len(result.variants) > 2:
        footer += f"; p-values and CIs corrected across treatments by {result.correction}"
    if result.unlabelled_rows:
        footer += f"; {result.unlabelled_rows} rows without a variant were left out"
    return footer


def plain_report(result: AnalysisResult) -> str:
    """Plain aligned text for pipes and files."""
    return "\n".join([srm_line(result), *aligned(HEADERS, rows(result)), _footer(result)])


WIDE_TABLE = 120  # below this many columns the table would squeeze its cells; a list reads better


def rich_report(result: AnalysisResult, width: int = WIDE_TABLE) -> Iterator[RenderableType]:
    """A rich table with the SRM verdict above it (a compact list on narrow terminals)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    yield Text(srm_line(result), style="bold red" if result.srm.flag else "green")
    styles = [_style(m) for m in result.metrics]
    if width < WIDE_TABLE:
        for row, style in zip(rows(result), styles, strict=True):
            metric, variant, control, treatment, _, rel, rel_ci, p, win, note = row
            yield Text(f"{metric}: {variant} vs {result.control} [{note}]", style=style or "bold")
            yield Text(f"  {control} -> {treatment} ({rel}, CI {rel_ci}); p = {p}; P(win) {win}")
    else:
        table = Table(title=f"Treatment vs control ({result.control})", box=box.SIMPLE_HEAD, pad_edge=False)
        for header in HEADERS:
            table.add_column(header, justify="left" if header in ("metric", "variant", "note", "rel. CI") else "right")
        for row, style in zip(rows(result), styles, strict=True):
            table.add_row(*row, style=style)
        yield table
    yield Text(_footer(result), style="dim")


def _style(metric: MetricResult) -> str | None:
    """Green for a significant improvement, red for a significant harm."""
    if not metric.effect.significant:
        return None
    return "green" if (metric.effect.absolute_effect > 0) == metric.higher_is_better else "red"
