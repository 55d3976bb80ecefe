"""Dependencies of the routes as ``Annotated`` aliases: the store, the settings, and the caller's API key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from splitlab.service.problems import InvalidInputError
from splitlab.service.settings import Settings
from splitlab.service.telemetry import Telemetry
from splitlab.storage import ApiKey, Store

__all__ = ["AdminKey", "AnyKey", "SettingsDep", "StoreDep", "TelemetryDep", "actor", "http_error", "invalid"]

_bearer = HTTPBearer(auto_error=False, description="An API key from `splitlab keys create`.")


def http_error(code: int, field: str, message: str, *, headers: dict[str, str] | None = None) -> HTTPException:
    """An HTTP error whose body is ``{"detail": [{"field": ..., "message": ...}]}``, like every 4xx here."""
    return HTTPException(code, detail=[{"field": field, "message": message}], headers=headers)


def invalid(error: InvalidInputError) -> HTTPException:
    """A 422 listing every problem of ``error``, each with its field."""
    detail = [{"field": field, "message": message} for field, message in error.problems]
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail)


def get_store(request: Request) -> Store:
    """The store opened by the app's lifespan."""
    store: Store = request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


def get_telemetry(request: Request) -> Telemetry:
    """The app's Prometheus metrics."""
    telemetry: Telemetry = request.app.state.telemetry
    return telemetry


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TelemetryDep = Annotated[Telemetry, Depends(get_telemetry)]


def authenticate(
    store: StoreDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> ApiKey:
    """The active API key of ``Authorization: Bearer <key>``; 401 when missing, malformed, unknown or revoked."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise http_error(
            status.HTTP_401_UNAUTHORIZED,
            "Authorization",
            "missing API key: send the header 'Authorization: Bearer <key>' (create keys with `splitlab keys create`)",
            headers=challenge,
        )
    key = store.keys.verify(key=credentials.credentials)
    if key is None:
        raise http_error(
            status.HTTP_401_UNAUTHORIZED,
            "Authorization",
            "the API key is not valid: unknown, malformed or revoked",
            headers=challenge,
        )
    return key


def actor(key: ApiKey) -> str:
    """How a key is named in the audit log."""
    return f"api-key:{key.name} ({key.id})"


def require_admin(key: Annotated[ApiKey, Depends(authenticate)]) -> ApiKey:
    """The caller's key if it has role admin; 403 otherwise."""
    if key.role != "admin":
        raise http_error(
            status.HTTP_403_FORBIDDEN,
            "Authorization",
            f"this endpoint needs an admin key; key {key.name!r} ({key.id}) has role {key.role!r}",
        )
    return key


AnyKey = Annotated[ApiKey, Depends(authenticate)]
"""Any active key: sdk or admin (an admin reads and does everything an sdk key does)."""
AdminKey = Annotated[ApiKey, Depends(require_admin)]
"""An active admin key."""
