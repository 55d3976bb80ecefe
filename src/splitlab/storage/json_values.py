"""Free-form JSON the databases take: finite numbers, no NUL, valid Unicode, bounded nesting.

Events' properties, exposures' attributes and specs are JSON objects their senders choose;
PostgreSQL's ``jsonb`` refuses NUL characters and non-finite numbers, the UTF-8 encoders refuse
lone surrogates, and deep nesting exhausts parsers. :func:`storable_text` says yes to the common
case in a few C calls on the encoded text; :func:`json_problems` walks a value in Python and names
every field at fault (used when the quick test cannot say yes).
"""

from __future__ import annotations

import math
from typing import Any

from splitlab.storage._sql import json_encoder

__all__ = ["MAX_JSON_DEPTH", "json_problems", "storable", "storable_text"]

MAX_JSON_DEPTH = 32
"""Deepest nesting accepted in free-form JSON (attributes, properties, specs)."""


def _text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogates)"
    return None


def json_problems(value: Any, path: str, depth: int = 0) -> list[tuple[str, str]]:
    """``(field, message)`` for every value of a parsed JSON document the store would refuse."""
    if depth > MAX_JSON_DEPTH:
        return [(path, f"nested deeper than {MAX_JSON_DEPTH} levels")]
    if isinstance(value, float) and not math.isfinite(value):
        return [(path, f"{value} is not a finite number")]
    if isinstance(value, str):
        problem = _text_problem(value)
        return [] if problem is None else [(path, problem)]
    problems: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and (problem := _text_problem(key)) is not None:
                problems.append((where, f"key {problem}"))
            problems.extend(json_problems(item, where, depth + 1))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problems.extend(json_problems(item, f"{path}.{index}" if path else str(index), depth + 1))
    return problems


def storable(value: Any) -> bool:
    """A quick yes for ``value`` (see :func:`storable_text`), encoded by the store's strict encoder."""
    try:
        return storable_text(json_encoder()(value))
    except (TypeError, ValueError, RecursionError):
        return False


def storable_text(text: str) -> bool:
    r"""A quick yes for JSON ``text`` made by a strict encoder (``allow_nan=False, ensure_ascii=False``).

    Such an encoder has refused non-finite numbers already; this adds no NUL (escaped as ``\u0000``
    even with ``ensure_ascii=False``), no lone surrogate and at most :data:`MAX_JSON_DEPTH` brackets.
    Brackets inside strings count too, and NUL's escape may be an escaped backslash followed by
    ``u0000``: a no here only sends the value to :func:`json_problems`, which decides.
    """
    if "\\u0000" in text or text.count("{") + text.count("[") > MAX_JSON_DEPTH:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
