"""The same scenario through the CLI and over HTTP gives the same outcome.

Each scenario runs once per front end, on a fresh store of each backend (SQLite, PostgreSQL),
through the real command line (Typer's runner on ``splitlab.cli.app``) and the real app
(TestClient, lifespan included). The test compares what a user meets: accepted or refused, the
error text, and the state the store is left in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from splitlab.cli import app as cli_app
from splitlab.service import Settings, create_app
from splitlab.storage import open_store

METRICS = """\
metrics:
  - {name: search_ctr, kind: binary, event: search_click, window_days: 1}
  - {name: searches, kind: count, event: search, window_days: 1}
"""


def _spec(key: str = "search", **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "key": key,
        "variants": [{"key": "control"}, {"key": "ranker_b"}],
        "metrics": {"goal": ["search_ctr"], "secondary": ["searches"]},
    }
    spec.update(changes)
    return spec


@dataclass(frozen=True)
class Outcome:
    """What a user meets: whether the front end accepted the request, and the error texts if not."""

    accepted: bool
    errors: tuple[str, ...] = ()
    data: Any = None


class FrontEnd(Protocol):
    name: str

    def define_metrics(self, text: str) -> Outcome: ...
    def apply(self, spec: dict[str, Any], *, rerandomize: bool = False) -> Outcome: ...
    def move(self, key: str, action: str) -> Outcome: ...
    def assign(self, key: str, unit: str) -> Outcome: ...


class Cli:
    name = "cli"

    def __init__(self, url: str, folder: Path) -> None:
        self._url = url
        self._folder = folder
        self._runner = CliRunner()

    def _run(self, *args: str) -> Outcome:
        result = self._runner.invoke(cli_app, [*args, "--database", self._url], env={"SPLITLAB_ACTOR": "ana"})
        assert "Traceback" not in result.output
        if result.exit_code == 0:
            return Outcome(True, data=result.stdout)
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1, result.output  # one line, `error: ...`
        assert lines[0].startswith("error: ")
        return Outcome(False, (lines[0].removeprefix("error: "),))

    def _file(self, name: str, text: str) -> str:
        path = self._folder / name
        path.write_text(text)
        return str(path)

    def define_metrics(self, text: str) -> Outcome:
        return self._run("apply", self._file("metrics.yaml", text))

    def apply(self, spec: dict[str, Any], *, rerandomize: bool = False) -> Outcome:
        path = self._file(f"{spec['key']}.yaml", yaml.safe_dump(spec))
        return self._run("apply", path, *(["--rerandomize"] if rerandomize else []))

    def move(self, key: str, action: str) -> Outcome:
        return self._run(action, key)

    def assign(self, key: str, unit: str) -> Outcome:
        outcome = self._run("assign", key, unit, "--record", "--json")
        if not outcome.accepted:
            return outcome
        answer = json.loads(outcome.data)
        return Outcome(True, data=(answer["variant"], answer["reason"]))


class Http:
    name = "http"

    def __init__(self, client: TestClient, admin: dict[str, str]) -> None:
        self._client = client
        self._admin = admin

    def _outcome(self, response: Any) -> Outcome:
        assert response.status_code < 500, response.text
        if response.status_code == 200:
            return Outcome(True, data=response.json())
        return Outcome(False, tuple(f"{d['field']}: {d['message']}" for d in response.json()["detail"]))

    def define_metrics(self, text: str) -> Outcome:
        for definition in yaml.safe_load(text)["metrics"]:
            outcome = self._outcome(
                self._client.put(f"/api/v1/metrics/{definition['name']}", json=definition, headers=self._admin)
            )
            if not outcome.accepted:
                return outcome
        return Outcome(True)

    def apply(self, spec: dict[str, Any], *, rerandomize: bool = False) -> Outcome:
        headers = {**self._admin, "Content-Type": "application/yaml"}
        params = {"rerandomize": "true"} if rerandomize else {}
        url = f"/api/v1/experiments/{spec['key']}"
        return self._outcome(self._client.put(url, content=yaml.safe_dump(spec), headers=headers, params=params))

    def move(self, key: str, action: str) -> Outcome:
        return self._outcome(self._client.post(f"/api/v1/experiments/{key}/{action}", headers=self._admin))

    def assign(self, key: str, unit: str) -> Outcome:
        response = self._client.post("/api/v1/assign", json={"experiment": key, "unit_id": unit}, headers=self._admin)
        outcome = self._outcome(response)
        return Outcome(True, data=(outcome.data["variant"], outcome.data["reason"])) if outcome.accepted else outcome


@pytest.fixture(params=["cli", "http"])
def front_end(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> Iterator[FrontEnd]:
    if request.param == "cli":
        yield Cli(database_url, tmp_path)
        return
    with open_store(database_url) as store:
        _, key = store.keys.create(role="admin", name="ana", actor="test")
    settings = Settings(database_url=database_url, record_assignments=True)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield Http(client, {"Authorization": f"Bearer {key}"})


def _state(database_url: str, key: str) -> dict[str, Any]:
    """What the store holds of an experiment, without times and actors (front ends name actors their way)."""
    with open_store(database_url) as store:
        record = store.experiments.get(key=key)
        assert record is not None
        history = store.experiments.history(key=key)
    return {
        "status": record.status,
        "version": record.current_version,
        "bucket_version": record.bucket_version,
        "spec": record.spec,
        "history": [(h.version, h.status, h.diff) for h in history],
    }


# The expected outcomes are written once and hold for both front ends: that is the point.


def test_a_spec_may_use_metrics_defined_by_an_earlier_apply(front_end: FrontEnd, database_url: str) -> None:
    assert front_end.define_metrics(METRICS).accepted
    assert front_end.apply(_spec()).accepted
    assert _state(database_url, "search") == {
        "status": "draft",
        "version": 1,
        "bucket_version": 1,
        "spec": _stored(_spec()),
        "history": [(1, "draft", [])],
    }


def _stored(spec: dict[str, Any]) -> dict[str, Any]:
    from splitlab.specs import ExperimentSpec

    return ExperimentSpec.model_validate(spec).model_dump(mode="json")


def test_an_undefined_metric_is_refused_with_the_closest_name(front_end: FrontEnd, database_url: str) -> None:
    assert front_end.define_metrics(METRICS).accepted
    refused = front_end.apply(_spec(metrics={"goal": ["search_ctrr"]}))
    assert not refused.accepted
    problem = "metrics.goal.0: 'search_ctrr' is not a defined metric, did you mean 'search_ctr'?"
    assert problem in refused.errors[0]
    with open_store(database_url) as store:
        assert store.experiments.get(key="search") is None


def test_a_namespace_range_taken_by_a_stored_experiment_is_refused(front_end: FrontEnd, database_url: str) -> None:
    assert front_end.define_metrics(METRICS).accepted
    assert front_end.apply(_spec("first", namespace={"name": "search", "range": [0.0, 0.6]})).accepted
    refused = front_end.apply(_spec("second", namespace={"name": "search", "range": [0.5, 1.0]}))
    assert not refused.accepted
    assert (
        "namespace.range: [0.5, 1.0) overlaps [0.0, 0.6) of experiment 'first' in namespace 'search'; "
        "the ranges of one namespace must be disjoint"
    ) in refused.errors[0]
    assert front_end.apply(_spec("second", namespace={"name": "search", "range": [0.6, 1.0]})).accepted


def test_a_change_that_moves_units_needs_rerandomize_and_only_then_bumps(
    front_end: FrontEnd, database_url: str
) -> None:
    assert front_end.define_metrics(METRICS).accepted
    assert front_end.apply(_spec()).accepted
    assert front_end.move("search", "start").accepted
    renamed = _spec(variants=[{"key": "control"}, {"key": "ranker_c"}])
    refused = front_end.apply(renamed)
    assert not refused.accepted
    assert refused.errors[0].endswith(
        "experiment 'search' has run, so changing variant keys (['control', 'ranker_b'] -> ['control', 'ranker_c']) "
        "would move assigned units between variants and corrupt its analysis. Revert these fields, or apply with "
        "--rerandomize to start bucket version 2 (every unit is re-assigned; the analysis starts over)."
    )
    # --rerandomize is a permission: an unchanged experiment keeps its bucket version.
    assert front_end.apply(_spec(), rerandomize=True).accepted
    assert _state(database_url, "search")["bucket_version"] == 1
    ramp = _spec(coverage=0.5)
    assert front_end.apply(ramp, rerandomize=True).accepted
    assert _state(database_url, "search")["bucket_version"] == 1
    assert front_end.apply(renamed, rerandomize=True).accepted
    state = _state(database_url, "search")
    assert (state["version"], state["bucket_version"]) == (4, 2)
    assert state["spec"] == _stored(renamed) | {"bucket_version": 2}


def test_lifecycle_moves_and_refusals_read_the_same(front_end: FrontEnd, database_url: str) -> None:
    assert front_end.define_metrics(METRICS).accepted
    assert front_end.apply(_spec()).accepted
    missing = front_end.move("nope", "start")
    assert not missing.accepted
    assert missing.errors[0].endswith("experiment 'nope' does not exist")
    refused_pause = front_end.move("search", "pause").errors[0]
    assert refused_pause.endswith("cannot pause an experiment that is draft (allowed from draft: start, archive)")
    assert front_end.move("search", "start").accepted
    assert front_end.move("search", "stop").accepted
    refused = front_end.move("search", "start")
    assert not refused.accepted
    assert "stopped" in refused.errors[0]
    assert [(v, s) for v, s, _ in _state(database_url, "search")["history"]] == [
        (1, "draft"),
        (2, "running"),
        (3, "stopped"),
    ]


def test_random_allocation_assigns_and_keeps_the_recorded_variant(front_end: FrontEnd, database_url: str) -> None:
    assert front_end.define_metrics(METRICS).accepted
    assert front_end.apply(_spec(allocation={"method": "random"})).accepted
    assert front_end.move("search", "start").accepted
    first = front_end.assign("search", "u1")
    assert first.accepted
    variant, reason = first.data
    assert variant in {"control", "ranker_b"}
    assert reason == "enrolled"
    if front_end.name == "http":  # the service records new enrolments in batches: let them land
        front_end._client.app.state.runtime.recorder.flush()  # type: ignore[attr-defined]
    with open_store(database_url) as store:
        stored = store.assignments.get(experiment_key="search", unit_id="u1")
    assert stored is not None
    assert stored.variant == variant
    for _ in range(5):
        assert front_end.assign("search", "u1").data == (variant, "sticky")


def test_a_bandit_setting_that_does_not_exist_is_refused_at_apply(front_end: FrontEnd, database_url: str) -> None:
    assert front_end.define_metrics(METRICS).accepted
    spec = _spec(allocation={"method": "bandit", "bandit": {"policy": "thompson", "floor": 0.05, "colour": "red"}})
    refused = front_end.apply(spec)
    assert not refused.accepted
    assert "allocation.bandit.colour" in refused.errors[0]
    with open_store(database_url) as store:
        assert store.experiments.get(key="search") is None


def test_the_same_assignment_through_either_front_end(tmp_path: Path, database_url: str) -> None:
    """A unit recorded by the CLI is served its variant by the service, and the other way round."""
    cli = Cli(database_url, tmp_path)
    assert cli.define_metrics(METRICS).accepted
    assert cli.apply(_spec(allocation={"method": "random"})).accepted
    assert cli.move("search", "start").accepted
    by_cli = cli.assign("search", "u-cli").data[0]
    with open_store(database_url) as store:
        _, key = store.keys.create(role="admin", name="ana", actor="test")
    settings = Settings(database_url=database_url, record_assignments=True)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        http = Http(client, {"Authorization": f"Bearer {key}"})
        assert http.assign("search", "u-cli").data == (by_cli, "sticky")
        by_http = http.assign("search", "u-http").data[0]
        client.app.state.runtime.recorder.flush()  # type: ignore[attr-defined]
    assert cli.assign("search", "u-http").data == (by_http, "sticky")


def test_an_exposure_to_an_undeclared_variant_reads_the_same(tmp_path: Path, database_url: str) -> None:
    """A file import keeps the good rows and reports the bad ones; a request is refused whole; same words."""
    cli = Cli(database_url, tmp_path)
    assert cli.define_metrics(METRICS).accepted
    assert cli.apply(_spec()).accepted
    assert cli.move("search", "start").accepted
    now = datetime.now(UTC).isoformat()
    path = tmp_path / "exposures.csv"
    path.write_text(f"experiment,unit_id,variant,timestamp\nsearch,u1,control,{now}\nsearch,u2,blue,{now}\n")
    imported = CliRunner().invoke(cli_app, ["events", "import", str(path), "--json", "--database", database_url])
    assert imported.exit_code == 1
    (rejected,) = json.loads(imported.stdout)["rejected"]
    with open_store(database_url) as store:
        _, key = store.keys.create(role="admin", name="ana", actor="test")
    with TestClient(create_app(Settings(database_url=database_url)), raise_server_exceptions=False) as client:
        batch = {"exposures": [{"experiment": "search", "unit_id": "u3", "variant": "blue", "timestamp": now}]}
        refused = client.post("/api/v1/exposures", json=batch, headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 422
    (problem,) = refused.json()["detail"]
    assert problem["field"] == "exposures.0.variant"
    assert (
        rejected["reason"]
        == problem["message"]
        == ("variant 'blue' is not a variant of experiment 'search' (control, ranker_b)")
    )


def test_a_weight_ramp_shows_the_same_phases_through_either_front_end(tmp_path: Path, database_url: str) -> None:
    cli = Cli(database_url, tmp_path)
    assert cli.define_metrics(METRICS).accepted
    assert cli.apply(_spec(variants=[{"key": "control", "weight": 0.9}, {"key": "ranker_b", "weight": 0.1}])).accepted
    assert cli.move("search", "start").accepted
    assert cli.apply(_spec(variants=[{"key": "control", "weight": 0.5}, {"key": "ranker_b", "weight": 0.5}])).accepted
    shown = CliRunner().invoke(cli_app, ["status", "search", "--json", "--database", database_url])
    assert shown.exit_code == 0, shown.output
    by_cli = json.loads(shown.stdout)["phases"]
    with open_store(database_url) as store:
        _, key = store.keys.create(role="admin", name="ana", actor="test")
    with TestClient(create_app(Settings(database_url=database_url)), raise_server_exceptions=False) as client:
        answer = client.get("/api/v1/experiments/search/status", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    by_http = answer.json()["phases"]
    assert (
        [p["weights"] for p in by_cli]
        == [p["weights"] for p in by_http]
        == [
            {"control": 0.9, "ranker_b": 0.1},
            {"control": 0.5, "ranker_b": 0.5},
        ]
    )
    assert [(p["phase"], p["spec_version"], p["units"]) for p in by_cli] == [
        (p["phase"], p["spec_version"], p["units"]) for p in by_http
    ]


def test_a_segment_no_exposure_carries_is_refused_by_the_use_case_in_the_cli_words(
    tmp_path: Path, database_url: str
) -> None:
    """The rule lives in ``operations.analysis.analyze``: the CLI only prints its refusal."""
    from splitlab.operations.analysis import analyze
    from splitlab.operations.errors import InvalidInputError
    from splitlab.storage import Exposure

    cli = Cli(database_url, tmp_path)
    assert cli.define_metrics(METRICS).accepted
    assert cli.apply(_spec()).accepted
    assert cli.move("search", "start").accepted
    now = datetime.now(UTC)
    with open_store(database_url) as store:
        store.exposures.log_many(
            [
                Exposure(
                    experiment_key="search",
                    unit_id="u1",
                    variant="control",
                    timestamp=now,
                    attributes={"device": "ios"},
                )
            ]
        )
        with pytest.raises(InvalidInputError) as refused:
            analyze(store, "search", segments=["device", "devcie"], save=False)
        assert analyze(store, "search", segments=["device"], save=False).readout.experiment_key == "search"
    expected = ("segments", "'devcie': no exposure of experiment 'search' carries that attribute")
    assert refused.value.problems == (expected,)
    by_cli = cli._run("analyze", "search", "--segment", "device", "--segment", "devcie", "--no-save")
    assert by_cli == Outcome(False, (": ".join(expected),))
    with open_store(database_url) as store:
        _, key = store.keys.create(role="admin", name="ana", actor="test")
    with TestClient(create_app(Settings(database_url=database_url)), raise_server_exceptions=False) as client:
        http = Http(client, {"Authorization": f"Bearer {key}"})
        url = "/api/v1/experiments/search/results"
        by_http = http._outcome(
            client.get(url, params={"fresh": "true", "segment": ["device", "devcie"]}, headers=http._admin)
        )
        assert by_http == by_cli
        kept = client.get(url, params={"fresh": "true", "segment": ["device"]}, headers=http._admin)
        assert kept.status_code == 200, kept.text
        nul = client.get(url, params={"fresh": "true", "segment": ["dev\x00ice"]}, headers=http._admin)
        assert nul.status_code == 422
