"""A bounded memory of recent entries in two generations: a cheap LRU for the hot path.

Lookups and inserts are plain dictionary operations (atomic under the GIL, so the event loop and
worker threads can share one). When the newer generation fills up it becomes the older one and a
fresh one starts; an entry found in the older generation moves to the newer one. So the entries
used recently stay, at most ``2 * size`` are kept, and nothing is sorted or locked.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["Recent"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Recent(Generic[K, V]):
    """Key -> value for the keys used recently.

    >>> memory: Recent[str, int] = Recent(size=2)
    >>> memory.put("a", 1); memory.put("b", 2); memory.put("c", 3)
    >>> memory.get("a"), memory.get("c")
    (1, 3)
    """

    def __init__(self, *, size: int) -> None:
        self.size = size
        self._new: dict[K, V] = {}
        self._old: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        """The value of ``key`` if it is remembered."""
        value = self._new.get(key)
        if value is None:
            value = self._old.get(key)
            if value is not None:
                self.put(key, value)
        return value

    def peek(self, key: K) -> V | None:
        """The value of ``key`` if it is remembered, without moving it to the newer generation (no write)."""
        value = self._new.get(key)
        return self._old.get(key) if value is None else value

    def put(self, key: K, value: V) -> None:
        """Remember ``key``."""
        if len(self._new) >= self.size:
            self._old, self._new = self._new, {}
        self._new[key] = value

    def forget(self, key: K) -> None:
        """Forget ``key``."""
        self._new.pop(key, None)
        self._old.pop(key, None)
