"""API keys of the HTTP service: a role, a name and a hashed secret, revocable.

A key reads ``slk_<id>_<secret>``: the id finds the row, and only the SHA-256 of the secret is
stored, so a leaked database yields no usable key. The full key is shown once, at creation.
SHA-256 rather than a slow password hash because the secret is 256 random bits, not a password:
nothing is guessable, and the check runs on every request.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update

from splitlab.storage._sql import Transactions, now
from splitlab.storage.errors import NotFoundError
from splitlab.storage.records import check_text
from splitlab.storage.tables import api_keys, deployment

__all__ = ["API_KEY_PREFIX", "API_KEY_ROLES", "ApiKey", "ApiKeyRepository", "is_well_formed", "key_id_of"]

API_KEY_PREFIX = "slk"
_WELL_FORMED = re.compile(rf"{API_KEY_PREFIX}_[A-Za-z0-9]{{1,32}}_[A-Za-z0-9_-]{{1,128}}")
API_KEY_ROLES = ("admin", "sdk", "viewer")
"""``admin`` manages experiments and reads everything; ``sdk`` reads running configs, assigns and sends data;
``viewer`` reads everything and changes nothing (the service refuses its every request but a GET)."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored API key (never its secret)."""

    id: str
    name: str
    role: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        """Whether the key still authenticates."""
        return self.revoked_at is None


def is_well_formed(key: str) -> bool:
    """Whether ``key`` has the shape of a key ``create`` makes (``slk_<id>_<secret>``, ASCII, bounded length).

    A service checks this before it looks a key up or caches the verdict, so junk in the
    Authorization header costs no read and no memory.
    """
    return _WELL_FORMED.fullmatch(key) is not None


def key_id_of(key: str) -> str:
    """The id part of a well-formed key (``slk_<id>_<secret>``): what ``list`` and ``revoke`` name it by."""
    return key.split("_", 2)[1]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class ApiKeyRepository:
    """Create, verify, list and revoke API keys.

    >>> from splitlab.storage import open_store
    >>> with open_store("sqlite://") as store:
    ...     record, key = store.keys.create(role="sdk", name="web", actor="ana")
    ...     store.keys.verify(key=key) == record, store.keys.verify(key=key + "x")
    (True, None)
    """

    def __init__(self, tx: Transactions) -> None:
        self._tx = tx

    def create(self, *, role: str, name: str, actor: str) -> tuple[ApiKey, str]:
        """A new key with ``role``; returns its record and the full key (shown once, not stored).

        Raises:
            ValueError: ``role`` is not one of :data:`API_KEY_ROLES`, or an empty name or actor.
        """
        if role not in API_KEY_ROLES:
            msg = f"role == {role!r}, must be one of {', '.join(API_KEY_ROLES)}"
            raise ValueError(msg)
        check_text(name, name="name")
        check_text(actor, name="actor")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        record = ApiKey(id=key_id, name=name, role=role, created_at=now(), created_by=actor, revoked_at=None)
        with self._tx.write() as conn:
            conn.execute(
                api_keys.insert().values(
                    id=key_id,
                    name=name,
                    role=role,
                    secret_hash=_digest(secret),
                    created_at=record.created_at,
                    created_by=actor,
                    revoked_at=None,
                )
            )
        return record, f"{API_KEY_PREFIX}_{key_id}_{secret}"

    def verify(self, *, key: str) -> ApiKey | None:
        """The active key whose full text is ``key``; None when malformed, unknown, revoked or wrong."""
        if not is_well_formed(key):
            return None
        _, key_id, secret = key.split("_", 2)  # the secret may hold "_" too
        with self._tx.read() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
        if row is None or row.revoked_at is not None:
            return None
        return _record(row) if hmac.compare_digest(_digest(secret), row.secret_hash) else None

    def get(self, *, key_id: str) -> ApiKey | None:
        """The key whose id is ``key_id`` (revoked or not), or None."""
        with self._tx.read() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
        return None if row is None else _record(row)

    def active_ids(self) -> frozenset[str]:
        """The ids of the keys not revoked (one read; a service keeps them to refuse unknown ids without a read)."""
        with self._tx.read() as conn:
            ids = conn.execute(select(api_keys.c.id).where(api_keys.c.revoked_at.is_(None))).scalars()
            return frozenset(ids)

    def list(self) -> builtins.list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        with self._tx.read() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)).all()
        return [_record(row) for row in rows]

    def revoke(self, *, key_id: str) -> ApiKey:
        """Revoke a key (``verify`` refuses it from now on); revoking twice keeps the first time.

        Raises:
            NotFoundError: No key ``key_id``.
        """
        with self._tx.write() as conn:
            conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now())
            )
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
        if row is None:
            msg = f"API key {key_id!r} does not exist"
            raise NotFoundError(msg)
        return _record(row)

    def session_secret(self) -> str:
        """The deployment's random secret for signing sessions (made by migration 0010, the same for every worker).

        Every process opening the store reads the same value, so a session signed by one worker is
        valid in all of them and survives restarts.
        """
        with self._tx.read() as conn:
            return str(conn.execute(select(deployment.c.session_secret)).scalar_one())


def _record(row: Row[Any]) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        role=row.role,
        created_at=row.created_at,
        created_by=row.created_by,
        revoked_at=row.revoked_at,
    )
