"""Liveness and readiness (no key needed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from splitlab.service.deps import RuntimeDep
from splitlab.service.routes import API_PREFIX
from splitlab.storage import head_revision

router = APIRouter(prefix=API_PREFIX, tags=["health"])


@router.get("/health", summary="The process is up")
def health() -> dict[str, str]:
    """Always ``{"status": "ok"}`` while the process answers."""
    return {"status": "ok"}


@router.get("/ready", summary="The store is reachable and migrated", response_model=None)
def ready(runtime: RuntimeDep) -> dict[str, Any] | JSONResponse:
    """200 when the database answers at the newest schema revision, 503 otherwise.

    A configured Redis that does not answer makes the answer 200 ``{"status": "degraded"}``,
    naming Redis in ``detail``: Redis is an optional cache and the store alone serves (no reason
    to take the worker out of a load balancer), but the state is visible to a probe.
    """
    store = runtime.store
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
    answer: dict[str, Any] = {"status": "ok", "database": store.dialect, "revision": revision}
    problem = None if runtime.shared is None else runtime.shared.problem()
    if problem is not None:
        message = f"{problem}; the store alone serves (sticky assignments and bandit weights are not shared)"
        answer.update(status="degraded", detail=[{"field": "redis", "message": message}])
    return answer
