"""Errors raised by the store. Caller mistakes are ``ValueError`` subclasses, so one ``except`` catches them."""

from __future__ import annotations

__all__ = [
    "AlreadyExistsError",
    "NotFoundError",
    "RefusedRowsError",
    "StorageError",
    "StoreUnavailableError",
    "VersionConflictError",
]


class StorageError(Exception):
    """Base class of the store's own errors."""


class NotFoundError(StorageError, LookupError):
    """A named experiment (or other keyed object) does not exist."""


class AlreadyExistsError(StorageError, ValueError):
    """Creating something whose key is taken."""


class VersionConflictError(StorageError, ValueError):
    """An update expected another current version (someone else changed the experiment first)."""


class RefusedRowsError(StorageError, ValueError):
    """A batch refused whole because some rows refer to what the store does not hold.

    Args:
        what: The batch's name (``exposures``), for the message.
        problems: ``(row index, field, message)`` for every refused row.
    """

    def __init__(self, what: str, problems: list[tuple[int, str, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{what}[{index}].{field}: {message}" for index, field, message in self.problems))


class StoreUnavailableError(StorageError, ConnectionError):
    """The store cannot be used: unreachable, refused, not a database, read-only, locked.

    Args:
        message: What failed, naming the store's URL (password hidden).
        hint: What a person should check; the text reads ``message (hint)``.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message if hint is None else f"{message} ({hint})")
        self.message = message
        self.hint = hint
