"""The router's records (exposures, predictions, shadow answers) written off the request's path.

A routed request is answered as soon as its model answers; what it records goes to a bounded
queue, and one thread writes the queue every ``interval`` seconds: the exposures of units routed
for the first time in this worker (the first one stored wins, as for ``POST /exposures``), then
the events, through the service's group commit (:class:`~splitlab.service.hot_path.event_writer.EventWriter`),
so a prediction costs the request one append.

The trade-off, by setting (``SPLITLAB_ROUTER_QUEUE_FULL``): when the queue holds ``capacity``
records (the store is slow or down), ``drop`` (default) answers the request and drops its records,
counted in ``splitlab_router_records_dropped_total``: the model keeps serving, the experiment loses
those units' data (and, since it loses them by time rather than by variant, keeps its balance);
``shed`` refuses the request with 503 instead, so nothing routed goes unrecorded. A batch the
store cannot take now is kept and tried again while the queue has room; a worker killed loses the
records of its last ``interval``.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from datetime import timedelta

from splitlab.service.caches.recent import Recent
from splitlab.service.hot_path.event_writer import EventWriter
from splitlab.storage import Event, Exposure, RefusedRowsError, Store

__all__ = ["PredictionLog"]

_log = logging.getLogger("splitlab.service")

_EARLY_WRITE = 5_000
"""Records queued that make the writer write before its interval ends (a burst is written in time)."""

Dropped = Callable[[str, int], None]
"""``dropped(reason, records)``: records given up (``queue_full``, ``refused``, ``store_error``)."""


class PredictionLog:
    """The bounded queue of the router's records and the thread that writes them (a daemon)."""

    def __init__(
        self,
        store: Store,
        events: EventWriter,
        *,
        capacity: int,
        interval: float,
        clock_skew_seconds: float,
        dropped: Dropped,
    ) -> None:
        self._store = store
        self._events = events
        self.capacity = capacity
        self._interval = interval
        self._clock_skew = timedelta(seconds=clock_skew_seconds)
        self._dropped = dropped
        self._exposures: deque[Exposure] = deque()
        self._rows: deque[Event] = deque()
        self._exposed: Recent[tuple[str, str], bool] = Recent(size=200_000)
        self._cond = threading.Condition()
        self._closing = False
        self._writing = 0
        self._flushing = 0
        self._thread = threading.Thread(target=self._run, name="splitlab-prediction-log", daemon=True)
        self._thread.start()

    def has_room(self, records: int = 3) -> bool:
        """Whether ``records`` more fit in the queue now."""
        return len(self._exposures) + len(self._rows) + records <= self.capacity

    def add(self, events: list[Event], exposure: Exposure | None = None) -> bool:
        """Queue ``events`` and the unit's ``exposure`` (written once per unit); False: the queue is full, dropped."""
        if exposure is not None and self._exposed.peek((exposure.experiment_key, exposure.unit_id)) is not None:
            exposure = None
        count = len(events) + (exposure is not None)
        with self._cond:
            if self._closing or not self.has_room(count):
                self._dropped("queue_full", count)
                return False
            if exposure is not None:
                self._exposed.put((exposure.experiment_key, exposure.unit_id), True)
                self._exposures.append(exposure)
            self._rows.extend(events)
            # The writer wakes on its interval, not per record: a wake-up per request would make a
            # transaction per request at low traffic, and a thread switch on every request's path.
            if len(self._rows) + len(self._exposures) >= _EARLY_WRITE:
                self._cond.notify()
        return True

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued before the call is written (or given up); False on timeout."""
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(
                    lambda: not self._exposures and not self._rows and not self._writing, timeout
                )
            finally:
                self._flushing -= 1

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued (up to ``timeout`` seconds) and stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not (self._closing or self._flushing or self._full()):
                    self._cond.wait(self._interval)  # let the records of the interval gather
                if not self._exposures and not self._rows:
                    if self._closing:
                        return
                    continue
                exposures, rows = list(self._exposures), list(self._rows)
                self._exposures.clear()
                self._rows.clear()
                self._writing = 1
            kept = self._write(exposures, rows)
            with self._cond:
                self._writing = 0
                if kept is not None:
                    self._put_back(*kept)
                self._cond.notify_all()
                if self._closing and kept is not None:
                    self._dropped("store_error", len(self._exposures) + len(self._rows))
                    return
                if kept is not None and not self._closing:  # the store is in trouble: a moment before retrying
                    self._cond.wait(self._interval)

    def _full(self) -> bool:
        return len(self._rows) + len(self._exposures) >= _EARLY_WRITE

    def _write(self, exposures: list[Exposure], rows: list[Event]) -> tuple[list[Exposure], list[Event]] | None:
        """Write one round; what to try again (None: written or given up)."""
        try:
            if exposures:
                self._write_exposures(exposures)
            if rows:
                encoded = self._store.events.encode(rows)
                self._events.submit(encoded).result(timeout=60)
        except Exception as exc:  # the store is unreachable or slow: keep them while there is room
            _log.warning("splitlab: %d router records not written yet: %s", len(exposures) + len(rows), exc)
            return exposures, rows
        return None

    def _write_exposures(self, exposures: list[Exposure]) -> None:
        try:
            self._store.exposures.log_many(exposures, clock_skew=self._clock_skew)
        except RefusedRowsError as exc:  # some experiment stopped running meanwhile: keep the others
            refused = {index for index, _, _ in exc.problems}
            self._dropped("refused", len(refused))
            kept = [e for i, e in enumerate(exposures) if i not in refused]
            for exposure in (e for i, e in enumerate(exposures) if i in refused):
                self._exposed.forget((exposure.experiment_key, exposure.unit_id))
            if kept:
                self._store.exposures.log_many(kept, clock_skew=self._clock_skew)

    def _put_back(self, exposures: list[Exposure], rows: list[Event]) -> None:
        """Requeue a failed round in front of newer records, giving up the oldest beyond capacity; under ``_cond``."""
        self._exposures.extendleft(reversed(exposures))
        self._rows.extendleft(reversed(rows))
        excess = len(self._exposures) + len(self._rows) - self.capacity
        if excess > 0:
            for _ in range(min(excess, len(self._rows))):
                self._rows.popleft()
            self._dropped("store_error", excess)
            while len(self._exposures) + len(self._rows) > self.capacity:
                exposure = self._exposures.popleft()
                self._exposed.forget((exposure.experiment_key, exposure.unit_id))
