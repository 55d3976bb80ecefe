"""The application SDK: local assignment from the service's config, exposures and events in batches.

See :class:`Client` (threads) and :class:`AsyncClient` (asyncio); the HTTP contract is in docs/sdk.md.
"""

from __future__ import annotations

from splitlab.sdk.client import FALLBACK, AsyncClient, Client
from splitlab.sdk.config import ConfigSnapshot, parse_config
from splitlab.sdk.records import ERROR_KINDS, ClientStats, ErrorHandler, Event, Exposure, Item, new_event_id

__all__ = [
    "ERROR_KINDS",
    "FALLBACK",
    "AsyncClient",
    "Client",
    "ClientStats",
    "ConfigSnapshot",
    "ErrorHandler",
    "Event",
    "Exposure",
    "Item",
    "new_event_id",
    "parse_config",
]
