"""The one number formatter of every renderer: decision reasons, reports, the frame analysis table.

A missing value (NaN, None) reads ``n/a`` everywhere; an unbounded one ``+inf`` / ``-inf``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MISSING = "n/a"


def _bad(value: float | None) -> str | None:
    if value is None or math.isnan(value):
        return MISSING
    if math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    return None


def pct(value: float | None, digits: int = 2) -> str:
    """A signed percentage: ``0.0321`` reads ``+3.21%``."""
    return _bad(value) or f"{value:+.{digits}%}"


def share(value: float | None, digits: int = 1) -> str:
    """An unsigned percentage: ``0.5`` reads ``50.0%``."""
    return _bad(value) or f"{value:.{digits}%}"


def num(value: float | None, digits: int = 4) -> str:
    """A number to ``digits`` significant digits."""
    return _bad(value) or f"{value:.{digits}g}"


def signed(value: float | None, digits: int = 4) -> str:
    """A signed number to ``digits`` significant digits: ``+0.0014``."""
    return _bad(value) or f"{value:+.{digits}g}"


def p_value(value: float | None) -> str:
    """A p-value: four decimals, ``<0.0001`` below."""
    if value is None or not math.isfinite(value):
        return _bad(value) or MISSING
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def count(value: float | None) -> str:
    """A count with thousands separators: ``12,345``."""
    return _bad(value) or f"{value:,.0f}"


def interval(ci: tuple[float, float], *, relative: bool = True) -> str:
    """A CI as ``[+1.02%, +5.40%]`` (relative) or ``[+0.0005, +0.0023]`` (absolute)."""
    fmt = pct if relative else signed
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def aligned(headers: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    """Plain-text table lines, columns padded to their widest cell."""
    widths = [max(len(r[i]) for r in [headers, *body]) for i in range(len(headers))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [headers, tuple("-" * w for w in widths), *body]
    ]
