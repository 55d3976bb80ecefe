"""The HTTP server's part of the deadlines: uvicorn's protocols with a deadline on request headers.

An ASGI app is called once a request's headers are complete, so a client that opens connections
and sends headers a byte at a time (slowloris), or nothing at all, is the server's to drop:
uvicorn has a keep-alive timeout between requests but none on headers. These protocols answer
408 and close a connection whose request headers are not complete ``header_timeout`` seconds
after it opened or after its first byte of a new request. The body's deadline is the app's
(:class:`splitlab.service.middleware.RequestGuard`).

``splitlab serve`` runs uvicorn with :func:`http_protocol`; the class reads
``SPLITLAB_HEADER_TIMEOUT_SECONDS`` (:class:`splitlab.service.Settings`) in each worker.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from splitlab.service.settings import Settings

__all__ = ["H11WithHeaderDeadline", "http_protocol"]

_log = logging.getLogger("splitlab.service")

_BODY = json.dumps({"detail": [{"field": "headers", "message": "the request headers did not arrive in time"}]}).encode()
_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    + f"content-length: {len(_BODY)}\r\n".encode()
    + b"connection: close\r\n\r\n"
    + _BODY
)


class _HeaderDeadline:
    """A mixin for uvicorn's HTTP protocols: 408 and close when headers take too long (see the module docstring)."""

    header_timeout: float | None = None  # from the environment, on the first connection of the worker
    transport: Any
    cycle: Any
    loop: asyncio.AbstractEventLoop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        waiting = self.cycle is None or self.cycle.response_complete  # these bytes begin a new request
        if waiting and self._header_timer is None:
            self._arm()
        before = self.cycle
        super().data_received(data)  # type: ignore[misc]
        if self.cycle is not before:  # the headers are complete: the request is the app's now
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm(self) -> None:
        if _HeaderDeadline.header_timeout is None:
            _HeaderDeadline.header_timeout = Settings.from_env().header_timeout_seconds
        self._header_timer = self.loop.call_later(_HeaderDeadline.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not (self.cycle is None or self.cycle.response_complete):
            return
        _log.debug("splitlab: closed a connection whose request headers took over %g s", self.header_timeout)
        self.transport.write(_RESPONSE)
        self.transport.close()


class H11WithHeaderDeadline(_HeaderDeadline, H11Protocol):
    """uvicorn's h11 protocol with the header deadline."""


if importlib.util.find_spec("httptools") is not None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HttpToolsWithHeaderDeadline(_HeaderDeadline, HttpToolsProtocol):
        """uvicorn's httptools protocol with the header deadline."""


def http_protocol() -> str:
    """The value of uvicorn's ``http`` option: httptools' protocol when installed (as ``auto`` picks), else h11's.

    An import path, not a class: ``--workers`` start processes that import it themselves.
    """
    name = "HttpToolsWithHeaderDeadline" if "HttpToolsWithHeaderDeadline" in globals() else "H11WithHeaderDeadline"
    return f"{__name__}:{name}"
