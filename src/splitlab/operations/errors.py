"""The errors of the use cases: what every front end turns into its own answer.

Each names the field it is about, so the HTTP service answers ``{"field", "message"}`` and the
CLI prints the same message after ``error:``. The store's :class:`~splitlab.storage.NotFoundError`
(404 / exit 2) is raised as it is.

==========================  ===========  =====================================================
error                       HTTP         meaning
==========================  ===========  =====================================================
:class:`InvalidInputError`  422          the input is wrong: every problem, each with its field
:class:`ConflictError`      409          the input is fine, the experiment's state refuses it
``NotFoundError``           404          no such experiment
==========================  ===========  =====================================================
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ConflictError", "InvalidInputError"]


class InvalidInputError(ValueError):
    """Input refused as a whole; ``problems`` holds ``(field, message)`` pairs, all of them at once."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{field}: {message}" for field, message in self.problems))


class ConflictError(ValueError):
    """A well-formed request that the experiment's current state refuses (a lifecycle move that is
    not allowed, a change that would move assigned units, someone else's newer version, an
    experiment that cannot be analysed yet).

    Args:
        field: What the refusal is about (``status``, ``body``, ``key``, ``spec.metrics`` ...).
        message: Why, and what to do instead.
    """  # noqa: D205

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
