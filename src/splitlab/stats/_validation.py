"""Parameter checks shared by the statistics modules.

Caller mistakes raise ``ValueError`` naming the parameter and its bound, once, at the edge.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

_ALTERNATIVES = ("two-sided", "greater", "less")


def check_probability(name: str, value: float, *, open_low: bool = True, open_high: bool = True) -> float:
    """Return ``value`` if it is a probability in (0, 1), else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        msg = f"{name} == {value!r}, must be a number in (0, 1)"
        raise ValueError(msg)
    low_ok = value > 0 if open_low else value >= 0
    high_ok = value < 1 if open_high else value <= 1
    if not low_ok:
        msg = f"{name} == {value}, must be {'>' if open_low else '>='} 0"
        raise ValueError(msg)
    if not high_ok:
        msg = f"{name} == {value}, must be {'<' if open_high else '<='} 1"
        raise ValueError(msg)
    return float(value)


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Return ``value`` if it is a finite number > 0 (or >= 0), else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"{name} == {value!r}, must be a finite number"
        raise ValueError(msg)
    if value < 0 or (value == 0 and not allow_zero):
        msg = f"{name} == {value}, must be {'>=' if allow_zero else '>'} 0"
        raise ValueError(msg)
    return float(value)


def check_alternative(alternative: str) -> str:
    """Return ``alternative`` if it is one of two-sided, greater, less."""
    if alternative not in _ALTERNATIVES:
        msg = f"alternative == {alternative!r}, must be one of {', '.join(_ALTERNATIVES)}"
        raise ValueError(msg)
    return alternative


def check_choice(name: str, value: str, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise naming ``name``."""
    options = tuple(choices)
    if value not in options:
        msg = f"{name} == {value!r}, must be one of {', '.join(options)}"
        raise ValueError(msg)
    return value
