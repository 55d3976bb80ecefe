"""Crash test: SIGKILL the server while an SDK client sends 100,000 events, restart it, and check the store.

Every event the server acknowledged must be in the store after the restart (and already right after
the kill), and the events it never acknowledged (the batch in flight at the kill, and everything
queued while it was down) must arrive once the client's retries reach the restarted server: exactly
the 100,000 event ids sent, none twice, and the client counts every one as delivered.

The kill provably lands mid-stream: only the first ``BEFORE_KILL`` events are tracked before it, and
it is sent once the server has acknowledged at least ``KILL_AFTER`` of them while the client still
has some pending. It is aimed at the worst moment, a batch committed but not yet acknowledged (see
:func:`_kill_mid_stream`); there the answer can be cut after its headers, which the client must treat
as a connection error and retry. The next ``WHILE_DOWN`` events are tracked while the server is dead,
the rest after the restart. The server runs with one worker, so the killed process is the one that
serves.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from sqlalchemy import distinct, func, select

from splitlab.sdk import Client
from splitlab.sdk.records import Item
from splitlab.storage import open_store
from splitlab.storage.tables import events

TOTAL = 100_000
BEFORE_KILL = 50_000  # tracked before the kill: delivered at the kill is at most this
KILL_AFTER = 20_000  # acknowledged events from which the kill is aimed
KILL_BY = 40_000  # acknowledged events by which it is sent
WHILE_DOWN = 25_000  # tracked between the kill and the restart
BATCH = 1_000


def _kill_mid_stream(client: Client, server: Any, url: str) -> None:
    """SIGKILL the server once it has acknowledged ``KILL_AFTER`` events, aiming at a committed, unacknowledged batch.

    From ``KILL_AFTER`` on, a separate connection polls the highest stored row id; when it exceeds the
    events the client counts as delivered (all rows are new before the kill, so the ids run 1, 2, ...),
    the server has committed a batch whose acknowledgement the client has not read yet, and the kill
    lands between the two. The window is short, so this is aimed, not guaranteed: by ``KILL_BY``
    acknowledged events the kill is sent anyway. The assertions hold wherever it lands.
    """
    deadline = time.monotonic() + 60
    with open_store(url) as store:
        while True:  # polling for progress, not timing anything
            assert server.process.poll() is None, server.log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, f"the server acknowledged too little: {client.stats}"
            delivered = client.stats.delivered
            if delivered >= KILL_AFTER:
                with store.engine.connect() as conn:  # a new transaction per poll sees the latest commits
                    committed = conn.execute(select(func.max(events.c.id))).scalar_one()
                if committed > client.stats.delivered or delivered >= KILL_BY:
                    break
            else:
                time.sleep(0.001)
    server.kill()
    assert server.process.returncode == -signal.SIGKILL


def _stored_ids(url: str) -> set[str]:
    with open_store(url) as store, store.engine.connect() as conn:
        return set(conn.execute(select(events.c.event_id)).scalars())


def _track(client: Client, ids: range) -> None:
    for i in ids:
        client.track(f"unit-{i % 5_000}", "purchase", float(i % 100), {"i": i}, event_id=f"crash-{i}")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigkill_mid_stream_loses_and_duplicates_nothing(database_url: str, servers: Callable[..., Any]) -> None:
    with open_store(database_url) as store:  # migrates the store before the server starts
        _, key = store.keys.create(role="sdk", name="crash", actor="test")
    reports: list[tuple[str, int, str]] = []

    def on_error(kind: str, items: Sequence[Item], reason: str) -> None:
        reports.append((kind, len(items), reason))

    first = servers(database_url)  # one worker: the killed process is the one that serves
    client = Client(
        first.base,
        key,
        batch_size=BATCH,
        max_queue=2 * TOTAL,
        flush_interval=0.05,
        timeout=10,
        max_retries=50,  # ~25 s of retries at max_backoff: outlasts the restart
        backoff=0.05,
        max_backoff=0.5,
        close_timeout=5,  # flush() below does the waiting; close() only stops the threads
        refresh_interval=3600,
        on_error=on_error,
    )
    try:
        _track(client, range(BEFORE_KILL))
        _kill_mid_stream(client, first, database_url)
        at_kill = client.stats  # every acknowledgement the dead server sent that the client has read
        # Mid-stream: some acknowledged, some not yet (so the client must retry across the restart).
        assert 0 < KILL_AFTER <= at_kill.delivered < BEFORE_KILL < TOTAL, at_kill
        assert at_kill.pending > 0, at_kill
        # One sender thread sends the FIFO queue in order, so the acknowledged events are the first ones.
        stored_at_kill = _stored_ids(database_url)
        acknowledged = {f"crash-{i}" for i in range(at_kill.delivered)}
        assert acknowledged <= stored_at_kill, sorted(acknowledged - stored_at_kill)[:10]

        _track(client, range(BEFORE_KILL, BEFORE_KILL + WHILE_DOWN))  # queued while the server is dead
        servers(database_url, port=first.port)  # the same command on the same port
        _track(client, range(BEFORE_KILL + WHILE_DOWN, TOTAL))

        assert client.flush(timeout=120), client.stats
    finally:
        client.close()
    stats = client.stats

    assert [r for r in reports if r[0] != "config"] == [], reports[:5]
    assert (stats.queued, stats.delivered, stats.failed, stats.dropped, stats.pending) == (TOTAL, TOTAL, 0, 0, 0), stats
    assert stats.retries > 0, stats  # the kill was felt
    sent = {f"crash-{i}" for i in range(TOTAL)}
    with open_store(database_url) as store:
        assert store.events.count() == TOTAL
        with store.engine.connect() as conn:
            rows, unique = conn.execute(select(func.count(), func.count(distinct(events.c.event_id)))).one()
            stored = conn.execute(select(events.c.event_id)).scalars().all()
    assert (rows, unique) == (TOTAL, TOTAL)
    twice = [event_id for event_id, n in Counter(stored).items() if n > 1]
    assert twice == [], twice[:10]
    assert set(stored) == sent, (sorted(sent - set(stored))[:10], sorted(set(stored) - sent)[:10])
