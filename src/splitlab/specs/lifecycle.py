"""The lifecycle of an experiment: draft → running ⇄ paused → stopped → archived, or → rolled_out.

The status is kept by the store, not in the spec. Allowed moves:

==========  ==========  ==========
status      action      new status
==========  ==========  ==========
draft       start       running
draft       archive     archived
running     pause       paused
running     stop        stopped
running     roll_out    rolled_out
paused      resume      running
paused      stop        stopped
paused      roll_out    rolled_out
stopped     archive     archived
rolled_out  stop        stopped
rolled_out  archive     archived
==========  ==========  ==========

Everything else is refused: a stopped experiment is not restarted (start a new experiment, or
re-randomise, so that the analysis windows do not mix), and an archived one is final.

``rolled_out`` ends the experiment by shipping one variant (the winner, kept by the store with the
status): every unit is served that variant and its payload, and nobody is enrolled any more. It is
a feature flag left on: stopping a rolled-out experiment switches it off (back to what stopped
serves, nothing: the application's default experience), and archiving it puts it away. A rolled-out
experiment is never resumed: to test again, start a new experiment.

Example:
    >>> transition(Status.DRAFT, "start")
    <Status.RUNNING: 'running'>
    >>> transition("running", "roll_out")
    <Status.ROLLED_OUT: 'rolled_out'>
    >>> transition("stopped", "resume")
    Traceback (most recent call last):
    ...
    ValueError: cannot resume an experiment that is stopped (allowed from stopped: archive)
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import TypeVar

__all__ = ["TRANSITIONS", "Action", "Status", "allowed_actions", "apply_action", "has_run", "transition"]

_E = TypeVar("_E", bound=StrEnum)


class Status(StrEnum):
    """Where an experiment is in its life."""

    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    ARCHIVED = "archived"
    ROLLED_OUT = "rolled_out"


class Action(StrEnum):
    """What a user can do to an experiment."""

    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    ARCHIVE = "archive"
    ROLL_OUT = "roll_out"


TRANSITIONS = MappingProxyType(
    {
        (Status.DRAFT, Action.START): Status.RUNNING,
        (Status.DRAFT, Action.ARCHIVE): Status.ARCHIVED,
        (Status.RUNNING, Action.PAUSE): Status.PAUSED,
        (Status.RUNNING, Action.STOP): Status.STOPPED,
        (Status.RUNNING, Action.ROLL_OUT): Status.ROLLED_OUT,
        (Status.PAUSED, Action.RESUME): Status.RUNNING,
        (Status.PAUSED, Action.STOP): Status.STOPPED,
        (Status.PAUSED, Action.ROLL_OUT): Status.ROLLED_OUT,
        (Status.STOPPED, Action.ARCHIVE): Status.ARCHIVED,
        (Status.ROLLED_OUT, Action.STOP): Status.STOPPED,
        (Status.ROLLED_OUT, Action.ARCHIVE): Status.ARCHIVED,
    }
)
"""``(status, action) -> new status`` for every allowed move."""


def _parse(kind: type[_E], name: str, value: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        msg = f"{name} == {value!r}, must be one of {choices}"
        raise ValueError(msg) from None


def allowed_actions(status: Status | str) -> tuple[Action, ...]:
    """The actions allowed from ``status``, in :class:`Action` order."""
    current = _parse(Status, "status", status)
    return tuple(action for action in Action if (current, action) in TRANSITIONS)


def transition(status: Status | str, action: Action | str) -> Status:
    """The status after ``action``; raise ``ValueError`` naming the status and action if it is not allowed."""
    current = _parse(Status, "status", status)
    act = _parse(Action, "action", action)
    new = TRANSITIONS.get((current, act))
    if new is None:
        allowed = ", ".join(allowed_actions(current)) or "nothing, it is final"
        msg = f"cannot {act} an experiment that is {current} (allowed from {current}: {allowed})"
        raise ValueError(msg)
    return new


def apply_action(status: Status | str, action: Action | str) -> Status:
    """Like :func:`transition`, but ``start`` on a paused experiment resumes it (the user's intent is the same).

    The rule the CLI and the HTTP service share for their start / pause / stop commands.
    """
    current = _parse(Status, "status", status)
    if action == Action.START and current == Status.PAUSED:
        action = Action.RESUME
    return transition(current, action)


def has_run(status: Status | str) -> bool:
    """Whether units may have been assigned: true for every status but draft.

    Archived counts as run because the status alone cannot tell an archived draft from an archived
    experiment that ran; the store can answer more precisely from its history. Being conservative
    here only means that an archived draft's protected fields need ``--rerandomize`` to change.
    """
    return _parse(Status, "status", status) is not Status.DRAFT
