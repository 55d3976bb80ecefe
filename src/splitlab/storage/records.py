"""Typed records going into and coming out of the store (frozen dataclasses, snake_case fields).

Inputs (:class:`Event`, :class:`Exposure`) check themselves when built, so a batch handed to a
repository is already well-typed and a bad row is reported where it was made. Outputs mirror
table rows; times are aware UTC datetimes.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from numbers import Real
from typing import Any

from splitlab.storage.tables import to_utc

__all__ = [
    "BanditArm",
    "BanditReward",
    "Event",
    "ExperimentRecord",
    "ExperimentVersion",
    "Exposure",
    "ExposureConflict",
    "Snapshot",
    "StoredAssignment",
    "StoredEvent",
    "StoredExposure",
    "WindowCounting",
    "WriteResult",
]


def check_text(value: object, *, name: str) -> str:
    """A non-empty string, or ValueError/TypeError naming the field."""
    if not isinstance(value, str):
        msg = f"{name} == {value!r}, must be a string"
        raise TypeError(msg)
    if not value.strip():
        msg = f"{name} == {value!r}, must be a non-empty string"
        raise ValueError(msg)
    return value


def check_finite(value: object, *, name: str) -> float:
    """A finite real number (bools refused) as float, or ValueError/TypeError naming the field."""
    if isinstance(value, bool) or not isinstance(value, Real):
        msg = f"{name} == {value!r}, must be a real number"
        raise TypeError(msg)
    result = float(value)
    if not math.isfinite(result):
        msg = f"{name} == {value!r}, must be finite"
        raise ValueError(msg)
    return result


MAX_VALUE = math.sqrt(sys.float_info.max)
"""The largest magnitude of an event value: the statistics sum squares, and a larger value's square is infinite."""


def check_value(value: object, *, name: str) -> float:
    """An event value: :func:`check_finite`, and its square finite too (``abs(value) <= MAX_VALUE``)."""
    result = check_finite(value, name=name)
    if abs(result) > MAX_VALUE:
        msg = f"{name} == {value!r}, must be finite with a finite square (at most {MAX_VALUE:.4g} in magnitude)"
        raise ValueError(msg)
    return result


def _check_mapping(value: object, *, name: str) -> Mapping[str, Any] | None:
    if value is not None and not isinstance(value, Mapping):
        msg = f"{name} == {value!r}, must be a mapping (JSON object) or None"
        raise TypeError(msg)
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One event to log: a unit did ``name`` (with an optional ``value``) at ``timestamp``.

    ``event_id`` is the idempotency key: logging the same id again adds nothing. ``timestamp``
    must be timezone-aware and is kept in UTC.

    >>> from datetime import UTC, datetime
    >>> Event(event_id="e1", unit_id="u1", name="purchase", value=12.5, timestamp=datetime(2024, 5, 1, tzinfo=UTC))
    Event(event_id='e1', unit_id='u1', name='purchase', timestamp=datetime.datetime(2024, 5, 1, 0, 0, tzinfo=datetime.timezone.utc), value=12.5, properties=None)
    """  # noqa: E501

    event_id: str
    unit_id: str
    name: str
    timestamp: datetime
    value: float | None = None
    properties: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        check_text(self.event_id, name="event_id")
        check_text(self.unit_id, name="unit_id")
        check_text(self.name, name="name")
        object.__setattr__(self, "timestamp", to_utc(self.timestamp, name="timestamp"))
        if self.value is not None:
            object.__setattr__(self, "value", check_value(self.value, name="value"))
        _check_mapping(self.properties, name="properties")


@dataclass(frozen=True, slots=True, kw_only=True)
class Exposure:
    """One exposure to log: ``unit_id`` saw ``variant`` of ``experiment_key`` at ``timestamp``.

    ``attributes`` (segment attributes such as device or country) are kept as JSON with the
    first exposure, so results can be cut by segment.
    """

    experiment_key: str
    unit_id: str
    variant: str
    timestamp: datetime
    attributes: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        check_text(self.experiment_key, name="experiment_key")
        check_text(self.unit_id, name="unit_id")
        check_text(self.variant, name="variant")
        object.__setattr__(self, "timestamp", to_utc(self.timestamp, name="timestamp"))
        _check_mapping(self.attributes, name="attributes")


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a batch write did: rows ``received``, rows ``inserted`` (new), and ``conflicts``.

    ``conflicts`` are exposures of a unit in another variant than the one recorded for it (the
    unit is flagged and left out of analysis); events never conflict. The rest were duplicates.
    """

    received: int
    inserted: int
    conflicts: int = 0

    @property
    def duplicates(self) -> int:
        """Rows that added nothing because they were already stored (or repeated within the batch)."""
        return self.received - self.inserted - self.conflicts

    def __repr__(self) -> str:
        # Events never conflict: their results read as before, without a field that is always 0.
        tail = f", conflicts={self.conflicts}" if self.conflicts else ""
        return f"WriteResult(received={self.received}, inserted={self.inserted}{tail})"


@dataclass(frozen=True, slots=True)
class ExperimentRecord:
    """An experiment's current state (one row of ``experiments``).

    ``rolled_out_variant`` is the variant served to every unit while the status is ``rolled_out``,
    else None.
    """

    key: str
    status: str
    current_version: int
    bucket_version: int
    spec: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    created_by: str
    rolled_out_variant: str | None = None


@dataclass(frozen=True, slots=True)
class ExperimentVersion:
    """One entry of an experiment's audit log: the spec and status after a change, and who made it."""

    experiment_key: str
    version: int
    spec: dict[str, Any]
    diff: list[dict[str, Any]]
    status: str
    changed_by: str
    changed_at: datetime
    reason: str | None


@dataclass(frozen=True, slots=True)
class StoredAssignment:
    """A recorded (sticky) assignment of a unit to a variant under a bucket version."""

    experiment_key: str
    unit_id: str
    variant: str
    bucket_version: int
    assigned_at: datetime


@dataclass(frozen=True, slots=True)
class StoredExposure:
    """A unit's exposure to an experiment: its variant, first time seen, segment attributes.

    ``multiple_variants`` is True when the unit was also seen in another variant (listed by
    :meth:`ExposureRepository.conflicts`); analysis should exclude such units.
    """

    experiment_key: str
    unit_id: str
    variant: str
    first_exposed_at: datetime
    attributes: dict[str, Any] | None
    multiple_variants: bool


@dataclass(frozen=True, slots=True)
class ExposureConflict:
    """A variant a unit was seen in besides its recorded one, and when it was first seen there."""

    experiment_key: str
    unit_id: str
    variant: str
    first_seen_at: datetime


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A stored event, with the time the store received it."""

    event_id: str
    unit_id: str
    name: str
    value: float | None
    timestamp: datetime
    properties: dict[str, Any] | None
    ingested_at: datetime


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A stored analysis result for an experiment at a spec version; ``payload`` is free-form JSON."""

    id: int
    experiment_key: str
    spec_version: int
    created_at: datetime
    payload: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class BanditArm:
    """Running sufficient statistics of one bandit arm: observations, sum and sum of squares of rewards."""

    experiment_key: str
    arm: str
    n: int
    sum: float
    sum_sq: float
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class BanditReward:
    """A unit's reward for a bandit experiment: ``variant`` it was assigned, the totals row ``arm`` it adds to."""

    unit_id: str
    variant: str
    arm: str
    reward: float


@dataclass(frozen=True, slots=True)
class WindowCounting:
    """How :meth:`~splitlab.storage.BanditStateRepository.add_rewards` counts rewarded units per window.

    Each new reward adds one to the row ``count_arm.format(window)`` of its unit's window; the
    increment that takes window ``w`` to ``size`` units adds the row ``start_arm.format(w + 1)``
    with ``sum`` = ``closed_at`` (a POSIX timestamp): the next window's start.

    Attributes:
        window_of: Each rewarded unit's window.
        size: Rewarded units that fill a window.
        closed_at: The time a window filled now is recorded to end (POSIX seconds).
        count_arm: The format of the counter rows.
        start_arm: The format of the window-start rows.
    """

    window_of: Mapping[str, int]
    size: int
    closed_at: float
    count_arm: str = "~count@{}"
    start_arm: str = "~start@{}"
