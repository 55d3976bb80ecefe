"""One pure ASGI middleware: body size limits (413) and request latency for Prometheus.

Pure ASGI rather than ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware`` runs the app
in a task with streams between them, which cost more than a whole ``/assign`` request.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from splitlab.service.telemetry import Telemetry

__all__ = ["RequestGuard"]


class _TooLarge(Exception):  # noqa: N818 - a signal between receive() and the middleware, never raised to callers
    pass


def _error(status: int, field: str, message: str) -> tuple[dict[str, Any], bytes]:
    body = json.dumps({"detail": [{"field": field, "message": message}]}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    return start, body


class RequestGuard:
    """Refuses bodies over ``max_body_bytes``; observes every request's latency.

    A body is refused by its ``Content-Length`` before it is read, or while a chunked body streams
    in; latency is observed by method, route template and status.

    Args:
        app: The application to guard.
        max_body_bytes: The largest body accepted.
        telemetry: Where latencies and rejected event batches are counted.
        api_prefix: The prefix routers are included under (route templates are reported with it).
        events_path: The events endpoint, whose refusals count as rejected event batches.
    """

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, telemetry: Telemetry, api_prefix: str, events_path: str
    ) -> None:
        self.app = app
        self.api_prefix = api_prefix
        self.max_body_bytes = max_body_bytes
        self.telemetry = telemetry
        self.events_path = events_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        length = next((value for name, value in scope["headers"] if name == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            if length.isdigit():
                status = 413
                message = f"request body of {int(length)} bytes, at most {self.max_body_bytes}"
                start, body = _error(status, "body", message)
            else:
                status = 400
                start, body = _error(status, "Content-Length", f"{length.decode('latin-1')!r} is not a byte count")
            await send(start)
            await send({"type": "http.response.body", "body": body})
            self._observe(scope, status, started)
            return

        received = 0
        too_large = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large = True
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_started = True
            await send(message)

        try:
            # With a Content-Length (checked above) the server frames the body to it: only a chunked
            # body needs counting as it streams in.
            await self.app(scope, receive if length is not None else limited_receive, tracking_send)
        except _TooLarge:
            too_large = True
        if too_large and not response_started:
            status = 413
            start, body = _error(status, "body", f"request body over {self.max_body_bytes} bytes")
            await send(start)
            await send({"type": "http.response.body", "body": body})
        self._observe(scope, status, started)

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        route = scope.get("route")
        template = route.path_format if isinstance(route, Route) else "unmatched"
        if (
            template != "unmatched"
            and scope["path"].startswith(self.api_prefix)
            and not template.startswith(self.api_prefix)
        ):
            template = self.api_prefix + template  # the route of a router included under the prefix
        self.telemetry.observe_latency(scope["method"], template, status, time.perf_counter() - started)
        if scope["path"] == self.events_path and status in (413, 422):
            self.telemetry.event_batches_rejected.labels("too_large" if status == 413 else "invalid").inc()
