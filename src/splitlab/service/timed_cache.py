"""A small in-process cache whose entries are trusted for a fixed number of seconds.

The service keeps what it reads from the store on every request (API keys, compiled experiments,
bandit weights) here, so the hot path does no I/O; ``ttl`` bounds how stale an entry may be.
"""

from __future__ import annotations

import threading
import time
from typing import Generic, NamedTuple, TypeVar

__all__ = ["Cached", "TimedCache"]

K = TypeVar("K")
V = TypeVar("V")


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

    def fresh(self, key: K) -> Cached[V] | None:
        """The entry if it was put less than ``ttl`` seconds ago, else None."""
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry.put_at >= self.ttl:
            return None
        return entry

    def stale(self, key: K) -> Cached[V] | None:
        """The entry however old, or None (to reuse work when the store says nothing changed)."""
        return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        """Store ``value`` as fresh from now."""
        with self._lock:
            entries = self._entries
            entries.pop(key, None)
            while len(entries) >= self.max_size:
                entries.pop(next(iter(entries)))
            entries[key] = Cached(value, time.monotonic())

    def invalidate(self, key: K | None = None) -> None:
        """Forget ``key`` (or everything), so the next read goes to the store."""
        with self._lock:
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)
