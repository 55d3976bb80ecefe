"""Where an experiment's exposures and events live: tables and column names.

A :class:`Source` maps the two inputs of the aggregation to tables, either the store's own
(:meth:`Source.splitlab_store`) or tables a user already has in a warehouse
(:meth:`Source.from_config`), which are only ever read. Names are used exactly as given: each
part of a table name (``schema.table``) and each column is quoted in the SQL, so on PostgreSQL
``Events`` and ``events`` are different tables.

Example:
    >>> source = Source.from_config({
    ...     "exposures": {"table": "analytics.exposures", "experiment": "experiment_id", "unit": "user_id",
    ...                   "variant": "arm", "timestamp": "exposed_at", "segments": ["country"],
    ...                   "attributes": "context"},
    ...     "events": {"table": "analytics.events", "unit": "user_id", "name": "event", "value": "amount",
    ...                "timestamp": "occurred_at"},
    ... })
    >>> source.exposures.segment("country"), source.exposures.segment("device")
    (('column', 'country'), ('json', 'context'))
    >>> Source.from_config({"exposures": {"table": "x"}, "events": {}})
    Traceback (most recent call last):
    ...
    ValueError: exposures.unit is required (the column of unit ids)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["EventTable", "ExposureTable", "Source"]

_SEGMENT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*")

_EXPOSURE_REQUIRED = {
    "table": "the exposure table, optionally schema-qualified",
    "unit": "the column of unit ids",
    "variant": "the column of variant keys",
    "timestamp": "the column of exposure times",
}
_EXPOSURE_OPTIONAL = ("experiment", "attributes", "multiple_variants")
_EVENT_REQUIRED = {
    "table": "the event table, optionally schema-qualified",
    "unit": "the column of unit ids",
    "name": "the column of event names",
    "timestamp": "the column of event times",
}


def _check_name(field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        msg = f"{field} == {value!r}, must be a non-empty column or table name"
        raise ValueError(msg)
    return value


def _check_table(field: str, value: object) -> str:
    name = _check_name(field, value)
    if any(not part.strip() for part in name.split(".")):
        msg = f"{field} == {value!r}, must be 'table' or 'schema.table' without empty parts"
        raise ValueError(msg)
    return name


def check_segment_name(field: str, name: object) -> str:
    """Return ``name`` if it can name a segment (a column or a JSON key), else raise naming ``field``."""
    if not isinstance(name, str) or not _SEGMENT_NAME.fullmatch(name):
        msg = (
            f"{field} == {name!r}, must be a segment name of letters, digits, '_', '.', ':' and '-', "
            "starting with a letter, digit or '_'"
        )
        raise ValueError(msg)
    return name


@dataclass(frozen=True, slots=True)
class ExposureTable:
    """The table of exposures: which unit saw which variant of which experiment, and when.

    Attributes:
        table: ``table`` or ``schema.table``.
        unit, variant, timestamp: columns of the unit id, the variant key and the exposure time
            (UTC; see the aggregation docs for the types each database needs).
        experiment: column of the experiment key; ``None`` when the table holds one experiment.
        segment_columns: segment attributes stored as plain columns (the segment is the column name).
        attributes: a JSON column holding further segment attributes as keys; ``None``: none.
        multiple_variants: a boolean column set on units that were seen in more than one
            variant (the store keeps one row per unit with this flag); ``None``: none.
        one_row_per_unit: the table has at most one row per experiment and unit (the store);
            otherwise every exposure is a row and the first one per unit is found in SQL.
    """

    table: str
    unit: str
    variant: str
    timestamp: str
    experiment: str | None = None
    segment_columns: tuple[str, ...] = ()
    attributes: str | None = None
    multiple_variants: str | None = None
    one_row_per_unit: bool = False

    def __post_init__(self) -> None:
        _check_table("exposures.table", self.table)
        for field in ("unit", "variant", "timestamp"):
            _check_name(f"exposures.{field}", getattr(self, field))
        for field in _EXPOSURE_OPTIONAL:
            if getattr(self, field) is not None:
                _check_name(f"exposures.{field}", getattr(self, field))
        for i, column in enumerate(self.segment_columns):
            check_segment_name(f"exposures.segments.{i}", column)
        if len(set(self.segment_columns)) != len(self.segment_columns):
            msg = f"exposures.segments == {list(self.segment_columns)} lists a column more than once"
            raise ValueError(msg)
        if not isinstance(self.one_row_per_unit, bool):
            msg = f"exposures.one_row_per_unit == {self.one_row_per_unit!r}, must be true or false"
            raise ValueError(msg)  # noqa: TRY004 - a config mistake, reported like the others

    def segment(self, name: str) -> tuple[Literal["column", "json"], str]:
        """Where segment ``name`` is read: ``("column", column)`` or ``("json", json_column)``.

        Raises:
            ValueError: the segment is neither a segment column nor available from a JSON column.
        """
        check_segment_name("segments", name)
        if name in self.segment_columns:
            return "column", name
        if self.attributes is not None:
            return "json", self.attributes
        known = ", ".join(self.segment_columns) or "none"
        msg = (
            f"segments: {name!r} is not a segment column of the exposure table (segment columns: {known}) "
            "and the table has no attributes JSON column"
        )
        raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class EventTable:
    """The table of events: what a unit did, when, and with which value.

    Attributes:
        table: ``table`` or ``schema.table``.
        unit, name, timestamp: columns of the unit id, the event name and the event time (UTC).
        value: column of the event's numeric value (NULL allowed); ``None`` when events carry no
            value, which leaves only ``binary`` and ``count`` metrics (and ratios of counts).
    """

    table: str
    unit: str
    name: str
    timestamp: str
    value: str | None = None

    def __post_init__(self) -> None:
        _check_table("events.table", self.table)
        for field in ("unit", "name", "timestamp"):
            _check_name(f"events.{field}", getattr(self, field))
        if self.value is not None:
            _check_name("events.value", self.value)


@dataclass(frozen=True, slots=True)
class Source:
    """The exposure and event tables of an aggregation."""

    exposures: ExposureTable
    events: EventTable

    @classmethod
    def splitlab_store(cls) -> Source:
        """The store's own ``exposures`` and ``events`` tables (see docs/storage.md)."""
        return cls(
            ExposureTable(
                table="exposures",
                experiment="experiment_key",
                unit="unit_id",
                variant="variant",
                timestamp="first_exposed_at",
                attributes="attributes",
                multiple_variants="multiple_variants",
                one_row_per_unit=True,
            ),
            EventTable(table="events", unit="unit_id", name="name", value="value", timestamp="timestamp"),
        )

    @classmethod
    def from_config(cls, mapping: Mapping[str, Any]) -> Source:
        """A user's warehouse tables, from a mapping (e.g. a YAML block) with two sections.

        ``exposures``: ``table``, ``unit``, ``variant``, ``timestamp`` (required), ``experiment``,
        ``segments`` (a list of plain columns), ``attributes`` (a JSON column), ``multiple_variants``
        and ``one_row_per_unit`` (optional). ``events``: ``table``, ``unit``, ``name``,
        ``timestamp`` (required) and ``value`` (optional). Unknown or missing keys raise
        ``ValueError`` naming the field (``exposures.variant``).
        """
        if not isinstance(mapping, Mapping):
            msg = f"source config must be a mapping with 'exposures' and 'events', got {type(mapping).__name__}"
            raise ValueError(msg)  # noqa: TRY004 - a config mistake, reported like the others
        _check_keys("", mapping, required={"exposures": "", "events": ""}, optional=())
        exposures = _section(mapping, "exposures")
        events = _section(mapping, "events")
        _check_keys("exposures.", exposures, _EXPOSURE_REQUIRED, (*_EXPOSURE_OPTIONAL, "segments", "one_row_per_unit"))
        _check_keys("events.", events, _EVENT_REQUIRED, ("value",))
        segments = exposures.get("segments", ())
        if isinstance(segments, str) or not isinstance(segments, list | tuple):
            msg = f"exposures.segments == {segments!r}, must be a list of column names"
            raise ValueError(msg)  # noqa: TRY004 - a config mistake, reported like the others
        return cls(
            ExposureTable(
                table=exposures["table"],
                unit=exposures["unit"],
                variant=exposures["variant"],
                timestamp=exposures["timestamp"],
                experiment=exposures.get("experiment"),
                segment_columns=tuple(segments),
                attributes=exposures.get("attributes"),
                multiple_variants=exposures.get("multiple_variants"),
                one_row_per_unit=exposures.get("one_row_per_unit", False),
            ),
            EventTable(
                table=events["table"],
                unit=events["unit"],
                name=events["name"],
                timestamp=events["timestamp"],
                value=events.get("value"),
            ),
        )


def _section(mapping: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = mapping[name]
    if not isinstance(section, Mapping):
        msg = f"{name} == {section!r}, must be a mapping of fields to column names"
        raise ValueError(msg)  # noqa: TRY004 - a config mistake, reported like the others
    return section


def _check_keys(
    prefix: str, section: Mapping[str, Any], required: Mapping[str, str], optional: tuple[str, ...]
) -> None:
    allowed = (*required, *optional)
    for key in section:
        if key not in allowed:
            msg = f"{prefix}{key} is not a known field (known: {', '.join(allowed)})"
            raise ValueError(msg)
    for key, meaning in required.items():
        if key not in section:
            msg = f"{prefix}{key} is required" + (f" ({meaning})" if meaning else "")
            raise ValueError(msg)
