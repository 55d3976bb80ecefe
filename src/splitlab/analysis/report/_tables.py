"""The columns and cells of every table: the readout's Markdown, HTML and terminal forms and the frame table."""

from __future__ import annotations

import math
from typing import NamedTuple

from splitlab.analysis.decision import guardrail_status, guardrail_words, quote
from splitlab.analysis.format import MISSING, count, interval, num, p_value, pct, share, signed
from splitlab.analysis.readout import ExperimentReadout, MetricResult

Row = tuple[str, ...]


class Column(NamedTuple):
    """A table column: its header, and whether it holds a figure (right-aligned by every form that aligns)."""

    name: str
    numeric: bool


_TEXT = (
    "metric",
    "variant",
    "result",
    "note",
    "status",
    "check",
    "severity",
    "message",
    "segment",
    "level",
    "heterogeneous",
    "started",
    "weights",
    "units per variant",
)
_FIGURES = (
    "control",
    "treatment",
    "abs. effect",
    "rel. effect",
    "rel. CI",
    "p-value",
    "P(win)",
    "tolerated",
    "configured",
    "actual",
    "units",
    "planned",
    "value",
    "units (c / t)",
    "phase",
    "SRM p",
)
# Every column of every table, declared once, so a header aligns the same in every table and every form.
COLUMNS = {name: Column(name, numeric=name in _FIGURES) for name in (*_TEXT, *_FIGURES)}
Columns = tuple[Column, ...]


def columns(*names: str) -> Columns:
    """The declared columns of a table, in order."""
    return tuple(COLUMNS[name] for name in names)


def headers(table: Columns) -> Row:
    """A table's header cells."""
    return tuple(column.name for column in table)


ROLES = (("goal", "Goal metrics"), ("secondary", "Secondary metrics"), ("guardrail", "Guardrails"))
# A metric's comparison, then one last column that says what it means: a readout's result, a frame's note.
EFFECT_COLUMNS = columns(
    "metric", "variant", "control", "treatment", "abs. effect", "rel. effect", "rel. CI", "p-value", "P(win)"
)
METRIC_COLUMNS = (*EFFECT_COLUMNS, COLUMNS["result"])
GUARDRAIL_COLUMNS = columns("metric", "variant", "rel. effect", "rel. CI", "tolerated", "p-value", "P(win)", "status")
HEALTH_COLUMNS = columns("check", "result", "severity", "value", "message")
TRAFFIC_COLUMNS = columns("variant", "configured", "actual", "units", "planned")
PHASE_COLUMNS = columns("phase", "started", "weights", "units per variant", "SRM p")
SEGMENT_COLUMNS = columns(
    "metric", "variant", "segment", "level", "units (c / t)", "rel. effect", "rel. CI", "p-value", "heterogeneous"
)
# A sequential monitor's decision in a table's words: it, not the fixed-horizon test, says better or worse.
_MONITOR_WORDS = {
    "stop_efficacy": "better",
    "stop_harm": "worse",
    "stop_futility": "no effect (futility)",
    "continue": "not significant yet",
}


def _direction(m: MetricResult) -> str | None:
    """``better`` / ``worse`` when the test (or the sequential monitor) says so, else None."""
    monitor = quote(m).monitor
    if monitor is not None:
        return {"stop_efficacy": "better", "stop_harm": "worse"}.get(monitor)
    e = m.effect
    if not e.significant:
        return None
    return "better" if (e.absolute_effect > 0) == m.higher_is_better else "worse"


def outcome(m: MetricResult) -> str:
    """``better`` / ``worse`` / ``not significant`` in the metric's own direction, with the test's notes.

    With a sequential monitor its decision is the word and its interval is named, as the decision names it.
    """
    e, q = m.effect, quote(m)
    if q.monitor is None and e.error_code is not None and math.isnan(e.p_value):
        word = f"no test: {e.error_code}"
    elif q.monitor is not None:
        word = _MONITOR_WORDS.get(q.monitor, q.monitor)
    else:
        word = _direction(m) or "not significant"
    notes = [e.test + (" +CUPED" if e.cuped else "")]
    if e.correction not in (None, "none") and q.monitor is None:
        notes.append(f"{e.correction}-corrected")
    if q.monitor is not None:
        notes.append(f"{q.ci_name}, {q.p_name}")
    return f"{word} ({', '.join(notes)})"


def tone(m: MetricResult) -> str:
    """``good``, ``bad`` or ``neutral``: the colour of a metric's row."""
    return {"better": "good", "worse": "bad"}.get(_direction(m) or "", "neutral")


def effect_row(m: MetricResult, last: str) -> Row:
    """The cells of one comparison (:data:`EFFECT_COLUMNS`), then ``last``: what the table says of it.

    The CI and p-value are :func:`splitlab.analysis.decision.quote`'s, the ones the decision quotes.
    """
    e, q = m.effect, quote(m)
    return (
        m.metric,
        m.variant,
        num(e.control_mean),
        num(e.treatment_mean),
        signed(e.absolute_effect),
        pct(e.relative_effect),
        interval(q.relative_ci),
        p_value(q.p_value),
        share(m.chance_to_win),
        last,
    )


def metric_row(m: MetricResult) -> Row:
    """The cells of one metric readout (:data:`METRIC_COLUMNS`)."""
    return effect_row(m, outcome(m))


def guardrail_state(m: MetricResult) -> str:
    """The decision engine's state of a guardrail (default rules)."""
    return guardrail_status(m)


def guardrail_row(m: MetricResult) -> Row:
    """The cells of one guardrail (:data:`GUARDRAIL_COLUMNS`); the status in the decision's words."""
    e, q = m.effect, quote(m)
    tolerated = share(m.max_degradation)
    return (
        m.metric,
        m.variant,
        pct(e.relative_effect),
        interval(q.relative_ci),
        tolerated,
        p_value(q.p_value),
        share(m.chance_to_win),
        guardrail_words(m),
    )


def by_role(readout: ExperimentReadout, role: str) -> list[MetricResult]:
    """The overall readouts of one role, in readout order."""
    return [m for m in readout.metrics if m.role == role]


def health_rows(readout: ExperimentReadout) -> list[Row]:
    """One row per health check (:data:`HEALTH_COLUMNS`)."""
    return [(h.name, "pass" if h.passed else "FAIL", h.severity, num(h.value), h.message) for h in readout.health]


def actual_shares(readout: ExperimentReadout) -> dict[str, float]:
    """Each variant's share of the analysed units (NaN without units)."""
    total = sum(readout.units.values())
    return {v: readout.units.get(v, 0) / total if total else math.nan for v in readout.variants}


def configured_shares(readout: ExperimentReadout) -> dict[str, float]:
    """Each variant's configured share, normalised to sum to 1."""
    total = math.fsum(readout.configured_weights.values())
    return {v: readout.configured_weights.get(v, math.nan) / total if total else math.nan for v in readout.variants}


def traffic_rows(readout: ExperimentReadout) -> list[Row]:
    """Configured and actual split per variant (:data:`TRAFFIC_COLUMNS`)."""
    configured, actual = configured_shares(readout), actual_shares(readout)
    planned = count(readout.planned_units_per_variant)
    return [
        (v, share(configured[v]), share(actual[v]), count(readout.units.get(v, 0)), planned) for v in readout.variants
    ]


def phase_rows(readout: ExperimentReadout) -> list[Row]:
    """One row per allocation phase (:data:`PHASE_COLUMNS`); none while the weights never changed."""
    if len(readout.phases) < 2:
        return []
    return [
        (
            str(phase.phase),
            f"{phase.started_at:%Y-%m-%d %H:%M} (v{phase.spec_version})",
            ", ".join(f"{v}={share(w)}" for v, w in phase.weights.items()),
            ", ".join(f"{v}={count(n)}" for v, n in phase.units.items()),
            p_value(phase.srm_p_value),
        )
        for phase in readout.phases
    ]


def traffic_line(readout: ExperimentReadout) -> str:
    """``Configured: A=50.0%, B=50.0% / Actual: A=51.0%, B=49.0%; SRM p = 0.0051 (flag below 0.001): ok``."""
    configured, actual = configured_shares(readout), actual_shares(readout)
    srm = readout.srm
    verdict = "SAMPLE RATIO MISMATCH" if srm.flag else "ok"
    return (
        f"Configured: {', '.join(f'{v}={share(configured[v])}' for v in readout.variants)} / "
        f"Actual: {', '.join(f'{v}={share(actual[v])}' for v in readout.variants)}; "
        f"SRM p = {p_value(srm.p_value)} (flag below {srm.threshold:g}): {verdict}"
    )


def summary_line(readout: ExperimentReadout) -> str:
    """What was analysed, when, and how much data there is."""
    planned = readout.planned_units_per_variant
    parts = [
        f"status {readout.status}",
        f"spec v{readout.spec_version}",
        f"analysed {readout.analysed_at.isoformat(timespec='seconds')}",
        f"{readout.days_running:.1f} days running",
        (
            f"{count(sum(readout.units.values()))} units analysed ({count(readout.excluded_units)} excluded for "
            "multiple exposures)"
        ),
        f"{count(readout.daily_units)} units a day",
    ]
    if planned is not None:
        parts.append(f"planned {count(planned)} per variant")
    return " · ".join(parts)


def segment_row(m: MetricResult) -> Row:
    """The cells of one segment readout (:data:`SEGMENT_COLUMNS`)."""
    e = m.effect
    dimension, level = m.segment if m.segment is not None else ("-", "-")
    flag = {True: "yes", False: "no", None: MISSING}[m.heterogeneous]
    return (
        m.metric,
        m.variant,
        dimension,
        level,
        f"{count(e.control_n)} / {count(e.treatment_n)}",
        pct(e.relative_effect),
        interval(e.relative_ci),
        p_value(e.p_value),
        flag,
    )


def segment_groups(readout: ExperimentReadout) -> dict[tuple[str, str, str], list[MetricResult]]:
    """Segment readouts grouped by (metric, variant, dimension), in readout order."""
    groups: dict[tuple[str, str, str], list[MetricResult]] = {}
    for m in readout.segments:
        dimension = m.segment[0] if m.segment is not None else "-"
        groups.setdefault((m.metric, m.variant, dimension), []).append(m)
    return groups
