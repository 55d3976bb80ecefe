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
        reasons: A short code of each problem, in the same order (``not_running``, ``before_start``
            ...), for counting; default ``"refused"`` for each.

    The message lists the first :data:`MESSAGE_PROBLEMS` problems and says how many more there are.
    """

    MESSAGE_PROBLEMS = 20

    def __init__(self, what: str, problems: list[tuple[int, str, str]], *, reasons: list[str] | None = None) -> None:
        self.problems = tuple(problems)
        self.reasons = tuple(reasons) if reasons is not None else ("refused",) * len(self.problems)
        shown = "; ".join(
            f"{what}[{index}].{field}: {message}" for index, field, message in self.problems[: self.MESSAGE_PROBLEMS]
        )
        more = len(self.problems) - self.MESSAGE_PROBLEMS
        super().__init__(shown if more <= 0 else f"{shown}; and {more} more")


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
