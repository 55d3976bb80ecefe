"""The model router's routes: predictions and their feedback (sdk or admin key); see docs/router.md."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response, Security, status
from pydantic_core import to_json
from starlette.types import Receive, Scope, Send

from splitlab.operations.routing import Feedback
from splitlab.service.deps import ApiKeyAuth, runtime_of
from splitlab.service.errors import ERRORS, http_error
from splitlab.service.hot_path.lean_route import LeanRoute, json_body, json_response, parse_body, read_body
from splitlab.service.router import ModelRouter, RoutedAnswer
from splitlab.service.routes import API_PREFIX
from splitlab.service.schemas import FeedbackCreate, FeedbackPublic, PredictRequest
from splitlab.storage import NotFoundError

router = APIRouter(prefix=f"{API_PREFIX}/route", tags=["model router"], responses=ERRORS, route_class=LeanRoute)
_any_key = ApiKeyAuth()

UNIT_HEADER = b"x-splitlab-unit-id"
"""With this header, the body is the model input itself, forwarded as it is (no envelope to parse)."""
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")


class _Routed(Response):
    """The model's answer; a shadow call, if any, starts once it is sent (so it never delays the client)."""

    def __init__(self, answer: RoutedAnswer, model_router: ModelRouter) -> None:
        super().__init__(content=answer.body, status_code=answer.status, media_type=answer.content_type)
        self.headers.update(answer.headers)
        self._shadow = answer.shadow
        self._router = model_router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self._shadow is not None:
                self._router.start_shadow(self._shadow)


def _header(request: Request, name: bytes) -> str | None:
    value = next((v for n, v in request.scope["headers"] if n == name), None)
    return None if value is None else value.decode("latin-1")


def _openapi(model: type[Any]) -> dict[str, Any]:
    """The body's schema and the ``experiment`` path parameter (a lean endpoint takes the request alone)."""
    experiment = {"name": "experiment", "in": "path", "required": True, "schema": {"type": "string"}}
    return {**json_body(model), "parameters": [experiment]}


def _model_router(request: Request) -> ModelRouter:
    model_router = runtime_of(request).router
    if model_router is None:  # not built (a runtime without the router): never in `splitlab serve`
        raise http_error(status.HTTP_404_NOT_FOUND, "path", "the model router is not enabled")
    return model_router


@router.post(
    "/{experiment}/predict",
    summary="Route a model request",
    openapi_extra=_openapi(PredictRequest),
    dependencies=[Security(_any_key)],
    responses={200: {"description": "The model's answer as it gave it (or an envelope, with routing.envelope)."}},
)
async def predict(request: Request) -> Response:
    """Assign the unit, forward the input to its variant's model, answer with the model's body.

    The unit id is the ``X-Splitlab-Unit-Id`` header (the body is then the model input, forwarded as
    it is) or the body's ``unit_id`` (with ``input`` and ``attributes``). The answer carries
    ``X-Splitlab-Request-Id`` (the client's ``X-Request-Id`` when it sent one; feedback names it),
    ``X-Splitlab-Variant``, ``X-Splitlab-Model`` and, when the control answered for a failed model,
    ``X-Splitlab-Fallback: true``. A failed call without fallback is answered 502 (504 for a timeout).
    """
    model_router, experiment = _model_router(request), request.path_params["experiment"]
    body = await read_body(request)
    unit_id = _header(request, UNIT_HEADER)
    attributes: dict[str, Any] | None = None
    if unit_id is None:
        parsed = parse_body(PredictRequest, body)
        unit_id, attributes, body = parsed.unit_id, parsed.attributes, to_json(parsed.input)
    elif not unit_id or len(unit_id) > 1000:
        raise http_error(status.HTTP_422_UNPROCESSABLE_CONTENT, "X-Splitlab-Unit-Id", "must be 1 to 1000 characters")
    request_id = _header(request, b"x-request-id")
    if request_id is not None and not _REQUEST_ID.fullmatch(request_id):
        raise http_error(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "X-Request-Id",
            "must be 1 to 200 letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
        )
    try:
        answer = await model_router.predict(experiment, unit_id, body, attributes=attributes, request_id=request_id)
    except NotFoundError as exc:
        raise http_error(status.HTTP_404_NOT_FOUND, "experiment", str(exc)) from None
    except ValueError as exc:
        raise http_error(status.HTTP_422_UNPROCESSABLE_CONTENT, "attributes", str(exc)) from None
    return _Routed(answer, model_router)


@router.post(
    "/{experiment}/feedback",
    summary="Record feedback on a routed request",
    response_model=FeedbackPublic,
    openapi_extra=_openapi(FeedbackCreate),
    dependencies=[Security(_any_key)],
)
async def feedback(request: Request) -> Response:
    """Join a label, a reward or a conversion to the prediction ``request_id`` (idempotent).

    A label is compared with the prediction (``prediction_correct``) and scored by its
    probabilities when the model gave them (``prediction_log_loss``). 404 when no prediction of the
    experiment has that id (predictions are written within a moment of their answer: retry).
    """
    model_router, experiment = _model_router(request), request.path_params["experiment"]
    body = parse_body(FeedbackCreate, await read_body(request))
    given = Feedback(
        request_id=body.request_id,
        timestamp=body.timestamp or datetime.now(UTC),
        label=body.label,
        reward=body.reward,
        conversion=body.conversion,
    )
    try:
        result = await model_router.feedback(experiment, given)
    except NotFoundError as exc:
        raise http_error(status.HTTP_404_NOT_FOUND, "request_id", str(exc)) from None
    public = FeedbackPublic(request_id=body.request_id, received=result.received, inserted=result.inserted)
    return json_response(public)
