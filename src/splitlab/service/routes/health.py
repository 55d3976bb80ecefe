"""Liveness and readiness (no key needed).

``/health`` runs on the event loop and touches nothing: it answers while every worker thread is
stuck on an unreachable store, so a liveness probe never restarts a process that is merely
waiting. ``/ready`` asks the store in a thread of its own, with a deadline of its own.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse

from splitlab.service.deps import RuntimeDep
from splitlab.service.routes import API_PREFIX
from splitlab.service.runtime import Runtime
from splitlab.storage import head_revision

router = APIRouter(prefix=API_PREFIX, tags=["health"])

READY_TIMEOUT_SECONDS = 2.0
"""How long ``/ready`` waits for the store before it answers 503 "database unreachable" (less when
``request_timeout_seconds`` is shorter: the probe's answer must come before the request's deadline)."""

_log = logging.getLogger("splitlab.service")

# One thread for readiness checks, apart from the pool the routes share: a probe still answers when
# that pool is full of requests waiting on the store. One check at a time; probes that come while
# it runs wait for it rather than starting another (a partition would otherwise pile them up).
_checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="splitlab-ready")
_running: dict[int, Future[tuple[str | None, str | None]]] = {}


@router.get("/health", summary="The process is up")
async def health() -> dict[str, str]:
    """Always ``{"status": "ok"}`` while the process answers (no store, no worker thread)."""
    return {"status": "ok"}


def _unavailable(message: str) -> JSONResponse:
    body = {"status": "unavailable", "detail": [{"field": "database", "message": message}]}
    return JSONResponse(body, status_code=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "1"})


def _check(runtime: Runtime) -> tuple[str | None, str | None]:
    """The store's schema revision, and why Redis does not answer (None: it does, or there is none)."""
    revision = runtime.store.schema_revision()
    problem = None if runtime.shared is None else runtime.shared.problem()
    if problem is not None:
        _log.warning("splitlab: /ready: %s", problem)
    return revision, problem


@router.get("/ready", summary="The store is reachable and migrated", response_model=None)
async def ready(runtime: RuntimeDep) -> dict[str, Any] | JSONResponse:
    """200 when the database answers at the newest schema revision within a short deadline, 503 otherwise.

    An unreachable or slow store reads "database unreachable" and nothing more (no host, port or
    driver text: this route needs no key); the cause is logged. A configured Redis that does not
    answer makes the answer 200 ``{"status": "degraded"}``, naming Redis in ``detail``: Redis is an
    optional cache and the store alone serves (no reason to take the worker out of a load
    balancer), but the state is visible to a probe.
    """
    store = runtime.store
    check = _running.get(id(store))
    if check is None or check.done():
        check = _checker.submit(_check, runtime)
        _running[id(store)] = check
    timeout = min(READY_TIMEOUT_SECONDS, 0.8 * runtime.settings.request_timeout_seconds)
    try:
        revision, problem = await asyncio.wait_for(asyncio.wrap_future(check), timeout)
    except TimeoutError:
        _log.warning("splitlab: /ready: the store did not answer within %g s", timeout)
        return _unavailable("database unreachable")
    except Exception as exc:  # whatever the driver says stays in the log: this route needs no key
        _log.warning("splitlab: /ready: the store failed: %s", exc)
        return _unavailable("database unreachable")
    finally:
        if check.done():
            _running.pop(id(store), None)
    head = head_revision()
    if revision != head:
        return _unavailable(f"schema revision {revision}, expected {head}")
    answer: dict[str, Any] = {"status": "ok", "database": store.dialect, "revision": revision}
    if problem is not None:
        message = "Redis does not answer; the store alone serves (sticky assignments and bandit weights are not shared)"
        answer.update(status="degraded", detail=[{"field": "redis", "message": message}])
    return answer
