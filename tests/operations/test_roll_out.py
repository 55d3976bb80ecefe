"""Rolling a winner out: the lifecycle moves and refusals, and every front end serving the winner.

Each test runs on SQLite and PostgreSQL, through the use case, the real command line (Typer's
runner) and the real app (TestClient, lifespan included); the SDK's local evaluation reads the
``/config`` document the app serves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from typer.testing import CliRunner

from splitlab.assignment import assign as assign_plan
from splitlab.cli import app as cli_app
from splitlab.operations.assignment import assign
from splitlab.operations.errors import ConflictError, InvalidInputError
from splitlab.operations.experiments import apply_spec, change_status, roll_out
from splitlab.operations.simulation import simulate
from splitlab.sdk import parse_config
from splitlab.service import Settings, create_app
from splitlab.specs import ExperimentSpec, MetricDefinition, to_plan
from splitlab.storage import Store, open_store
from splitlab.storage.tables import experiment_versions

PAYLOADS = {"control": {"color": "grey"}, "treatment": {"color": "blue"}}
SPEC: dict[str, Any] = {
    "key": "checkout",
    "variants": [{"key": k, "weight": 0.5, "payload": p} for k, p in PAYLOADS.items()],
    "coverage": 0.6,
    "targeting": {"include": [{"attribute": "country", "operator": "in", "value": ["DE", "FR"]}]},
}
WINNER = ("treatment", {"color": "blue"}, False, "rolled_out")
"""What every unit is served once ``treatment`` is rolled out: variant, payload, enrolled, reason."""


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with open_store(database_url) as opened:
        yield opened


def _running(store: Store, spec: dict[str, Any] = SPEC) -> None:
    apply_spec(store, ExperimentSpec.model_validate(spec), actor="ana")
    change_status(store, key=spec["key"], action="start", actor="ana")


# --- the lifecycle ------------------------------------------------------------------------------


def test_a_running_or_paused_experiment_rolls_out_and_stop_switches_it_off(store: Store) -> None:
    _running(store)
    moved = roll_out(store, key="checkout", variant="treatment", actor="monitor", reason="LAUNCH, 14 days")
    assert (moved.old_status, moved.record.status, moved.record.rolled_out_variant) == (
        "running",
        "rolled_out",
        "treatment",
    )
    last = store.experiments.history(key="checkout")[-1]
    assert (last.version, last.status, last.changed_by, last.reason) == (3, "rolled_out", "monitor", "LAUNCH, 14 days")
    assert {"path": "rolled_out_variant", "old": None, "new": "treatment"} in last.diff

    stopped = change_status(store, key="checkout", action="stop", actor="ana")
    assert (stopped.old_status, stopped.record.status, stopped.record.rolled_out_variant) == (
        "rolled_out",
        "stopped",
        None,
    )
    served = assign(store, "checkout", "user-1", {"country": "DE"})
    assert (served.variant, served.payload, served.reason) == (None, None, "inactive")

    _running(store, SPEC | {"key": "paused"})
    change_status(store, key="paused", action="pause", actor="ana")
    assert roll_out(store, key="paused", variant="control", actor="ana").old_status == "paused"
    archived = change_status(store, key="paused", action="archive", actor="ana")
    assert (archived.record.status, archived.record.rolled_out_variant) == ("archived", None)


def test_roll_out_refuses_an_unknown_variant_and_a_move_the_lifecycle_does_not_allow(store: Store) -> None:
    apply_spec(store, ExperimentSpec.model_validate(SPEC), actor="ana")
    with pytest.raises(ConflictError) as refused:
        roll_out(store, key="checkout", variant="treatment", actor="ana")
    assert (refused.value.field, refused.value.message) == (
        "status",
        "cannot roll_out an experiment that is draft (allowed from draft: start, archive)",
    )
    change_status(store, key="checkout", action="start", actor="ana")
    with pytest.raises(InvalidInputError) as invalid:
        roll_out(store, key="checkout", variant="treatmnt", actor="ana")
    assert invalid.value.problems == (
        ("variant", "'treatmnt' is not a variant of experiment 'checkout' (its variants: 'control', 'treatment')"),
    )
    with pytest.raises(InvalidInputError, match="needs the variant to serve to every unit"):
        change_status(store, key="checkout", action="roll_out", actor="ana")
    record = store.experiments.get(key="checkout")
    assert record is not None
    assert (record.status, record.current_version) == ("running", 2)

    roll_out(store, key="checkout", variant="treatment", actor="ana")
    for action in ("start", "pause", "resume"):
        with pytest.raises(ConflictError, match=f"cannot {action} an experiment that is rolled_out"):
            change_status(store, key="checkout", action=action, actor="ana")
    with pytest.raises(ConflictError, match=r"allowed from rolled_out: stop, archive"):
        roll_out(store, key="checkout", variant="control", actor="ana")


def test_a_spec_update_may_not_drop_the_rolled_out_variant(store: Store) -> None:
    _running(store)
    roll_out(store, key="checkout", variant="treatment", actor="ana")
    without = SPEC | {"variants": [{"key": "control"}, {"key": "new"}]}
    with pytest.raises(ConflictError) as refused:
        apply_spec(store, ExperimentSpec.model_validate(without), actor="ana", rerandomize=True)
    message = "experiment 'checkout' is rolled out: every unit is served 'treatment', which this spec no longer has"
    assert (refused.value.field, refused.value.message) == ("variants", f"{message}; stop it first")
    recoloured = SPEC | {"variants": [SPEC["variants"][0], {"key": "treatment", "weight": 0.5, "payload": "green"}]}
    assert apply_spec(store, ExperimentSpec.model_validate(recoloured), actor="ana").action == "updated"
    served = assign(store, "checkout", "user-1")
    assert (served.variant, served.payload, served.reason) == ("treatment", "green", "rolled_out")


def test_roll_out_writes_the_callers_rows_in_its_transaction(store: Store) -> None:
    _running(store)
    versions: list[int] = []

    def fail(_conn: Any, version: Any) -> None:
        versions.append(version.version)
        msg = "the outbox is full"
        raise RuntimeError(msg)

    with pytest.raises(RuntimeError, match="the outbox is full"):
        roll_out(store, key="checkout", variant="treatment", actor="monitor", then=fail)
    assert versions == [3]
    record = store.experiments.get(key="checkout")
    assert record is not None
    assert (record.status, record.rolled_out_variant, record.current_version) == ("running", None, 2)


def test_forced_units_keep_their_variant_in_a_rolled_out_plan() -> None:
    spec = ExperimentSpec.model_validate(SPEC)
    plan = to_plan(spec, forced={"qa-1": "control"}, active=False, rolled_out="treatment")
    qa = assign_plan(plan, "qa-1")
    assert (qa.variant, qa.enrolled, qa.reason) == ("control", True, "forced")
    other = assign_plan(plan, "user-1")
    assert (other.variant, other.payload, other.enrolled, other.reason) == WINNER
    with pytest.raises(ValueError, match=r"rolled_out == 'gone', must be one of the variant keys"):
        to_plan(spec, rolled_out="gone")


# --- every front end serves the winner ----------------------------------------------------------

UNITS: list[tuple[str, dict[str, Any]]] = [(f"user-{i}", {"country": ("DE", "FR", "US")[i % 3]}) for i in range(30)]
"""Targeted and untargeted units, in and out of coverage (0.6)."""


class FrontEnds:
    """One store behind the use case, the CLI, the app's routes, and the SDK's evaluation of ``/config``."""

    def __init__(self, database_url: str, client: TestClient, admin: str, sdk: str) -> None:
        self.url = database_url
        self.client = client
        self.admin = {"Authorization": f"Bearer {admin}"}
        self.sdk = {"Authorization": f"Bearer {sdk}"}
        self.runner = CliRunner()

    def cli(self, *args: str) -> tuple[int, str]:
        result = self.runner.invoke(cli_app, [*args, "--database", self.url], env={"SPLITLAB_ACTOR": "ana"})
        assert "Traceback" not in result.output
        return result.exit_code, result.output

    def python(self, unit: str, attributes: dict[str, Any]) -> tuple[Any, ...]:
        with open_store(self.url) as store:
            a = assign(store, "checkout", unit, attributes, record=True)
        return (a.variant, a.payload, a.enrolled, a.reason)

    def command_line(self, unit: str, attributes: dict[str, Any]) -> tuple[Any, ...]:
        attrs = [arg for name, value in attributes.items() for arg in ("--attr", f"{name}={value}")]
        code, output = self.cli("assign", "checkout", unit, *attrs, "--record", "--json")
        assert code == 0, output
        a = json.loads(output)
        return (a["variant"], a["payload"], a["enrolled"], a["reason"])

    def http(self, unit: str, attributes: dict[str, Any]) -> tuple[Any, ...]:
        body = {"experiment": "checkout", "unit_id": unit, "attributes": attributes}
        response = self.client.post("/api/v1/assign", json=body, headers=self.sdk)
        assert response.status_code == 200, response.text
        a = response.json()
        return (a["variant"], a["payload"], a["enrolled"], a["reason"])

    def http_batch(self, units: list[tuple[str, dict[str, Any]]]) -> list[tuple[Any, ...]]:
        body = {"experiment": "checkout", "units": [{"unit_id": u, "attributes": a} for u, a in units]}
        response = self.client.post("/api/v1/assign/batch", json=body, headers=self.sdk)
        assert response.status_code == 200, response.text
        return [(a["variant"], a["payload"], a["enrolled"], a["reason"]) for a in response.json()["assignments"]]

    def config(self) -> dict[str, Any]:
        response = self.client.get("/api/v1/config", headers=self.sdk)
        assert response.status_code == 200, response.text
        document: dict[str, Any] = response.json()
        return document

    def sdk_local(self, units: list[tuple[str, dict[str, Any]]]) -> list[tuple[Any, ...]]:
        snapshot, problems = parse_config(self.config())
        assert problems == []
        plan = snapshot.plans["checkout"]
        return [(a.variant, a.payload, a.enrolled, a.reason) for a in (plan.assign(u, attrs) for u, attrs in units)]

    def every(self, units: list[tuple[str, dict[str, Any]]]) -> dict[str, list[tuple[Any, ...]]]:
        return {
            "python": [self.python(u, a) for u, a in units],
            "cli": [self.command_line(u, a) for u, a in units],
            "http": [self.http(u, a) for u, a in units],
            "http batch": self.http_batch(units),
            "sdk": self.sdk_local(units),
        }


@pytest.fixture
def front_ends(database_url: str) -> Iterator[FrontEnds]:
    with open_store(database_url) as store:
        _, admin = store.keys.create(role="admin", name="ops", actor="test")
        _, sdk = store.keys.create(role="sdk", name="web", actor="test")
    settings = Settings(database_url=database_url, record_assignments=True)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield FrontEnds(database_url, client, admin, sdk)


def _recorded(database_url: str) -> dict[str, str]:
    with open_store(database_url) as store:
        found = store.assignments.get_many(experiment_key="checkout", unit_ids=[u for u, _ in UNITS])
    return {u: a.variant for u, a in found.items()}


def test_every_front_end_serves_the_winner_to_every_unit(front_ends: FrontEnds, database_url: str) -> None:
    api = front_ends.client
    assert api.put("/api/v1/experiments/checkout", json=SPEC, headers=front_ends.admin).status_code == 200
    assert api.post("/api/v1/experiments/checkout/start", headers=front_ends.admin).status_code == 200
    before = front_ends.every(UNITS[:12])  # enrols (and records) the targeted, covered units
    assert {row[3] for rows in before.values() for row in rows} >= {"enrolled", "not_targeted"}
    enrolled = {u: row[0] for (u, _), row in zip(UNITS, before["python"], strict=False) if row[2]}
    with open_store(database_url) as store:  # a sticky unit in the arm that loses
        store.assignments.record(experiment_key="checkout", unit_id="sticky-1", variant="control")
    assert front_ends.python("sticky-1", {"country": "DE"})[3] == "sticky"  # read from the store

    rolled = api.post("/api/v1/experiments/checkout/roll-out?variant=treatment", headers=front_ends.admin)
    assert rolled.status_code == 200, rolled.text
    assert (rolled.json()["status"], rolled.json()["version"]) == ("rolled_out", 3)
    recorded = _recorded(database_url)

    # the app's cache was warm: the change is served at once, by every front end, to every unit
    units = [*UNITS, ("sticky-1", {"country": "DE"})]
    after = front_ends.every(units)
    assert after == dict.fromkeys(after, [WINNER] * len(units))
    assert _recorded(database_url) == recorded  # nobody enrolled, nothing recorded
    assert set(enrolled) <= set(recorded)

    [entry] = front_ends.config()["experiments"]
    assert (entry["key"], entry["status"], entry["rolled_out_variant"]) == ("checkout", "rolled_out", "treatment")
    now = datetime.now(UTC).isoformat()
    exposure = {"experiment": "checkout", "unit_id": "user-0", "variant": "treatment", "timestamp": now}
    refused = api.post("/api/v1/exposures", json={"exposures": [exposure]}, headers=front_ends.sdk)
    assert refused.status_code == 422, refused.text  # no experiment data once it is over
    assert "not running" in refused.text

    assert api.post("/api/v1/experiments/checkout/stop", headers=front_ends.admin).status_code == 200
    assert front_ends.config()["experiments"] == []
    assert front_ends.http("user-0", {"country": "DE"}) == (None, None, False, "inactive")
    assert front_ends.command_line("sticky-1", {"country": "DE"}) == (None, None, False, "inactive")


def test_roll_out_reads_the_same_on_the_command_line_and_over_http(front_ends: FrontEnds) -> None:
    api, admin = front_ends.client, front_ends.admin
    assert api.put("/api/v1/experiments/checkout", json=SPEC, headers=admin).status_code == 200
    url = "/api/v1/experiments/checkout/roll-out"

    def both(variant: str) -> tuple[str, str, int]:
        """The CLI's error line and the HTTP answer's (field: message, status)."""
        code, output = front_ends.cli("roll-out", "checkout", "--variant", variant, "--reason", "winner")
        assert code == 2, output
        response = api.post(url, params={"variant": variant, "reason": "winner"}, headers=admin)
        [detail] = response.json()["detail"]
        return output.strip(), f"{detail['field']}: {detail['message']}", response.status_code

    refusal = "cannot roll_out an experiment that is draft (allowed from draft: start, archive)"
    assert both("treatment") == (f"error: {refusal}", f"status: {refusal}", 409)
    assert api.post("/api/v1/experiments/checkout/start", headers=admin).status_code == 200
    problem = "variant: 'blue' is not a variant of experiment 'checkout' (its variants: 'control', 'treatment')"
    assert both("blue") == (f"error: {problem}", problem, 422)
    assert api.post(url, headers=admin).status_code == 422  # the variant is required

    code, output = front_ends.cli("roll-out", "checkout", "--variant", "treatment", "--reason", "LAUNCH")
    assert (code, output) == (0, "checkout: running -> rolled_out (version 3), serving treatment to every unit\n")
    history = api.get("/api/v1/experiments", params={"status": "rolled_out"}, headers=admin)
    assert [e["key"] for e in history.json()] == ["checkout"]
    with open_store(front_ends.url) as store:
        last = store.experiments.history(key="checkout")[-1]
    assert (last.changed_by, last.reason) == ("ana", "LAUNCH")


# --- the analysis -------------------------------------------------------------------------------

METRICS = [MetricDefinition.model_validate({"name": "bought", "kind": "binary", "event": "purchase"})]


def test_a_rolled_out_experiment_is_analysed_as_before(store: Store, database_url: str) -> None:
    spec = SPEC | {"metrics": {"goal": ["bought"]}}
    store.metrics.put_many(definitions=[m.model_dump(mode="json") for m in METRICS], actor="ana")
    _running(store, spec)
    started = datetime.now(UTC) - timedelta(days=3)
    with store.engine.begin() as conn:  # the store dates a start now; this one started three days ago
        conn.execute(
            update(experiment_versions)
            .where(experiment_versions.c.experiment_key == "checkout", experiment_versions.c.status == "running")
            .values(changed_at=started)
        )
    simulate(
        store,
        ExperimentSpec.model_validate(spec),
        {m.name: m for m in METRICS},
        units=3000,
        effects={"bought": 0.2},
        days=2,
        start=started + timedelta(hours=1),
    )
    runner = CliRunner()

    def read(command: str) -> dict[str, Any]:
        result = runner.invoke(cli_app, [command, "checkout", "--json", "--database", database_url])
        assert result.exit_code == 0, result.output
        document: dict[str, Any] = json.loads(result.stdout)
        return document

    running = (read("analyze"), read("status"))
    roll_out(store, key="checkout", variant="treatment", actor="ana")
    rolled = (read("analyze"), read("status"))
    for before, after in zip(running, rolled, strict=True):
        assert _without(before) == _without(after)
    assert rolled[1]["status"] == "rolled_out"
    assert sum(rolled[1]["units"].values()) > 0


def _without(document: Any) -> Any:
    """``document`` without what a rollout changes (the status and the version) nor times, at any depth."""
    if isinstance(document, dict):
        kept = {k: v for k, v in document.items() if k not in ("status", "spec_version") and not k.endswith("_at")}
        return {k: _without(v) for k, v in kept.items()}
    if isinstance(document, list):
        return [_without(v) for v in document]
    return document
