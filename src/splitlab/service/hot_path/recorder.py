"""Sticky assignments written in batches by one background thread (group commit).

``/assign`` must not wait for a database write per unit: a write is a transaction, and on SQLite
an fsync. New enrolments are queued here and written together, every ``interval`` seconds, by
one thread; one transaction per experiment then records hundreds of units.

A caller that needs the stored variant (``/assign`` under random and bandit allocations, whose
answer no hash reproduces) waits for the write: its request makes the thread write at once,
together with whatever else is queued, and learns the variant the store kept. Under hash
allocation the answer is sent without waiting, and the write skips reading back
(:meth:`~splitlab.storage.AssignmentRepository.add_many`): the unit's variant is the one its hash
gives under the current weights, on every worker, and any write still queued in this worker is
made before a change of the experiment through this worker is applied
(:meth:`AssignmentRecorder.flush`). After a weight change too: a unit enrolled earlier is read
and keeps its stored variant, a new one is answered from its hash (see
:mod:`~splitlab.service.hot_path.assigner`). A worker killed in between loses the records of the
units it enrolled in the last ``interval``: they keep their hashed variant, but a later weight
change may move them. So may a change made through another worker within ``interval`` of their
enrolment here (their write had not landed when they were next read).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager

from splitlab.service.caches.recent import Recent
from splitlab.service.errors import STORE_UNAVAILABLE, UnavailableError, stopping
from splitlab.service.hot_path.futures import settle
from splitlab.storage import NotFoundError, Store

__all__ = ["AssignmentRecorder"]

_log = logging.getLogger("splitlab.service")

_Group = tuple[str, int]  # (experiment, bucket version)
Stored = Callable[[str, int, Mapping[str, str]], None]
"""``stored(experiment, bucket_version, variants)``: called with what the store holds after a write."""
Recorded = Callable[[int], None]
"""``recorded(units)``: called with how many units a write recorded (new rows, or read back as given)."""
Failed = Callable[[int, BaseException], None]
"""``failed(units, error)``: called when units could not be recorded and were given up."""

RECORD_TIMEOUT_SECONDS = 30.0
"""How long a request waits for its units' assignments to be written before it is answered 503."""

MAX_QUEUED = 1_000_000
"""Units kept queued while the store is unreachable; beyond, the oldest are given up (and reported)."""


@contextmanager
def write_failures_as_503(what: str, field: str) -> Iterator[None]:
    """Around waiting for a recorder write (``what`` it records): its failures as :class:`UnavailableError`.

    A wait over ``RECORD_TIMEOUT_SECONDS`` and a write the store refused (the experiment changed
    while the request ran: a retry sees the new version) become 503s naming ``field``; an
    unreachable store propagates to the app's own 503.
    """
    try:
        yield
    except TimeoutError:
        raise UnavailableError("database", f"recording {what} took too long; retry") from None
    except (NotFoundError, ValueError) as exc:
        raise UnavailableError(field, f"the experiment changed while {what} were recorded ({exc}); retry") from None


class AssignmentRecorder:
    """A queue of new assignments and the thread that records them (started on construction, a daemon)."""

    def __init__(
        self, store: Store, *, interval: float, stored: Stored, failed: Failed, recorded: Recorded | None = None
    ) -> None:
        self._store = store
        self._interval = interval
        self._stored = stored
        self._failed = failed
        self._recorded = recorded or (lambda _units: None)
        self._queue: dict[_Group, dict[str, str]] = {}
        self._queued_or_written: Recent[tuple[str, int, str], bool] = Recent(size=200_000)
        self._queued = 0
        self._waiters: list[tuple[_Group, list[str], Future[dict[str, str]]]] = []
        self._cond = threading.Condition()
        self._submitted = self._written = 0  # submissions so far, and those settled (for flush)
        self._urgent = 0
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="splitlab-assignment-recorder", daemon=True)
        self._thread.start()

    def seen(self, experiment_key: str, bucket_version: int, unit_id: str) -> bool:
        """Whether this worker queued (or wrote) the unit recently: submitting it again adds nothing."""
        # peek, not get: get would put back a unit the recorder thread is giving up at this moment
        return self._queued_or_written.peek((experiment_key, bucket_version, unit_id)) is not None

    def submit(
        self, experiment_key: str, bucket_version: int, variants: Mapping[str, str], *, wait: bool
    ) -> Future[dict[str, str]] | None:
        """Queue ``variants`` (unit -> variant) for recording; the first one queued for a unit wins.

        Returns:
            With ``wait``, a future of the stored variant of each unit (another worker's, when it
            recorded the unit first); it fails with the store's error. Else None.

        Raises:
            UnavailableError: The recorder is closing (the service is stopping).
        """
        future: Future[dict[str, str]] | None = Future() if wait else None
        if not variants:
            if future is not None:
                future.set_result({})
            return future
        with self._cond:
            if self._closing:
                raise stopping()
            group = self._queue.setdefault((experiment_key, bucket_version), {})
            before = len(group)
            for unit_id, variant in variants.items():
                group.setdefault(unit_id, variant)
                self._queued_or_written.put((experiment_key, bucket_version, unit_id), True)
            self._queued += len(group) - before
            self._submitted += 1
            if future is not None:
                self._waiters.append(((experiment_key, bucket_version), list(variants), future))
                self._cond.notify_all()
        return future

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Block until everything submitted before the call is written or given up; False on timeout."""
        with self._cond:
            target = self._submitted
            self._urgent += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: self._written >= target, timeout)
            finally:
                self._urgent -= 1

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued (up to ``timeout`` seconds) and stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _take(self) -> tuple[dict[_Group, dict[str, str]], list[tuple[_Group, list[str], Future[dict[str, str]]]], int]:
        with self._cond:
            while not self._closing and not self._waiters and not self._urgent:
                if self._cond.wait(self._interval) and not self._queue:
                    continue
                if self._queue:
                    break
            queue, waiters, submitted = self._queue, self._waiters, self._submitted
            self._queue, self._waiters, self._queued = {}, [], 0
            return queue, waiters, submitted

    def _run(self) -> None:
        while True:
            queue, waiters, submitted = self._take()
            try:
                retry = self._write_round(queue, waiters)
            except Exception as exc:  # a bug must not stop the thread: every later /assign would hang
                _log.exception("splitlab: the assignment recorder failed a round")
                for _, _, future in waiters:
                    settle(future, exc)
                retry = {}
            with self._cond:
                self._requeue(retry)
                if not retry:  # what was requeued is neither written nor given up: flush() keeps waiting
                    self._written = submitted
                self._cond.notify_all()
                if self._closing and (not self._queue or retry):
                    self._stop(RuntimeError("the store was unreachable when the service stopped"))
                    return
                if retry:  # give the store a moment before the next attempt, even with a flush waiting
                    self._cond.wait(self._interval)

    def _write_round(
        self, queue: dict[_Group, dict[str, str]], waiters: list[tuple[_Group, list[str], Future[dict[str, str]]]]
    ) -> dict[_Group, dict[str, str]]:
        """Write each group, answer the waiters; what the store could not take now (to try again)."""
        waited = {group for group, _, _ in waiters}
        results: dict[_Group, dict[str, str] | BaseException] = {}
        retry: dict[_Group, dict[str, str]] = {}
        for group, variants in queue.items():
            try:
                results[group] = self._write(group, variants, read_back=group in waited)
            except STORE_UNAVAILABLE as exc:  # the store is unreachable or busy: keep them for the next round
                results[group] = exc
                retry[group] = variants
            except Exception as exc:  # refused (say, the experiment changed meanwhile): give them up
                results[group] = exc
                self._give_up(group, variants, exc)
        for group, units, future in waiters:
            result = results.get(group)
            if isinstance(result, BaseException):
                settle(future, result)
            elif result is not None:
                settle(future, {unit: result[unit] for unit in units if unit in result})
        return retry

    def _write(self, group: _Group, variants: dict[str, str], *, read_back: bool) -> dict[str, str]:
        experiment_key, bucket_version = group
        if not read_back:
            self._recorded(
                self._store.assignments.add_many(
                    experiment_key=experiment_key, variants=variants, bucket_version=bucket_version
                )
            )
            return {}
        stored = self._store.assignments.record_many(
            experiment_key=experiment_key, variants=variants, bucket_version=bucket_version
        )
        self._stored(experiment_key, bucket_version, stored)
        self._recorded(sum(stored[unit] == variant for unit, variant in variants.items()))
        return stored

    def _stop(self, error: BaseException) -> None:
        """Give up whatever is still queued (reported) and answer whoever still waits; under ``_cond``."""
        for group, variants in self._queue.items():
            self._give_up(group, variants, error)
        for _, _, future in self._waiters:
            settle(future, stopping())
        self._queue, self._waiters, self._queued = {}, [], 0

    def _give_up(self, group: _Group, variants: Mapping[str, str], error: BaseException) -> None:
        for unit_id in variants:
            self._queued_or_written.forget((*group, unit_id))
        self._failed(len(variants), error)

    def _requeue(self, retry: dict[_Group, dict[str, str]]) -> None:
        """Put back what the store could not take, older entries first; give up the oldest beyond MAX_QUEUED."""
        for group, variants in retry.items():
            newer = self._queue.get(group, {})
            merged = dict(variants)  # the older entries first (and their variants win: the first queued wins)
            for unit_id, variant in newer.items():
                merged.setdefault(unit_id, variant)
            self._queued += len(merged) - len(newer)
            self._queue[group] = merged
        if self._queued > MAX_QUEUED:
            excess = self._queued - MAX_QUEUED
            for group in list(self._queue):
                variants = self._queue[group]
                dropped = {unit: variants.pop(unit) for unit in list(variants)[:excess]}
                excess -= len(dropped)
                self._queued -= len(dropped)
                if dropped:
                    self._give_up(group, dropped, OverflowError(f"more than {MAX_QUEUED} assignments queued"))
                if excess <= 0:
                    break
        if retry:
            _log.warning("splitlab: the store is unreachable; %d assignments stay queued", self._queued)
