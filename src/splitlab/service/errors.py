"""The service's errors and how they read: one shape for every error answer, the errors only the service raises.

Every 4xx and 503 has the body ``{"detail": [{"field": ..., "message": ...}]}`` (:class:`ErrorPublic`):
one entry per problem, each naming the field (or header, or path) it is about. A caller's mistake
found by an operation is :class:`splitlab.operations.errors.InvalidInputError`, the same error every
front end raises; the app turns it and the operations' other errors into answers
(:func:`splitlab.service.app.create_app`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import HTTPException
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from splitlab.operations.errors import InvalidInputError
from splitlab.service.schemas import NO_NUL, TEXT, ErrorPublic

__all__ = [
    "ERRORS",
    "STORE_UNAVAILABLE",
    "InvalidInputError",
    "UnavailableError",
    "http_error",
    "stopping",
    "validation_problems",
]

STORE_UNAVAILABLE = (OperationalError, PoolTimeoutError)
"""Store errors that mean "not now" (down, locked, no free pooled connection): 503, and writers keep their queue."""


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorPublic, "description": description}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("The request is malformed (an unparsable body, a bad header)."),
    401: _error("No API key, or one that is unknown, malformed or revoked."),
    403: _error("The API key's role may not do this (an admin key is needed)."),
    404: _error("No such experiment, metric or path."),
    405: _error("The path does not take this method."),
    409: _error(
        "The request conflicts with the experiment's state or its history (a move not allowed now, "
        "a protected change, an analysis of an experiment without metrics)."
    ),
    413: _error("The body or the batch is over the service's limit."),
    422: _error("The input is not valid; every problem is listed with its field."),
    503: _error("The store is unavailable; retry after the Retry-After seconds."),
}
"""Documented on every route: the answers a client must expect besides success."""


def http_error(code: int, field: str, message: str, *, headers: dict[str, str] | None = None) -> HTTPException:
    """An HTTP error whose body is ``{"detail": [{"field": ..., "message": ...}]}``, like every 4xx here."""
    return HTTPException(code, detail=[{"field": field, "message": message}], headers=headers)


def _field(loc: Sequence[int | str]) -> str:
    """A validation error's location as a dotted field; the ``body`` prefix is implied."""
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    return ".".join(map(str, parts)) or "body"


def validation_problems(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Pydantic's (or FastAPI's) validation errors as ``{"field", "message"}`` entries of an error answer."""
    detail = []
    for error in errors:
        message = str(error.get("msg", "invalid value"))
        kind = error.get("type")
        if kind == "json_invalid":
            message = f"is not valid JSON: {error.get('ctx', {}).get('error', message)}"
        elif kind == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") == NO_NUL:
            message = "must not contain NUL characters"
        elif kind == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") == TEXT:
            message = "must not be blank (only whitespace) nor contain NUL characters"
        elif kind == "string_unicode":
            message = "must be valid Unicode (no lone surrogates)"
        detail.append({"field": _field(tuple(error.get("loc", ()))), "message": message})
    return detail


class UnavailableError(Exception):
    """The service cannot do this now (a write timed out, the service is stopping): answered 503, retry later.

    Args:
        field: What the error is about (``database``, ``experiment`` ...), as in every error answer.
        message: Why, for people.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def stopping() -> UnavailableError:
    """The answer to work handed to a writer that is closing (this worker is shutting down)."""
    return UnavailableError("service", "the service is stopping; retry with another worker")
