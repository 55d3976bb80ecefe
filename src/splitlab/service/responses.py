"""The error answers every route can give, documented once for the OpenAPI schema.

Every 4xx and 503 has the body ``{"detail": [{"field": ..., "message": ...}]}``: one entry per
problem, each naming the field (or header, or path) it is about.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

__all__ = ["ERRORS", "ErrorPublic", "ProblemPublic"]


class ProblemPublic(BaseModel):
    """One problem with a request: the field it is about and what is wrong."""

    field: str
    message: str


class ErrorPublic(BaseModel):
    """The body of every error answer."""

    detail: list[ProblemPublic]


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
