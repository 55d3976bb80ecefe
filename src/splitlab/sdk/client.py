"""The application client: local assignment from a cached config, exposures and events sent in batches."""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self

import numpy as np

from splitlab.assignment import Assignment
from splitlab.sdk.config import ConfigSnapshot, parse_config
from splitlab.sdk.delivery import Delivery
from splitlab.sdk.records import ClientStats, ErrorHandler, Event, Exposure, Item, new_event_id
from splitlab.sdk.transport import PermanentError, TransientError, Transport

__all__ = ["FALLBACK", "AsyncClient", "Client"]

FALLBACK: Final = "fallback"
"""``Assignment.reason`` when the experiment is in no config the client has loaded."""

_log = logging.getLogger("splitlab.sdk")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} == {value!r}, must be > 0")


class Client:
    """Assign units locally from the service's config and send exposures and events in batches.

    The config is fetched once at construction (a failure is tolerated and reported) and refreshed by
    a daemon thread every ``refresh_interval`` seconds with ``If-None-Match``; the last good config
    stays in use while the service is down. Assignment never calls the network. The first assignment
    of each (experiment, unit) that enrols the unit is logged as an exposure (again if the variant
    changes); a rolled-out experiment serves its variant to every unit without enrolling anyone,
    so nothing is logged for it. Exposures and events wait in a bounded queue that a daemon thread
    sends in batches.

    Args:
        url: the service's base URL (``http://host:port``).
        api_key: an ``sdk`` key, sent as ``Authorization: Bearer <key>``.
        refresh_interval: seconds between config refreshes; default 30.
        flush_interval: seconds between sends of a partial batch; default 1.
        batch_size: items per request; a full batch is sent at once; default 500.
        max_queue: items the queue holds; more are dropped and reported; default 100,000.
        timeout: seconds per HTTP request; default 5.
        on_error: ``on_error(kind, items, reason)`` for everything not delivered (kinds in
            :data:`~splitlab.sdk.records.ERROR_KINDS`); default: log a warning. Called from the
            client's threads; exceptions it raises are logged and ignored.
        max_retries: retries of a batch after a 5xx or a connection error; default 5.
        backoff: first retry delay in seconds, doubled per retry; default 0.5.
        max_backoff: cap on the retry delay; default 30.
        close_timeout: seconds ``close()`` keeps delivering before reporting the rest; default 10.
        dedupe_size: (experiment, unit) pairs remembered for exposure dedupe (least recent forgotten);
            default 100,000.

    Example:
        >>> client = Client("http://127.0.0.1:9", "key", timeout=0.5, on_error=lambda *args: None)
        >>> client.assign("checkout", "user-1").reason
        'fallback'
        >>> client.close()
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        refresh_interval: float = 30.0,
        flush_interval: float = 1.0,
        batch_size: int = 500,
        max_queue: int = 100_000,
        timeout: float = 5.0,
        on_error: ErrorHandler | None = None,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        close_timeout: float = 10.0,
        dedupe_size: int = 100_000,
        _fetch_at_start: bool = True,
    ) -> None:
        for name, value in (
            ("refresh_interval", refresh_interval),
            ("flush_interval", flush_interval),
            ("batch_size", batch_size),
            ("max_queue", max_queue),
            ("timeout", timeout),
            ("backoff", backoff),
            ("max_backoff", max_backoff),
            ("close_timeout", close_timeout),
            ("dedupe_size", dedupe_size),
        ):
            _positive(name, value)
        if max_retries < 0:
            raise ValueError(f"max_retries == {max_retries!r}, must be >= 0")
        self._on_error = on_error
        self._refresh_interval = refresh_interval
        self._close_timeout = close_timeout
        self._dedupe_size = dedupe_size
        self._transport = Transport(url, api_key, timeout=timeout)
        self._config: ConfigSnapshot | None = None
        self._etag: str | None = None
        self._config_fetches = self._config_errors = 0
        self._seen: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._lock = threading.Lock()
        self._rng = np.random.default_rng()
        self._closed = False
        self._stop = threading.Event()
        self._refresh_lock = threading.Lock()
        if _fetch_at_start:
            self.refresh()
        self._delivery = Delivery(
            self._transport,
            flush_interval=flush_interval,
            batch_size=batch_size,
            max_queue=max_queue,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
            report=self._report,
        )
        self._refresher = threading.Thread(target=self._refresh_loop, name="splitlab-sdk-config", daemon=True)
        self._refresher.start()
        atexit.register(self.close)

    # --- config -------------------------------------------------------------------------------------

    @property
    def config_version(self) -> str | None:
        """The version of the config in use, or None when none was ever loaded."""
        config = self._config
        return None if config is None else config.version

    def refresh(self) -> bool:
        """Fetch the config now (conditional on the cached ETag); False when it failed (reported)."""
        with self._refresh_lock:
            try:
                response = self._transport.get_config(self._etag)
                if response.document is not None:
                    snapshot, problems = parse_config(response.document)
                    for problem in problems:
                        self._report("config", [], problem)
                    self._config = snapshot
                    self._etag = response.etag
            except (TransientError, PermanentError, ValueError) as err:
                with self._lock:
                    self._config_errors += 1
                self._report("config", [], f"config fetch failed, keeping the last good config: {err}")
                return False
            with self._lock:
                self._config_fetches += 1
            return True

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self._refresh_interval):
            self.refresh()

    # --- assignment ---------------------------------------------------------------------------------

    def assign(self, experiment_key: str, unit_id: str, attributes: Mapping[str, Any] | None = None) -> Assignment:
        """The unit's assignment, evaluated locally (see :func:`splitlab.assignment.assign`).

        An experiment in no loaded config gives ``Assignment(None, None, False, "fallback", None, None)``:
        serve the control experience. Under allocation ``"random"`` the first draw is kept for the
        process (as long as the pair stays in the dedupe memory).
        """
        config = self._config
        plan = None if config is None else config.plans.get(experiment_key)
        if config is None or plan is None:
            return Assignment(None, None, False, FALLBACK, None, None)
        pair = (experiment_key, unit_id)
        if plan.allocation == "random":
            with self._lock:
                sticky = self._seen.get(pair)
                result = plan.assign(unit_id, attributes, sticky=sticky, rng=self._rng)
        elif plan.allocation == "bandit":
            # The weights change every window: a unit keeps the arm it got first in this process.
            with self._lock:
                sticky = self._seen.get(pair)
            result = plan.assign(unit_id, attributes, sticky=sticky, weights=config.weights.get(experiment_key))
        else:
            result = plan.assign(unit_id, attributes)
        if result.enrolled and result.variant is not None and self._first_exposure(pair, result.variant):
            exposure = Exposure(experiment_key, unit_id, result.variant, datetime.now(UTC), dict(attributes or {}))
            self._delivery.put(exposure)
        return result

    def _first_exposure(self, pair: tuple[str, str], variant: str) -> bool:
        with self._lock:
            if self._seen.get(pair) == variant:
                self._seen.move_to_end(pair)
                return False
            self._seen[pair] = variant
            self._seen.move_to_end(pair)
            if len(self._seen) > self._dedupe_size:
                self._seen.popitem(last=False)
            return True

    # --- events and delivery ------------------------------------------------------------------------

    def track(
        self,
        unit_id: str,
        name: str,
        value: float | None = None,
        properties: Mapping[str, Any] | None = None,
        event_id: str | None = None,
    ) -> str:
        """Queue an event; returns its id (a new time-ordered UUID unless given). A dropped event is reported."""
        event_id = event_id or new_event_id()
        value = None if value is None else float(value)
        self._delivery.put(Event(event_id, unit_id, name, value, datetime.now(UTC), dict(properties or {})))
        return event_id

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything queued so far is delivered or failed (reported); False on timeout."""
        return self._delivery.flush(timeout)

    def close(self) -> None:
        """Deliver the queue (up to ``close_timeout`` seconds, the rest is reported) and stop the threads.

        Idempotent; also runs at interpreter exit.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self.close)
        self._stop.set()
        self._delivery.close(self._close_timeout)
        self._refresher.join()

    @property
    def stats(self) -> ClientStats:
        """A snapshot of the counters."""
        d = self._delivery
        return ClientStats(
            queued=d.queued,
            delivered=d.delivered,
            dropped=d.dropped,
            failed=d.failed,
            retries=d.retries,
            pending=d.pending,
            config_fetches=self._config_fetches,
            config_errors=self._config_errors,
        )

    def _report(self, kind: str, items: Sequence[Item], reason: str) -> None:
        if self._on_error is None:
            _log.warning("splitlab sdk: %s, %d item(s): %s", kind, len(items), reason)
            return
        try:
            self._on_error(kind, items, reason)
        except Exception:
            _log.exception("splitlab sdk: on_error raised")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """:class:`Client` for asyncio code: same options; blocking work runs in a worker thread.

    ``assign`` and ``track`` do no I/O and stay synchronous. Create it with ``await AsyncClient.start(...)``
    (or ``async with AsyncClient.start(...)``) so the first config fetch does not block the event loop.
    """

    def __init__(self, url: str, api_key: str, **options: Any) -> None:
        self._client = Client(url, api_key, _fetch_at_start=False, **options)

    @classmethod
    async def start(cls, url: str, api_key: str, **options: Any) -> AsyncClient:
        """A client whose first config fetch has been awaited (a failure is tolerated, as for Client)."""
        client = cls(url, api_key, **options)
        await client.refresh()
        return client

    async def refresh(self) -> bool:
        """See :meth:`Client.refresh`."""
        return await asyncio.to_thread(self._client.refresh)

    def assign(self, experiment_key: str, unit_id: str, attributes: Mapping[str, Any] | None = None) -> Assignment:
        """See :meth:`Client.assign`."""
        return self._client.assign(experiment_key, unit_id, attributes)

    def track(
        self,
        unit_id: str,
        name: str,
        value: float | None = None,
        properties: Mapping[str, Any] | None = None,
        event_id: str | None = None,
    ) -> str:
        """See :meth:`Client.track`."""
        return self._client.track(unit_id, name, value, properties, event_id)

    async def flush(self, timeout: float | None = None) -> bool:
        """See :meth:`Client.flush`."""
        return await asyncio.to_thread(self._client.flush, timeout)

    async def aclose(self) -> None:
        """See :meth:`Client.close`."""
        await asyncio.to_thread(self._client.close)

    @property
    def stats(self) -> ClientStats:
        """See :attr:`Client.stats`."""
        return self._client.stats

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
