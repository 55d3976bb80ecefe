"""The readout in a terminal: rich renderables for a TTY, plain aligned text for pipes and files."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from splitlab.analysis.format import aligned
from splitlab.analysis.readout import ExperimentReadout
from splitlab.analysis.report._tables import (
    GUARDRAIL_COLUMNS,
    HEALTH_COLUMNS,
    METRIC_COLUMNS,
    PHASE_COLUMNS,
    ROLES,
    SEGMENT_COLUMNS,
    Columns,
    Row,
    by_role,
    guardrail_row,
    guardrail_state,
    headers,
    health_rows,
    metric_row,
    phase_rows,
    segment_row,
    summary_line,
    tone,
    traffic_line,
)

if TYPE_CHECKING:
    from rich.console import RenderableType

STYLES = {
    "STRONG_LAUNCH": "bold green",
    "LAUNCH": "green",
    "CONSIDER_LAUNCH": "yellow",
    "EXTEND_TEST": "cyan",
    "NO_LAUNCH": "white",
    "ROLLBACK": "bold red",
    "INVALID": "bold magenta",
}
_TONES = {"good": "green", "bad": "red", "neutral": ""}


def _decision_lines(readout: ExperimentReadout) -> tuple[str, list[str]]:
    decision = readout.decision
    if decision is None:
        return "Decision: not made yet", []
    head = f"Decision: {decision.category}" + (f" ({decision.variant})" if decision.variant else "")
    return head, list(decision.reasons)


def _indented(table: Columns, rows: list[Row]) -> list[str]:
    return [f"  {line}" for line in aligned(headers(table), rows)]


def to_text(readout: ExperimentReadout) -> str:
    """Plain text for pipes and files: decision and reasons, health, traffic, tables."""
    head, reasons = _decision_lines(readout)
    lines = [f"{readout.name} ({readout.experiment_key})", summary_line(readout), "", head]
    lines += [f"  - {reason}" for reason in reasons]
    lines += ["", "Health checks:"]
    lines += _indented(HEALTH_COLUMNS, health_rows(readout)) if readout.health else ["  none"]
    lines += ["", traffic_line(readout)]
    if phases := phase_rows(readout):
        lines += ["", "Allocation phases (split checked per phase):", *_indented(PHASE_COLUMNS, phases)]
    for role, title in ROLES:
        metrics = by_role(readout, role)
        if metrics:
            table, rows = (
                (GUARDRAIL_COLUMNS, [guardrail_row(m) for m in metrics])
                if role == "guardrail"
                else (METRIC_COLUMNS, [metric_row(m) for m in metrics])
            )
            lines += ["", f"{title}:", *_indented(table, rows)]
    if readout.segments:
        lines += ["", "Segments:", *_indented(SEGMENT_COLUMNS, [segment_row(m) for m in readout.segments])]
    if readout.notes:
        lines += ["", "Notes:", *(f"  - {note}" for note in readout.notes)]
    return "\n".join(lines) + "\n"


def rich_readout(readout: ExperimentReadout) -> Iterator[RenderableType]:
    """Rich renderables: a decision panel, the health checks, the traffic split and a table per role.

    Every text goes in as :class:`rich.text.Text`, so names with brackets are never read as markup.
    """
    from rich import box
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    head, reasons = _decision_lines(readout)
    style = STYLES.get(readout.decision.category, "") if readout.decision else ""
    body = Text()
    for i, reason in enumerate(reasons):
        body.append(("\n" if i else "") + f"• {reason}")
    yield Panel(body, title=Text(head, style=style), title_align="left", border_style=style or "dim")
    yield Text(summary_line(readout), style="dim")

    def table(title: str, columns: Columns) -> Table:
        t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for column in columns:
            t.add_column(column.name, justify="right" if column.numeric else "left", overflow="fold")
        return t

    if readout.health:
        health = table("Health checks", HEALTH_COLUMNS)
        for check, row in zip(readout.health, health_rows(readout), strict=True):
            colour = "red" if check.severity == "error" else "yellow"
            health.add_row(*map(Text, row), style=None if check.passed else colour)
        yield health
    yield Text(traffic_line(readout), style="bold red" if readout.srm.flag else "")
    if phases := phase_rows(readout):
        phase_table = table("Allocation phases (split checked per phase)", PHASE_COLUMNS)
        for row in phases:
            phase_table.add_row(*map(Text, row))
        yield phase_table
    for role, title in ROLES:
        metrics = by_role(readout, role)
        if not metrics:
            continue
        if role == "guardrail":
            guard = table(title, GUARDRAIL_COLUMNS)
            for m in metrics:
                state = guardrail_state(m)
                guard.add_row(*map(Text, guardrail_row(m)), style="red" if state == "breached" else None)
            yield guard
        else:
            metric_table = table(title, METRIC_COLUMNS)
            for m in metrics:
                metric_table.add_row(*map(Text, metric_row(m)), style=_TONES[tone(m)] or None)
            yield metric_table
    if readout.segments:
        segments = table("Segments", SEGMENT_COLUMNS)
        for m in readout.segments:
            segments.add_row(*map(Text, segment_row(m)), style="yellow" if m.heterogeneous else None)
        yield segments
