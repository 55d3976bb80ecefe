"""The readout as JSON: plain Python values only, no NaN or infinity (null instead), ISO dates."""

from __future__ import annotations

import functools
import json
import math
import numbers
import types
import typing
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any

from splitlab.analysis.readout import ExperimentReadout
from splitlab.analysis.results import MetricResult, json_number


def _plain(value: Any) -> Any:
    """A JSON-ready copy of ``value``: records become objects, tuples lists, NaN and inf None."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, Enum):
        return _plain(value.value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return json_number(float(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, MetricResult):  # its own to_dict is the flat row of a frame analysis
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if hasattr(value, "to_dict"):
        return _plain(value.to_dict())
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return str(value)


def readout_to_dict(readout: ExperimentReadout) -> dict[str, Any]:
    """The readout as a JSON-ready dictionary.

    Field names are the records' own (snake_case); every metric's ``effect`` also says whether it
    is ``significant``. NaN and infinities become ``None``; datetimes and dates ISO 8601 strings.
    """
    data: dict[str, Any] = _plain(readout)
    for key in ("metrics", "segments"):
        for record, metric in zip(data[key], getattr(readout, key), strict=True):
            record["effect"]["significant"] = metric.effect.significant
    return data


def to_json(readout: ExperimentReadout, *, indent: int | None = 2) -> str:
    """The readout as a JSON document (strict: no NaN tokens)."""
    return json.dumps(readout_to_dict(readout), indent=indent, allow_nan=False, ensure_ascii=False)


def readout_from_dict(data: Mapping[str, Any]) -> ExperimentReadout:
    """The readout :func:`readout_to_dict` wrote (a stored snapshot's payload), as records again.

    The inverse of :func:`readout_to_dict` up to what JSON cannot hold: ``None`` where a figure was
    NaN or infinite comes back as NaN, and keys a record computes (``significant``, ``decision``)
    are left to it. So a front end renders a stored readout with the same code as a fresh one.

    Raises:
        ValueError: ``data`` is not the dictionary of a readout (a field is missing or of another type).
    """
    try:
        readout: ExperimentReadout = _record(ExperimentReadout, data)
    except (KeyError, TypeError, ValueError) as exc:
        msg = f"not a stored readout: {exc}"
        raise ValueError(msg) from None
    return readout


def _record(cls: type, data: Mapping[str, Any]) -> Any:
    hints = _hints(cls)
    values = {f.name: _typed(hints[f.name], data[f.name]) for f in fields(cls) if f.init and f.name in data}
    return cls(**values)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _typed(hint: Any, value: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if value is None:
            return math.nan if float in options else None
        return _typed(options[0], value)
    if origin is typing.Literal:
        return value
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(args[0], v) for v in value)
        return tuple(_typed(a, v) for a, v in zip(args, value, strict=True))
    if origin in (dict, Mapping):
        return {k: _typed(args[1], v) for k, v in value.items()}
    if is_dataclass(hint) and isinstance(hint, type):
        return _record(hint, value)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(value)
    if hint is float:
        return math.nan if value is None else float(value)
    if hint is datetime:
        return datetime.fromisoformat(value)
    if hint is date:
        return date.fromisoformat(value)
    return value
