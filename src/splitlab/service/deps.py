"""Dependencies of the routes as ``Annotated`` aliases: the runtime, the store, the settings, and the caller's API key.

The hot ones are ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread, and
the hop costs more than what these do (a dictionary look-up when the cache is warm).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, status
from fastapi.security import HTTPBearer

from splitlab.service.errors import http_error
from splitlab.service.runtime import Runtime
from splitlab.service.settings import Settings
from splitlab.service.telemetry import Telemetry
from splitlab.storage import ApiKey, Store

__all__ = [
    "VIEWER",
    "AdminKey",
    "AnyKey",
    "ApiKeyAuth",
    "RuntimeDep",
    "SettingsDep",
    "StoreDep",
    "TelemetryDep",
    "actor",
    "runtime_of",
]


def runtime_of(request: Request) -> Runtime:
    """The runtime built by the app's lifespan (for the hot routes, which take the request itself)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_runtime(request: Request) -> Runtime:
    """The runtime built by the app's lifespan."""
    return runtime_of(request)


async def get_store(request: Request) -> Store:
    """The store opened by the app's lifespan."""
    runtime: Runtime = request.app.state.runtime
    return runtime.store


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_telemetry(request: Request) -> Telemetry:
    """The app's Prometheus metrics."""
    telemetry: Telemetry = request.app.state.telemetry
    return telemetry


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TelemetryDep = Annotated[Telemetry, Depends(get_telemetry)]


class ApiKeyAuth(HTTPBearer):
    """The active API key of ``Authorization: Bearer <key>`` (of role ``role`` when given).

    401 when the key is missing, malformed, unknown or revoked; 403 when its role may not call the
    route (a ``viewer`` key may call every GET route and nothing else); 429 (with ``Retry-After``)
    once the client's address had ``auth_failures_per_minute`` refused keys this minute, before its
    key is even looked at.

    A subclass of FastAPI's ``HTTPBearer`` so the OpenAPI schema documents the scheme, but one
    dependency instead of a chain of three: ``/assign`` runs it on every request. Verdicts are
    cached for ``cache_seconds`` (served up to twice that while a re-check runs): a key revoked with
    `splitlab keys revoke` stops working within ``2 * cache_seconds`` in every worker.
    """

    def __init__(self, *, role: str | None = None) -> None:
        super().__init__(auto_error=False, scheme_name="ApiKey", description="An API key from `splitlab keys create`.")
        self.role = role

    async def __call__(self, request: Request) -> ApiKey:  # type: ignore[override]
        """The caller's key, or an HTTP error."""
        return await self.check(request, runtime_of(request))

    async def check(self, request: Request, runtime: Runtime) -> ApiKey:
        """:meth:`__call__` for a lean endpoint that holds the runtime already."""
        # Straight from the ASGI headers (names arrive lower-cased): request.headers builds a
        # Headers object, a measurable part of an /assign request.
        header = next((value for name, value in request.scope["headers"] if name == b"authorization"), b"")
        scheme, _, credentials = header.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not credentials:
            raise http_error(
                status.HTTP_401_UNAUTHORIZED,
                "Authorization",
                "missing API key: send the header 'Authorization: Bearer <key>' (create keys with "
                "`splitlab keys create`)",
                headers=_CHALLENGE,
            )
        client = request.scope["client"][0] if request.scope.get("client") else ""
        if wait := runtime.auth_failures.retry_after(client):
            runtime.telemetry.auth_failures.labels("throttled").inc()
            raise http_error(
                status.HTTP_429_TOO_MANY_REQUESTS,
                "Authorization",
                f"too many requests with invalid API keys from this client; retry in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        key = await runtime.verify_key(credentials.strip())
        if key is None:
            runtime.auth_failures.note(client)
            runtime.telemetry.auth_failures.labels("invalid").inc()
            raise http_error(
                status.HTTP_401_UNAUTHORIZED,
                "Authorization",
                "the API key is not valid: unknown, malformed or revoked",
                headers=_CHALLENGE,
            )
        if key.role == VIEWER:
            # The one place a viewer is held to reading: every route runs this check, so none is missed.
            if request.scope["method"] not in _READ_METHODS:
                raise http_error(
                    status.HTTP_403_FORBIDDEN,
                    "Authorization",
                    f"key {key.name!r} ({key.id}) has role 'viewer', which may only read (GET); "
                    f"{request.scope['method']} needs an admin or sdk key",
                )
            return key
        if self.role is not None and key.role != self.role:
            raise http_error(
                status.HTTP_403_FORBIDDEN,
                "Authorization",
                f"this endpoint needs an {self.role} key; key {key.name!r} ({key.id}) has role {key.role!r}",
            )
        return key


_CHALLENGE = {"WWW-Authenticate": "Bearer"}
VIEWER = "viewer"
"""The read-only role: every GET route accepts it, whatever role the route asks for, and nothing else does."""
_READ_METHODS = frozenset({"GET", "HEAD"})


def actor(key: ApiKey) -> str:
    """How a key is named in the audit log."""
    return f"api-key:{key.name} ({key.id})"


AnyKey = Annotated[ApiKey, Depends(ApiKeyAuth())]
"""Any active key: sdk or admin (an admin reads and does everything an sdk key does); a viewer on GET routes."""
AdminKey = Annotated[ApiKey, Depends(ApiKeyAuth(role="admin"))]
"""An active admin key."""
