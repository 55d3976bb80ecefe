"""A process killed with SIGKILL loses no committed notification, and the restart sends each one once."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from splitlab.notify import deliver_due
from splitlab.storage import open_store

from .conftest import SECRET_ENV, Receiver

Run = Callable[..., list[subprocess.CompletedProcess[str]]]


def _setup(database_url: str, receiver: Receiver) -> str:
    """Python source that opens the store and builds the spec of a monitored experiment notifying the receiver."""
    return f"""
import os, signal
from datetime import UTC, datetime
from splitlab.notify import notify
from splitlab.specs import ExperimentSpec
from splitlab.storage import open_store
spec = ExperimentSpec.model_validate({{
    "key": "checkout",
    "variants": [{{"key": "control"}}, {{"key": "treatment"}}],
    "monitoring": {{"notify": ["team"], "auto_stop": True}},
    "notifications": [{{"name": "team", "url": "{receiver.url}/team", "secret_env": "{SECRET_ENV}"}}],
}})
store = open_store({database_url!r})
"""


def test_a_killed_process_loses_nothing_committed_and_sends_nothing_twice(
    database_url: str, receiver: Receiver, run_python: Run
) -> None:
    # One process plays the monitor and a deliverer, then dies with SIGKILL: (1) an action and its
    # notification committed in one transaction, never delivered; (2) a notification it claimed for
    # delivery (and might have sent) without recording the attempt.
    code = _setup(database_url, receiver) + (
        "notify(store, spec, kind='srm_detected', text='p = 0.0001', snapshot_id=7)\n"
        "claimed = store.notifications.claim_due(now=datetime.now(UTC), limit=10, lease_seconds=120)\n"
        "with store.engine.begin() as conn:\n"
        "    notify(store, spec, kind='action_taken', text='stopped: ROLLBACK', data={'action': 'stop'},\n"
        "           snapshot_id=41, conn=conn)\n"
        "print(len(claimed), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    [killed] = run_python(code)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert killed.stdout == "1\n"
    assert receiver.requests == []
    with open_store(database_url) as store:  # the restart
        rows = {row.kind: row for row in store.notifications.list()}
        first = deliver_due(store)
        assert [a.notification.kind for a in first.attempts] == ["action_taken"]  # the SRM one is still leased
        assert first.delivered == 1
        assert deliver_due(store).attempts == ()
        after_lease = datetime.now(UTC) + timedelta(seconds=121)
        assert deliver_due(store, now=after_lease).delivered == 1
        assert deliver_due(store, now=after_lease + timedelta(hours=1)).attempts == ()
        settled = {row.kind: (row.status, row.attempts) for row in store.notifications.list()}
    assert settled == {"action_taken": ("delivered", 1), "srm_detected": ("delivered", 1)}
    assert receiver.deliveries() == [str(rows["action_taken"].id), str(rows["srm_detected"].id)]
    assert all(r.verified for r in receiver.requests)
    assert receiver.requests[0].json["data"] == {"action": "stop"}
