"""Delivery of the outbox: POST each due notification to its target, log the attempt, settle or retry.

A notification is delivered when its target answers 2xx. Anything else (another status, a
redirect, a timeout, a refused connection, a missing secret) is a failed attempt, retried later
with a capped exponential backoff (:func:`splitlab.storage.retry_delay`) until
:data:`splitlab.storage.MAX_ATTEMPTS`, then marked ``failed``. Rows are leased while they are
being sent (:meth:`splitlab.storage.NotificationRepository.claim_due`), so any number of delivery
processes may run at once; one that dies mid-send leaves its rows to be sent again when their
lease ends, under the same ``X-Splitlab-Delivery`` id.

Requests use the standard library (as :mod:`splitlab.sdk` does): no redirect is followed, proxies
come from the environment, and each waits at most ``timeout`` seconds.
"""

from __future__ import annotations

import http.client
import os
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from splitlab.notify.formats import render
from splitlab.notify.outbox import build_notifications
from splitlab.notify.signing import DELIVERY_HEADER, SIGNATURE_HEADER, sign
from splitlab.notify.targets import targets_for
from splitlab.specs import ExperimentSpec, NotificationKind, NotificationTarget
from splitlab.storage import OutboxNotification, Store
from splitlab.storage.tables import to_utc

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "Attempt",
    "DeliveryReport",
    "Post",
    "deliver",
    "deliver_due",
    "post",
    "send_test",
]

DEFAULT_TIMEOUT_SECONDS = 10.0
USER_AGENT = "splitlab-notify/1"

Post = Callable[[str, bytes, Mapping[str, str], float], int]
"""``post(url, body, headers, timeout_seconds) -> HTTP status``; raises ``OSError`` when no answer came."""

_CLAIM_BATCH = 10
"""Rows leased at a time: their lease covers sending all of them one after the other."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: object, **_kwargs: object) -> None:
        """Refuse every redirect: a webhook that moved is a failed attempt, not a reason to send elsewhere."""
        return


_OPENER = urllib.request.build_opener(_NoRedirects)


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
    """POST ``body`` to ``url`` and return the HTTP status (redirects are not followed).

    Raises:
        OSError: No answer came (refused, unreachable, timed out, the connection broke).
    """
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")  # noqa: S310 - http(s) only, checked by the spec
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as answer:  # a status outside 2xx is still an answer
        answer.close()
        return int(answer.code)
    except http.client.HTTPException as exc:  # the connection broke mid-answer
        msg = f"{type(exc).__name__}: {exc}"
        raise OSError(msg) from exc


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery attempt and where it left the notification.

    Attributes:
        notification: The outbox row after the attempt (its ``status``: delivered, pending for a
            retry at ``next_attempt_at``, or failed).
        status_code: The target's HTTP status; None when no answer came.
        error: Why it was not delivered; None when it was.
        duration_ms: How long the attempt took.
    """

    notification: OutboxNotification
    status_code: int | None
    error: str | None
    duration_ms: float

    @property
    def delivered(self) -> bool:
        """Whether the target took it (a 2xx answer)."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """The attempts of one delivery run, in the order they were made."""

    attempts: tuple[Attempt, ...]

    @property
    def delivered(self) -> int:
        """Notifications delivered by this run."""
        return sum(attempt.delivered for attempt in self.attempts)

    @property
    def retrying(self) -> int:
        """Notifications that failed this time and will be tried again."""
        return sum(not a.delivered and a.notification.status == "pending" for a in self.attempts)

    @property
    def failed(self) -> int:
        """Notifications given up on by this run (their last allowed attempt failed)."""
        return sum(not a.delivered and a.notification.status == "failed" for a in self.attempts)


def deliver_due(
    store: Store,
    *,
    now: datetime | None = None,
    http: Post | None = None,
    limit: int = 100,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> DeliveryReport:
    """Send up to ``limit`` notifications that are due, oldest first, and record each attempt.

    Safe to run in several processes at once: each row is leased to one of them while it is sent.

    Args:
        store: The store whose outbox is delivered.
        now: The clock for what is due and when retries fall (aware); default the current time.
            Signatures always carry the real time, which receivers check.
        http: How to POST (:data:`Post`); default :func:`post`.
        limit: At most this many attempts, >= 1.
        timeout: Seconds each request may take, > 0.
    """
    return _deliver(store, now=now, http=http, limit=limit, timeout=timeout, ids=None)


def deliver(
    store: Store,
    ids: Collection[int],
    *,
    now: datetime | None = None,
    http: Post | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> DeliveryReport:
    """Send the notifications ``ids`` now if they are due (pending and not leased), as :func:`deliver_due` does."""
    if not ids:
        return DeliveryReport(attempts=())
    return _deliver(store, now=now, http=http, limit=len(ids), timeout=timeout, ids=ids)


def send_test(
    store: Store,
    *,
    spec: ExperimentSpec | None = None,
    target: str | None = None,
    global_targets: Sequence[NotificationTarget] = (),
    http: Post | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> DeliveryReport:
    """Enqueue a ``test`` notification and deliver it at once (``splitlab notify test``).

    Args:
        store: The store.
        spec: The experiment whose ``monitoring.notify`` targets are tested; None: the global targets.
        target: Only this target (of the spec, or global).
        global_targets: The global targets.
        http: How to POST; default :func:`post`.
        timeout: Seconds each request may take.

    Returns:
        One attempt per target; a failed one stays in the outbox and is retried like any other.

    Raises:
        ValueError: No target to test, or ``target`` is not one.
    """
    chosen = _test_targets(spec, target, global_targets)
    notifications = build_notifications(
        spec,
        kind=NotificationKind.TEST,
        text="splitlab can reach this target: notifications will arrive here.",
        occasion=secrets.token_hex(8),  # every test is a new notification
        targets=chosen,
    )
    store.notifications.enqueue(notifications=notifications)
    queued = store.notifications.find(dedupe_keys=[n.dedupe_key for n in notifications])
    return deliver(store, [n.id for n in queued], http=http, timeout=timeout)


def _test_targets(
    spec: ExperimentSpec | None, target: str | None, global_targets: Sequence[NotificationTarget]
) -> list[NotificationTarget]:
    """The targets of ``notify test``: ``target``, else the spec's ``monitoring.notify``, else every global one."""
    known = {t.name: t for t in global_targets}
    if spec is not None:
        known |= {t.name: t for t in spec.notifications}  # the spec's own come first, as for any notification
    if target is not None:
        if target not in known:
            where = "the global targets" if spec is None else f"experiment {spec.key!r} or the global targets"
            msg = f"target: {target!r} is not a target of {where} (defined: {', '.join(sorted(known)) or 'none'})"
            raise ValueError(msg)
        return [known[target]]
    chosen = targets_for(spec, NotificationKind.TEST, global_targets)
    if not chosen:
        msg = (
            "no notification targets: give --notifications FILE (or set SPLITLAB_NOTIFICATIONS_FILE)"
            if spec is None
            else f"experiment {spec.key!r} notifies no target (its monitoring.notify is empty)"
        )
        raise ValueError(msg)
    return chosen


def _deliver(
    store: Store,
    *,
    now: datetime | None,
    http: Post | None,
    limit: int,
    timeout: float,
    ids: Collection[int] | None,
) -> DeliveryReport:
    if limit < 1:
        msg = f"limit == {limit}, must be >= 1"
        raise ValueError(msg)
    if not timeout > 0:
        msg = f"timeout == {timeout}, must be > 0"
        raise ValueError(msg)
    send = http or post
    lease = _CLAIM_BATCH * (timeout + 5)
    attempts: list[Attempt] = []
    while len(attempts) < limit:
        at = _clock(now)
        batch = min(_CLAIM_BATCH, limit - len(attempts))
        claimed = store.notifications.claim_due(now=at, limit=batch, lease_seconds=lease, ids=ids)
        attempts.extend(_attempt(store, row, send=send, timeout=timeout, now=now) for row in claimed)
        if len(claimed) < batch:
            break
    return DeliveryReport(attempts=tuple(attempts))


def _clock(now: datetime | None) -> datetime:
    return to_utc(now, name="now") if now is not None else datetime.now(UTC)


def _attempt(store: Store, row: OutboxNotification, *, send: Post, timeout: float, now: datetime | None) -> Attempt:
    attempted_at = _clock(now)
    started = time.monotonic()
    status_code: int | None = None
    secret = None if row.secret_env is None else os.environ.get(row.secret_env)
    if row.secret_env is not None and not secret:
        error: str | None = f"secret_env {row.secret_env!r} of target {row.target_name!r} is not set in the environment"
    else:
        body = render(row)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, DELIVERY_HEADER: str(row.id)}
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, body)
        try:
            status_code = send(row.target_url, body, headers, timeout)
        except (OSError, ValueError) as exc:  # ValueError: a URL the HTTP client cannot use
            error = f"no answer: {exc}"
        else:
            error = None if 200 <= status_code < 300 else f"HTTP {status_code}"
    duration_ms = (time.monotonic() - started) * 1000
    settled = store.notifications.record_attempt(
        outbox_id=row.id,
        attempted_at=attempted_at,
        delivered=error is None,
        status_code=status_code,
        error=error,
        duration_ms=duration_ms,
    )
    return Attempt(notification=settled, status_code=status_code, error=error, duration_ms=duration_ms)
