"""Liveness and readiness (no key needed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from splitlab.service.deps import StoreDep
from splitlab.storage import head_revision

router = APIRouter(tags=["health"])


@router.get("/health", summary="The process is up")
def health() -> dict[str, str]:
    """Always ``{"status": "ok"}`` while the process answers."""
    return {"status": "ok"}


@router.get("/ready", summary="The store is reachable and migrated", response_model=None)
def ready(store: StoreDep) -> dict[str, Any] | JSONResponse:
    """200 when the database answers at the newest schema revision, 503 otherwise."""
    try:
        revision = store.schema_revision()
    except SQLAlchemyError as exc:
        body = {"status": "unavailable", "detail": [{"field": "database", "message": f"unreachable: {exc}"}]}
        return JSONResponse(body, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
    head = head_revision()
    if revision != head:
        message = f"schema revision {revision}, expected {head}"
        body = {"status": "unavailable", "detail": [{"field": "database", "message": message}]}
        return JSONResponse(body, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
    return {"status": "ok", "database": store.dialect, "revision": revision}
