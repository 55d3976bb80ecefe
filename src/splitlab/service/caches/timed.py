"""A small in-process cache whose entries are trusted for a fixed number of seconds.

The service keeps what it reads from the store on every request (API keys, compiled experiments,
bandit weights, the SDK config) here, so the hot path does no I/O; ``ttl`` bounds how stale an
entry may be. :meth:`TimedCache.get` loads a missing entry once however many requests want it,
and refreshes an expired one in the background while requests go on with the old value (stale
while revalidate): under load, dozens of requests see an entry expire at the same moment, and
making each of them read the store would stall them all. The old value is served only while it
is less than ``2 * ttl`` old; an older one (a worker that was idle) is loaded before it is used,
so no answer rests on an entry older than twice ``ttl``.

:meth:`TimedCache.invalidate` also discards loads that were running when it was called: a read
of the store that began before a change was committed must not put the old value back.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, NamedTuple, TypeVar

from fastapi.concurrency import run_in_threadpool

__all__ = ["Cached", "TimedCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_log = logging.getLogger("splitlab.service")

_clock = time.monotonic
"""The cache's clock (a name of its own, so tests can move it without moving the event loop's)."""


class Cached(NamedTuple, Generic[V]):
    """A cached value (None is a value too: "the store has none") and when it was put (monotonic seconds)."""

    value: V
    put_at: float


class TimedCache(Generic[K, V]):
    """Key -> value, each entry fresh for ``ttl`` seconds after it was put; at most ``max_size`` entries.

    When full, the oldest entries are evicted first (insertion order), so a flood of distinct keys
    (say, random API keys) costs bounded memory.

    >>> cache: TimedCache[str, int | None] = TimedCache(ttl=60.0, max_size=2)
    >>> cache.put("a", None); cache.fresh("a").value, cache.fresh("b")
    (None, None)
    """

    def __init__(self, *, ttl: float, max_size: int = 10_000) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._entries: dict[K, Cached[V]] = {}
        self._lock = threading.Lock()  # puts come from the event loop and from worker threads
        self._loading: dict[K, tuple[int, asyncio.Future[V]]] = {}  # key -> (generation, its load)
        self._refreshes: set[asyncio.Task[V]] = set()  # strong references while they run
        self._generation = 0  # bumped by invalidate(): loads begun earlier put nothing

    @property
    def generation(self) -> int:
        """Read before a load that bypasses :meth:`get`, passed to :meth:`put` after it."""
        return self._generation

    async def get(self, key: K, load: Callable[[K], V]) -> V:
        """The value of ``key``: fresh from the cache, else stale while a refresh runs, else loaded now.

        "Stale" means put between ``ttl`` and ``2 * ttl`` seconds ago; older entries are loaded
        again before they are used. ``load`` (blocking; run in a worker thread) reads the store.
        Its errors reach the callers that wait for it; a failed background refresh is logged and
        tried again on the next call.
        """
        entry = self._entries.get(key) if self.ttl > 0 else None  # ttl 0: no cache, read the store every time
        if entry is not None:
            age = _clock() - entry.put_at
            if age < self.ttl:
                return entry.value
            if age < 2 * self.ttl:
                if not self._is_loading(key):
                    task = asyncio.get_running_loop().create_task(self._load(key, load))
                    self._refreshes.add(task)
                    task.add_done_callback(self._refreshed)
                return entry.value
        return await self._load(key, load)

    def _is_loading(self, key: K) -> bool:
        running = self._loading.get(key)
        return running is not None and running[0] == self._generation

    async def _load(self, key: K, load: Callable[[K], V]) -> V:
        generation = self._generation
        running = self._loading.get(key)
        if running is not None and running[0] == generation:
            return await asyncio.shield(running[1])
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = (generation, future)
        try:
            value = await run_in_threadpool(load, key)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a refresh nobody waits for must not warn at exit
            raise
        finally:
            if self._loading.get(key, (0, None))[1] is future:
                del self._loading[key]
        self.put(key, value, generation=generation)
        future.set_result(value)
        return value

    def _refreshed(self, task: asyncio.Task[V]) -> None:
        self._refreshes.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            _log.warning("splitlab: refreshing a cached entry failed, the old one stays in use: %r", error)

    def fresh(self, key: K) -> Cached[V] | None:
        """The entry if it was put less than ``ttl`` seconds ago, else None."""
        entry = self._entries.get(key)
        if entry is None or _clock() - entry.put_at >= self.ttl:
            return None
        return entry

    def stale(self, key: K) -> Cached[V] | None:
        """The entry however old, or None (to reuse work when the store says nothing changed)."""
        return self._entries.get(key)

    def put(self, key: K, value: V, *, generation: int | None = None) -> None:
        """Store ``value`` as fresh from now; not if it was loaded before ``invalidate`` (``generation`` is older)."""
        with self._lock:
            if generation is not None and generation != self._generation:
                return
            entries = self._entries
            entries.pop(key, None)
            while len(entries) >= self.max_size:
                entries.pop(next(iter(entries)))
            entries[key] = Cached(value, _clock())

    def invalidate(self, key: K | None = None) -> None:
        """Forget ``key`` (or everything), so the next read goes to the store; loads running now put nothing."""
        with self._lock:
            self._generation += 1
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)
