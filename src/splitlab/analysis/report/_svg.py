"""Small inline-SVG charts for the HTML report, drawn in Python (no plotting library, no network).

Every text and attribute value is escaped; colours come from CSS classes of the page
(``s0`` ... ``s7`` for series), so the charts follow the report's style sheet.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from html import escape

Format = Callable[[float], str]
PALETTE_SIZE = 8
WIDTH = 680
_LABEL = 170  # left margin for row labels
_RIGHT = 40
_ROW = 26
_AXIS = 34


@dataclass(frozen=True, slots=True)
class Scale:
    """Linear map of the domain ``[low, high]`` onto the pixel range ``[start, end]`` (values clamped)."""

    low: float
    high: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        clamped = min(max(value, self.low), self.high)
        return self.start + (clamped - self.low) / (self.high - self.low) * (self.end - self.start)


def ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) within ``[low, high]``.

    Example:
        >>> ticks(-0.013, 0.047)
        [-0.01, 0.0, 0.01, 0.02, 0.03, 0.04]
    """
    span = high - low
    if not (math.isfinite(span) and span > 0):
        return [low]
    magnitude = 10 ** math.floor(math.log10(span / count))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if span / (m * magnitude) <= count + 1)
    first = math.ceil(low / step - 1e-9)
    values = []
    k = first
    while k * step <= high + step * 1e-9:
        values.append(round(k * step, 12) + 0.0)  # + 0.0 turns -0.0 into 0.0
        k += 1
    return values


def domain(values: Sequence[float], *, include: Sequence[float] = (), pad: float = 0.06) -> tuple[float, float]:
    """A padded ``[low, high]`` covering the finite ``values`` and ``include`` (``[-1, 1]`` without any)."""
    finite = [v for v in (*values, *include) if math.isfinite(v)]
    if not finite:
        return (-1.0, 1.0)
    low, high = min(finite), max(finite)
    if high == low:
        half = abs(low) * 0.1 or 1.0
        return (low - half, high + half)
    margin = (high - low) * pad
    return (low - margin, high + margin)


def _f(value: float) -> str:
    return f"{value:.1f}"


def text(x: float, y: float, content: str, *, anchor: str = "start", cls: str = "") -> str:
    """An escaped ``<text>`` element."""
    klass = f' class="{escape(cls)}"' if cls else ""
    return f'<text x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}"{klass}>{escape(content)}</text>'


def svg(width: float, height: float, title: str, body: Sequence[str]) -> str:
    """An inline ``<svg>`` with an accessible title (no ``xmlns``: inline SVG in HTML needs none)."""
    label = escape(title)
    return (
        f'<svg class="chart" viewBox="0 0 {_f(width)} {_f(height)}" width="{_f(width)}" height="{_f(height)}" '
        f'role="img" aria-label="{label}"><title>{label}</title>{"".join(body)}</svg>'
    )


def _x_axis(scale: Scale, y: float, top: float, fmt: Format) -> list[str]:
    out = [f'<line class="axis" x1="{_f(scale.start)}" y1="{_f(y)}" x2="{_f(scale.end)}" y2="{_f(y)}"/>']
    for tick in ticks(scale.low, scale.high):
        x = scale(tick)
        out.append(f'<line class="grid" x1="{_f(x)}" y1="{_f(top)}" x2="{_f(x)}" y2="{_f(y)}"/>')
        out.append(text(x, y + 16, fmt(tick) if tick else "0", anchor="middle", cls="tick"))
    return out


@dataclass(frozen=True, slots=True)
class IntervalRow:
    """One row of a dot-and-whisker chart: an estimate and its interval (NaN: not drawn)."""

    label: str
    estimate: float
    low: float
    high: float
    series: int = 0
    note: str = ""


def interval_chart(rows: Sequence[IntervalRow], *, title: str, fmt: Format, reference: float | None = None) -> str:
    """Horizontal estimates with interval whiskers, one row each (forest plot, per-variant means).

    An interval end beyond the axis (or infinite) is drawn to the edge with an open arrow. Each
    drawn interval is one ``<line class="whisker ci ...">``; a row with no finite end has none.
    """
    top = 8.0
    height = top + _ROW * len(rows) + _AXIS
    values = [v for r in rows for v in (r.estimate, r.low, r.high)]
    low, high = domain(values, include=() if reference is None else (reference,))
    scale = Scale(low, high, _LABEL, WIDTH - _RIGHT)
    axis_y = top + _ROW * len(rows) + 4
    body = _x_axis(scale, axis_y, top, fmt)
    if reference is not None:
        x = scale(reference)
        body.append(f'<line class="reference" x1="{_f(x)}" y1="{_f(top)}" x2="{_f(x)}" y2="{_f(axis_y)}"/>')
    for i, row in enumerate(rows):
        y = top + _ROW * i + _ROW / 2
        cls = f"s{row.series % PALETTE_SIZE}"
        body.append(text(_LABEL - 8, y + 4, row.label, anchor="end", cls="label"))
        if math.isfinite(row.low) or math.isfinite(row.high):
            x1 = scale(row.low if not math.isnan(row.low) else row.estimate)
            x2 = scale(row.high if not math.isnan(row.high) else row.estimate)
            # class "ci": the one mark per row that is its interval (the caps and arrows only end it).
            body.append(f'<line class="whisker ci {cls}" x1="{_f(x1)}" y1="{_f(y)}" x2="{_f(x2)}" y2="{_f(y)}"/>')
            for end, value in ((x1, row.low), (x2, row.high)):
                if math.isfinite(value) and low <= value <= high:
                    body.append(
                        f'<line class="whisker {cls}" x1="{_f(end)}" y1="{_f(y - 5)}" x2="{_f(end)}" y2="{_f(y + 5)}"/>'
                    )
                elif not math.isnan(value):
                    tip = 6 if end > scale(row.estimate) else -6
                    body.append(
                        f'<path class="whisker {cls}" d="M{_f(end - tip)} {_f(y - 4)} L{_f(end)} {_f(y)} '
                        f'L{_f(end - tip)} {_f(y + 4)}"/>'
                    )
        if math.isfinite(row.estimate):
            tip_text = f"{row.label}: {fmt(row.estimate)} [{fmt(row.low)}, {fmt(row.high)}]{row.note}"
            body.append(
                f'<circle class="dot {cls}" cx="{_f(scale(row.estimate))}" cy="{_f(y)}" r="4.5">'
                f"<title>{escape(tip_text)}</title></circle>"
            )
    return svg(WIDTH, height, title, body)


@dataclass(frozen=True, slots=True)
class BarGroup:
    """One group of horizontal bars (a variant: configured share, actual share)."""

    label: str
    values: tuple[float, ...]


def bar_chart(groups: Sequence[BarGroup], *, title: str, legend: Sequence[str], fmt: Format) -> str:
    """Grouped horizontal bars from 0, each bar labelled with its value; bar ``j`` of a group uses series ``j``."""
    per = max((len(g.values) for g in groups), default=1)
    bar = 12.0
    group_height = bar * per + 12
    top = 22.0
    axis_y = top + group_height * len(groups)
    high = max([v for g in groups for v in g.values if math.isfinite(v)] or [1.0])
    scale = Scale(0.0, high * 1.15, _LABEL, WIDTH - _RIGHT - 30)
    body = _x_axis(scale, axis_y, top, fmt)
    x = _LABEL
    for j, name in enumerate(legend):
        body.append(f'<rect class="bar s{j % PALETTE_SIZE}" x="{_f(x)}" y="4" width="10" height="10"/>')
        body.append(text(x + 14, 13, name, cls="legend"))
        x += 14 + 8 * len(name) + 16
    for i, group in enumerate(groups):
        y0 = top + group_height * i + 6
        body.append(text(_LABEL - 8, y0 + bar * per / 2 + 4, group.label, anchor="end", cls="label"))
        for j, value in enumerate(group.values):
            if not math.isfinite(value):
                continue
            y = y0 + bar * j
            width = scale(value) - scale.start
            body.append(
                f'<rect class="bar s{j % PALETTE_SIZE}" x="{_f(scale.start)}" y="{_f(y)}" '
                f'width="{_f(width)}" height="{_f(bar - 2)}"/>'
            )
            body.append(text(scale.start + width + 4, y + bar - 3, fmt(value), cls="value"))
    return svg(WIDTH, axis_y + _AXIS, title, body)


@dataclass(frozen=True, slots=True)
class Band:
    """One series of a band chart: a line of estimates by day, with its interval as a shaded band."""

    label: str
    days: tuple[date, ...]
    estimate: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]


def band_chart(series: Sequence[Band], *, title: str, fmt: Format, reference: float | None = 0.0) -> str:
    """Lines over time with shaded interval bands (the cumulative lift and its CI, per treatment).

    Points with a NaN estimate are skipped; infinite or NaN interval ends are clamped to the axis.
    """
    height = 240.0
    left, top, bottom = 64.0, 24.0, height - _AXIS
    days = sorted({d for s in series for d in s.days})
    values = [v for s in series for v in (*s.estimate, *s.low, *s.high)]
    low, high = domain(values, include=() if reference is None else (reference,))
    y_scale = Scale(low, high, bottom, top)
    position = {d: i for i, d in enumerate(days)}
    last = max(len(days) - 1, 1)
    x_scale = Scale(0.0, float(last), left, WIDTH - _RIGHT)
    body = [f'<line class="axis" x1="{_f(left)}" y1="{_f(bottom)}" x2="{_f(WIDTH - _RIGHT)}" y2="{_f(bottom)}"/>']
    for tick in ticks(low, high):
        y = y_scale(tick)
        body.append(f'<line class="grid" x1="{_f(left)}" y1="{_f(y)}" x2="{_f(WIDTH - _RIGHT)}" y2="{_f(y)}"/>')
        body.append(text(left - 6, y + 4, fmt(tick) if tick else "0", anchor="end", cls="tick"))
    shown = sorted({0, len(days) // 2, len(days) - 1}) if days else []
    for i in shown:
        anchor = "start" if i == 0 else "end" if i == len(days) - 1 else "middle"
        body.append(text(x_scale(i), bottom + 16, days[i].isoformat(), anchor=anchor, cls="tick"))
    if reference is not None:
        y = y_scale(reference)
        body.append(f'<line class="reference" x1="{_f(left)}" y1="{_f(y)}" x2="{_f(WIDTH - _RIGHT)}" y2="{_f(y)}"/>')
    x = left
    for k, s in enumerate(series):
        cls = f"s{k % PALETTE_SIZE}"
        rows = zip(s.days, s.estimate, s.low, s.high, strict=True)
        points = [(x_scale(position[d]), e, lo, hi) for d, e, lo, hi in rows if not math.isnan(e)]
        if points:
            upper = [f"{_f(px)},{_f(y_scale(hi if not math.isnan(hi) else math.inf))}" for px, _, _, hi in points]
            lower = [f"{_f(px)},{_f(y_scale(lo if not math.isnan(lo) else -math.inf))}" for px, _, lo, _ in points]
            body.append(f'<polygon class="band {cls}" points="{" ".join(upper + lower[::-1])}"/>')
            line = " ".join(f"{_f(px)},{_f(y_scale(e))}" for px, e, _, _ in points)
            body.append(f'<polyline class="line {cls}" points="{line}"/>')
            px, e, _, _ = points[-1]
            body.append(f'<circle class="dot {cls}" cx="{_f(px)}" cy="{_f(y_scale(e))}" r="3.5"/>')
        body.append(f'<rect class="bar {cls}" x="{_f(x)}" y="6" width="10" height="10"/>')
        body.append(text(x + 14, 15, s.label, cls="legend"))
        x += 14 + 8 * len(s.label) + 16
    return svg(WIDTH, height, title, body)
