"""What a notification says, and the two bodies it is sent as: generic JSON, or Slack-compatible text.

The outbox keeps each notification's content (``{"title", "text", "data"}``, see :func:`content`);
the body is rendered from the row when it is sent, so every retry sends the same bytes and the
generic body can carry the row's id.

Example:
    >>> from datetime import UTC, datetime
    >>> from splitlab.storage import OutboxNotification
    >>> body = content("srm_detected", "checkout", "p = 0.0004: control has 52.1 % of units, 50 % planned.")
    >>> body["title"]
    'Sample ratio mismatch in checkout'
    >>> row = OutboxNotification(
    ...     id=7, dedupe_key="checkout|srm_detected|3|ops", experiment_key="checkout", kind="srm_detected",
    ...     snapshot_id=3, target_name="ops", target_url="https://hooks.example.com/ops", format="slack",
    ...     secret_env=None, body=body, created_at=datetime(2024, 5, 1, 12, tzinfo=UTC), status="pending",
    ...     attempts=0, next_attempt_at=datetime(2024, 5, 1, 12, tzinfo=UTC), last_error=None, delivered_at=None,
    ... )
    >>> slack_body(row)["text"]
    '*Sample ratio mismatch in checkout*: p = 0.0004: control has 52.1 % of units, 50 % planned. (snapshot 3)'
    >>> sorted(json_body(row))
    ['created_at', 'data', 'experiment', 'id', 'kind', 'snapshot_id', 'text', 'title']
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC
from typing import Any

from splitlab.specs import NotificationKind
from splitlab.storage import OutboxNotification

__all__ = ["TITLES", "content", "json_body", "render", "slack_body"]

TITLES: Mapping[NotificationKind, str] = {
    NotificationKind.SRM_DETECTED: "Sample ratio mismatch",
    NotificationKind.GUARDRAIL_HARM: "Guardrail harmed",
    NotificationKind.DECISION_REACHED: "Decision reached",
    NotificationKind.DECISION_CHANGED: "Decision changed",
    NotificationKind.SAMPLE_REACHED: "Planned sample reached",
    NotificationKind.ACTION_TAKEN: "Automatic action taken",
    NotificationKind.MONITOR_ERROR: "Monitor error",
    NotificationKind.TEST: "Test notification",
}
"""The title of each kind; the experiment's key is added after ``in``."""


def content(
    kind: NotificationKind | str, experiment_key: str | None, text: str, data: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The stored content of a notification: its title (from the kind), the sentence ``text``, and ``data``.

    Args:
        kind: The notification's kind.
        experiment_key: The experiment it is about; None for a test of the global targets.
        text: One or two plain sentences saying what happened (the Slack message, the JSON ``text``).
        data: Facts for programs (the decision, the p-value, the action ...): a JSON object.

    Raises:
        ValueError: An unknown kind or an empty text.
    """
    title = TITLES[NotificationKind(kind)]
    if not text.strip():
        msg = "text == '', must say what happened"
        raise ValueError(msg)
    return {
        "title": title if experiment_key is None else f"{title} in {experiment_key}",
        "text": text.strip(),
        "data": dict(data or {}),
    }


def json_body(notification: OutboxNotification) -> dict[str, Any]:
    """The generic JSON body of a notification (its fields are those of docs/notifications.md).

    ``id`` is the outbox id (also sent as ``X-Splitlab-Delivery``), ``created_at`` ISO 8601 UTC.
    """
    body = notification.body
    return {
        "id": notification.id,
        "kind": notification.kind,
        "experiment": notification.experiment_key,
        "snapshot_id": notification.snapshot_id,
        "created_at": notification.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "title": body.get("title", ""),
        "text": body.get("text", ""),
        "data": body.get("data", {}),
    }


def _slack_escape(text: str) -> str:
    # Slack reads &, < and > as markup (links, mentions); its documentation asks for these three escapes.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(notification: OutboxNotification) -> dict[str, Any]:
    """``{"text": ...}``: the title in bold, then the text, in one paragraph (Slack's incoming-webhook form)."""
    body = notification.body
    message = f"*{_slack_escape(str(body.get('title', '')))}*: {_slack_escape(str(body.get('text', '')))}"
    if notification.snapshot_id is not None:
        message += f" (snapshot {notification.snapshot_id})"
    return {"text": message}


def render(notification: OutboxNotification) -> bytes:
    """The request body for the notification's target format, as UTF-8 JSON."""
    body = slack_body(notification) if notification.format == "slack" else json_body(notification)
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
