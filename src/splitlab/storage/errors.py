"""Errors raised by the store. Caller mistakes are ``ValueError`` subclasses, so one ``except`` catches them."""

from __future__ import annotations

__all__ = ["AlreadyExistsError", "NotFoundError", "StorageError", "StoreUnavailableError", "VersionConflictError"]


class StorageError(Exception):
    """Base class of the store's own errors."""


class NotFoundError(StorageError, LookupError):
    """A named experiment (or other keyed object) does not exist."""


class AlreadyExistsError(StorageError, ValueError):
    """Creating something whose key is taken."""


class VersionConflictError(StorageError, ValueError):
    """An update expected another current version (someone else changed the experiment first)."""


class StoreUnavailableError(StorageError, ConnectionError):
    """The database cannot be reached or opened."""
