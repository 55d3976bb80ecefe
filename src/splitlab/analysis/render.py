"""Terminal forms of an analysis: a rich table for a TTY, aligned plain text otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from splitlab.analysis.format import aligned, p_value
from splitlab.analysis.report._tables import COLUMNS, EFFECT_COLUMNS, effect_row, headers

if TYPE_CHECKING:
    from rich.console import RenderableType

    from splitlab.analysis.results import AnalysisResult, MetricResult

# The readout's comparison columns, with the test's notes last.
FRAME_COLUMNS = (*EFFECT_COLUMNS, COLUMNS["note"])


def note(m: MetricResult) -> str:
    """The test, whether it is significant, its error and the sequential decision."""
    e = m.effect
    notes = [e.test + (" +CUPED" if e.cuped else "")]
    if e.significant:
        notes.append("significant")
    if e.error_code is not None:
        notes.append(str(e.error_code))
    if m.sequential is not None and m.sequential.looks:
        last = m.sequential.looks[-1]
        notes.append(f"{m.sequential.method}: {m.sequential.decision}, p = {p_value(last.p_value)}")
    return ", ".join(notes)


def rows(result: AnalysisResult) -> list[tuple[str, ...]]:
    """Formatted cells (:data:`FRAME_COLUMNS`), one row per metric and treatment."""
    return [effect_row(m, note(m)) for m in result.metrics]


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
    return "\n".join([srm_line(result), *aligned(headers(FRAME_COLUMNS), rows(result)), _footer(result)])


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
        for column in FRAME_COLUMNS:
            table.add_column(column.name, justify="right" if column.numeric else "left")
        for row, style in zip(rows(result), styles, strict=True):
            table.add_row(*row, style=style)
        yield table
    yield Text(_footer(result), style="dim")


def _style(metric: MetricResult) -> str | None:
    """Green for a significant improvement, red for a significant harm."""
    if not metric.effect.significant:
        return None
    return "green" if (metric.effect.absolute_effect > 0) == metric.higher_is_better else "red"
