"""Sticky lookups: memory, then Redis, then the store; a failing Redis is skipped for a while, reads and writes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from splitlab.service.hot_path.sticky import REDIS_BACKOFF_SECONDS, StickyAssignments
from splitlab.storage import Store, open_store

SPEC = {"key": "checkout", "variants": [{"key": "control"}, {"key": "treatment"}]}


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with open_store(database_url) as opened:
        opened.experiments.create(key="checkout", spec=SPEC, actor="test", status="running")
        opened.assignments.record_many(experiment_key="checkout", variants={"u1": "treatment"})
        yield opened


class DeadRedis:
    """A Redis that times out on every call (the calls are counted)."""

    def __init__(self) -> None:
        self.calls = 0

    def sticky_get(self, *_args: Any) -> dict[str, str]:
        self.calls += 1
        raise TimeoutError("Redis did not answer in 0.5 s")

    def sticky_put(self, *_args: Any) -> None:
        self.calls += 1
        raise TimeoutError("Redis did not answer in 0.5 s")


def test_a_failing_redis_is_skipped_for_the_back_off_then_tried_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("splitlab.service.hot_path.sticky._clock", lambda: clock[0])
    redis = DeadRedis()
    sticky = StickyAssignments(store, redis)  # type: ignore[arg-type]
    assert asyncio.run(sticky.lookup("checkout", 1, ["u1", "u2"])) == {"u1": "treatment"}  # from the store
    assert redis.calls == 1  # the read failed; the write-back after the store read was skipped
    sticky.stored("checkout", 1, {"u3": "control"})
    assert asyncio.run(sticky.lookup("checkout", 1, ["u2", "u4"])) == {}
    assert redis.calls == 1  # nothing tried during the back-off
    clock[0] += REDIS_BACKOFF_SECONDS
    assert asyncio.run(sticky.lookup("checkout", 1, ["u5"])) == {}
    assert redis.calls == 2  # tried again after it
    assert sticky.known("checkout", 1, "u3") == "control"  # memory works whatever Redis does
