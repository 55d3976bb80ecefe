"""The service's settings, read once from the environment by the caller of :func:`create_app`."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, ValidationInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from splitlab.storage import StoreTimeouts

__all__ = ["Settings"]

_PREFIX = "SPLITLAB_"
_EXPECTED = {
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_parsing": "a number",
    "bool_parsing": "true or false",
}
"""What a variable must look like, by the pydantic error of a value that is not that."""


def _must(rule: str, holds: Callable[[Any], bool]) -> AfterValidator:
    """A check of a field's value, refused as ``<field> == <value>, must <rule>``."""

    def check(value: Any, info: ValidationInfo) -> Any:
        if not holds(value):
            msg = f"{info.field_name} == {value!r}, must {rule}"
            raise ValueError(msg)
        return value

    return AfterValidator(check)


class Settings(BaseSettings):
    """How one service process runs: built with keyword arguments, or from the environment by :meth:`from_env`.

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
        clock_skew_seconds: How far past the server's clock an exposure may be dated (clients'
            clocks run fast); default 300. Later exposures are refused with 422.
        request_timeout_seconds: The deadline of every request but analyses, from its headers;
            default 5. A request still waiting for the store then is answered 503 with
            ``Retry-After``, one still waiting for its body 408; the store's connect, lock and
            pool waits are bounded below it (see :meth:`store_timeouts`).
        analysis_timeout_seconds: The deadline of the requests that run analyses (``/results``,
            ``/status``, ``/metrics``) and the store's statement timeout; default 60.
        header_timeout_seconds: How long a client may take to send a request's headers, from its
            connection or its previous request; default 5. A slower one is answered 408 and
            closed (``splitlab serve`` only: it is the HTTP server's job, not the app's).
        auth_failures_per_minute: API-key failures (401) one client address may have in a minute;
            default 60. Further requests from it are answered 429 without looking at the key.
        monitor: Run the monitor (``splitlab monitor``) in a thread of each worker; default False.
            Workers share the work through the monitor's leases: each experiment is analysed by one.
        monitor_poll_seconds: Seconds between the monitor's passes; default 30.
        router_queue_size: Router records (exposures, predictions, shadow answers) a worker keeps
            queued for the store; default 100,000.
        router_queue_full: What the router does when that queue is full (the store is slow or
            down): ``drop`` (default) answers and drops the records (counted), ``shed`` answers
            503 so nothing routed goes unrecorded.
        router_max_connections: Connections a worker keeps open to the model servers, all of
            them together; default 200.
        session_secret: The key that signs the dashboard's session cookies and form tokens (at
            least 32 characters); default None, meaning the random secret the store made at its
            migration to 0010, which every worker and server of the deployment reads alike. Set
            it to keep sessions valid across stores, or change it to end every session.
        session_hours: How long a dashboard sign-in lasts; default 12.
    """

    model_config = SettingsConfigDict(env_prefix=_PREFIX, env_ignore_empty=True, frozen=True, extra="forbid")

    database_url: str | None = None
    redis_url: Annotated[
        str | None,
        _must(
            "start with redis://, rediss:// or unix://",
            lambda url: url is None or url.startswith(("redis://", "rediss://", "unix://")),
        ),
    ] = None
    max_batch_size: Annotated[int, _must("be >= 1", lambda n: n >= 1)] = 10_000
    max_body_bytes: Annotated[int, _must("be >= 1024", lambda n: n >= 1024)] = 10 * 1024 * 1024
    record_assignments: bool = True
    cache_seconds: Annotated[float, _must("be a finite number >= 0", lambda s: 0 <= s < math.inf)] = 1.0
    record_interval: Annotated[float, _must("be in (0, 60]", lambda s: 0 < s <= 60)] = 0.05
    clock_skew_seconds: Annotated[float, _must("be a finite number >= 0", lambda s: 0 <= s < math.inf)] = 300.0
    request_timeout_seconds: Annotated[float, _must("be in [0.5, 300]", lambda s: 0.5 <= s <= 300)] = 5.0
    analysis_timeout_seconds: Annotated[float, _must("be in [1, 3600]", lambda s: 1 <= s <= 3600)] = 60.0
    header_timeout_seconds: Annotated[float, _must("be in [0.5, 300]", lambda s: 0.5 <= s <= 300)] = 5.0
    auth_failures_per_minute: Annotated[int, _must("be >= 1", lambda n: n >= 1)] = 60
    monitor: bool = False
    monitor_poll_seconds: Annotated[float, _must("be in [0.1, 3600]", lambda s: 0.1 <= s <= 3600)] = 30.0
    router_queue_size: Annotated[int, _must("be >= 10", lambda n: n >= 10)] = 100_000
    router_queue_full: Literal["drop", "shed"] = "drop"
    router_max_connections: Annotated[int, _must("be >= 1", lambda n: n >= 1)] = 200
    session_secret: Annotated[str | None, _must("be at least 32 characters", lambda s: s is None or len(s) >= 32)] = (
        Field(default=None, repr=False)
    )
    session_hours: Annotated[float, _must("be in (0, 720]", lambda h: 0 < h <= 720)] = 12.0

    def store_timeouts(self) -> StoreTimeouts:
        """The store's waits, each bounded so a request's deadline finds the store's error first.

        A new connection may take 60 % of the request deadline (at least 2 s, libpq's minimum), a
        lock or a pooled connection 40 %; a PostgreSQL peer silent for twice the deadline is
        dropped by the kernel (a partition); no statement runs longer than an analysis may.
        """
        request = self.request_timeout_seconds
        return StoreTimeouts(
            connect_seconds=max(2.0, 0.6 * request),
            statement_seconds=self.analysis_timeout_seconds,
            lock_seconds=0.4 * request,
            pool_seconds=0.4 * request,
            silent_peer_seconds=max(3.0, 2 * request),
        )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments only: the environment is read once, by :meth:`from_env`, not by every ``Settings()``."""
        del settings_cls, env_settings, dotenv_settings, file_secret_settings
        return (init_settings,)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``SPLITLAB_<FIELD>`` variables (``SPLITLAB_DATABASE_URL``, ``SPLITLAB_REDIS_URL``,
        ``SPLITLAB_MAX_BATCH_SIZE``, ``SPLITLAB_MAX_BODY_BYTES``, ``SPLITLAB_RECORD_ASSIGNMENTS``
        (``0``/``false``/``no``/``off`` turns it off), ``SPLITLAB_CACHE_SECONDS``, ``SPLITLAB_RECORD_INTERVAL``,
        ``SPLITLAB_CLOCK_SKEW_SECONDS``, ``SPLITLAB_REQUEST_TIMEOUT_SECONDS``, ``SPLITLAB_ANALYSIS_TIMEOUT_SECONDS``,
        ``SPLITLAB_HEADER_TIMEOUT_SECONDS``, ``SPLITLAB_AUTH_FAILURES_PER_MINUTE``, ``SPLITLAB_MONITOR``,
        ``SPLITLAB_MONITOR_POLL_SECONDS``, ``SPLITLAB_ROUTER_QUEUE_SIZE``, ``SPLITLAB_ROUTER_QUEUE_FULL``,
        ``SPLITLAB_ROUTER_MAX_CONNECTIONS``, ``SPLITLAB_SESSION_SECRET``, ``SPLITLAB_SESSION_HOURS``);
        unset or empty means the default.

        Args:
            environ: The variables; default ``os.environ``.

        Raises:
            ValueError: A variable is set to something that is not a valid value; the message names it.

        >>> Settings.from_env({"SPLITLAB_MAX_BATCH_SIZE": "500"}).max_batch_size
        500
        """  # noqa: D205
        values = _Environment(cls, os.environ if environ is None else environ)()
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ValueError("; ".join(_problem(error) for error in exc.errors(include_url=False))) from None


class _Environment(EnvSettingsSource):
    """pydantic-settings' reading of the ``SPLITLAB_`` variables, from ``environ`` rather than always ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # As EnvSettingsSource reads os.environ under this config: names case-insensitive, empty values unset.
        return {name.lower(): value for name, value in self._environ.items() if value}


def _problem(error: Any) -> str:
    """A refused variable, named: ``SPLITLAB_MAX_BATCH_SIZE == 'many', must be an integer``."""
    variable = f"{_PREFIX}{str(error['loc'][0]).upper()}"
    expected = _EXPECTED.get(error["type"])
    if expected is not None:
        return f"{variable} == {error['input']!r}, must be {expected}"
    return f"{variable}: {str(error['msg']).removeprefix('Value error, ')}"
