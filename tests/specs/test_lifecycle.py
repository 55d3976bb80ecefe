"""Every (status, action) pair: the eleven allowed moves and the twenty-five refused ones."""

from __future__ import annotations

import itertools

import pytest

from splitlab.specs import TRANSITIONS, Action, Status, allowed_actions, has_run, transition

ALLOWED = {
    ("draft", "start"): "running",
    ("draft", "archive"): "archived",
    ("running", "pause"): "paused",
    ("running", "stop"): "stopped",
    ("running", "roll_out"): "rolled_out",
    ("paused", "resume"): "running",
    ("paused", "stop"): "stopped",
    ("paused", "roll_out"): "rolled_out",
    ("stopped", "archive"): "archived",
    ("rolled_out", "stop"): "stopped",
    ("rolled_out", "archive"): "archived",
}
PAIRS = list(itertools.product([s.value for s in Status], [a.value for a in Action]))
REFUSED = [pair for pair in PAIRS if pair not in ALLOWED]


def test_table_is_complete() -> None:
    assert len(PAIRS) == 36
    assert len(REFUSED) == 25
    assert {(s.value, a.value): n.value for (s, a), n in TRANSITIONS.items()} == ALLOWED


@pytest.mark.parametrize(("status", "action"), list(ALLOWED))
def test_allowed_transitions(status: str, action: str) -> None:
    new = transition(status, action)
    assert new is Status(ALLOWED[status, action])
    assert transition(Status(status), Action(action)) is new


@pytest.mark.parametrize(("status", "action"), REFUSED)
def test_refused_transitions_name_status_and_action(status: str, action: str) -> None:
    with pytest.raises(ValueError, match=f"cannot {action} an experiment that is {status} \\(allowed from {status}: "):
        transition(status, action)


def test_refusal_lists_what_is_allowed() -> None:
    with pytest.raises(
        ValueError, match=r"cannot start an experiment that is paused \(allowed from paused: resume, stop, roll_out\)"
    ):
        transition(Status.PAUSED, Action.START)
    with pytest.raises(
        ValueError, match=r"cannot start an experiment that is archived \(allowed from archived: nothing"
    ):
        transition("archived", "start")


def test_allowed_actions() -> None:
    assert allowed_actions("draft") == (Action.START, Action.ARCHIVE)
    assert allowed_actions(Status.RUNNING) == (Action.PAUSE, Action.STOP, Action.ROLL_OUT)
    assert allowed_actions("rolled_out") == (Action.STOP, Action.ARCHIVE)
    assert allowed_actions("archived") == ()


def test_unknown_status_or_action() -> None:
    with pytest.raises(
        ValueError, match=r"status == 'live', must be one of draft, running, paused, stopped, archived, rolled_out"
    ):
        transition("live", "stop")
    with pytest.raises(
        ValueError, match=r"action == 'restart', must be one of start, pause, resume, stop, archive, roll_out"
    ):
        transition("running", "restart")
    with pytest.raises(ValueError, match=r"status == 'live'"):
        has_run("live")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("draft", False),
        ("running", True),
        ("paused", True),
        ("stopped", True),
        ("archived", True),
        ("rolled_out", True),
    ],
)
def test_has_run(status: str, expected: bool) -> None:
    assert has_run(status) is expected
    assert has_run(Status(status)) is expected


def _reachable(start: Status) -> set[Status]:
    reachable = {start}
    frontier = [start]
    while frontier:
        current = frontier.pop()
        for action in allowed_actions(current):
            new = transition(current, action)
            if new not in reachable:
                reachable.add(new)
                frontier.append(new)
    return reachable


def test_no_path_leads_back_from_stopped_or_archived() -> None:
    assert _reachable(Status.STOPPED) == {Status.STOPPED, Status.ARCHIVED}


def test_a_rolled_out_experiment_never_enrols_again() -> None:
    assert _reachable(Status.ROLLED_OUT) == {Status.ROLLED_OUT, Status.STOPPED, Status.ARCHIVED}


def test_apply_action_resumes_a_paused_experiment_on_start() -> None:
    from splitlab.specs import apply_action

    assert apply_action("paused", "start") == "running"
    assert apply_action("draft", "start") == "running"
    with pytest.raises(ValueError, match="stopped"):
        apply_action("stopped", "start")
