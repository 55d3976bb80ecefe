"""The service's own errors (a busy service), the patterns its inputs are checked with, and how problems read.

A caller's mistake is :class:`splitlab.operations.errors.InvalidInputError`, the same error every front end raises.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from splitlab.operations.errors import InvalidInputError

__all__ = [
    "NO_NUL",
    "PYTHON_WHITESPACE",
    "STORE_UNAVAILABLE",
    "TEXT",
    "InvalidInputError",
    "UnavailableError",
    "stopping",
    "validation_problems",
]

STORE_UNAVAILABLE = (OperationalError, PoolTimeoutError)
"""Store errors that mean "not now" (down, locked, no free pooled connection): 503, and writers keep their queue."""


NO_NUL = r"^[^\x00]*$"
"""The pattern of text the databases take (PostgreSQL refuses NUL). Checked by pydantic-core, which
also refuses lone surrogates; :func:`validation_problems` words both for people."""

PYTHON_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
"""The characters ``str.isspace`` (and so ``str.strip``) takes for whitespace, which the store's
``check_text`` refuses as a whole id; Unicode's White_Space, the regex ``\\s``, leaves out ``\\x1c``-``\\x1f``."""

TEXT = "^[^\\x00]*[^\\x00" + "".join(f"\\u{ord(c):04x}" for c in PYTHON_WHITESPACE) + "][^\\x00]*$"
"""The pattern of an id or a name: no NUL, and not blank (at least one character besides whitespace)."""


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
