"""Delivery to a real receiver on loopback (signatures verified), retries on an injected clock, concurrency."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from splitlab.notify import DeliveryReport, deliver_due, notify, send_test
from splitlab.specs import ExperimentSpec, NotificationTarget
from splitlab.storage import MAX_ATTEMPTS, Store, open_store

from .conftest import SECRET_ENV, Receiver


def _spec(receiver: Receiver, **target: object) -> ExperimentSpec:
    return ExperimentSpec.model_validate(
        {
            "key": "checkout",
            "variants": [{"key": "control"}, {"key": "treatment"}],
            "monitoring": {"notify": ["team"]},
            "notifications": [
                {"name": "team", "url": f"{receiver.url}/hooks/team", "secret_env": SECRET_ENV, **target}
            ],
        }
    )


def test_a_notification_arrives_signed_with_the_generic_body(store: Store, receiver: Receiver) -> None:
    spec = _spec(receiver)
    notify(store, spec, kind="srm_detected", text="p = 0.0004", data={"p_value": 0.0004}, snapshot_id=12)
    report = deliver_due(store)
    assert (report.delivered, report.retrying, report.failed) == (1, 0, 0)
    [received] = receiver.requests
    assert received.verified
    assert received.path == "/hooks/team"
    assert received.headers["Content-Type"] == "application/json"
    row = store.notifications.list()[0]
    assert received.delivery == str(row.id)
    assert received.json == {
        "id": row.id,
        "kind": "srm_detected",
        "experiment": "checkout",
        "snapshot_id": 12,
        "created_at": row.created_at.isoformat().replace("+00:00", "Z"),
        "title": "Sample ratio mismatch in checkout",
        "text": "p = 0.0004",
        "data": {"p_value": 0.0004},
    }
    assert (row.status, row.attempts, row.last_error) == ("delivered", 1, None)
    [logged] = store.notifications.deliveries(outbox_id=row.id)
    assert (logged.attempt, logged.status_code, logged.error) == (1, 200, None)
    assert logged.duration_ms > 0
    assert deliver_due(store).attempts == ()  # delivered once, never again
    assert len(receiver.requests) == 1


def test_the_slack_form_is_one_readable_paragraph(store: Store, receiver: Receiver) -> None:
    spec = _spec(receiver, format="slack", secret_env=None)
    notify(
        store, spec, kind="guardrail_harm", text="latency_p99 is 7.1 % worse (tolerance 5 %) & rising", snapshot_id=4
    )
    assert deliver_due(store).delivered == 1
    [received] = receiver.requests
    assert "X-Splitlab-Signature" not in received.headers  # no secret_env: unsigned
    assert received.json == {
        "text": "*Guardrail harmed in checkout*: latency_p99 is 7.1 % worse (tolerance 5 %) &amp; rising (snapshot 4)"
    }


def test_failures_are_retried_with_backoff_on_the_injected_clock(store: Store, receiver: Receiver) -> None:
    receiver.plan = [503, 500]
    notify(store, _spec(receiver), kind="decision_reached", text="LAUNCH", snapshot_id=1)
    start = datetime.now(UTC)
    first = deliver_due(store, now=start)
    assert (first.delivered, first.retrying) == (0, 1)
    assert first.attempts[0].error == "HTTP 503"
    assert deliver_due(store, now=start + timedelta(seconds=1)).attempts == ()  # waits its 5 s (less jitter)
    second = deliver_due(store, now=start + timedelta(seconds=5))
    assert second.attempts[0].error == "HTTP 500"
    assert deliver_due(store, now=start + timedelta(seconds=6)).attempts == ()  # now 10 s
    third = deliver_due(store, now=start + timedelta(seconds=15))
    assert third.delivered == 1
    row = store.notifications.list()[0]
    assert (row.status, row.attempts) == ("delivered", 3)
    log = store.notifications.deliveries(outbox_id=row.id)
    assert [(d.status_code, d.error) for d in log] == [(503, "HTTP 503"), (500, "HTTP 500"), (200, None)]
    assert all(r.verified for r in receiver.requests)
    assert len({r.delivery for r in receiver.requests}) == 1  # the same delivery id on every retry


def test_a_target_that_never_answers_2xx_ends_failed(store: Store, receiver: Receiver) -> None:
    receiver.plan = [500] * (MAX_ATTEMPTS + 5)
    notify(store, _spec(receiver), kind="monitor_error", text="analysis failed", occasion="tick-1")
    at = datetime.now(UTC)
    reports = [deliver_due(store, now=at + timedelta(hours=n)) for n in range(MAX_ATTEMPTS + 2)]
    assert [len(r.attempts) for r in reports] == [1] * MAX_ATTEMPTS + [0, 0]
    assert [r.failed for r in reports[:MAX_ATTEMPTS]] == [0] * (MAX_ATTEMPTS - 1) + [1]
    row = store.notifications.list()[0]
    assert (row.status, row.attempts, row.last_error) == ("failed", MAX_ATTEMPTS, "HTTP 500")
    assert len(receiver.requests) == MAX_ATTEMPTS


def test_no_answer_and_a_missing_secret_are_failed_attempts_not_crashes(
    store: Store, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = ExperimentSpec.model_validate(
        {
            "key": "pricing",
            "variants": [{"key": "a"}, {"key": "b"}],
            "monitoring": {"notify": ["gone"]},
            "notifications": [{"name": "gone", "url": "http://127.0.0.1:9/hook"}],  # discard port: refused
        }
    )
    notify(store, closed, kind="sample_reached", text="planned sample reached", snapshot_id=2)
    notify(store, _spec(receiver), kind="sample_reached", text="planned sample reached", snapshot_id=2)
    monkeypatch.delenv(SECRET_ENV)
    report = deliver_due(store)
    errors = {a.notification.target_name: (a.status_code, a.error) for a in report.attempts}
    assert errors["gone"][0] is None
    assert errors["gone"][1].startswith("no answer: ")
    assert errors["team"] == (
        None,
        f"secret_env {SECRET_ENV!r} of target 'team' is not set in the environment",
    )
    assert receiver.requests == []  # an unsigned request is never sent in place of a signed one
    assert report.retrying == 2
    assert {row.last_error for row in store.notifications.list()} == {errors["gone"][1], errors["team"][1]}


def test_redirects_are_not_followed(store: Store, receiver: Receiver) -> None:
    receiver.plan = [307]
    notify(store, _spec(receiver), kind="decision_changed", text="LAUNCH -> NO_LAUNCH", snapshot_id=5)
    assert deliver_due(store).attempts[0].error == "HTTP 307"
    assert len(receiver.requests) == 1


def test_the_http_client_is_injectable(store: Store, receiver: Receiver) -> None:
    sent: list[tuple[str, dict[str, str], float]] = []

    def fake_post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        sent.append((url, dict(headers), timeout))
        assert json.loads(body)["kind"] == "action_taken"
        return 202

    notify(store, _spec(receiver), kind="action_taken", text="stopped", data={"action": "stop"}, snapshot_id=7)
    assert deliver_due(store, http=fake_post, timeout=3).delivered == 1
    [(url, headers, timeout)] = sent
    assert (url, timeout) == (f"{receiver.url}/hooks/team", 3)
    assert {"X-Splitlab-Signature", "X-Splitlab-Delivery", "User-Agent"} <= set(headers)
    assert receiver.requests == []


def test_two_deliverers_at_once_send_each_notification_once(database_url: str, receiver: Receiver) -> None:
    spec = _spec(receiver)
    with open_store(database_url) as store:
        for snapshot in range(30):
            notify(store, spec, kind="decision_reached", text="LAUNCH", snapshot_id=snapshot)
    reports: list[DeliveryReport] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        with open_store(database_url) as own:  # its own engine, as a second process would have
            barrier.wait()
            reports.append(deliver_due(own, limit=100))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    deliveries = receiver.deliveries()
    assert len(deliveries) == 30
    assert len(set(deliveries)) == 30
    assert sum(report.delivered for report in reports) == 30


def test_send_test_reaches_each_target_once(store: Store, receiver: Receiver) -> None:
    shared = [
        NotificationTarget(name="ops", url=f"{receiver.url}/ops", secret_env=SECRET_ENV, kinds=("srm_detected",)),
        NotificationTarget(name="chat", url=f"{receiver.url}/chat", format="slack"),
    ]
    report = send_test(store, global_targets=shared)
    assert [(a.notification.target_name, a.status_code) for a in report.attempts] == [("ops", 200), ("chat", 200)]
    assert sorted(r.path for r in receiver.requests) == ["/chat", "/ops"]
    signed = next(r for r in receiver.requests if r.path == "/ops")
    assert signed.verified
    assert signed.json["kind"] == "test"
    assert signed.json["experiment"] is None
    again = send_test(store, global_targets=shared, target="chat")  # a new test, not deduplicated away
    assert [a.notification.target_name for a in again.attempts] == ["chat"]
    spec = _spec(receiver)
    assert [a.notification.experiment_key for a in send_test(store, spec=spec).attempts] == ["checkout"]
    with pytest.raises(ValueError, match=r"target: 'nope' is not a target of experiment 'checkout' or the global"):
        send_test(store, spec=spec, target="nope", global_targets=shared)
    with pytest.raises(ValueError, match="no notification targets: give --notifications FILE"):
        send_test(store)
    assert len(receiver.requests) == 4
