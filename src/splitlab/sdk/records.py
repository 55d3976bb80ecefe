"""What the SDK sends (exposures, events), what it reports, and its counters: plain immutable records."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

__all__ = ["ERROR_KINDS", "ClientStats", "ErrorHandler", "Event", "Exposure", "Item", "new_event_id"]

ERROR_KINDS: Final = ("config", "queue_full", "closed", "rejected", "retries_exhausted")
"""Every ``kind`` passed to ``on_error``: a config fetch that failed, items dropped because the queue was
full or the client closed, items the service refused (4xx), items still failing when retries ran out."""


def new_event_id() -> str:
    """A new UUID version 7 (RFC 9562, section 5.7): 48 bits of Unix milliseconds, then 74 random bits.

    Time-ordered rather than random (uuid4): ids made one after the other sort together, so the
    store's unique index on event ids takes them at its end instead of at random pages all over
    it, which keeps ingestion fast as the table grows (``benchmarks/service_bench.py`` measures
    both). 74 random bits keep ids unique across processes.

    >>> a, b = new_event_id(), new_event_id()
    >>> len(a), a[14], a != b, uuid.UUID(a).version
    (36, '7', True, 7)
    """
    millis = time.time_ns() // 1_000_000
    random_bits = secrets.randbits(74)
    value = (
        (millis & (1 << 48) - 1) << 80
        | 0x7 << 76
        | (random_bits >> 62) << 64
        | 0b10 << 62
        | random_bits & (1 << 62) - 1
    )
    return str(uuid.UUID(int=value))


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
