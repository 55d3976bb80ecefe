"""One pure ASGI middleware: body size limits (413), request deadlines (503, 408), quiet disconnects, latency.

Pure ASGI rather than ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware`` runs the app
in a task with streams between them, which cost more than a whole ``/assign`` request.

Deadlines. A request that waits on the store (a network partition: packets dropped, no RST, so
the driver waits without end) or on its own body (a client that stops sending) is answered at
its deadline by a watcher task on the event loop, not by the request's own task: that task may
be parked in a worker thread that cannot be interrupted (a blocking driver call; anyio defers a
cancellation until the thread returns). The watcher sends 503 with ``Retry-After`` (the store) or
408 (the body), with ``Connection: close``, and whatever the app sends later is dropped; the
thread finishes when the store answers or the kernel drops its connection (see
:class:`splitlab.storage.StoreTimeouts`).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from splitlab.service.telemetry import Telemetry

__all__ = ["RequestGuard"]


class _TooLarge(Exception):  # noqa: N818 - a signal between receive() and the middleware, never raised to callers
    pass


def _error(status: int, field: str, message: str, *, close: bool = False) -> tuple[dict[str, Any], bytes]:
    body = json.dumps({"detail": [{"field": field, "message": message}]}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    if close:
        headers.append((b"connection", b"close"))
    return {"type": "http.response.start", "status": status, "headers": headers}, body


class _Exchange:
    """One request in flight: what its deadline needs to answer it, and how far it got."""

    __slots__ = ("answered", "receiving", "response_started", "scope", "send", "started", "status")

    def __init__(self, scope: Scope, send: Send, started: float) -> None:
        self.scope = scope
        self.send = send
        self.started = started
        self.status = 500
        self.response_started = False
        self.receiving = False  # the app waits for the client's body right now
        self.answered = False  # answered by the deadline: the app's own answer is dropped


WATCH_INTERVAL_SECONDS = 0.1
"""How often the deadlines are checked: a request is answered at most this long after its deadline."""


class RequestGuard:
    """Refuses bodies over ``max_body_bytes``; answers requests at their deadline; observes latency.

    A body is refused by its ``Content-Length`` before it is read, or while a chunked body streams
    in. A request not answered within ``request_timeout`` seconds (``long_timeout`` for the paths
    ending in one of ``long_paths`` or starting with one of ``long_prefixes``: analyses) is
    answered 408 if the app is waiting for its body then, else 503 (it waits on the store). A client
    that disconnects is counted, not logged with a traceback. Latency is observed by method, route
    template and status.

    Args:
        app: The application to guard.
        max_body_bytes: The largest body accepted.
        telemetry: Where latencies, deadlines, disconnects and rejected event batches are counted.
        api_prefix: The prefix routers are included under (route templates are reported with it).
        events_path: The events endpoint, whose refusals count as rejected event batches.
        request_timeout: Seconds a request may take.
        long_timeout: Seconds a request to one of ``long_paths`` may take.
        long_paths: Path endings of the routes that run analyses.
        long_prefixes: Path beginnings of the routes that run analyses (the dashboard's experiment pages).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        telemetry: Telemetry,
        api_prefix: str,
        events_path: str,
        request_timeout: float = 5.0,
        long_timeout: float = 60.0,
        long_paths: tuple[str, ...] = (),
        long_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.api_prefix = api_prefix
        self.max_body_bytes = max_body_bytes
        self.telemetry = telemetry
        self.events_path = events_path
        self.request_timeout = request_timeout
        self.long_timeout = long_timeout
        self.long_paths = long_paths
        self.long_prefixes = long_prefixes
        # The requests in flight by deadline class, oldest first (a dict keeps insertion order): one
        # watcher task checks them, which costs a request two dict operations where a timer of
        # its own would cost a heap push and a cancellation.
        self._in_flight: dict[_Exchange, None] = {}
        self._in_flight_long: dict[_Exchange, None] = {}
        self._watcher: asyncio.Task[None] | None = None  # runs while requests are in flight
        self._answering: set[asyncio.Task[None]] = set()  # deadline answers being sent (strong references)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
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

        exchange = _Exchange(scope, send, started)
        received = 0
        too_large = False

        async def guarded_receive() -> Message:
            nonlocal received, too_large
            exchange.receiving = True
            try:
                message = await receive()
            finally:
                exchange.receiving = False
            # With a Content-Length (checked above) the server frames the body to it: only a chunked
            # body needs counting as it streams in.
            if message["type"] == "http.request" and length is None:
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large = True
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            if exchange.answered:
                return  # the deadline answered already
            if message["type"] == "http.response.start":
                exchange.status = int(message["status"])
                exchange.response_started = True
            await send(message)

        path = scope["path"]
        long = path.endswith(self.long_paths) or path.startswith(self.long_prefixes)
        in_flight = self._in_flight_long if long else self._in_flight
        in_flight[exchange] = None
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
        try:
            await self.app(scope, guarded_receive, tracking_send)
        except _TooLarge:
            too_large = True
        except ClientDisconnect:
            if not exchange.answered:
                self.telemetry.client_disconnects.inc()
                exchange.status = 499  # nginx's "client closed request", for the latency histogram
        except Exception:
            if not exchange.answered:
                raise
            # The store's late error, after the deadline's answer: the client has its 503 already.
        finally:
            in_flight.pop(exchange, None)
        if exchange.answered:
            return  # observed by the deadline's answer
        if too_large and not exchange.response_started:
            exchange.status = 413
            start, body = _error(413, "body", f"request body over {self.max_body_bytes} bytes")
            await send(start)
            await send({"type": "http.response.body", "body": body})
        self._observe(scope, exchange.status, started)

    async def _watch(self) -> None:
        """Answer the requests past their deadline, every ``WATCH_INTERVAL_SECONDS``, while any is in flight."""
        try:
            while self._in_flight or self._in_flight_long:
                await asyncio.sleep(WATCH_INTERVAL_SECONDS)
                now = time.perf_counter()
                for in_flight, timeout in (
                    (self._in_flight, self.request_timeout),
                    (self._in_flight_long, self.long_timeout),
                ):
                    expired = []
                    for exchange in in_flight:  # oldest first: stop at the first one still in time
                        if now - exchange.started < timeout:
                            break
                        expired.append(exchange)
                    for exchange in expired:
                        del in_flight[exchange]
                        self._expire(exchange, timeout)
        finally:
            self._watcher = None

    def _expire(self, exchange: _Exchange, timeout: float) -> None:
        """The deadline of a request: answer it now unless its answer is on its way (called on the event loop)."""
        if exchange.response_started:
            return  # a long answer being sent is not cut
        exchange.answered = True
        if not exchange.receiving:  # what else a request waits on: the store (a worker thread, a writer)
            reason, status = "store", 503
            start, body = _error(status, "database", f"the store did not answer within {timeout:g} s", close=True)
        else:
            reason, status = "body", 408
            start, body = _error(status, "body", f"the request body did not arrive within {timeout:g} s", close=True)
        self.telemetry.requests_timed_out.labels(reason).inc()

        async def answer() -> None:
            try:
                await exchange.send(start)
                await exchange.send({"type": "http.response.body", "body": body})
            except OSError:
                pass  # the client went away meanwhile
            self._observe(exchange.scope, status, exchange.started)

        task = asyncio.get_running_loop().create_task(answer())
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

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
