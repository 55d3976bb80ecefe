"""The application factory: :func:`create_app` builds a FastAPI app over one store per app.

>>> from fastapi.testclient import TestClient
>>> with TestClient(create_app(Settings(database_url="sqlite://"))) as client:
...     client.get("/api/v1/health").json()
{'status': 'ok'}
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.staticfiles import StaticFiles

from splitlab import __version__
from splitlab.operations.errors import ConflictError, InvalidInputError
from splitlab.service import dashboard
from splitlab.service.errors import (
    STORE_UNAVAILABLE,
    UnavailableError,
    error_response,
    is_json,
    unsupported_media_type,
    validation_problems,
)
from splitlab.service.middleware import RequestGuard
from splitlab.service.routes import (
    API_PREFIX,
    assign,
    bandits,
    config,
    experiments,
    health,
    ingest,
    metric_definitions,
    monitor,
    prometheus,
    route,
)
from splitlab.service.runtime import Runtime
from splitlab.service.settings import Settings
from splitlab.service.telemetry import Telemetry
from splitlab.storage import NotFoundError, open_store

__all__ = ["API_PREFIX", "app_from_env", "create_app"]

_EVENTS_PATH = f"{API_PREFIX}/events"
_ANALYSIS_PATHS = ("/results", "/status", "/metrics")
_DASHBOARD_EXPERIMENTS = "/experiments/"
"""The dashboard's experiment pages, which may analyse (``?fresh=1``, or no fresh stored readout): they get
``analysis_timeout_seconds`` too. The API's own paths begin with ``/api/v1``."""
"""The paths (by their endings) whose requests run analyses, Prometheus scrapes included (they read
the SRM of every running experiment): they get ``analysis_timeout_seconds``."""


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """A request FastAPI could not validate: 422 naming every field, or 415 for a body that is not JSON."""
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this type only
    errors = exc.errors()
    content_type = request.headers.get("content-type")
    # FastAPI hands a body that is not JSON to the model as it is, which fails as a body of the wrong type.
    if content_type is not None and not is_json(content_type) and any(e["loc"][:1] == ("body",) for e in errors):
        return await _http_error(request, unsupported_media_type(content_type))
    detail = validation_problems(errors, document=exc.body)
    return error_response(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


def _allowed_methods(request: Request) -> str | None:
    """The methods of every route whose path is the request's (Starlette's own route matching), or None for none."""
    methods = {
        method
        for route in request.app.routes
        if route.matches(request.scope)[0] is Match.PARTIAL
        for method in getattr(route, "methods", None) or ()
    }
    return ", ".join(sorted(methods)) or None


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (unparsable body, unknown path, wrong method) in the API's error shape."""
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this type only
    detail: Any = exc.detail
    if not isinstance(detail, list):
        field = {400: "body", 404: "path", 405: "method"}.get(exc.status_code, "request")
        detail = [{"field": field, "message": str(detail)}]
    headers = exc.headers
    # GET and PUT of one path are two routes, and Starlette's Allow names the first one's methods only.
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED and (allowed := _allowed_methods(request)):
        headers = {**(headers or {}), "Allow": allowed}
    return error_response(exc.status_code, detail, headers=headers)


async def _database_error(_request: Request, exc: Exception) -> JSONResponse:
    """The database cannot be reached, gave up on a lock, or no pooled connection came free: 503, not a 500."""
    assert isinstance(exc, STORE_UNAVAILABLE)  # noqa: S101 - registered for these types only
    cause = type(exc.orig).__name__ if isinstance(exc, OperationalError) else "no free connection in the pool"
    problems = [{"field": "database", "message": f"the store is unavailable: {cause}"}]
    return error_response(status.HTTP_503_SERVICE_UNAVAILABLE, problems, headers={"Retry-After": "1"})


async def _invalid_input(_request: Request, exc: Exception) -> JSONResponse:
    """An operation refused its input: 422 with every problem, each naming its field."""
    assert isinstance(exc, InvalidInputError)  # noqa: S101 - registered for this type only
    detail = [{"field": field, "message": message} for field, message in exc.problems]
    return error_response(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


async def _conflict(_request: Request, exc: Exception) -> JSONResponse:
    """An operation's refusal by the experiment's state (a lifecycle move, a protected change): 409."""
    assert isinstance(exc, ConflictError)  # noqa: S101 - registered for this type only
    return error_response(status.HTTP_409_CONFLICT, [{"field": exc.field, "message": exc.message}])


async def _not_found(_request: Request, exc: Exception) -> JSONResponse:
    """No such experiment: 404 naming the key (routes whose field is another name catch it themselves)."""
    return error_response(status.HTTP_404_NOT_FOUND, [{"field": "key", "message": str(exc)}])


async def _unavailable(_request: Request, exc: Exception) -> JSONResponse:
    """The service cannot do it now (a write timed out, the service is stopping): 503, so clients retry."""
    assert isinstance(exc, UnavailableError)  # noqa: S101 - registered for this type only
    problems = [{"field": exc.field, "message": exc.message}]
    return error_response(status.HTTP_503_SERVICE_UNAVAILABLE, problems, headers={"Retry-After": "1"})


class _App(FastAPI):
    """FastAPI whose OpenAPI document also holds the parts of the request bodies declared by hand.

    Those schemas (``openapi_extra``, see :func:`splitlab.service.schemas.body_schema`) refer to
    their parts in ``#/components/schemas/``, and carry them in ``$defs``: they move there.
    """

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document (built once)."""
        if self.openapi_schema is not None:
            return self.openapi_schema
        document = super().openapi()  # a fresh copy: the routes' openapi_extra stay as declared
        components: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
        for operations in document["paths"].values():
            for operation in operations.values():
                for media in operation.get("requestBody", {}).get("content", {}).values():
                    for name, schema in media["schema"].pop("$defs", {}).items():
                        if components.setdefault(name, schema) != schema:
                            msg = f"two different schemas are named {name!r} in the OpenAPI document"
                            raise RuntimeError(msg)
        return document


def create_app(settings: Settings) -> FastAPI:
    """A new app whose lifespan opens (and migrates) the store named by ``settings`` and closes it.

    Args:
        settings: How the app runs (see :class:`Settings`); nothing is read from the environment here.

    Returns:
        The FastAPI application, every API route under ``/api/v1``, the dashboard at ``/``.
    """
    telemetry = Telemetry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = open_store(settings.database_url, timeouts=settings.store_timeouts())
        runtime = Runtime(store, settings, telemetry)
        app.state.runtime = runtime
        telemetry.watch_store(runtime)
        # What start-up made (modules, the app, SQLAlchemy's and pydantic's machinery) lives as long
        # as the process: out of the collector's reach, full collections no longer scan it, which
        # takes their pauses (tens of ms) out of the requests' tail latency.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await runtime.router.close()
            runtime.close()

    app = _App(
        title="splitlab",
        version=__version__,
        summary="Experiments, assignments, exposures and events over HTTP.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.telemetry = telemetry
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for error in STORE_UNAVAILABLE:
        app.add_exception_handler(error, _database_error)
    app.add_exception_handler(UnavailableError, _unavailable)
    app.add_exception_handler(InvalidInputError, _invalid_input)
    app.add_exception_handler(ConflictError, _conflict)
    app.add_exception_handler(NotFoundError, _not_found)
    app.add_middleware(
        RequestGuard,
        max_body_bytes=settings.max_body_bytes,
        telemetry=telemetry,
        api_prefix=API_PREFIX,
        events_path=_EVENTS_PATH,
        request_timeout=settings.request_timeout_seconds,
        long_timeout=settings.analysis_timeout_seconds,
        long_paths=_ANALYSIS_PATHS,
        long_prefixes=(_DASHBOARD_EXPERIMENTS,),
    )
    # Every route sits on the app's own router, each under its full path, the hottest first: a
    # request is matched against the routes in order, one regex each, where FastAPI resolves a route
    # of an included router through a lazily built context, matching the request twice
    # (benchmarks/service_app_bench.py measures the app's share). FastAPI's documentation routes follow.
    app.router.routes[:0] = [
        route
        for router in (
            assign.hot,
            route.router,
            assign.router,
            config.router,
            ingest.router,
            health.router,
            experiments.router,
            bandits.router,
            monitor.router,
            metric_definitions.router,
            prometheus.router,
        )
        for route in router.routes
    ]
    # The dashboard's pages (out of the OpenAPI schema) and their style sheet and script, after the API.
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=dashboard.STATIC_DIR), name="static")
    return app


def app_from_env() -> FastAPI:
    """The app with :meth:`Settings.from_env` (the factory uvicorn's workers call)."""
    return create_app(Settings.from_env())
