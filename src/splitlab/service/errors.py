r"""The service's errors and how they read: one shape for every error answer, the errors only the service raises.

Every 4xx and 503 has the body ``{"detail": [{"field": ..., "message": ...}]}`` (:class:`ErrorPublic`):
one entry per problem, each naming the field (or header, or path) it is about. A caller's mistake
found by an operation is :class:`splitlab.operations.errors.InvalidInputError`, the same error every
front end raises; the app turns it and the operations' other errors into answers
(:func:`splitlab.service.app.create_app`), each rendered by :func:`error_response`, which makes any
text the client sent encodable (a lone surrogate in a JSON key becomes the six characters ``\ud800``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import HTTPException, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from splitlab.operations.errors import InvalidInputError
from splitlab.service.schemas import NO_NUL, TEXT, ErrorPublic, FieldError, printable
from splitlab.storage.json_values import json_problems

__all__ = [
    "ERRORS",
    "NOT_UNICODE",
    "STORE_UNAVAILABLE",
    "InvalidInputError",
    "UnavailableError",
    "error_response",
    "http_error",
    "is_json",
    "printable",
    "stopping",
    "unicode_problems",
    "unsupported_media_type",
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
    408: _error("The request body did not arrive within the request deadline; the connection is closed."),
    413: _error("The body or the batch is over the service's limit."),
    415: _error("The body's Content-Type is not JSON (application/json or a +json type; a spec may also be YAML)."),
    422: _error("The input is not valid; every problem is listed with its field."),
    429: _error("Too many invalid API keys from this client this minute; retry after the Retry-After seconds."),
    503: _error(
        "The store is unavailable or did not answer within the request deadline; retry after the Retry-After seconds."
    ),
}
"""Documented on every route: the answers a client must expect besides success."""


def http_error(code: int, field: str, message: str, *, headers: dict[str, str] | None = None) -> HTTPException:
    """An HTTP error whose body is ``{"detail": [{"field": ..., "message": ...}]}``, like every 4xx here."""
    return HTTPException(code, detail=[{"field": field, "message": message}], headers=headers)


def error_response(
    code: int, problems: Iterable[Mapping[str, Any]], *, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The answer ``{"detail": [{"field", "message"}, ...]}`` with status ``code``: every error answer is made here.

    Each field and message goes through :func:`printable`, so no text a client sent can make the
    answer unencodable (a 500 instead of the 4xx that names it).
    """
    detail = [
        {"field": printable(str(problem["field"])), "message": printable(str(problem["message"]))}
        for problem in problems
    ]
    return JSONResponse({"detail": detail}, status_code=code, headers=headers)


def is_json(content_type: str | None) -> bool:
    """Whether a request's ``Content-Type`` says JSON: ``application/json`` or an ``application/...+json`` type.

    A body sent without a ``Content-Type`` is read as JSON (what every JSON client sends anyway).

    >>> is_json("application/json; charset=utf-8"), is_json("application/merge-patch+json"), is_json(None)
    (True, True, True)
    >>> is_json("text/plain"), is_json("application/x-www-form-urlencoded")
    (False, False)
    """
    if content_type is None:
        return True
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def unsupported_media_type(content_type: str, accepted: str = "application/json (or a +json type)") -> HTTPException:
    """The 415 answer to a body whose ``Content-Type`` the route does not read, naming what it reads."""
    message = f"{content_type!r} is not a type this route reads; send {accepted}"
    return http_error(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "Content-Type", message)


def _field(loc: Sequence[int | str]) -> str:
    """A validation error's location as a dotted field; the ``body`` prefix is implied."""
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    return ".".join(map(str, parts)) or "body"


NOT_UNICODE = "must be valid Unicode (no lone surrogates)"
"""How a lone surrogate is worded, here as by the store (:func:`splitlab.storage.json_values.json_problems`)."""


def unicode_problems(document: Any) -> list[dict[str, str]]:
    """Every key and string of a parsed JSON ``document`` that UTF-8 cannot encode (a lone surrogate), by field."""
    return [
        {"field": field or "body", "message": message}
        for field, message in json_problems(document, "")
        if message.endswith(NOT_UNICODE)
    ]


def validation_problems(errors: Iterable[Mapping[str, Any]], *, document: Any = None) -> list[dict[str, str]]:
    """Pydantic's (or FastAPI's) validation errors as ``{"field", "message"}`` entries of an error answer.

    Args:
        errors: The errors (``ValidationError.errors()``).
        document: The parsed JSON they are about, if at hand: pydantic says that a key is not
            valid Unicode without saying which one (it names the object), the document does.
    """
    detail: list[dict[str, str]] = []
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
            message = NOT_UNICODE
            if named := unicode_problems(document):
                detail.extend(named)
                continue
        field = _field(tuple(error.get("loc", ())))
        if kind == "value_error" and isinstance(problem := error.get("ctx", {}).get("error"), FieldError):
            field, message = f"{field}.{problem.field}" if problem.field else field, problem.message
        detail.append({"field": field, "message": message})
    # Keys are named once, whether by the document or by a validator of the object that holds them.
    unique = {(printable(d["field"]), d["message"]): d for d in detail}
    return list(unique.values())


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
