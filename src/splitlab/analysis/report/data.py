"""The readout as JSON: plain Python values only, no NaN or infinity (null instead), ISO dates."""

from __future__ import annotations

import json
import numbers
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
