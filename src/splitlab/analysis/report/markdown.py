"""The readout as Markdown: the decision and its reasons first, then health, traffic and tables."""

from __future__ import annotations

import re
from collections.abc import Sequence

from splitlab.analysis.readout import ExperimentReadout
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
    by_role,
    guardrail_row,
    headers,
    health_rows,
    metric_row,
    phase_rows,
    segment_row,
    summary_line,
    traffic_line,
    traffic_rows,
)

# What Markdown could read as syntax in running text: backslash, code, emphasis, pipes (cells), an
# underscore at a word's edge (intraword ones are literal in CommonMark), the "](" or "][" that
# makes a link, and "<" before a tag or autolink. Anything else stays as written, so the source reads well.
_SPECIAL = re.compile(r"[\\`*|]|(?<!\w)_|_(?!\w)|\](?=[(\[])|<(?=[A-Za-z/!?])|\n")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return {"<": "&lt;", "\n": " "}.get(char, "\\" + char)


def _md(value: str) -> str:
    r"""Text safe in a Markdown paragraph or table cell (no emphasis, code, links, pipes or HTML tags).

    Example:
        >>> print(_md("<script> | revenue_per_user *x* [a](b) p < 0.05 [+1%, +2%]"))
        &lt;script> \| revenue_per_user \*x\* [a\](b) p < 0.05 [+1%, +2%]
    """
    return _SPECIAL.sub(_escape, value)


def _table(table: Columns, rows: Sequence[Row]) -> list[str]:
    lines = ["| " + " | ".join(_md(h) for h in headers(table)) + " |", "|" + "---|" * len(table)]
    lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def to_markdown(readout: ExperimentReadout) -> str:
    """Markdown report: decision and reasons, health checks, traffic, a table per role, segments, notes.

    Every text cell is escaped, so metric names and messages cannot inject Markdown or HTML.
    """
    lines = [f"# {_md(readout.name)} ({_md(readout.experiment_key)})", ""]
    decision = readout.decision
    if decision is None:
        lines += ["**Decision: not made yet**", ""]
    else:
        variant = f" · variant {_md(decision.variant)}" if decision.variant else ""
        lines += [f"**Decision: {decision.category}**{variant}", ""]
        lines += [f"- {_md(reason)}" for reason in decision.reasons]
        lines.append("")
    lines += [_md(summary_line(readout)), ""]
    lines += ["## Health checks", ""]
    lines += _table(HEALTH_COLUMNS, health_rows(readout)) if readout.health else ["No health checks ran.", ""]
    lines += ["## Traffic split", "", _md(traffic_line(readout)), "", *_table(TRAFFIC_COLUMNS, traffic_rows(readout))]
    if phases := phase_rows(readout):
        lines += ["## Allocation phases", "", "The split is checked per phase, against its weights.", ""]
        lines += _table(PHASE_COLUMNS, phases)
    for role, title in ROLES:
        metrics = by_role(readout, role)
        if not metrics:
            continue
        lines += [f"## {title}", ""]
        if role == "guardrail":
            lines += _table(GUARDRAIL_COLUMNS, [guardrail_row(m) for m in metrics])
        else:
            lines += _table(METRIC_COLUMNS, [metric_row(m) for m in metrics])
    if readout.segments:
        lines += ["## Segments", "", *_table(SEGMENT_COLUMNS, [segment_row(m) for m in readout.segments])]
    if readout.notes:
        lines += ["## Notes", "", *(f"- {_md(note)}" for note in readout.notes), ""]
    return "\n".join(lines).rstrip() + "\n"
