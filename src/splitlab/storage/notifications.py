"""The notification outbox: notifications written with the event that causes them, and their delivery log.

A notification is a row of ``notification_outbox`` per target, written by :meth:`enqueue` in the
same transaction as the event it reports when the caller passes its open connection: once that
transaction commits, the notification exists and will be delivered; if it rolls back, neither
exists. Nothing is held in memory, so a process killed at any point loses nothing that was
committed.

Delivery (``splitlab.notify``) takes due rows with :meth:`claim_due`, which leases them for a
while (their next attempt is pushed past the lease), so two delivery processes never send the
same row at the same time; each attempt is written to ``notification_deliveries`` and settles the
row by :meth:`record_attempt`: delivered, or retried after a capped exponential backoff with
jitter, or ``failed`` after :data:`MAX_ATTEMPTS`. A process that dies between sending and
recording leaves the row leased; it is sent again when the lease ends, under the same delivery id
(the outbox id), which is what a receiver deduplicates on.

Each row has a dedupe key (:func:`dedupe_key`): the same notification enqueued twice (a monitor
that re-runs a tick after a crash) is one row.
"""

from __future__ import annotations

import builtins
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.engine import Connection

from splitlab.storage._sql import Transactions, chunks, encode_json, now, upsert
from splitlab.storage.errors import NotFoundError
from splitlab.storage.records import check_text
from splitlab.storage.tables import NOTIFICATION_STATUSES, notification_deliveries, notification_outbox, to_utc

__all__ = [
    "MAX_ATTEMPTS",
    "NOTIFICATION_FORMATS",
    "RETRY_BASE_SECONDS",
    "RETRY_CAP_SECONDS",
    "NewNotification",
    "NotificationDelivery",
    "NotificationRepository",
    "OutboxNotification",
    "dedupe_key",
    "retry_delay",
]

MAX_ATTEMPTS = 12
"""Attempts before a notification is marked ``failed`` (about 65 minutes of retries with the delays below)."""

RETRY_BASE_SECONDS = 5.0
"""The wait after the first failed attempt; each further failure doubles it."""

RETRY_CAP_SECONDS = 900.0
"""The longest wait between two attempts (15 minutes)."""

RETRY_JITTER = 0.2
"""Each wait is shortened by a random share of up to this, so that receivers that come back are not hit at once."""

NOTIFICATION_FORMATS = ("json", "slack")


def dedupe_key(
    *, experiment_key: str | None, kind: str, snapshot_id: int | None, target_name: str, occasion: str | None = None
) -> str:
    """The identity of a notification: ``experiment|kind|snapshot|target``, plus ``|occasion`` when given.

    A notification about an analysis is one per (experiment, kind, snapshot, target). One that is
    not about a snapshot (a monitor error, a test) names its ``occasion`` (the tick's time, a
    random token), or it would be sent once ever.

    Example:
        >>> dedupe_key(experiment_key="checkout", kind="srm_detected", snapshot_id=12, target_name="ops")
        'checkout|srm_detected|12|ops'
        >>> dedupe_key(experiment_key=None, kind="test", snapshot_id=None, target_name="ops", occasion="a1b2")
        '|test||ops|a1b2'
    """
    parts = [experiment_key or "", kind, "" if snapshot_id is None else str(snapshot_id), target_name]
    if occasion is not None:
        parts.append(occasion)
    return "|".join(parts)


def retry_delay(attempts: int, *, jitter: float = 0.0) -> timedelta:
    """The wait after ``attempts`` failed attempts: 5 s doubled per attempt, capped at 15 min, less ``jitter`` of it.

    Example:
        >>> [retry_delay(n).total_seconds() for n in (1, 2, 3, 9, 12)]
        [5.0, 10.0, 20.0, 900.0, 900.0]
    """
    if attempts < 1:
        msg = f"attempts == {attempts}, must be >= 1"
        raise ValueError(msg)
    if not 0 <= jitter < 1:
        msg = f"jitter == {jitter}, must be in [0, 1)"
        raise ValueError(msg)
    seconds = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2.0 ** min(attempts - 1, 30))
    return timedelta(seconds=seconds * (1 - jitter))


@dataclass(frozen=True, slots=True)
class NewNotification:
    """A notification to enqueue for one target.

    Attributes:
        experiment_key: the experiment it is about (None for a test of a global target).
        kind: what it reports (``srm_detected`` ... ; ``splitlab.specs.NotificationKind``).
        target_name, target_url, format, secret_env: the target, copied into the row so that a
            later change of a spec or of the targets file does not redirect what is queued.
        body: ``{"title", "text", "data"}``: what the formats render (``splitlab.notify.formats``).
        snapshot_id: the analysis snapshot it is about, if any.
        occasion: what tells apart notifications not about a snapshot (see :func:`dedupe_key`).
    """

    experiment_key: str | None
    kind: str
    target_name: str
    target_url: str
    body: Mapping[str, Any]
    format: str = "json"
    secret_env: str | None = None
    snapshot_id: int | None = None
    occasion: str | None = None

    @property
    def dedupe_key(self) -> str:
        """This notification's :func:`dedupe_key`."""
        return dedupe_key(
            experiment_key=self.experiment_key,
            kind=self.kind,
            snapshot_id=self.snapshot_id,
            target_name=self.target_name,
            occasion=self.occasion,
        )


@dataclass(frozen=True, slots=True)
class OutboxNotification:
    """A row of the outbox: the notification, its target and where its delivery stands."""

    id: int
    dedupe_key: str
    experiment_key: str | None
    kind: str
    snapshot_id: int | None
    target_name: str
    target_url: str
    format: str
    secret_env: str | None
    body: dict[str, Any]
    created_at: datetime
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class NotificationDelivery:
    """One attempt to deliver a notification: when, the HTTP status (None if none came) or the error, how long."""

    id: int
    outbox_id: int
    attempt: int
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float


class NotificationRepository:
    """The outbox and its delivery log."""

    def __init__(self, tx: Transactions) -> None:
        self._tx = tx

    def enqueue(self, *, notifications: Sequence[NewNotification], conn: Connection | None = None) -> int:
        """Add pending notifications, due at once; one already in the outbox (same dedupe key) is skipped.

        Args:
            notifications: The notifications, one per target.
            conn: An open write transaction to write in (the one that records the event the
                notifications report, so both commit or neither does); default: a transaction of
                its own.

        Returns:
            How many rows were added (duplicates are not).

        Raises:
            ValueError: A notification with an empty kind or target, an unknown format or a body
                that is not JSON.
            TypeError: A body that is not a mapping.
        """
        stamp = now()
        rows = [_row(notification, stamp) for notification in notifications]
        if not rows:
            return 0
        if conn is not None:
            return _insert(conn, rows)
        with self._tx.write() as own:
            return _insert(own, rows)

    def claim_due(
        self, *, now: datetime, limit: int, lease_seconds: float, ids: Collection[int] | None = None
    ) -> builtins.list[OutboxNotification]:
        """Lease up to ``limit`` pending notifications due at ``now`` (oldest due first) for ``lease_seconds``.

        Their next attempt moves to ``now + lease_seconds`` in the same transaction, so another
        process that claims meanwhile does not get them (PostgreSQL: rows another claim holds are
        skipped, ``FOR UPDATE SKIP LOCKED``; SQLite: claims take the write lock one at a time).
        Record each attempt with :meth:`record_attempt`; a row whose attempt is never recorded (its
        process died) is due again when the lease ends.

        Args:
            now: The time the claim is made at (aware).
            limit: At most this many rows, >= 1.
            lease_seconds: How long the rows are held, > 0: longer than sending them takes.
            ids: Only these outbox ids (``splitlab notify test`` delivers what it enqueued).
        """
        at = to_utc(now, name="now")
        if limit < 1:
            msg = f"limit == {limit}, must be >= 1"
            raise ValueError(msg)
        if not lease_seconds > 0:
            msg = f"lease_seconds == {lease_seconds}, must be > 0"
            raise ValueError(msg)
        table = notification_outbox
        query = (
            select(table)
            .where(table.c.status == "pending", table.c.next_attempt_at <= at)
            .order_by(table.c.next_attempt_at, table.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite's write lock already serialises claims
        )
        if ids is not None:
            query = query.where(table.c.id.in_(list(ids)))
        with self._tx.write() as conn:
            rows = conn.execute(query).all()
            claimed = [int(row.id) for row in rows]
            until = at + timedelta(seconds=lease_seconds)
            for part in chunks(claimed):
                conn.execute(update(table).where(table.c.id.in_(part)).values(next_attempt_at=until))
        return [_outbox(row, next_attempt_at=until) for row in rows]

    def record_attempt(
        self,
        *,
        outbox_id: int,
        attempted_at: datetime,
        delivered: bool,
        status_code: int | None,
        error: str | None,
        duration_ms: float,
    ) -> OutboxNotification:
        """Log one delivery attempt and settle the notification accordingly.

        Delivered: the row is ``delivered``. Not delivered: its next attempt is due after
        :func:`retry_delay` (with jitter), or it is ``failed`` once it has had
        :data:`MAX_ATTEMPTS`. A row already settled (another process delivered it after this
        one's lease ran out) keeps its status; the attempt is still logged.

        Args:
            outbox_id: The notification.
            attempted_at: When the attempt started (aware); retries are scheduled from it.
            delivered: Whether the receiver took it (a 2xx answer).
            status_code: The HTTP status, None when no answer came.
            error: Why it was not delivered (``HTTP 503``, a connection error, a missing secret).
            duration_ms: How long the attempt took.

        Raises:
            NotFoundError: No notification ``outbox_id``.
        """
        at = to_utc(attempted_at, name="attempted_at")
        table = notification_outbox
        with self._tx.write() as conn:
            row = conn.execute(select(table).where(table.c.id == outbox_id).with_for_update()).first()
            if row is None:
                msg = f"notification {outbox_id} does not exist"
                raise NotFoundError(msg)
            attempt = int(row.attempts) + 1
            conn.execute(
                notification_deliveries.insert().values(
                    outbox_id=outbox_id,
                    attempt=attempt,
                    attempted_at=at,
                    status_code=status_code,
                    error=error,
                    duration_ms=float(duration_ms),
                )
            )
            values: dict[str, Any] = {"attempts": attempt}
            if row.status == "pending" and delivered:
                values |= {"status": "delivered", "delivered_at": at, "last_error": None}
            elif row.status == "pending" and attempt >= MAX_ATTEMPTS:
                values |= {"status": "failed", "last_error": error}
            elif row.status == "pending":
                jitter = random.random() * RETRY_JITTER  # noqa: S311 - spreads retries, not a secret
                values |= {"next_attempt_at": at + retry_delay(attempt, jitter=jitter), "last_error": error}
            updated = conn.execute(
                update(table).where(table.c.id == outbox_id).values(values).returning(*table.c)
            ).one()
        return _outbox(updated)

    def get(self, outbox_id: int) -> OutboxNotification:
        """One notification by id.

        Raises:
            NotFoundError: No notification ``outbox_id``.
        """
        with self._tx.read() as conn:
            row = conn.execute(select(notification_outbox).where(notification_outbox.c.id == outbox_id)).first()
        if row is None:
            msg = f"notification {outbox_id} does not exist"
            raise NotFoundError(msg)
        return _outbox(row)

    def find(self, *, dedupe_keys: Collection[str]) -> builtins.list[OutboxNotification]:
        """The notifications with these dedupe keys (those in the outbox), oldest first."""
        keys = list(dict.fromkeys(dedupe_keys))
        table = notification_outbox
        found: builtins.list[OutboxNotification] = []
        with self._tx.read() as conn:
            for part in chunks(keys):
                query = select(table).where(table.c.dedupe_key.in_(part)).order_by(table.c.id)
                found.extend(_outbox(row) for row in conn.execute(query))
        return sorted(found, key=lambda notification: notification.id)

    def list(
        self, *, experiment_key: str | None = None, status: str | None = None, limit: int = 100
    ) -> builtins.list[OutboxNotification]:
        """The newest ``limit`` notifications, newest first; of one experiment and in one status if given.

        Raises:
            ValueError: An unknown status or a limit < 1.
        """
        if status is not None and status not in NOTIFICATION_STATUSES:
            msg = f"status == {status!r}, must be one of {', '.join(NOTIFICATION_STATUSES)}"
            raise ValueError(msg)
        if limit < 1:
            msg = f"limit == {limit}, must be >= 1"
            raise ValueError(msg)
        table = notification_outbox
        query = select(table).order_by(table.c.id.desc()).limit(limit)
        if experiment_key is not None:
            query = query.where(table.c.experiment_key == experiment_key)
        if status is not None:
            query = query.where(table.c.status == status)
        with self._tx.read() as conn:
            return [_outbox(row) for row in conn.execute(query)]

    def deliveries(self, *, outbox_id: int) -> builtins.list[NotificationDelivery]:
        """The delivery attempts of one notification, first first (none for an unknown id)."""
        table = notification_deliveries
        query = select(table).where(table.c.outbox_id == outbox_id).order_by(table.c.attempt, table.c.id)
        with self._tx.read() as conn:
            return [
                NotificationDelivery(
                    id=int(row.id),
                    outbox_id=int(row.outbox_id),
                    attempt=int(row.attempt),
                    attempted_at=row.attempted_at,
                    status_code=row.status_code,
                    error=row.error,
                    duration_ms=float(row.duration_ms),
                )
                for row in conn.execute(query)
            ]


def _row(notification: NewNotification, stamp: datetime) -> dict[str, Any]:
    check_text(notification.kind, name="kind")
    check_text(notification.target_name, name="target_name")
    check_text(notification.target_url, name="target_url")
    if notification.format not in NOTIFICATION_FORMATS:
        msg = f"format == {notification.format!r}, must be one of {', '.join(NOTIFICATION_FORMATS)}"
        raise ValueError(msg)
    if not isinstance(notification.body, Mapping):
        msg = f"body must be a mapping (JSON object), got {type(notification.body).__name__}"
        raise TypeError(msg)
    body = dict(notification.body)
    encode_json(body, name="body")
    return {
        "dedupe_key": notification.dedupe_key,
        "experiment_key": notification.experiment_key,
        "kind": notification.kind,
        "snapshot_id": notification.snapshot_id,
        "target_name": notification.target_name,
        "target_url": notification.target_url,
        "format": notification.format,
        "secret_env": notification.secret_env,
        "body": body,
        "created_at": stamp,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": stamp,
    }


def _insert(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    statement = upsert(notification_outbox, conn.dialect.name).values(list(rows))
    inserted = conn.execute(
        statement.on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(notification_outbox.c.id)
    ).all()
    return len(inserted)


def _outbox(row: Row[Any], *, next_attempt_at: datetime | None = None) -> OutboxNotification:
    return OutboxNotification(
        id=int(row.id),
        dedupe_key=row.dedupe_key,
        experiment_key=row.experiment_key,
        kind=row.kind,
        snapshot_id=None if row.snapshot_id is None else int(row.snapshot_id),
        target_name=row.target_name,
        target_url=row.target_url,
        format=row.format,
        secret_env=row.secret_env,
        body=row.body,
        created_at=row.created_at,
        status=row.status,
        attempts=int(row.attempts),
        next_attempt_at=row.next_attempt_at if next_attempt_at is None else next_attempt_at,
        last_error=row.last_error,
        delivered_at=row.delivered_at,
    )
