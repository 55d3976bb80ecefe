"""Webhook signatures: HMAC-SHA256 of the timestamp and the raw body, checked by :func:`verify`.

A signed request carries ``X-Splitlab-Signature: t=<unix seconds>,v1=<hex digest>``, where the
digest is HMAC-SHA256 under the target's secret of ``"<t>.<raw body>"`` (the bytes as sent). The
timestamp is signed with the body, so a captured request cannot be replayed once it is older than
the receiver's tolerance. ``X-Splitlab-Delivery`` carries the notification's outbox id, the same on
every retry: a receiver that has seen it may answer 2xx and do nothing.

Example:
    >>> header = sign(b"s3cret", b'{"kind": "test"}', timestamp=1_700_000_000)
    >>> header
    't=1700000000,v1=a5651ade0a5c3078e1e0621600c3c3404030b015ee4c8fb78f7bff7723557600'
    >>> verify(b"s3cret", header, b'{"kind": "test"}', now=1_700_000_100)
    True
    >>> verify(b"s3cret", header, b'{"kind": "test!"}', now=1_700_000_100)
    False
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["DELIVERY_HEADER", "SIGNATURE_HEADER", "TIMESTAMP_TOLERANCE_SECONDS", "sign", "verify"]

SIGNATURE_HEADER = "X-Splitlab-Signature"
DELIVERY_HEADER = "X-Splitlab-Delivery"
TIMESTAMP_TOLERANCE_SECONDS = 300
"""How far a signature's timestamp may be from the receiver's clock, by default (5 minutes)."""


def _digest(secret: bytes | str, timestamp: int, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: bytes | str, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``X-Splitlab-Signature`` value for ``body``: ``t=<timestamp>,v1=<hex HMAC-SHA256>``.

    Args:
        secret: The target's secret (a ``str`` is UTF-8 encoded).
        body: The request body, exactly as sent.
        timestamp: Unix seconds; default now.
    """
    stamp = int(time.time()) if timestamp is None else timestamp
    return f"t={stamp},v1={_digest(secret, stamp, body)}"


def verify(
    secret: bytes | str,
    header: str,
    body: bytes,
    *,
    tolerance_seconds: float = TIMESTAMP_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether ``header`` (an ``X-Splitlab-Signature`` value) signs ``body`` under ``secret``, recently enough.

    It holds when one ``v1`` digest equals the HMAC-SHA256 of ``"<t>.<body>"`` (compared in
    constant time) and ``t`` is within ``tolerance_seconds`` of ``now`` (default: the clock).
    A malformed header is False, never an exception. This function has no dependency but the
    standard library: a receiver may copy it.
    """
    fields: dict[str, list[str]] = {}
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if sep:
            fields.setdefault(name, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        return False
    expected = _digest(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in fields.get("v1", []))
