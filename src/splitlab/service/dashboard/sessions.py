"""Dashboard sessions: signed tokens in a cookie, and the form tokens (CSRF) derived from them.

A session token reads ``<key id>.<expiry>.<signature>``: the signature is HMAC-SHA256 over the key
id and the expiry (Unix seconds) with the deployment's session secret, so the cookie holds no API
key and cannot be forged or extended without the secret. Every worker of a deployment signs with
the same secret (``SPLITLAB_SESSION_SECRET``, else the one the store made at its migration: see
:meth:`splitlab.storage.ApiKeyRepository.session_secret`), so a session made by one worker is
valid in all of them and survives restarts. Whether the key is still active is checked on every
request by the caller (:meth:`splitlab.service.runtime.Runtime.active_key`): revoking a key ends
its sessions.

A form token is HMAC-SHA256 over ``csrf:`` and the session token: a page of that session can post,
another site's form cannot (it cannot read the page, and SameSite=Strict keeps the cookie away).

>>> signer = SessionSigner("s" * 32)
>>> token = signer.issue("abc123", now=1_000.0, seconds=60)
>>> signer.key_id(token, now=1_030.0), signer.key_id(token, now=1_061.0), signer.key_id(token + "0", now=1_030.0)
('abc123', None, None)
>>> signer.check_form(token, signer.form_token(token)), signer.check_form(token, "forged")
(True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import re

__all__ = ["COOKIE", "SessionSigner"]

COOKIE = "splitlab_session"
"""The session cookie's name."""
_TOKEN = re.compile(r"([A-Za-z0-9]{1,32})\.([0-9]{1,12})\.([0-9a-f]{64})")


class SessionSigner:
    """Makes and checks session tokens and form tokens with one secret (see the module docstring)."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode("utf-8")

    def _sign(self, message: str) -> str:
        return hmac.new(self._secret, message.encode("utf-8"), hashlib.sha256).hexdigest()

    def issue(self, key_id: str, *, now: float, seconds: float) -> str:
        """A token for the key ``key_id`` that expires ``seconds`` after ``now`` (Unix time)."""
        expires = int(now + seconds)
        return f"{key_id}.{expires}.{self._sign(f'{key_id}.{expires}')}"

    def key_id(self, token: str, *, now: float) -> str | None:
        """The key id of a valid, unexpired token; None for anything else (malformed, forged, expired)."""
        match = _TOKEN.fullmatch(token)
        if match is None:
            return None
        key_id, expires, signature = match.groups()
        if not hmac.compare_digest(signature, self._sign(f"{key_id}.{expires}")) or int(expires) <= now:
            return None
        return key_id

    def form_token(self, session_token: str) -> str:
        """The CSRF token every form of the session carries."""
        return self._sign(f"csrf:{session_token}")

    def check_form(self, session_token: str, form_token: str) -> bool:
        """Whether ``form_token`` is the session's form token (compared in constant time)."""
        return hmac.compare_digest(self.form_token(session_token).encode(), form_token.encode("utf-8", "replace"))
