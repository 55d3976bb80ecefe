"""The service's own caller-mistake error: one or more problems, each naming the field it is about."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["InvalidInputError", "validation_problems"]


def _field(loc: Sequence[int | str]) -> str:
    """A validation error's location as a dotted field; the ``body`` prefix is implied."""
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    return ".".join(map(str, parts)) or "body"


def validation_problems(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Pydantic's (or FastAPI's) validation errors as ``{"field", "message"}`` entries of an error answer."""
    detail = []
    for error in errors:
        message = str(error.get("msg", "invalid value"))
        if error.get("type") == "json_invalid":
            message = f"is not valid JSON: {error.get('ctx', {}).get('error', message)}"
        detail.append({"field": _field(tuple(error.get("loc", ()))), "message": message})
    return detail


class InvalidInputError(ValueError):
    """Input the service refuses; ``problems`` holds ``(field, message)`` pairs, all of them at once."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{field}: {message}" for field, message in self.problems))
