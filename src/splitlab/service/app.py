"""The application factory: :func:`create_app` builds a FastAPI app over one store per app.

>>> from fastapi.testclient import TestClient
>>> with TestClient(create_app(Settings(database_url="sqlite://"))) as client:
...     client.get("/api/v1/health").json()
{'status': 'ok'}
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from splitlab import __version__
from splitlab.service.routes import assignments, config, experiments, health, ingest, metrics, prometheus
from splitlab.service.settings import Settings
from splitlab.service.telemetry import Telemetry
from splitlab.storage import open_store

__all__ = ["API_PREFIX", "app_from_env", "create_app"]

API_PREFIX = "/api/v1"


def _field(loc: tuple[int | str, ...]) -> str:
    """A validation error's location as a dotted field; the ``body`` prefix is implied."""
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    return ".".join(map(str, parts)) or "body"


_EVENTS_PATH = f"{API_PREFIX}/events"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this type only
    detail = []
    for error in exc.errors():
        message = str(error.get("msg", "invalid value"))
        if error.get("type") == "json_invalid":
            message = f"is not valid JSON: {error.get('ctx', {}).get('error', message)}"
        detail.append({"field": _field(tuple(error.get("loc", ()))), "message": message})
    if request.url.path == _EVENTS_PATH:
        request.app.state.telemetry.event_batches_rejected.labels("invalid").inc()
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (unparsable body, unknown path, wrong method) in the API's error shape."""
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this type only
    detail: Any = exc.detail
    if not isinstance(detail, list):
        field = {400: "body", 404: "path", 405: "method"}.get(exc.status_code, "request")
        detail = [{"field": field, "message": str(detail)}]
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


async def _database_error(_request: Request, exc: Exception) -> JSONResponse:
    """The database cannot be reached (or gave up on a lock): 503, so clients retry, instead of a 500."""
    assert isinstance(exc, OperationalError)  # noqa: S101 - registered for this type only
    body = {"detail": [{"field": "database", "message": f"the store is unavailable: {type(exc.orig).__name__}"}]}
    return JSONResponse(body, status_code=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "1"})


def create_app(settings: Settings) -> FastAPI:
    """A new app whose lifespan opens (and migrates) the store named by ``settings`` and closes it.

    Args:
        settings: How the app runs (see :class:`Settings`); nothing is read from the environment here.

    Returns:
        The FastAPI application, every route under ``/api/v1``.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = open_store(settings.database_url)
        app.state.store = store
        try:
            yield
        finally:
            store.close()

    app = FastAPI(
        title="splitlab",
        version=__version__,
        summary="Experiments, assignments, exposures and events over HTTP.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    telemetry = Telemetry()
    app.state.telemetry = telemetry
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_error)

    @app.middleware("http")
    async def limit_and_time(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length is not None and not length.isdigit():
            body_400 = {"detail": [{"field": "Content-Length", "message": f"{length!r} is not a byte count"}]}
            return JSONResponse(body_400, status_code=status.HTTP_400_BAD_REQUEST)
        if length is not None and int(length) > settings.max_body_bytes:
            message = f"request body of {length} bytes, at most {settings.max_body_bytes}"
            body: dict[str, Any] = {"detail": [{"field": "body", "message": message}]}
            if request.url.path == _EVENTS_PATH:
                telemetry.event_batches_rejected.labels("too_large").inc()
            return JSONResponse(body, status_code=status.HTTP_413_CONTENT_TOO_LARGE)
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = "unmatched"
        if isinstance(route, APIRoute):  # its path is relative to the router included under API_PREFIX
            template = f"{API_PREFIX}{route.path}" if request.url.path.startswith(API_PREFIX) else route.path
        telemetry.latency.labels(request.method, template, str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response

    for router in (health.router, experiments.router, metrics.router, assignments.router, config.router, ingest.router):
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(prometheus.router)
    return app


def app_from_env() -> FastAPI:
    """The app with :meth:`Settings.from_env` (the factory uvicorn's workers call)."""
    return create_app(Settings.from_env())
