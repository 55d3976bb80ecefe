"""Event batches of concurrent requests written in one transaction by one thread (group commit).

A commit writes every page its batch touched (random event ids and unit ids touch pages all over
the indexes) and, on SQLite, waits for an fsync; its cost barely grows with the batch. So requests
hand their encoded batches to this thread and wait: while it commits one group, the next
requests queue up, and it writes them all in the next transaction. A request is answered only
after the commit that holds its batch, so an acknowledged event is stored, as without grouping.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from splitlab.storage import Store, WriteResult

__all__ = ["EventWriter"]

_Pending = tuple[Sequence[tuple[Any, ...]], Future[WriteResult]]


class EventWriter:
    """The queue of encoded event batches and the thread that commits them together (a daemon)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: list[_Pending] = []
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="splitlab-event-writer", daemon=True)
        self._thread.start()

    def write(self, rows: Sequence[tuple[Any, ...]], timeout: float = 120.0) -> WriteResult:
        """Write one encoded batch (:meth:`splitlab.storage.EventRepository.encode`); blocks until committed.

        Raises:
            The store's error when the transaction holding the batch failed (nothing of it was written).
        """
        future: Future[WriteResult] = Future()
        with self._cond:
            if self._closing:
                msg = "the event writer is closed"
                raise RuntimeError(msg)
            self._queue.append((rows, future))
            self._cond.notify_all()
        return future.result(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued and stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closing)
                group, self._queue = self._queue, []
                if not group and self._closing:
                    return
            try:
                results = self._store.events.log_encoded([rows for rows, _ in group])
            except BaseException as exc:
                for _, future in group:
                    future.set_exception(exc)
            else:
                for (_, future), result in zip(group, results, strict=True):
                    future.set_result(result)
