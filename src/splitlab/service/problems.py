"""The service's own caller-mistake error: one or more problems, each naming the field it is about."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["InvalidInputError"]


class InvalidInputError(ValueError):
    """Input the service refuses; ``problems`` holds ``(field, message)`` pairs, all of them at once."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{field}: {message}" for field, message in self.problems))
