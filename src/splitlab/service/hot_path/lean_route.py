"""``LeanRoute``: the hot endpoints handle their own request and response, skipping FastAPI's machinery.

FastAPI's usual handler solves dependencies, reads and validates the body, then validates and
encodes the return value; on ``/assign`` that costs about as much as the rest of the request, and
on a batch of events it parses the JSON twice over (``json.loads``, then pydantic). A lean endpoint
takes the :class:`~fastapi.Request`, reads the body with :func:`read_body`, parses it with
:func:`parse_body` (pydantic straight from bytes) and returns a :class:`~fastapi.Response`
(:func:`json_response`, or :class:`EncodedJSON` of bytes it encoded itself). Its OpenAPI entry is
declared as for any route (``response_model``, ``openapi_extra=json_body(Model)``,
``dependencies=[Security(auth)]``), and the route enforces the parts of that declaration that
FastAPI's machinery would otherwise run: the API key check declared as a dependency runs before the
endpoint, whatever the endpoint does, and a body declared as JSON is refused (415) when its
``Content-Type`` says otherwise (see :class:`LeanRoute`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from fastapi import HTTPException, Request, Response, status
from fastapi.params import Depends
from fastapi.routing import APIRoute, _effective_route_context_var
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from splitlab.service.deps import ApiKeyAuth, runtime_of
from splitlab.service.errors import is_json, unicode_problems, unsupported_media_type, validation_problems
from splitlab.service.schemas import body_schema

__all__ = ["EncodedJSON", "LeanRoute", "json_body", "json_response", "parse_body", "read_body"]

ModelT = TypeVar("ModelT", bound=BaseModel)


LeanEndpoint = Callable[[Request], Coroutine[Any, Any, Response]]


class LeanRoute(APIRoute):
    """A route whose endpoint is ``async (Request) -> Response`` and runs as it is, after its declared checks.

    A declaration is its enforcement: the :class:`~splitlab.service.deps.ApiKeyAuth` among the
    route's dependencies (given to the route, its router, or ``include_router``) is checked before
    the endpoint runs, so an endpoint cannot be declared with a security requirement that does not
    run. Any other dependency is refused when the route is built: nothing would solve it. A route
    whose declared body is JSON (:func:`json_body`) answers 415 to a body whose ``Content-Type``
    is not JSON (after the key check; a body without one is read as JSON).
    """

    def get_route_handler(self) -> LeanEndpoint:
        """The endpoint, behind the route's declared checks (FastAPI's extension point)."""
        # A route of an included router is built again with the inclusion's dependencies added,
        # which FastAPI hands to this hook the way APIRoute.get_route_handler reads them.
        effective = _effective_route_context_var.get()
        declared = effective if effective is not None and effective.original_route is self else self
        auth = _declared_auth(declared.path, declared.dependencies)
        json_only = _declares_json_body(declared.openapi_extra)
        endpoint: LeanEndpoint = self.endpoint
        if auth is None and not json_only:
            return endpoint
        check = auth.check if auth is not None else None

        async def checked(request: Request) -> Response:
            if check is not None:
                await check(request, runtime_of(request))
            if json_only and not is_json(content_type := request.headers.get("content-type")):
                raise unsupported_media_type(str(content_type))
            return await endpoint(request)

        return checked


def _declares_json_body(openapi_extra: dict[str, Any] | None) -> bool:
    """Whether a route's ``openapi_extra`` declares a request body of JSON only (as :func:`json_body` does)."""
    media = ((openapi_extra or {}).get("requestBody") or {}).get("content") or {}
    return bool(media) and all(is_json(name) for name in media)


def _declared_auth(path: str, dependencies: Sequence[Depends]) -> ApiKeyAuth | None:
    """The one API key check among a lean route's ``dependencies`` (None without one)."""
    auths = [d.dependency for d in dependencies if isinstance(d.dependency, ApiKeyAuth)]
    others = [d.dependency for d in dependencies if not isinstance(d.dependency, ApiKeyAuth)]
    if others or len(auths) > 1:
        msg = f"lean route {path!r} runs one ApiKeyAuth dependency and nothing else; declared: {[*auths, *others]!r}"
        raise TypeError(msg)
    return auths[0] if auths else None


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model`` as the required JSON request body."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": body_schema(model)}}}}


async def read_body(request: Request) -> bytes:
    """The whole request body, read from the ASGI ``receive`` channel.

    What :meth:`Request.body` returns, without its async generator and context manager around
    each message. Read once: the endpoint owns the body.

    Raises:
        ClientDisconnect: The client went away before the body was complete.
    """
    chunks = []
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def parse_body(model: type[ModelT], body: bytes) -> ModelT:
    """``model`` validated from the JSON ``body``; a 422 naming every field at fault otherwise."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        problems = validation_problems(errors)
        if errors[0]["type"] == "json_invalid":
            problems = _unicode_problems(body) or problems
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=problems) from None


def _unicode_problems(body: bytes) -> list[dict[str, str]]:
    r"""The lone surrogates (``"\ud800"``) of a body pydantic's parser refused as a whole, each with its field.

    Python's parser takes them, so the answer can name the key or value instead of a position.
    """
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return []
    return unicode_problems(document)


class EncodedJSON(Response):
    """A 200 answer of JSON bytes already encoded: its two headers made in one step.

    ``Response.__init__`` renders the content and builds the headers through several checks, a
    measurable share of an ``/assign`` answer; ``Response.__call__`` sends these as they are.
    """

    media_type = "application/json"

    def __init__(self, body: bytes) -> None:
        self.status_code = status.HTTP_200_OK
        self.background = None
        self.body = body
        self.raw_headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]


def json_response(model: BaseModel) -> Response:
    """``model`` encoded once, as the answer."""
    return EncodedJSON(model.model_dump_json().encode())
