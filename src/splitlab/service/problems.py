"""The service's own errors: a caller's mistake (one or more problems, each naming its field), or a busy service."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

__all__ = ["NO_NUL", "STORE_UNAVAILABLE", "InvalidInputError", "UnavailableError", "stopping", "validation_problems"]

STORE_UNAVAILABLE = (OperationalError, PoolTimeoutError)
"""Store errors that mean "not now" (down, locked, no free pooled connection): 503, and writers keep their queue."""


NO_NUL = r"^[^\x00]*$"
"""The pattern of text the databases take (PostgreSQL refuses NUL). Checked by pydantic-core, which
also refuses lone surrogates; :func:`validation_problems` words both for people."""


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
        elif kind == "string_unicode":
            message = "must be valid Unicode (no lone surrogates)"
        detail.append({"field": _field(tuple(error.get("loc", ()))), "message": message})
    return detail


class InvalidInputError(ValueError):
    """Input the service refuses; ``problems`` holds ``(field, message)`` pairs, all of them at once."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{field}: {message}" for field, message in self.problems))


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
