"""Notifications: what the monitor reports, written to an outbox and delivered to webhooks with retries.

- :func:`notify` / :func:`build_notifications`: one notification of a kind about an experiment,
  for every target its spec's ``monitoring.notify`` names, into the outbox (in the caller's
  transaction when it passes one);
- :func:`deliver_due`: POST what is due, signed (:mod:`~splitlab.notify.signing`), with retries;
- :func:`send_test`: ``splitlab notify test``;
- :func:`global_targets`: the targets of ``SPLITLAB_NOTIFICATIONS_FILE`` (or a given file).

docs/notifications.md describes the targets, the kinds, the bodies, the signature and how a
receiver checks it.
"""

from __future__ import annotations

from splitlab.notify.delivery import (
    DEFAULT_TIMEOUT_SECONDS,
    Attempt,
    DeliveryReport,
    Post,
    deliver,
    deliver_due,
    post,
    send_test,
)
from splitlab.notify.formats import TITLES, content, json_body, render, slack_body
from splitlab.notify.outbox import build_notifications, notify
from splitlab.notify.signing import DELIVERY_HEADER, SIGNATURE_HEADER, sign, verify
from splitlab.notify.targets import TARGETS_ENV_VAR, global_targets, targets_for
from splitlab.specs import NotificationKind, NotificationTarget

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TARGETS_ENV_VAR",
    "TITLES",
    "Attempt",
    "DeliveryReport",
    "NotificationKind",
    "NotificationTarget",
    "Post",
    "build_notifications",
    "content",
    "deliver",
    "deliver_due",
    "global_targets",
    "json_body",
    "notify",
    "post",
    "render",
    "send_test",
    "sign",
    "slack_body",
    "targets_for",
    "verify",
]
