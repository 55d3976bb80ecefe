"""A bounded in-memory queue sent in batches by one background thread, with retries and reports.

Every item ends in exactly one counter: ``delivered`` (acknowledged), ``dropped`` (never queued:
queue full or client closed) or ``failed`` (refused with a 4xx, or still failing after the retries);
dropped and failed items are also passed to ``on_error``. A 413 splits the batch in halves before
giving up on single items.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Sequence

from splitlab.sdk.records import ErrorHandler, Event, Exposure, Item
from splitlab.sdk.transport import PermanentError, TooLargeError, TransientError, Transport

__all__ = ["Delivery"]


class Delivery:
    """The queue and its sender thread (started on construction, a daemon)."""

    def __init__(
        self,
        transport: Transport,
        *,
        flush_interval: float,
        batch_size: int,
        max_queue: int,
        max_retries: int,
        backoff: float,
        max_backoff: float,
        report: ErrorHandler,
    ) -> None:
        self._transport = transport
        self._flush_interval = flush_interval
        self._batch_size = batch_size
        self._max_queue = max_queue
        self._max_retries = max_retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._report = report
        self._queue: deque[Item] = deque()
        self._cond = threading.Condition()
        self._abort = threading.Event()  # set when close() gives up waiting: stop retrying
        self._closing = False
        self._urgent = 0  # flush() calls waiting
        self.queued = self.delivered = self.dropped = self.failed = self.retries = 0
        self._settled = 0  # queued items delivered or failed, in queue order
        self._thread = threading.Thread(target=self._run, name="splitlab-sdk-delivery", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Items queued and not yet settled."""
        with self._cond:
            return self.queued - self._settled

    def put(self, item: Item) -> bool:
        """Queue one item; False (and a report) when the queue is full or the client is closed."""
        with self._cond:
            kind = "closed" if self._closing else "queue_full" if len(self._queue) >= self._max_queue else None
            if kind is None:
                self._queue.append(item)
                self.queued += 1
                if len(self._queue) >= self._batch_size:
                    self._cond.notify_all()
                return True
            self.dropped += 1
        reason = "the client is closed" if kind == "closed" else f"the queue holds max_queue == {self._max_queue} items"
        self._report(kind, [item], reason)
        return False

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every item queued before the call is delivered or failed; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self.queued
            self._urgent += 1
            self._cond.notify_all()
            try:
                while self._settled < target:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._cond.wait(left)
                return True
            finally:
                self._urgent -= 1

    def close(self, timeout: float | None) -> None:
        """Refuse new items, deliver the queue for up to ``timeout`` seconds, then stop (reporting the rest)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abort.set()
            with self._cond:
                self._cond.notify_all()
            self._thread.join()

    def _next_batch(self) -> list[Item] | None:
        with self._cond:
            deadline = time.monotonic() + self._flush_interval
            while not (self._closing or (self._urgent and self._queue) or len(self._queue) >= self._batch_size):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if not self._queue:
                return None if self._closing else []
            return [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            if not batch:
                continue
            try:
                for path, kind in (("exposures", Exposure), ("events", Event)):
                    if items := self._encodable([i for i in batch if isinstance(i, kind)]):
                        self._send(path, items)
            except Exception as err:  # a bug must not leave flush() waiting forever: report the batch
                self._fail("rejected", batch, f"unexpected error while sending: {err!r}")
            with self._cond:
                self._settled += len(batch)
                self._cond.notify_all()

    def _encodable(self, items: list[Item]) -> list[Item]:
        """The items that JSON can encode; the others are reported as rejected."""
        good = []
        for item in items:
            try:
                json.dumps(item.to_json())
            except (TypeError, ValueError) as err:
                self._fail("rejected", [item], f"not JSON-serialisable: {err}")
            else:
                good.append(item)
        return good

    def _send(self, path: str, items: Sequence[Item]) -> None:
        attempt = 0
        while True:
            if self._abort.is_set():
                self._fail("retries_exhausted", items, "the client closed before the items could be delivered")
                return
            try:
                self._transport.post(path, {path: [i.to_json() for i in items]})
            except TooLargeError as err:
                if len(items) == 1:
                    self._fail("rejected", items, str(err))
                    return
                half = len(items) // 2
                self._send(path, items[:half])
                self._send(path, items[half:])
                return
            except PermanentError as err:
                self._fail("rejected", items, str(err))
                return
            except TransientError as err:
                if attempt >= self._max_retries:
                    self._fail("retries_exhausted", items, f"{err} (after {attempt + 1} attempts)")
                    return
                with self._cond:
                    self.retries += 1
                self._abort.wait(min(self._max_backoff, self._backoff * 2**attempt))
                attempt += 1
            else:
                with self._cond:
                    self.delivered += len(items)
                return

    def _fail(self, kind: str, items: Sequence[Item], reason: str) -> None:
        with self._cond:
            self.failed += len(items)
        self._report(kind, list(items), reason)
