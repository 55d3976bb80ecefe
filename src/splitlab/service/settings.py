"""The service's settings, read once from the environment by the caller of :func:`create_app`."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Settings"]

_PREFIX = "SPLITLAB_"
_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """How one service process runs.

    Attributes:
        database_url: The store's URL; default None, meaning ``SPLITLAB_DATABASE_URL`` or the
            SQLite file ``splitlab.db`` (see :func:`splitlab.storage.open_store`).
        redis_url: A Redis server shared by the workers (``redis://host:6379/0``) for sticky
            assignments and bandit state; default None (each worker caches in its own memory).
        max_batch_size: Most items in one assign, exposures, events or rewards batch; default
            10,000. Larger batches are answered with 413.
        max_body_bytes: Largest request body; default 10 MiB (413 above).
        record_assignments: Record every new enrolment as a sticky assignment, so a later weight
            change keeps assigned units in their variant; default True.
        cache_seconds: How long a worker trusts what it read from the store about API keys,
            experiments and bandit weights before reading it again; default 1. A change made
            through another worker (or the CLI) reaches this one within this time; a change made
            through this worker is seen at once.
        record_interval: Seconds between the batched writes of new sticky assignments of
            hash-allocated experiments; default 0.05 (random and bandit allocations are written
            before the answer is sent).
    """

    database_url: str | None = None
    redis_url: str | None = None
    max_batch_size: int = 10_000
    max_body_bytes: int = 10 * 1024 * 1024
    record_assignments: bool = True
    cache_seconds: float = 1.0
    record_interval: float = 0.05

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            msg = f"max_batch_size == {self.max_batch_size}, must be >= 1"
            raise ValueError(msg)
        if self.max_body_bytes < 1024:
            msg = f"max_body_bytes == {self.max_body_bytes}, must be >= 1024"
            raise ValueError(msg)
        if not 0 <= self.cache_seconds < math.inf:
            msg = f"cache_seconds == {self.cache_seconds}, must be a finite number >= 0"
            raise ValueError(msg)
        if not 0 < self.record_interval <= 60:
            msg = f"record_interval == {self.record_interval}, must be in (0, 60]"
            raise ValueError(msg)
        if self.redis_url is not None and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            msg = f"redis_url == {self.redis_url!r}, must start with redis://, rediss:// or unix://"
            raise ValueError(msg)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``SPLITLAB_<FIELD>`` variables (``SPLITLAB_DATABASE_URL``, ``SPLITLAB_REDIS_URL``,
        ``SPLITLAB_MAX_BATCH_SIZE``, ``SPLITLAB_MAX_BODY_BYTES``, ``SPLITLAB_RECORD_ASSIGNMENTS``
        (``0``/``false`` turns it off), ``SPLITLAB_CACHE_SECONDS``, ``SPLITLAB_RECORD_INTERVAL``);
        unset means the default.

        Raises:
            ValueError: A variable is set to something that is not a valid value; the message names it.

        >>> Settings.from_env({"SPLITLAB_MAX_BATCH_SIZE": "500"}).max_batch_size
        500
        """  # noqa: D205
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name in ("database_url", "redis_url"):
            if text := env.get(f"{_PREFIX}{name.upper()}"):
                values[name] = text
        for name, kind in (
            ("max_batch_size", int),
            ("max_body_bytes", int),
            ("cache_seconds", float),
            ("record_interval", float),
        ):
            variable = f"{_PREFIX}{name.upper()}"
            if (text := env.get(variable)) is not None:
                try:
                    values[name] = kind(text)
                except ValueError:
                    noun = "an integer" if kind is int else "a number"
                    msg = f"{variable} == {text!r}, must be {noun}"
                    raise ValueError(msg) from None
        variable = f"{_PREFIX}RECORD_ASSIGNMENTS"
        if (text := env.get(variable)) is not None:
            flag = _FLAGS.get(text.strip().lower())
            if flag is None:
                msg = f"{variable} == {text!r}, must be true or false"
                raise ValueError(msg)
            values["record_assignments"] = flag
        return cls(**values)  # type: ignore[arg-type]
