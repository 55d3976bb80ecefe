"""Event batches of concurrent requests written in one transaction by one thread (group commit).

A commit writes every page its batch touched (random event ids and unit ids touch pages all over
the indexes) and, on SQLite, waits for an fsync; its cost barely grows with the batch. So requests
hand their encoded batches to this thread and wait: while it commits one group, the next
requests queue up, and it writes them all in the next transaction. A request is answered only
after the commit that holds its batch, so an acknowledged event is stored, as without grouping.

Requests wait on a future (:meth:`EventWriter.submit`), not in a worker thread, so a slow commit
holds no thread of the server's pool. On PostgreSQL two workers' groups can deadlock when the same
event ids reach both at once (an SDK retrying a batch at another worker): the database aborts one
transaction, and this writer tries that group once more before failing it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from sqlalchemy.exc import OperationalError

from splitlab.service.errors import UnavailableError, stopping
from splitlab.service.hot_path.futures import settle
from splitlab.storage import Store, WriteResult

__all__ = ["EventWriter"]

_Pending = tuple[Sequence[tuple[Any, ...]], Future[WriteResult]]
_DEADLOCK_DETECTED = "40P01"  # PostgreSQL's SQLSTATE
_log = logging.getLogger("splitlab.service")


class EventWriter:
    """The queue of encoded event batches and the thread that commits them together (a daemon)."""

    def __init__(self, store: Store, *, committed: Callable[[WriteResult], None] | None = None) -> None:
        """``committed(result)`` is called for each batch after its commit, whether or not its request still waits."""
        self._store = store
        self._committed = committed
        self._queue: list[_Pending] = []
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="splitlab-event-writer", daemon=True)
        self._thread.start()

    def submit(self, rows: Sequence[tuple[Any, ...]]) -> Future[WriteResult]:
        """Queue one encoded batch (:meth:`splitlab.storage.EventRepository.encode`) for the next commit.

        Returns:
            A future of what the batch did, set after the commit; it fails with the store's error when
            the transaction holding the batch failed (then nothing of it was written).

        Raises:
            UnavailableError: The writer is closed (the service is stopping).
        """
        future: Future[WriteResult] = Future()
        with self._cond:
            if self._closing:
                raise stopping()
            self._queue.append((rows, future))
            self._cond.notify_all()
        return future

    async def commit(self, rows: Sequence[tuple[Any, ...]], *, timeout: float, what: str) -> WriteResult:
        """Submit ``rows`` and wait for their commit without holding a thread; what the batch did.

        Raises:
            UnavailableError: The commit took longer than ``timeout`` seconds (``what`` names the records in
                the message: event ids make the client's retry safe), or the service is stopping.
        """
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self.submit(rows)), timeout)
        except TimeoutError:
            message = f"writing the {what} took too long; retry (event ids make it safe)"
            raise UnavailableError("database", message) from None

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
                results = self._commit([rows for rows, _ in group])
            except BaseException as exc:
                for _, future in group:
                    settle(future, exc)
            else:
                for (_, future), result in zip(group, results, strict=True):
                    if self._committed is not None:
                        self._committed(result)  # counted here: a request that timed out is stored all the same
                    settle(future, result)

    def _commit(self, batches: list[Sequence[tuple[Any, ...]]]) -> list[WriteResult]:
        try:
            return self._store.events.log_encoded(batches)
        except OperationalError as exc:
            if not _is_deadlock(exc):
                raise
            _log.info("splitlab: an event group deadlocked with another worker's; writing it again")
            return self._store.events.log_encoded(batches)


def _is_deadlock(error: OperationalError) -> bool:
    return getattr(error.orig, "sqlstate", None) == _DEADLOCK_DETECTED
