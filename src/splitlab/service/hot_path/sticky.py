"""Where a worker looks up units' stored assignments: its own memory, then Redis, then the store.

A stored assignment never changes within a bucket version (the first one recorded wins), so a
worker may remember every one it has seen for as long as it likes. That a unit has *no* stored
assignment is only remembered in Redis, which every worker updates (see
:mod:`splitlab.service.caches.shared`); without Redis such units are read from the store.

Reads are batched: the lookups that miss memory while a read is under way wait for the next one,
which reads all of their units at once, one query per experiment (the recorder's group commit,
for reads). Under load a read then serves many requests, instead of each request holding a
worker thread and a database connection for a round trip of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from fastapi.concurrency import run_in_threadpool

from splitlab.service.caches.recent import Recent
from splitlab.service.caches.shared import ABSENT, RedisCache
from splitlab.storage import Store

__all__ = ["StickyAssignments"]

_log = logging.getLogger("splitlab.service")

_Unit = tuple[str, int, str]  # (experiment, bucket version, unit id)
_Group = tuple[str, int]  # (experiment, bucket version)
_Waiter = tuple[_Group, list[str], asyncio.Future[dict[str, str]]]

REDIS_BACKOFF_SECONDS = 5
"""After a failed Redis read, lookups go straight to the store for this long."""

_clock = time.monotonic
_T = TypeVar("_T")


class StickyAssignments:
    """Stored assignments by (experiment, bucket version, unit); recent ones in memory (``max_units`` a generation)."""

    def __init__(self, store: Store, shared: RedisCache | None, *, max_units: int = 200_000) -> None:
        self._store = store
        self._shared = shared
        self._memory: Recent[_Unit, str] = Recent(size=max_units)
        self._redis_skipped_until = 0.0  # after a failed Redis read, until this (monotonic) time
        self._waiting: list[_Waiter] = []  # lookups for the next read
        self._reader: asyncio.Task[None] | None = None  # the task that reads, while lookups wait

    def known(self, experiment_key: str, bucket_version: int, unit_id: str) -> str | None:
        """The unit's stored variant if this worker has seen it, else None."""
        return self._memory.get((experiment_key, bucket_version, unit_id))

    def remember(self, experiment_key: str, bucket_version: int, variants: Mapping[str, str]) -> None:
        """Note variants the store holds (from a write or a read)."""
        for unit_id, variant in variants.items():
            self._memory.put((experiment_key, bucket_version, unit_id), variant)

    def stored(self, experiment_key: str, bucket_version: int, variants: Mapping[str, str]) -> None:
        """The store recorded ``variants`` (the first writer's): remember them and share them."""
        self.remember(experiment_key, bucket_version, variants)
        if self._shared is not None and variants:
            self._redis("write", self._shared.sticky_put, experiment_key, bucket_version, variants)

    async def lookup(self, experiment_key: str, bucket_version: int, unit_ids: Sequence[str]) -> dict[str, str]:
        """The stored variant of each unit that has one: from memory, else from the next batched read.

        Raises:
            OperationalError: The store is unreachable (a failed read fails every lookup that waited for it).
        """
        found: dict[str, str] = {}
        missing = []
        for unit_id in unit_ids:
            variant = self.known(experiment_key, bucket_version, unit_id)
            if variant is None:
                missing.append(unit_id)
            else:
                found[unit_id] = variant
        if missing:
            future: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
            self._waiting.append(((experiment_key, bucket_version), missing, future))
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read_waiting())
            found.update(await future)
        return found

    async def _read_waiting(self) -> None:
        """Read what the waiting lookups miss, all at once in a worker thread, until none waits."""
        while self._waiting:
            batch, self._waiting = self._waiting, []
            groups: dict[_Group, list[str]] = {}
            for group, unit_ids, _ in batch:
                groups.setdefault(group, []).extend(unit_ids)
            try:  # Redis and the store block: never on the event loop
                found = await run_in_threadpool(self._look_up_groups, groups)
            except Exception as exc:
                for _, _, future in batch:
                    if not future.done():  # a request that stopped waiting cancelled its future
                        future.set_exception(exc)
                continue
            except BaseException:  # this task is cancelled: the loop is closing
                for _, _, future in batch:
                    future.cancel()
                raise
            for group, unit_ids, future in batch:
                if not future.done():
                    stored = found[group]
                    future.set_result({unit: stored[unit] for unit in unit_ids if unit in stored})

    def _look_up_groups(self, groups: Mapping[_Group, list[str]]) -> dict[_Group, dict[str, str]]:
        return {
            (key, version): self._look_up_missing(key, version, list(dict.fromkeys(unit_ids)))
            for (key, version), unit_ids in groups.items()
        }

    def _look_up_missing(self, experiment_key: str, bucket_version: int, missing: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        if self._shared is not None:
            cached = self._redis("read", self._shared.sticky_get, experiment_key, bucket_version, missing) or {}
            found = {unit: variant for unit, variant in cached.items() if variant != ABSENT}
            self.remember(experiment_key, bucket_version, found)
            missing = [unit for unit in missing if unit not in cached]
        if missing:
            found.update(self._read(experiment_key, bucket_version, missing))
        return found

    def _read(self, experiment_key: str, bucket_version: int, unit_ids: list[str]) -> dict[str, str]:
        rows = self._store.assignments.get_many(experiment_key=experiment_key, unit_ids=unit_ids)
        variants = {unit: a.variant for unit, a in rows.items() if a.bucket_version == bucket_version}
        self.remember(experiment_key, bucket_version, variants)
        if self._shared is not None:
            absent = [unit for unit in unit_ids if unit not in variants]
            self._redis("write", self._shared.sticky_put, experiment_key, bucket_version, variants, absent)
        return variants

    def _redis(self, what: str, call: Callable[..., _T], *args: Any) -> _T | None:
        """``call(*args)`` on Redis, or None while Redis is skipped or when the call fails.

        A Redis that does not answer would add its timeout to every request (and to every write of
        the recorder): after a failure, every Redis call is skipped for ``REDIS_BACKOFF_SECONDS``.
        """
        if _clock() < self._redis_skipped_until:
            return None
        try:
            return call(*args)
        except Exception as exc:
            self._redis_skipped_until = _clock() + REDIS_BACKOFF_SECONDS
            _log.warning(
                "splitlab: Redis %s failed (%s); the store alone serves for %ds", what, exc, REDIS_BACKOFF_SECONDS
            )
            return None
