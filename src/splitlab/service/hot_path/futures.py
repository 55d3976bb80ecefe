"""Answering a request that waits on a background thread's future, unless it stopped waiting."""

from __future__ import annotations

from concurrent.futures import Future, InvalidStateError
from typing import TypeVar

__all__ = ["settle"]

T = TypeVar("T")


def settle(future: Future[T], outcome: T | BaseException) -> None:
    """Set ``outcome`` (a result, or an exception to raise) on ``future``; nothing if it was cancelled.

    A request that timed out (or whose client went away) cancels its future; the writer thread
    must go on with the others instead of dying on ``InvalidStateError``.
    """
    try:
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
    except InvalidStateError:
        pass
