"""A lean pooled HTTP/1.1 client for the router's upstream model calls: POST bytes, get status, body, type.

Why not httpx: benchmarks/router_bench.py measured ~3 ms of router CPU per routed request, and
profiling put httpx/httpcore on top (benchmarks/upstream_bench.py: 6x this client's CPU per call one
call at a time, 14x with 16 in flight), the request written in two
``send`` calls (headers, then body), the URL parsed on every call, anyio wrappers, and a failed
``import sniffio`` per request. This client does the one thing the router needs: one request
in flight per connection, written in one ``transport.write`` (one syscall), the answer parsed by
``httptools`` (llhttp, as uvicorn does) in an :class:`asyncio.Protocol` that wakes the caller
once, when the response is complete. (Against asyncio streams, ``open_connection`` and
``reader.read``, the CPU per call measured the same within noise; the Protocol is kept because a
close or reset reaches the waiting request directly, and marks an idle connection unusable
without a read pending on it.)

Connections are kept alive and pooled per ``(scheme, host, port)``, reused last-in first-out (the
warmest socket first; the cold ones at the bottom age out). ``max_connections`` bounds the
connections of the pool, all upstreams together, through one :class:`asyncio.Semaphore` (one
slot per request in flight, so per connection in use): a caller beyond it waits for a slot
within its own timeout. Idle connections count too: opening a new one when the pool is full
closes the oldest idle one (of any upstream) first.

An idle connection is closed instead of reused once it has been idle ``max_idle`` seconds (4 by
default, below uvicorn's 5 s keep-alive timeout), which avoids most races with a server that
closes it at the same moment. The rest are caught on reuse: when a *reused* connection ends
before a single byte of the response arrived, the request is sent once more on a fresh
connection. That retry is safe because a model prediction is an idempotent read; it never
happens after response bytes arrived, nor on a fresh connection.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass
from typing import cast

import httptools

__all__ = ["UpstreamConnectionError", "UpstreamPool", "UpstreamResponse"]

_JSON = "application/json"
_MAX_TARGETS = 1024
"""URLs parsed and kept; beyond it the cache starts over (URLs come from specs: a handful)."""


class UpstreamConnectionError(ConnectionError):
    """The upstream closed the connection without a (complete) response, or answered something that is not HTTP."""


class _NothingReceivedError(UpstreamConnectionError):
    """The connection ended before a single byte of the response arrived (retried once on a reused connection)."""


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """An upstream's answer.

    Attributes:
        status: The HTTP status (a 5xx is an answer here, not an exception).
        body: The body, de-chunked.
        content_type: The ``Content-Type`` header (``application/json`` when absent).
    """

    status: int
    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class _Target:
    """A URL, parsed once: where to connect and the fixed start of every request to it."""

    key: tuple[str, str, int]
    host: str
    port: int
    tls: bool
    head: bytes
    """The request line, ``Host``, ``User-Agent`` and ``Connection`` headers."""


def _target(url: str) -> _Target:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url == {url!r}, must be an http:// or https:// URL with a host")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)  # .port raises ValueError for a port that is not a number
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    netloc = parts.netloc.rpartition("@")[2]  # userinfo is not sent
    head = f"POST {path} HTTP/1.1\r\nHost: {netloc}\r\nUser-Agent: splitlab-router\r\nConnection: keep-alive\r\n"
    return _Target(
        key=(parts.scheme, parts.hostname, port), host=parts.hostname, port=port, tls=tls, head=head.encode()
    )


class _Connection(asyncio.Protocol):
    """One keep-alive connection: sends a request, parses its response, resolves one future when it is complete."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[UpstreamResponse] | None = None
        self._received = False
        self._body: list[bytes] = []
        self._content_type = _JSON
        self._framed = False  # a Content-Length or chunked body; without either the body runs to EOF
        self._headers_done = False
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.Transport", transport)  # create_connection makes stream transports

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():  # bytes nobody asked for: the connection is out of step
            self.close()
            return
        self._received = True
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:  # a 101 is no answer to a POST
            self._fail(UpstreamConnectionError(f"the upstream's response is not valid HTTP/1.1: {exc}"))

    def eof_received(self) -> bool:
        self._ended(None)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._body = []
        self._content_type = _JSON
        self._framed = False
        self._headers_done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"content-type":
            self._content_type = value.decode("latin-1")
        elif lower in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # 1xx: an interim response, the answer follows on the same connection
            return
        self.reusable = self._parser.should_keep_alive()
        self._resolve(status)

    # the pool's side

    async def exchange(self, request: bytes) -> UpstreamResponse:
        """Send ``request`` (all of it, in one write) and wait for the response.

        No ``drain``: one request is in flight per connection, so the transport's buffer holds at
        most this request, which the caller holds anyway, and it goes out while we wait.

        Raises:
            UpstreamConnectionError: The connection ended before the response was complete, or the
                response is not HTTP (:class:`_NothingReceivedError` when not one byte of it came).
        """
        assert self._transport is not None  # noqa: S101 - set by connection_made within create_connection
        waiter: asyncio.Future[UpstreamResponse] = self._loop.create_future()
        self._waiter = waiter
        self._received = False
        self.reusable = False
        self._transport.write(request)
        return await waiter

    def usable(self, idle_after: float) -> bool:
        """Whether the connection is open and has been idle since ``idle_after`` (monotonic time) or later."""
        return not self.closed and self.idle_since >= idle_after and not self._is_closing()

    def close(self) -> None:
        """Close the connection (politely: buffered bytes are sent first)."""
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Close the connection at once, dropping whatever is buffered (a request abandoned mid-exchange)."""
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    def _is_closing(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def _resolve(self, status: int) -> None:
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body = []
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(UpstreamResponse(status=status, body=body, content_type=self._content_type))

    def _ended(self, exc: Exception | None) -> None:
        """The peer closed (``exc`` None) or the connection broke: end the exchange in flight, if any."""
        self.closed = True
        if self._waiter is None or self._waiter.done():
            return
        status = self._parser.get_status_code()
        if exc is None and self._headers_done and not self._framed and status >= 200:
            # A body without Content-Length or chunking ends when the server closes (HTTP/1.0, Connection: close);
            # a connection that broke (exc) may have cut it short.
            self.reusable = False
            self._resolve(status)
            return
        why = "" if exc is None else f" ({type(exc).__name__}: {exc})"
        if self._received:
            self._fail(UpstreamConnectionError(f"the upstream closed the connection mid-response{why}"))
        else:
            self._fail(_NothingReceivedError(f"the upstream closed the connection without a response{why}"))

    def _fail(self, exc: UpstreamConnectionError) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.abort()


class UpstreamPool:
    """Keep-alive HTTP/1.1 connections to model servers, for one worker's event loop (see the module docstring).

    Args:
        max_connections: The most connections open at once, all upstreams together, >= 1; a
            request beyond it waits for a free one (within its timeout).
        max_idle: Seconds after which an idle connection is closed rather than reused, > 0;
            keep it below the upstreams' keep-alive timeout (uvicorn: 5 s).

    Example:
        >>> import asyncio
        >>> async def main() -> None:
        ...     pool = UpstreamPool(max_connections=4)
        ...     await pool.close()
        >>> asyncio.run(main())
    """

    def __init__(self, *, max_connections: int, max_idle: float = 4.0) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections == {max_connections}, must be >= 1")
        if not max_idle > 0:
            raise ValueError(f"max_idle == {max_idle}, must be > 0")
        self._max_connections = max_connections
        self._max_idle = max_idle
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._in_use = 0
        self._targets: dict[str, _Target] = {}
        self._ssl: ssl.SSLContext | None = None
        self._closed = False

    async def post(self, url: str, body: bytes, *, timeout: float, content_type: str = _JSON) -> UpstreamResponse:
        """POST ``body`` to ``url`` and return the answer, whatever its status.

        Args:
            url: An ``http://`` (or ``https://``) URL.
            body: The request's body.
            timeout: Seconds for the whole call: waiting for a free connection, connecting,
                writing and reading the response.
            content_type: The request's ``Content-Type``.

        Raises:
            TimeoutError: The call took longer than ``timeout`` (its connection is closed).
            ConnectionError: Connecting failed, the connection broke, or the answer was not
                HTTP (:class:`UpstreamConnectionError`, ``ConnectionRefusedError``, ...).
            ValueError: ``url`` is not an http(s) URL with a host.
            RuntimeError: The pool is closed.
        """
        if self._closed:
            raise RuntimeError("the upstream pool is closed")
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) >= _MAX_TARGETS:
                self._targets.clear()
            target = self._targets[url] = _target(url)
        request = b"%bContent-Type: %b\r\nContent-Length: %d\r\n\r\n%b" % (
            target.head,
            content_type.encode("latin-1"),
            len(body),
            body,
        )
        async with asyncio.timeout(timeout), self._slots:
            self._in_use += 1  # requests holding a slot: each has at most one connection, open or opening
            try:
                connection = self._reuse(target.key)
                if connection is not None:
                    try:
                        return await self._exchange(target.key, connection, request)
                    except _NothingReceivedError:
                        pass  # the server closed it while idle: once more, fresh (predictions are idempotent)
                connection = await self._connect(target)
                return await self._exchange(target.key, connection, request)
            finally:
                self._in_use -= 1

    async def close(self) -> None:
        """Close every idle connection; those in use are closed when their request ends. Idempotent."""
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports close their sockets (scheduled with call_soon)

    def _reuse(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        fresh_since = time.monotonic() - self._max_idle
        while idle:
            connection = idle.pop()
            if connection.usable(fresh_since):
                return connection
            connection.close()
            if connection.idle_since < fresh_since:  # LIFO: every connection below is older still
                while idle:
                    idle.pop().close()
        return None

    async def _connect(self, target: _Target) -> _Connection:
        if self._in_use + sum(map(len, self._idle.values())) > self._max_connections:
            self._close_oldest_idle()
        tls: ssl.SSLContext | None = None
        if target.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            tls = self._ssl
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(lambda: _Connection(loop), target.host, target.port, ssl=tls)
        except (ConnectionError, TimeoutError):
            raise
        except OSError as exc:  # a name that does not resolve, no route, a TLS failure: all transport trouble
            raise UpstreamConnectionError(
                f"cannot connect to {target.host}:{target.port}: {type(exc).__name__}: {exc}"
            ) from exc
        return connection

    def _close_oldest_idle(self) -> None:
        oldest: deque[_Connection] | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest[0].idle_since):
                oldest = idle
        if oldest is not None:
            oldest.popleft().close()

    async def _exchange(self, key: tuple[str, str, int], connection: _Connection, request: bytes) -> UpstreamResponse:
        """One request on ``connection``; the connection goes back to the pool, or is closed, whatever happens."""
        try:
            response = await connection.exchange(request)
        except BaseException:  # a timeout (cancellation) mid-response included: never reuse it
            connection.abort()
            raise
        if connection.reusable and not connection.closed and not self._closed:
            connection.idle_since = time.monotonic()
            self._idle.setdefault(key, deque()).append(connection)
        else:
            connection.close()
        return response
