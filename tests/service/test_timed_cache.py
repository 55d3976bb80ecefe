"""The per-worker cache: one load for many waiters, stale while revalidating (up to 2 ttl), invalidation, ttl 0."""

from __future__ import annotations

import asyncio
import threading

import pytest

from splitlab.service.caches.timed import TimedCache


class Store:
    """A store whose reads are counted and can be held back or made to fail."""

    def __init__(self) -> None:
        self.reads = 0
        self.value = "v1"
        self.release = threading.Event()
        self.release.set()
        self.fail = False

    def load(self, key: str) -> str:
        self.reads += 1
        value = self.value  # what the read sees; it returns when released
        self.release.wait(10)
        if self.fail:
            raise ConnectionError("the store is down")
        return f"{key}:{value}"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The cache's clock, moved by setting ``clock[0]`` (the event loop keeps its own)."""
    now = [1000.0]
    monkeypatch.setattr("splitlab.service.caches.timed._clock", lambda: now[0])
    return now


def test_a_missing_entry_is_loaded_once_for_every_waiter() -> None:
    store, cache = Store(), TimedCache[str, str](ttl=60)
    store.release.clear()

    async def main() -> list[str]:
        waiting = [asyncio.create_task(cache.get("k", store.load)) for _ in range(20)]
        await asyncio.sleep(0.05)  # let every task reach the load, which is held back
        store.release.set()
        return await asyncio.gather(*waiting)

    assert asyncio.run(main()) == ["k:v1"] * 20
    assert store.reads == 1


def test_an_expired_entry_is_served_while_one_refresh_runs(clock: list[float]) -> None:
    store, cache = Store(), TimedCache[str, str](ttl=1)

    async def main() -> None:
        assert await cache.get("k", store.load) == "k:v1"
        store.value, clock[0] = "v2", 1001.5
        store.release.clear()
        assert [await cache.get("k", store.load) for _ in range(5)] == ["k:v1"] * 5  # no request waits
        store.release.set()
        while (entry := cache.stale("k")) is None or entry.value != "k:v2":
            await asyncio.sleep(0.01)  # polling for the refresh, not timing it
        assert await cache.get("k", store.load) == "k:v2"

    asyncio.run(main())
    assert store.reads == 2  # one refresh for the five requests that found the entry expired


def test_a_failed_refresh_keeps_the_old_entry_and_a_failed_load_raises(clock: list[float]) -> None:
    store, cache = Store(), TimedCache[str, str](ttl=1)

    async def main() -> None:
        assert await cache.get("k", store.load) == "k:v1"
        store.fail, clock[0] = True, 1001.5
        assert await cache.get("k", store.load) == "k:v1"
        while store.reads < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.01)
        assert await cache.get("k", store.load) == "k:v1"  # still served; another refresh is tried
        clock[0] = 1002.0
        with pytest.raises(ConnectionError):  # twice the ttl old: no longer served, the load's error shows
            await cache.get("k", store.load)
        with pytest.raises(ConnectionError):
            await cache.get("other", store.load)

    asyncio.run(main())


def test_ttl_zero_reads_the_store_every_time() -> None:
    store, cache = Store(), TimedCache[str, str](ttl=0)

    async def main() -> list[str]:
        first = await cache.get("k", store.load)
        store.value = "v2"
        return [first, await cache.get("k", store.load)]

    assert asyncio.run(main()) == ["k:v1", "k:v2"]
    assert store.reads == 2


def test_an_entry_twice_the_ttl_old_is_loaded_before_it_is_served(clock: list[float]) -> None:
    store, cache = Store(), TimedCache[str, str](ttl=1)

    async def main() -> None:
        assert await cache.get("k", store.load) == "k:v1"
        store.value, clock[0] = "v2", 1002.0  # an idle worker's entry
        assert await cache.get("k", store.load) == "k:v2"

    asyncio.run(main())
    assert store.reads == 2


def test_a_load_begun_before_invalidate_puts_nothing() -> None:
    """A read of the store racing a change must not cache the value from before the change."""
    store, cache = Store(), TimedCache[str, str](ttl=60)
    store.release.clear()

    async def main() -> tuple[str, str]:
        before = asyncio.create_task(cache.get("k", store.load))
        await asyncio.sleep(0.05)  # the load has read "v1" and is held back
        store.value = "v2"
        cache.invalidate("k")  # the change is committed
        store.release.set()
        first = await before  # its caller gets what it read
        return first, await cache.get("k", store.load)

    first, after = asyncio.run(main())
    assert (first, after) == ("k:v1", "k:v2")
    assert store.reads == 2


def test_put_with_an_old_generation_is_ignored() -> None:
    cache = TimedCache[str, str](ttl=60)
    generation = cache.generation
    cache.invalidate()
    cache.put("k", "old", generation=generation)
    assert cache.stale("k") is None
    cache.put("k", "new", generation=cache.generation)
    assert cache.stale("k") is not None
