"""The outbox in the store (SQLite and PostgreSQL): dedupe, the caller's transaction, leases, backoff, the log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from splitlab.notify import build_notifications, notify
from splitlab.specs import ExperimentSpec
from splitlab.storage import MAX_ATTEMPTS, NewNotification, NotFoundError, Store, retry_delay
from splitlab.storage.notifications import RETRY_JITTER

SPEC = ExperimentSpec.model_validate(
    {
        "key": "checkout",
        "variants": [{"key": "control"}, {"key": "treatment"}],
        "monitoring": {"notify": ["team", "chat"]},
        "notifications": [
            {"name": "team", "url": "https://hooks.example.com/team", "secret_env": "TEAM_SECRET"},
            {"name": "chat", "url": "https://chat.example.com/hook", "format": "slack", "kinds": ["srm_detected"]},
        ],
    }
)


def _one(store: Store, *, snapshot_id: int = 1) -> int:
    notify(store, SPEC, kind="decision_reached", text="LAUNCH", snapshot_id=snapshot_id)
    return store.notifications.list(limit=1)[0].id


def test_enqueue_writes_one_row_per_target_that_takes_the_kind(store: Store) -> None:
    assert notify(store, SPEC, kind="srm_detected", text="p = 0.0004", data={"p_value": 0.0004}, snapshot_id=3) == 2
    rows = {row.target_name: row for row in store.notifications.list()}
    assert set(rows) == {"team", "chat"}
    team = rows["team"]
    assert (team.experiment_key, team.kind, team.snapshot_id, team.status, team.attempts) == (
        "checkout",
        "srm_detected",
        3,
        "pending",
        0,
    )
    assert (team.target_url, team.format, team.secret_env) == ("https://hooks.example.com/team", "json", "TEAM_SECRET")
    assert team.body == {
        "title": "Sample ratio mismatch in checkout",
        "text": "p = 0.0004",
        "data": {"p_value": 0.0004},
    }
    assert team.next_attempt_at == team.created_at
    assert rows["chat"].format == "slack"
    assert notify(store, SPEC, kind="decision_reached", text="LAUNCH", snapshot_id=3) == 1  # chat takes only SRM


def test_the_same_notification_twice_is_one_row(store: Store) -> None:
    assert notify(store, SPEC, kind="srm_detected", text="first", snapshot_id=3) == 2
    assert notify(store, SPEC, kind="srm_detected", text="again, reworded", snapshot_id=3) == 0
    assert notify(store, SPEC, kind="srm_detected", text="a later snapshot", snapshot_id=4) == 2
    errors = [build_notifications(SPEC, kind="monitor_error", text="boom", occasion=tick)[0] for tick in ("t1", "t1")]
    assert store.notifications.enqueue(notifications=errors) == 1  # duplicates within one batch too
    assert len(store.notifications.list()) == 5
    [row] = store.notifications.find(dedupe_keys=[errors[0].dedupe_key, "no-such-key"])
    assert row.dedupe_key == "checkout|monitor_error||team|t1"


def test_enqueue_in_the_callers_transaction_commits_or_rolls_back_with_it(store: Store) -> None:
    rows = build_notifications(SPEC, kind="action_taken", text="stopped", snapshot_id=9)

    class ActionFailedError(Exception):
        pass

    def act_then_fail() -> None:
        with store.engine.begin() as conn:
            assert store.notifications.enqueue(notifications=rows, conn=conn) == 1
            raise ActionFailedError

    with pytest.raises(ActionFailedError):
        act_then_fail()
    assert store.notifications.list() == []
    with store.engine.begin() as conn:
        store.notifications.enqueue(notifications=rows, conn=conn)
    assert [row.kind for row in store.notifications.list()] == ["action_taken"]


def test_bad_rows_are_refused_before_anything_is_written(store: Store) -> None:
    good = build_notifications(SPEC, kind="srm_detected", text="x", snapshot_id=1)
    bad = NewNotification(
        experiment_key="checkout", kind="srm_detected", target_name="t", target_url="u", body={}, format="xml"
    )
    with pytest.raises(ValueError, match="format == 'xml', must be one of json, slack"):
        store.notifications.enqueue(notifications=[*good, bad])
    not_json = NewNotification(
        experiment_key=None, kind="test", target_name="t", target_url="u", body={"x": float("nan")}
    )
    with pytest.raises(ValueError, match="body is not JSON-serialisable"):
        store.notifications.enqueue(notifications=[not_json])
    assert store.notifications.list() == []
    with pytest.raises(ValueError, match="status == 'sent', must be one of pending, delivered, failed"):
        store.notifications.list(status="sent")


def test_a_claim_leases_rows_until_the_lease_ends(store: Store) -> None:
    first, second = _one(store, snapshot_id=1), _one(store, snapshot_id=2)
    now = datetime.now(UTC)
    claimed = store.notifications.claim_due(now=now, limit=1, lease_seconds=60)
    assert [row.id for row in claimed] == [first]
    assert [row.id for row in store.notifications.claim_due(now=now, limit=10, lease_seconds=60)] == [second]
    assert store.notifications.claim_due(now=now + timedelta(seconds=59), limit=10, lease_seconds=60) == []
    again = store.notifications.claim_due(now=now + timedelta(seconds=61), limit=10, lease_seconds=60)
    assert sorted(row.id for row in again) == [first, second]  # nobody recorded an attempt: due again
    later = now + timedelta(seconds=200)
    assert store.notifications.claim_due(now=later, limit=10, lease_seconds=60, ids=[second])[0].id == second
    assert store.notifications.claim_due(now=now - timedelta(hours=1), limit=10, lease_seconds=60) == []


def test_failures_back_off_then_fail_and_every_attempt_is_logged(store: Store) -> None:
    outbox_id = _one(store)
    at = datetime.now(UTC)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        row = store.notifications.record_attempt(
            outbox_id=outbox_id, attempted_at=at, delivered=False, status_code=503, error="HTTP 503", duration_ms=2.5
        )
        assert row.attempts == attempt
        assert row.last_error == "HTTP 503"
        if attempt < MAX_ATTEMPTS:
            assert row.status == "pending"
            delay = row.next_attempt_at - at
            assert retry_delay(attempt) * (1 - RETRY_JITTER) <= delay <= retry_delay(attempt)
            at = row.next_attempt_at
    assert row.status == "failed"
    log = store.notifications.deliveries(outbox_id=outbox_id)
    assert [d.attempt for d in log] == list(range(1, MAX_ATTEMPTS + 1))
    assert {(d.status_code, d.error, d.duration_ms) for d in log} == {(503, "HTTP 503", 2.5)}
    assert store.notifications.claim_due(now=at + timedelta(days=1), limit=10, lease_seconds=60) == []


def test_delivered_is_final(store: Store) -> None:
    outbox_id = _one(store)
    at = datetime.now(UTC)
    store.notifications.record_attempt(
        outbox_id=outbox_id, attempted_at=at, delivered=False, status_code=None, error="no answer", duration_ms=1
    )
    row = store.notifications.record_attempt(
        outbox_id=outbox_id, attempted_at=at, delivered=True, status_code=204, error=None, duration_ms=1
    )
    assert (row.status, row.attempts, row.delivered_at, row.last_error) == ("delivered", 2, at, None)
    # A late report from a process whose lease ran out is logged but changes nothing.
    late = store.notifications.record_attempt(
        outbox_id=outbox_id, attempted_at=at, delivered=False, status_code=500, error="HTTP 500", duration_ms=1
    )
    assert (late.status, late.attempts) == ("delivered", 3)
    assert [d.status_code for d in store.notifications.deliveries(outbox_id=outbox_id)] == [None, 204, 500]
    assert store.notifications.get(outbox_id).status == "delivered"
    with pytest.raises(NotFoundError, match="notification 999 does not exist"):
        store.notifications.record_attempt(
            outbox_id=999, attempted_at=at, delivered=True, status_code=200, error=None, duration_ms=1
        )


def test_list_filters_and_orders_newest_first(store: Store) -> None:
    other = SPEC.model_copy(update={"key": "pricing"})
    notify(store, SPEC, kind="srm_detected", text="x", snapshot_id=1)
    notify(store, other, kind="srm_detected", text="x", snapshot_id=1)
    rows = store.notifications.list()
    assert [row.id for row in rows] == sorted((row.id for row in rows), reverse=True)
    assert {row.experiment_key for row in store.notifications.list(experiment_key="pricing")} == {"pricing"}
    assert len(store.notifications.list(limit=3)) == 3
    assert store.notifications.list(status="delivered") == []


def test_retry_delays() -> None:
    assert [retry_delay(n).total_seconds() for n in range(1, 12)] == [5, 10, 20, 40, 80, 160, 320, 640, 900, 900, 900]
    assert retry_delay(3, jitter=0.2) == timedelta(seconds=16)
    assert retry_delay(10_000) == timedelta(minutes=15)
    with pytest.raises(ValueError, match="attempts == 0, must be >= 1"):
        retry_delay(0)
