"""Redis as a cache shared by every worker of one deployment: sticky assignments and bandit weights.

The store stays the source of truth; Redis holds copies, so losing Redis (it need not persist
anything) costs reads, never data:

* **Sticky assignments** ``splitlab:<deployment>:sticky:<experiment>:<bucket version>``: a hash
  unit -> variant. A worker writes a unit's variant after the store recorded it, and marks units
  the store had no assignment for with ``""`` (``HSETNX``, so a marker never hides a variant
  written first; a variant written later overwrites the marker). Hashes expire after a day.
* **Bandit weights** ``splitlab:<deployment>:bandit:<experiment>:<bucket version>:<window>``: the
  first weights computed for a window (``SET NX``), so every worker allocates a window with the
  same weights even when late rewards arrive while they compute.

Keys carry the store's deployment id (:attr:`splitlab.storage.Store.deployment_id`): two
deployments sharing one Redis never read each other's entries.

Redis is optional even when configured: a service whose Redis does not answer starts and serves
from the store, and its readiness probe says it is degraded (:meth:`RedisCache.problem`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

__all__ = ["ABSENT", "STICKY_TTL_SECONDS", "RedisCache", "redis_problem"]

ABSENT = ""
"""The marker of a unit the store has no assignment for."""

STICKY_TTL_SECONDS = 24 * 3600
_WEIGHTS_TTL_SECONDS = 7 * 24 * 3600


class RedisCache:
    """The shared cache over one Redis connection pool (thread-safe; calls are short and synchronous).

    Args:
        url: ``redis://host:port/db`` (or ``rediss://``, ``unix://``).
        deployment: The store's deployment id, the prefix of every key.
        timeout: Seconds per Redis call before it fails (the caller then reads the store).
    """

    def __init__(self, url: str, *, deployment: str, timeout: float = 0.5) -> None:
        import redis

        self._redis = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
        )
        self._prefix = f"splitlab:{deployment}"
        self.url = _without_password(url)
        """The URL, password hidden."""

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()

    def problem(self) -> str | None:
        """Why Redis does not answer a ping now, or None when it does (at most ``timeout`` seconds)."""
        import redis

        try:
            self._redis.ping()
        except redis.RedisError as exc:
            return f"Redis at {self.url} does not answer: {str(exc).rstrip('.')}"
        return None

    def _sticky_key(self, experiment_key: str, bucket_version: int) -> str:
        return f"{self._prefix}:sticky:{experiment_key}:{bucket_version}"

    def sticky_get(self, experiment_key: str, bucket_version: int, unit_ids: Sequence[str]) -> dict[str, str]:
        """The cached entries of ``unit_ids``: a variant, or :data:`ABSENT`; units not cached are left out."""
        if not unit_ids:
            return {}
        values = self._redis.hmget(self._sticky_key(experiment_key, bucket_version), list(unit_ids))
        return {unit: str(value) for unit, value in zip(unit_ids, values, strict=True) if value is not None}

    def sticky_put(
        self, experiment_key: str, bucket_version: int, variants: Mapping[str, str], absent: Sequence[str] = ()
    ) -> None:
        """Cache variants the store holds (overwriting markers) and mark ``absent`` units (never overwriting)."""
        if not variants and not absent:
            return
        key = self._sticky_key(experiment_key, bucket_version)
        pipe = self._redis.pipeline(transaction=False)
        if variants:
            pipe.hset(key, mapping=dict(variants))  # type: ignore[arg-type]  # redis-py's Mapping is invariant
        for unit in absent:
            pipe.hsetnx(key, unit, ABSENT)
        pipe.expire(key, STICKY_TTL_SECONDS)
        pipe.execute()

    def weights(
        self, experiment_key: str, bucket_version: int, window: int, computed: dict[str, Any]
    ) -> dict[str, Any]:
        """The weights every worker uses for ``window``: the first ones stored, else ``computed`` (stored now)."""
        key = f"{self._prefix}:bandit:{experiment_key}:{bucket_version}:{window}"
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(key, json.dumps(computed), nx=True, ex=_WEIGHTS_TTL_SECONDS)
        pipe.get(key)
        _, stored = pipe.execute()
        return computed if stored is None else dict(json.loads(stored))


def redis_problem(url: str, *, timeout: float = 0.5) -> str | None:
    """Why the Redis at ``url`` does not answer a ping, or None when it does (see :meth:`RedisCache.problem`)."""
    cache = RedisCache(url, deployment="", timeout=timeout)
    try:
        return cache.problem()
    finally:
        cache.close()


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user_info, _, host = parts.netloc.rpartition("@")
    user = user_info.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()
