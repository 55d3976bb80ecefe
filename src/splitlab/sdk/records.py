"""What the SDK sends (exposures, events), what it reports, and its counters: plain immutable records."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

__all__ = ["ERROR_KINDS", "ClientStats", "ErrorHandler", "Event", "Exposure", "Item"]

ERROR_KINDS: Final = ("config", "queue_full", "closed", "rejected", "retries_exhausted")
"""Every ``kind`` passed to ``on_error``: a config fetch that failed, items dropped because the queue was
full or the client closed, items the service refused (4xx), items still failing when retries ran out."""


@dataclass(frozen=True, slots=True)
class Exposure:
    """A unit saw an experiment's variant (sent to ``POST /api/v1/exposures``)."""

    experiment: str
    unit_id: str
    variant: str
    timestamp: datetime
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The wire form of the contract."""
        return {
            "experiment": self.experiment,
            "unit_id": self.unit_id,
            "variant": self.variant,
            "timestamp": self.timestamp.isoformat(),
            "attributes": dict(self.attributes),
        }


@dataclass(frozen=True, slots=True)
class Event:
    """A unit did something (sent to ``POST /api/v1/events``); ``event_id`` makes re-sending idempotent."""

    event_id: str
    unit_id: str
    name: str
    value: float | None
    timestamp: datetime
    properties: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The wire form of the contract."""
        return {
            "event_id": self.event_id,
            "unit_id": self.unit_id,
            "name": self.name,
            "value": self.value,
            "timestamp": self.timestamp.isoformat(),
            "properties": dict(self.properties),
        }


Item = Exposure | Event
ErrorHandler = Callable[[str, Sequence[Item], str], None]
"""``on_error(kind, items, reason)``; ``kind`` is one of :data:`ERROR_KINDS`."""


@dataclass(frozen=True, slots=True)
class ClientStats:
    """A snapshot of a client's counters (items are exposures plus events).

    Attributes:
        queued: items accepted into the queue so far.
        delivered: items the service acknowledged.
        dropped: items never queued (queue full, or tracked after ``close()``).
        failed: items queued but not delivered (refused with a 4xx, or retries exhausted).
        retries: HTTP attempts repeated after a 5xx or a connection error.
        pending: items queued and not yet settled.
        config_fetches: config requests answered 200 or 304.
        config_errors: config requests that failed (the last good config stays in use).
    """

    queued: int
    delivered: int
    dropped: int
    failed: int
    retries: int
    pending: int
    config_fetches: int
    config_errors: int
