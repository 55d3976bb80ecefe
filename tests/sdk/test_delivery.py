"""Delivery: batches, retries with backoff, permanent failures, overflow, close(); nothing silently dropped."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any

import pytest

from splitlab.sdk import Client, Event

if TYPE_CHECKING:
    from conftest import FakeService  # the fixture's class; conftest is not importable under importlib mode

WAIT = 5.0  # upper bound on every wait for the client's threads


class Errors(list[tuple[str, list[Any], str]]):
    def __call__(self, kind: str, items: Any, reason: str) -> None:
        self.append((kind, list(items), reason))

    def items_of(self, kind: str) -> int:
        return sum(len(items) for k, items, _ in self if k == kind)


def _client(service: FakeService, errors: Errors, **options: Any) -> Client:
    options.setdefault("refresh_interval", 60.0)
    options.setdefault("flush_interval", 60.0)  # nothing leaves on a timer unless a test asks for it
    options.setdefault("backoff", 0.001)
    return Client(service.url, service.api_key, on_error=errors, **options)


def _settled(client: Client) -> int:
    s = client.stats
    return s.delivered + s.dropped + s.failed


def test_events_are_delivered_in_batches(service: FakeService) -> None:
    errors = Errors()
    with _client(service, errors, batch_size=10) as client:
        ids = [client.track(f"u{i}", "purchase", i, {"sku": i}) for i in range(25)]
        assert service.wait_for(lambda: len(service.batches["events"]) == 2)  # full batches leave at once
        assert client.flush(WAIT)
        stats = client.stats
    assert [len(b) for b in service.batches["events"]] == [10, 10, 5]
    events = service.received("events")
    assert [e["event_id"] for e in events] == ids
    assert len(set(ids)) == 25
    assert events[3] == {**events[3], "unit_id": "u3", "name": "purchase", "value": 3.0, "properties": {"sku": 3}}
    assert (stats.queued, stats.delivered, stats.dropped, stats.failed, stats.pending) == (25, 25, 0, 0, 0)
    assert errors == []


def test_partial_batch_leaves_after_flush_interval(service: FakeService) -> None:
    with _client(service, Errors(), flush_interval=0.02) as client:
        client.track("u1", "click", event_id="e-1")
        assert service.wait_for(lambda: len(service.received("events")) == 1)
        assert service.received("events")[0]["event_id"] == "e-1"
        assert service.received("events")[0]["value"] is None


def test_two_503_then_accepted_is_delivered_with_two_retries(service: FakeService) -> None:
    service.script.extend([503, 503])
    errors = Errors()
    with _client(service, errors) as client:
        for i in range(3):
            client.track(f"u{i}", "click")
        assert client.flush(WAIT)
        stats = client.stats
    assert (stats.delivered, stats.retries, stats.failed) == (3, 2, 0)
    assert service.posts == [("events", 503), ("events", 503), ("events", 200)]
    assert len(service.received("events")) == 3
    assert errors == []


class RecordingEvent(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return super().wait(0)


def test_backoff_doubles_and_is_capped(service: FakeService) -> None:
    service.script.extend([503] * 5)
    with _client(service, Errors(), backoff=0.01, max_backoff=0.03, max_retries=5) as client:
        abort = RecordingEvent()
        client._delivery._abort = abort  # observe the delays instead of sleeping through them
        client.track("u", "click")
        assert client.flush(WAIT)
        assert client.stats.delivered == 1
    assert abort.waits == pytest.approx([0.01, 0.02, 0.03, 0.03, 0.03])


def test_connection_errors_are_retried(service: FakeService) -> None:
    errors = Errors()
    url = service.url
    service.stop()
    with Client(url, "k", on_error=errors, flush_interval=60.0, backoff=0.001, max_retries=3, timeout=1.0) as client:
        client.track("u", "click")
        assert client.flush(WAIT)
        stats = client.stats
    assert (stats.retries, stats.failed, stats.delivered) == (3, 1, 0)
    assert errors.items_of("retries_exhausted") == 1
    assert "after 4 attempts" in errors[-1][2]


def test_retries_exhausted_are_reported(service: FakeService) -> None:
    service.script.extend([500] * 3)
    errors = Errors()
    with _client(service, errors, max_retries=2) as client:
        event_id = client.track("u", "click")
        assert client.flush(WAIT)
        stats = client.stats
    assert (stats.failed, stats.retries, stats.delivered) == (1, 2, 0)
    [(kind, items, reason)] = errors
    assert kind == "retries_exhausted"
    assert isinstance(items[0], Event)
    assert items[0].event_id == event_id
    assert "HTTP 500" in reason


def test_400_is_reported_and_not_retried(service: FakeService) -> None:
    service.script.append(400)
    errors = Errors()
    with _client(service, errors) as client:
        for i in range(4):
            client.track(f"u{i}", "click")
        assert client.flush(WAIT)
        client.track("u9", "click")  # the next batch is fine
        assert client.flush(WAIT)
        stats = client.stats
    assert service.posts == [("events", 400), ("events", 200)]
    assert (stats.failed, stats.retries, stats.delivered) == (4, 0, 1)
    [(kind, items, reason)] = errors
    assert (kind, len(items)) == ("rejected", 4)
    assert "unit_id" in reason  # the service's reason is passed on


def test_413_splits_the_batch(service: FakeService) -> None:
    service.max_batch = 3
    errors = Errors()
    with _client(service, errors, batch_size=10) as client:
        ids = [client.track(f"u{i}", "click") for i in range(10)]
        assert client.flush(WAIT)
        assert client.stats.delivered == 10
    assert sorted(e["event_id"] for e in service.received("events")) == sorted(ids)
    assert max(len(b) for b in service.batches["events"]) <= 3
    assert errors == []


def test_queue_overflow_is_reported(service: FakeService) -> None:
    errors = Errors()
    with _client(service, errors, max_queue=5, batch_size=100) as client:
        ids = [client.track(f"u{i}", "click") for i in range(8)]
        assert client.stats.dropped == 3
        assert errors.items_of("queue_full") == 3
        assert [items[0].event_id for _, items, _ in errors] == ids[5:]
        assert "max_queue == 5" in errors[0][2]
        assert client.flush(WAIT)
        assert client.stats.delivered == 5
    assert [e["event_id"] for e in service.received("events")] == ids[:5]


def test_close_delivers_what_is_queued(service: FakeService) -> None:
    service.set_experiments(
        [{"key": "x", "status": "running", "spec": {"key": "x", "variants": [{"key": "a"}, {"key": "b"}]}}], "v1"
    )
    errors = Errors()
    client = _client(service, errors)
    for i in range(7):
        client.track(f"u{i}", "click")
    client.assign("x", "u0")
    assert service.received("events") == []
    client.close()
    assert len(service.received("events")) == 7
    assert len(service.received("exposures")) == 1
    assert client.stats.delivered == 8
    client.track("late", "click")
    client.close()  # idempotent
    assert (client.stats.dropped, errors[0][0]) == (1, "closed")


def test_close_with_the_service_down_reports_the_rest(service: FakeService) -> None:
    url = service.url
    service.stop()
    errors = Errors()
    client = Client(url, "k", on_error=errors, flush_interval=60.0, backoff=0.01, max_retries=1000, close_timeout=0.2)
    for i in range(5):
        client.track(f"u{i}", "click")
    client.close()
    stats = client.stats
    assert (stats.failed, stats.delivered, stats.pending) == (5, 0, 0)
    assert errors.items_of("retries_exhausted") == 5
    assert "closed before" in errors[-1][2]


def test_flush_times_out_while_retrying(service: FakeService) -> None:
    service.script.extend([503] * 1000)
    with _client(service, Errors(), backoff=0.01, max_retries=1000, close_timeout=0.1) as client:
        client.track("u", "click")
        assert not client.flush(0.05)
        assert client.stats.pending == 1
    assert client.stats.failed == 1


def test_on_error_that_raises_does_not_stop_delivery(service: FakeService) -> None:
    service.script.append(400)
    calls = threading.Event()

    def on_error(kind: str, items: Any, reason: str) -> None:
        calls.set()
        raise RuntimeError(reason)

    with Client(service.url, service.api_key, on_error=on_error, flush_interval=60.0) as client:
        client.track("u1", "click")
        assert client.flush(WAIT)
        client.track("u2", "click")
        assert client.flush(WAIT)
        assert calls.is_set()
        assert (client.stats.failed, client.stats.delivered) == (1, 1)


@pytest.mark.parametrize("threads", [4])
def test_concurrent_tracking_loses_nothing(service: FakeService, threads: int) -> None:
    errors = Errors()
    with _client(service, errors, batch_size=50, flush_interval=0.01) as client:

        def work(t: int) -> None:
            for i in range(250):
                client.track(f"t{t}-u{i}", "click")

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(WAIT)
        assert client.flush(WAIT)
        assert _settled(client) == 1000
    events = service.received("events")
    assert len(events) == len({e["event_id"] for e in events}) == 1000
    assert errors == []


def test_unserialisable_properties_are_rejected_alone(service: FakeService) -> None:
    errors = Errors()
    with _client(service, errors) as client:
        client.track("u1", "click", properties={"when": object()})
        good = client.track("u2", "click")
        assert client.flush(WAIT)
        assert (client.stats.failed, client.stats.delivered) == (1, 1)
    assert [e["event_id"] for e in service.received("events")] == [good]
    assert errors[0][0] == "rejected"
    assert "JSON" in errors[0][2]


def test_interpreter_exit_delivers_the_queue(service: FakeService) -> None:
    script = (
        "import sys\n"
        "from splitlab.sdk import Client\n"
        "client = Client(sys.argv[1], sys.argv[2], flush_interval=60.0, refresh_interval=60.0)\n"
        "for i in range(3):\n"
        "    client.track(f'u{i}', 'click', event_id=f'exit-{i}')\n"
    )  # no close(): atexit must deliver
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script, service.url, service.api_key],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert [e["event_id"] for e in service.received("events")] == ["exit-0", "exit-1", "exit-2"]
