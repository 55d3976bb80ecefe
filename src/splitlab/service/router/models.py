"""Calling a variant's model: an HTTP upstream through one connection pool, or a Python callable in a thread.

A call never raises: it ends in a :class:`ModelAnswer` whose ``failure`` says what went wrong
(``timeout``, ``connection``, ``status_5xx``, ``error``), so the router decides on one value what
to count, whether to fall back, and what to answer.

In-process models (``python: module:attribute`` or ``entry_point: name`` of group
``splitlab.models``) are loaded once per worker and called in a worker thread: a model is CPU work
and must not hold the event loop. A call past its timeout is answered as a timeout, but its thread
runs to the end (Python cannot stop a thread): a model that hangs holds one thread of the pool.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from fastapi.concurrency import run_in_threadpool

from splitlab.service.router.upstream import UpstreamPool
from splitlab.specs import ModelEndpoint

__all__ = ["ENTRY_POINT_GROUP", "ModelAnswer", "ModelCaller", "load_python_model"]

ENTRY_POINT_GROUP = "splitlab.models"
"""The entry-point group of in-process models (``entry_point: name`` in a variant's model)."""

_JSON = "application/json"
_MAX_PARSED_BYTES = 1 << 20
"""Answers up to this size are parsed to log their ``prediction`` and ``confidence``; larger ones are passed on only."""


@dataclass(frozen=True, slots=True)
class ModelAnswer:
    """What a model call gave.

    Attributes:
        status: The HTTP status to answer with (the model's own, or 502/504 for a failure).
        body: The answer's bytes.
        content_type: Its media type.
        latency_ms: Time from the call to its end.
        failure: ``timeout``, ``connection``, ``status_5xx``, ``error`` or ``breaker_open``; None: answered.
        answer: The body parsed as JSON (None when it is not JSON or too large).
    """

    status: int
    body: bytes
    content_type: str
    latency_ms: float
    failure: str | None = None
    answer: Any = None

    @property
    def ok(self) -> bool:
        """Whether the model answered (a 4xx is the request's fault, not the model's: it counts as answered)."""
        return self.failure is None


def failed(failure: str, message: str, *, latency_ms: float = 0.0) -> ModelAnswer:
    """A failure answer: 504 for a timeout, else 502, with a body in the API's error shape."""
    body = json.dumps({"detail": [{"field": "model", "message": message}]}).encode()
    return ModelAnswer(
        status=504 if failure == "timeout" else 502,
        body=body,
        content_type=_JSON,
        latency_ms=latency_ms,
        failure=failure,
    )


def _parsed(body: bytes, content_type: str) -> Any:
    if len(body) > _MAX_PARSED_BYTES or "json" not in content_type:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def load_python_model(endpoint: ModelEndpoint) -> Callable[[Any], Any]:
    """The callable an in-process endpoint names (a class is instantiated without arguments).

    Raises:
        ValueError: It cannot be imported, is not found, or is not callable (the message says which).
    """
    target: Any
    if endpoint.entry_point is not None:
        found = entry_points(group=ENTRY_POINT_GROUP, name=endpoint.entry_point)
        if not found:
            msg = f"entry_point == {endpoint.entry_point!r}: no entry point of group {ENTRY_POINT_GROUP!r} has it"
            raise ValueError(msg)
        target = next(iter(found)).load()
        where = f"entry_point {endpoint.entry_point!r}"
    else:
        assert endpoint.python is not None  # noqa: S101 - an endpoint is one of url, python, entry_point
        module_name, _, attribute = endpoint.python.partition(":")
        try:
            target = importlib.import_module(module_name)
            for part in attribute.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            msg = f"python == {endpoint.python!r} cannot be loaded: {exc}"
            raise ValueError(msg) from None
        where = f"python {endpoint.python!r}"
    if inspect.isclass(target):
        target = target()
    if not callable(target):
        msg = f"{where} is a {type(target).__name__}, not a callable model"
        raise ValueError(msg)  # noqa: TRY004 - a bad declaration, as every other problem here
    return target  # type: ignore[no-any-return]


class ModelCaller:
    """Calls models for one worker: one HTTP connection pool for every upstream, loaded Python models."""

    def __init__(self, *, max_connections: int) -> None:
        # One pool per worker: connections to each upstream are kept alive and reused across requests.
        # Not httpx: its AsyncClient costs 6x (one call at a time) to 14x (16 in flight) the pool's client
        # CPU per call on this project's machine (benchmarks/upstream_bench.py prints the ratio).
        self._client = UpstreamPool(max_connections=max_connections)
        self._python: dict[str, Callable[[Any], Any]] = {}
        self._loading = threading.Lock()

    async def call(self, endpoint: ModelEndpoint, body: bytes, *, timeout_ms: float) -> ModelAnswer:
        """Send ``body`` (the model input, JSON) to the model; never raises (see :class:`ModelAnswer`)."""
        if endpoint.url is not None:
            return await self._call_http(endpoint.url, body, timeout_ms / 1000)
        return await self._call_python(endpoint, body, timeout_ms / 1000)

    async def _call_http(self, url: str, body: bytes, timeout: float) -> ModelAnswer:
        start = time.perf_counter()
        try:
            response = await self._client.post(url, body, timeout=timeout)
        except TimeoutError:
            return failed("timeout", f"the model did not answer within {timeout * 1000:g} ms", latency_ms=_ms(start))
        except ConnectionError as exc:  # refused, reset, closed without an answer, not HTTP
            return failed(
                "connection", f"the model's connection failed: {exc or type(exc).__name__}", latency_ms=_ms(start)
            )
        latency = _ms(start)
        if response.status >= 500:
            return ModelAnswer(
                status=502,
                body=response.body,
                content_type=response.content_type,
                latency_ms=latency,
                failure="status_5xx",
            )
        return ModelAnswer(
            status=response.status,
            body=response.body,
            content_type=response.content_type,
            latency_ms=latency,
            answer=_parsed(response.body, response.content_type),
        )

    async def _call_python(self, endpoint: ModelEndpoint, body: bytes, timeout: float) -> ModelAnswer:
        start = time.perf_counter()
        try:
            model = self._model(endpoint)
            request = json.loads(body)
            result = await asyncio.wait_for(run_in_threadpool(model, request), timeout)
            content = json.dumps(result, allow_nan=False).encode()
        except TimeoutError:
            return failed("timeout", f"the model did not answer within {timeout * 1000:g} ms", latency_ms=_ms(start))
        except Exception as exc:  # the model's own error: a failure of this variant, not of the service
            return failed("error", f"the model raised {type(exc).__name__}: {exc}", latency_ms=_ms(start))
        return ModelAnswer(status=200, body=content, content_type=_JSON, latency_ms=_ms(start), answer=result)

    def _model(self, endpoint: ModelEndpoint) -> Callable[[Any], Any]:
        key = endpoint.python or f"entry_point:{endpoint.entry_point}"
        model = self._python.get(key)
        if model is None:
            with self._loading:
                model = self._python.get(key)
                if model is None:
                    model = self._python[key] = load_python_model(endpoint)
        return model

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.close()


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000
