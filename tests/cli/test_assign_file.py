"""``splitlab assign KEY --file``: a known population, balanced within strata, recorded, and served by /assign."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from splitlab.cli import app
from splitlab.operations.assignment import assign_population
from splitlab.operations.errors import ConflictError, InvalidInputError
from splitlab.operations.experiments import apply_spec, change_status
from splitlab.service import Settings, create_app
from splitlab.specs import ExperimentSpec
from splitlab.storage import open_store

runner = CliRunner()


def _spec(**changes: object) -> ExperimentSpec:
    spec: dict[str, object] = {
        "key": "onboarding",
        "variants": [{"key": "control", "weight": 0.5}, {"key": "guided", "weight": 0.5}],
        "allocation": {"method": "random"},
        "stratify_by": ["country", "tier"],
        "targeting": {"exclude": [{"attribute": "is_employee", "operator": "eq", "value": True}]},
    }
    spec.update(changes)
    return ExperimentSpec.model_validate(spec)


def _population(size: int) -> list[tuple[str, dict[str, object]]]:
    countries, tiers = ("DE", "FR", "US"), ("free", "pro")
    return [
        (f"u{i}", {"country": countries[i % 3], "tier": tiers[(i // 3) % 2], "is_employee": i % 50 == 0})
        for i in range(size)
    ]


def test_each_stratum_is_split_as_evenly_as_whole_units_allow(database_url: str) -> None:
    units = _population(601)
    with open_store(database_url) as store:
        apply_spec(store, _spec(), actor="ana")
        change_status(store, key="onboarding", action="start", actor="ana")
        outcome = assign_population(store, "onboarding", units)
        stored = store.assignments.get_many(experiment_key="onboarding", unit_ids=[u for u, _ in units])
        again = assign_population(store, "onboarding", list(reversed(units)))
    employees = {u for u, a in units if a["is_employee"]}
    assert {r.unit_id for r in outcome.units if not r.enrolled} == employees
    assert len(outcome.strata) == 6
    for counts in outcome.strata.values():
        assert abs(counts["control"] - counts["guided"]) <= 1
    assert {u: a.variant for u, a in stored.items()} == {r.unit_id: r.variant for r in outcome.units if r.enrolled}
    assert all(r.reason == "enrolled" for r in outcome.units if r.enrolled)
    # A second call, in another order, keeps every recorded unit and reports the same strata.
    assert {r.unit_id: r.variant for r in again.units} == {r.unit_id: r.variant for r in outcome.units}
    assert {r.reason for r in again.units if r.enrolled} == {"sticky"}
    assert again.strata == outcome.strata


def test_the_same_population_is_dealt_the_same_way_on_another_store(tmp_path: Path) -> None:
    dealt = []
    for name in ("a", "b"):
        with open_store(f"sqlite:///{tmp_path / name}.db") as store:
            apply_spec(store, _spec(), actor="ana")
            change_status(store, key="onboarding", action="start", actor="ana")
            dealt.append({r.unit_id: r.variant for r in assign_population(store, "onboarding", _population(90)).units})
    assert dealt[0] == dealt[1]


def test_what_a_population_cannot_be_assigned_to(database_url: str) -> None:
    with open_store(database_url) as store:
        apply_spec(store, _spec(), actor="ana")
        with pytest.raises(ConflictError, match="is draft, not running"):
            assign_population(store, "onboarding", _population(3))
        change_status(store, key="onboarding", action="start", actor="ana")
        with pytest.raises(InvalidInputError) as repeated:
            assign_population(store, "onboarding", [("u1", {}), ("u2", {}), ("u1", {})])
        assert repeated.value.problems == (("units.2.unit_id", "'u1' is given twice (first at units.0)"),)
        apply_spec(store, _spec(key="hashed", allocation={"method": "hash"}), actor="ana")
        change_status(store, key="hashed", action="start", actor="ana")
        with pytest.raises(ConflictError, match=r"allocation\.method 'random'"):
            assign_population(store, "hashed", _population(3))


def test_the_cli_assigns_a_file_and_the_service_serves_what_it_recorded(tmp_path: Path, database_url: str) -> None:
    with open_store(database_url) as store:
        apply_spec(store, _spec(), actor="ana")
        change_status(store, key="onboarding", action="start", actor="ana")
        _, key = store.keys.create(role="sdk", name="web", actor="test")
    path = tmp_path / "units.csv"
    path.write_text("unit_id,country,tier,is_employee\n" + "".join(f"p{i},DE,free,false\n" for i in range(10)))
    done = runner.invoke(app, ["assign", "onboarding", "--file", str(path), "--json", "--database", database_url])
    assert done.exit_code == 0, done.output
    answer = json.loads(done.stdout)
    assert answer["strata"] == [{"stratum": ["DE", "free"], "variants": {"control": 5, "guided": 5}}]
    recorded = {u["unit_id"]: u["variant"] for u in answer["units"]}
    text = runner.invoke(app, ["assign", "onboarding", "--file", str(path), "--database", database_url])
    assert text.stdout.splitlines() == [
        "onboarding: 10 units, 10 enrolled and recorded",
        "  DE / free: control=5, guided=5",
    ]
    with TestClient(create_app(Settings(database_url=database_url)), raise_server_exceptions=False) as client:
        for unit, variant in recorded.items():
            served = client.post(
                "/api/v1/assign",
                json={"experiment": "onboarding", "unit_id": unit},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert (served.json()["variant"], served.json()["reason"]) == (variant, "sticky")
    refused = runner.invoke(app, ["assign", "onboarding", "u1", "--file", str(path), "--database", database_url])
    assert refused.exit_code == 2
    assert "give no UNIT and no --attr" in refused.output
