"""What one service process holds while it runs: the store, its caches, the recorder, the model router and Redis.

Built by the app's lifespan (:func:`splitlab.service.app.create_app`) and closed with it; routes
reach it through :mod:`splitlab.service.deps`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from splitlab.service.caches.shared import RedisCache
from splitlab.service.caches.timed import TimedCache
from splitlab.service.errors import UnavailableError
from splitlab.service.hot_path.assigner import Assigner
from splitlab.service.hot_path.bandit_weights import BanditWeightsCache
from splitlab.service.hot_path.config_document import ConfigDocument, build_config
from splitlab.service.hot_path.event_writer import EventWriter
from splitlab.service.hot_path.experiment_cache import ExperimentCache
from splitlab.service.hot_path.recorder import AssignmentRecorder
from splitlab.service.hot_path.sticky import StickyAssignments
from splitlab.service.router import ModelRouter, PredictionLog
from splitlab.service.settings import Settings
from splitlab.service.telemetry import Telemetry
from splitlab.storage import ApiKey, Store, WriteResult
from splitlab.storage.keys import is_well_formed, key_id_of

__all__ = ["FailureLimiter", "Runtime"]

_log = logging.getLogger("splitlab.service")


class FailureLimiter:
    """At most ``per_minute`` failures per client in each minute (a fixed window), for at most ``max_clients`` clients.

    When full, the oldest windows are dropped first, so a flood of addresses costs bounded memory.

    >>> limiter = FailureLimiter(per_minute=2)
    >>> limiter.note("10.0.0.1"); limiter.note("10.0.0.1"); limiter.retry_after("10.0.0.1") > 0
    True
    >>> limiter.retry_after("10.0.0.2")
    0
    """

    def __init__(self, *, per_minute: int, max_clients: int = 100_000) -> None:
        self.per_minute = per_minute
        self.max_clients = max_clients
        self._windows: dict[str, tuple[int, int]] = {}  # client -> (minute, failures in it)

    def retry_after(self, client: str) -> int:
        """Seconds until ``client`` may try again (0: now)."""
        window = self._windows.get(client)
        if window is None:
            return 0
        now = time.time()
        minute, failures = window
        if minute != int(now // 60) or failures < self.per_minute:
            return 0
        return max(1, math.ceil((minute + 1) * 60 - now))

    def note(self, client: str) -> None:
        """One more failure of ``client``."""
        minute = int(time.time() // 60)
        windows = self._windows
        earlier, failures = windows.pop(client, (minute, 0))
        while len(windows) >= self.max_clients:
            windows.pop(next(iter(windows)))
        windows[client] = (minute, failures + 1 if earlier == minute else 1)


class Runtime:
    """The process's store, caches and background writer (see the module docstring).

    Args:
        store: The open store (closed by :meth:`close`).
        settings: The app's settings.
        telemetry: The app's Prometheus metrics.
    """

    def __init__(self, store: Store, settings: Settings, telemetry: Telemetry) -> None:
        self.store = store
        self.settings = settings
        self.telemetry = telemetry
        self.shared = (
            None if settings.redis_url is None else RedisCache(settings.redis_url, deployment=store.deployment_id)
        )
        self.experiments = ExperimentCache(store, ttl=settings.cache_seconds)
        self.sticky = StickyAssignments(store, self.shared)
        self.bandit_weights = BanditWeightsCache(store, self.shared, ttl=settings.cache_seconds)
        self.recorder = (
            AssignmentRecorder(
                store,
                interval=settings.record_interval,
                stored=self.sticky.stored,
                failed=self._record_failed,
                recorded=telemetry.assignments_recorded.inc,
            )
            if settings.record_assignments
            else None
        )
        self.assigner = Assigner(self.experiments, self.sticky, self.bandit_weights, self.recorder)
        self.event_writer = EventWriter(store, committed=self._events_committed)
        self.router = ModelRouter(
            store=store,
            experiments=self.experiments,
            assigner=self.assigner,
            events=self.event_writer,
            log=PredictionLog(
                store,
                self.event_writer,
                capacity=settings.router_queue_size,
                interval=settings.record_interval,
                clock_skew_seconds=settings.clock_skew_seconds,
                dropped=telemetry.count_router_dropped,
            ),
            telemetry=telemetry,
            max_connections=settings.router_max_connections,
            shed_when_full=settings.router_queue_full == "shed",
        )
        self._keys: TimedCache[str, ApiKey | None] = TimedCache(ttl=settings.cache_seconds, max_size=10_000)
        # The ids of the active keys, so that a key with an unknown id (a flood of made-up keys)
        # costs a set look-up, not a read of the store.
        self._key_ids: TimedCache[str, frozenset[str]] = TimedCache(ttl=settings.cache_seconds, max_size=1)
        self._keys_by_id: TimedCache[str, ApiKey | None] = TimedCache(ttl=settings.cache_seconds, max_size=10_000)
        self.auth_failures = FailureLimiter(per_minute=settings.auth_failures_per_minute)
        self._config: TimedCache[str, ConfigDocument] = TimedCache(ttl=settings.cache_seconds, max_size=1)
        self._monitor_stop = threading.Event()
        self._monitor: threading.Thread | None = None
        if settings.monitor:
            self._monitor = threading.Thread(target=self._watch, name="splitlab-monitor", daemon=True)
            self._monitor.start()

    def _watch(self) -> None:
        from splitlab.notify import global_targets
        from splitlab.operations.monitoring import watch

        try:
            targets = global_targets()
        except Exception as exc:  # a bad targets file: the service serves, the monitor says why it does not
            _log.error("splitlab: the monitor does not run: %s", exc)
            return
        watch(self.store, self._monitor_stop, poll_seconds=self.settings.monitor_poll_seconds, global_targets=targets)

    async def config(self) -> ConfigDocument:
        """The SDK config document, at most ``cache_seconds`` old."""
        return await self._config.get("config", self._build_config)

    def _build_config(self, _key: str) -> ConfigDocument:
        return build_config(self.store, self.experiments, self.bandit_weights)

    async def verify_key(self, key: str) -> ApiKey | None:
        """The active API key whose text is ``key`` (None: unknown, malformed or revoked), ``cache_seconds`` old.

        A key whose id is not among the active keys' ids (read once per ``cache_seconds`` for
        all of them) is refused without a read of its own; a key made with `splitlab keys create`
        works within ``2 * cache_seconds``, as a revoked one stops working.
        """
        cached = self._keys.fresh(key)
        if cached is not None:  # the common case, in one look-up
            return cached.value
        if not is_well_formed(key):
            return None  # no read, and nothing cached: junk headers (of any length) cost no memory
        if key_id_of(key) not in await self._key_ids.get("active", self._active_key_ids):
            return None  # nothing cached either: random ids would evict the real keys' verdicts
        return await self._keys.get(key, self._verify)

    async def active_key(self, key_id: str) -> ApiKey | None:
        """The active key whose id is ``key_id`` (a dashboard session names its key by id), ``cache_seconds`` old.

        Checked against the active ids as :meth:`verify_key` is, so a revoked key's sessions end
        within ``2 * cache_seconds`` as its requests do.
        """
        if key_id not in await self._key_ids.get("active", self._active_key_ids):
            return None
        return await self._keys_by_id.get(key_id, self._key_by_id)

    def _key_by_id(self, key_id: str) -> ApiKey | None:
        key = self.store.keys.get(key_id=key_id)
        return key if key is not None and key.active else None

    def _active_key_ids(self, _name: str) -> frozenset[str]:
        return self.store.keys.active_ids()

    def _verify(self, key: str) -> ApiKey | None:
        return self.store.keys.verify(key=key)

    @contextmanager
    def changing(self, experiment_key: str) -> Iterator[None]:
        """Wrap a change of an experiment by this worker.

        Its queued assignments are written first, and its cached copy is forgotten before and after
        the change (a request in between may have cached the old one).

        Raises:
            UnavailableError: The queued assignments could not be written in time (nothing was changed).
        """
        if self.recorder is not None and not self.recorder.flush():
            raise UnavailableError("database", "assignments queued before this change could not be written yet")
        self._forget(experiment_key)
        try:
            yield
        finally:
            self._forget(experiment_key)

    def _forget(self, experiment_key: str) -> None:
        self.experiments.invalidate(experiment_key)
        self._config.invalidate()

    def close(self) -> None:
        """Stop the monitor, write queued assignments and events, then close Redis and the store."""
        self._monitor_stop.set()
        if self._monitor is not None:
            self._monitor.join(timeout=60)
        if self.recorder is not None:
            self.recorder.close()
        self.router.log.close()  # before the event writer: it hands its events to it
        self.event_writer.close()
        if self.shared is not None:
            self.shared.close()
        self.store.close()

    def _events_committed(self, result: WriteResult) -> None:
        self.telemetry.events_ingested.inc(result.inserted)
        self.telemetry.events_duplicate.inc(result.duplicates)

    def _record_failed(self, units: int, error: BaseException) -> None:
        _log.error("splitlab: %d assignments could not be recorded: %s", units, error)
        self.telemetry.assignment_record_failures.inc(units)
