"""The experiment registry: versions, the audit log, status changes, snapshots."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from alembic import command
from sqlalchemy import func, select

from splitlab.storage import AlreadyExistsError, NotFoundError, Store, VersionConflictError, alembic_config
from splitlab.storage.tables import experiment_versions

SPEC = {"key": "pricing", "variants": [{"key": "control"}, {"key": "cheaper"}], "hypothesis": {"alpha": 0.05}}


def _versions(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(experiment_versions)).scalar_one())


def test_create_is_version_one_with_an_audit_entry(store: Store) -> None:
    created = store.experiments.create(key="pricing", spec=SPEC, actor="ana", reason="first draft")
    assert (created.key, created.status, created.current_version, created.bucket_version) == ("pricing", "draft", 1, 1)
    assert created.spec == SPEC
    assert created.created_by == "ana"
    assert created.created_at == created.updated_at
    assert created.created_at.tzinfo is not None
    assert store.experiments.get(key="pricing") == created
    [entry] = store.experiments.history(key="pricing")
    assert (entry.version, entry.diff, entry.status) == (1, [], "draft")
    assert (entry.changed_by, entry.reason) == ("ana", "first draft")
    assert entry.spec == SPEC


def test_a_taken_key_is_refused_and_nothing_changes(store: Store) -> None:
    store.experiments.create(key="pricing", spec=SPEC, actor="ana")
    with pytest.raises(AlreadyExistsError, match="'pricing' already exists"):
        store.experiments.create(key="pricing", spec={"other": True}, actor="bo")
    assert store.experiments.get(key="pricing").spec == SPEC  # type: ignore[union-attr]
    assert _versions(store) == 1


def test_each_update_is_a_new_version_with_its_diff(store: Store) -> None:
    store.experiments.create(key="pricing", spec=SPEC, actor="ana")
    changed = SPEC | {"hypothesis": {"alpha": 0.01}}
    diff = [{"path": "hypothesis.alpha", "old": 0.05, "new": 0.01}]
    version = store.experiments.update(key="pricing", spec=changed, diff=diff, actor="bo", reason="stricter")
    assert (version.version, version.spec, version.diff, version.changed_by, version.reason) == (
        2,
        changed,
        diff,
        "bo",
        "stricter",
    )
    third = store.experiments.update(key="pricing", spec=SPEC, diff=[{"path": "x"}], actor="ana")
    assert third.version == 3
    current = store.experiments.get(key="pricing")
    assert current is not None
    assert (current.current_version, current.spec, current.created_by) == (3, SPEC, "ana")
    assert current.updated_at >= current.created_at
    history = store.experiments.history(key="pricing")
    assert [(h.version, h.changed_by) for h in history] == [(1, "ana"), (2, "bo"), (3, "ana")]
    assert history[1].diff == diff
    assert history[1].spec == changed
    assert [h.changed_at for h in history] == sorted(h.changed_at for h in history)


def test_expected_version_guards_against_lost_updates(store: Store) -> None:
    store.experiments.create(key="pricing", spec=SPEC, actor="ana")
    store.experiments.update(key="pricing", spec=SPEC, diff=[], actor="bo", expected_version=1)
    with pytest.raises(VersionConflictError, match="at version 2, not expected_version == 1"):
        store.experiments.update(key="pricing", spec={"lost": True}, diff=[], actor="cy", expected_version=1)
    assert store.experiments.get(key="pricing").spec == SPEC  # type: ignore[union-attr]
    assert len(store.experiments.history(key="pricing")) == 2


def test_rerandomize_bumps_the_bucket_version(store: Store) -> None:
    store.experiments.create(key="pricing", spec=SPEC, actor="ana")
    store.experiments.update(key="pricing", spec=SPEC, diff=[], actor="ana")
    assert store.experiments.get(key="pricing").bucket_version == 1  # type: ignore[union-attr]
    store.experiments.update(key="pricing", spec=SPEC, diff=[], actor="ana", rerandomize=True)
    assert store.experiments.get(key="pricing").bucket_version == 2  # type: ignore[union-attr]


def test_status_changes_are_versions_in_the_audit_log(store: Store) -> None:
    store.experiments.create(key="pricing", spec=SPEC, actor="ana")
    store.experiments.create(key="search", spec={}, actor="ana")
    running = store.experiments.set_status(key="pricing", status="running", actor="bo", reason="launch")
    assert (running.version, running.status, running.spec) == (2, "running", SPEC)
    assert running.diff == [{"path": "status", "old": "draft", "new": "running"}]
    store.experiments.set_status(key="pricing", status="paused", actor="cy")
    history = store.experiments.history(key="pricing")
    assert [(h.version, h.status, h.changed_by) for h in history] == [
        (1, "draft", "ana"),
        (2, "running", "bo"),
        (3, "paused", "cy"),
    ]
    assert history[2].diff == [{"path": "status", "old": "running", "new": "paused"}]
    assert store.experiments.get(key="pricing").status == "paused"  # type: ignore[union-attr]
    assert [e.key for e in store.experiments.list(status="paused")] == ["pricing"]
    assert [e.key for e in store.experiments.list(status="draft")] == ["search"]
    assert [e.key for e in store.experiments.list()] == ["pricing", "search"]
    update = store.experiments.update(key="pricing", spec=SPEC, diff=[], actor="ana")
    assert update.status == "paused"


def test_unknown_status_and_unknown_key_are_refused(store: Store) -> None:
    store.experiments.create(key="pricing", spec=SPEC, actor="ana")
    with pytest.raises(ValueError, match="status == 'live', must be one of draft, running"):
        store.experiments.set_status(key="pricing", status="live", actor="ana")
    with pytest.raises(ValueError, match="status == 'live'"):
        store.experiments.list(status="live")
    with pytest.raises(NotFoundError, match="'nope' does not exist"):
        store.experiments.set_status(key="nope", status="running", actor="ana")
    with pytest.raises(NotFoundError, match="'nope' does not exist"):
        store.experiments.update(key="nope", spec={}, diff=[], actor="ana")
    with pytest.raises(NotFoundError, match="'nope' does not exist"):
        store.experiments.history(key="nope")
    assert store.experiments.get(key="nope") is None
    assert _versions(store) == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"spec": {"alpha": float("nan")}}, ValueError, "spec is not JSON-serialisable"),
        ({"spec": {"when": object()}}, ValueError, "spec is not JSON-serialisable"),
        ({"spec": ["not", "a", "mapping"]}, TypeError, "spec must be a mapping"),
        ({"key": ""}, ValueError, "key"),
        ({"actor": " "}, ValueError, "actor"),
    ],
)
def test_bad_creates_are_refused(store: Store, kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    arguments: dict[str, object] = {"key": "pricing", "spec": SPEC, "actor": "ana"} | kwargs
    with pytest.raises(error, match=match):
        store.experiments.create(**arguments)  # type: ignore[arg-type]
    assert store.experiments.list() == []


def test_a_diff_must_be_a_list_of_json_objects(store: Store) -> None:
    store.experiments.create(key="pricing", spec=SPEC, actor="ana")
    with pytest.raises(TypeError, match="diff must be a list"):
        store.experiments.update(key="pricing", spec=SPEC, diff="changed", actor="ana")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"diff\[0\] is not JSON-serialisable"):
        store.experiments.update(key="pricing", spec=SPEC, diff=[{"x": {1, 2}}], actor="ana")
    assert len(store.experiments.history(key="pricing")) == 1


def test_concurrent_updates_get_consecutive_versions(store: Store) -> None:
    store.experiments.create(key="pricing", spec=SPEC, actor="ana")
    errors: list[BaseException] = []

    def change(actor: str) -> None:
        try:
            for i in range(10):
                store.experiments.update(key="pricing", spec=SPEC | {"n": i}, diff=[], actor=actor)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=change, args=(f"actor{t}",)) for t in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    history = store.experiments.history(key="pricing")
    assert [h.version for h in history] == list(range(1, 32))
    assert store.experiments.get(key="pricing").current_version == 31  # type: ignore[union-attr]


def test_snapshots_are_kept_in_order(store: Store) -> None:
    store.experiments.create(key="pricing", spec=SPEC, actor="ana")
    assert store.snapshots.latest(experiment_key="pricing") is None
    first = store.snapshots.add(experiment_key="pricing", spec_version=1, payload={"p_value": 0.2})
    second = store.snapshots.add(experiment_key="pricing", spec_version=2, payload={"p_value": 0.01, "n": [1, 2]})
    assert second.id > first.id
    assert store.snapshots.latest(experiment_key="pricing") == second
    assert store.snapshots.list(experiment_key="pricing") == [first, second]
    assert store.snapshots.list(experiment_key="pricing")[1].payload == {"p_value": 0.01, "n": [1, 2]}
    with pytest.raises(NotFoundError, match="'nope' does not exist"):
        store.snapshots.add(experiment_key="nope", spec_version=1, payload={})
    with pytest.raises(ValueError, match="spec_version == 0, must be an integer >= 1"):
        store.snapshots.add(experiment_key="pricing", spec_version=0, payload={})
    with pytest.raises(ValueError, match="payload is not JSON-serialisable"):
        store.snapshots.add(experiment_key="pricing", spec_version=1, payload={"x": float("inf")})
    assert len(store.snapshots.list(experiment_key="pricing")) == 2


def test_a_change_with_new_weights_starts_a_phase_in_its_own_version(store: Store) -> None:
    store.experiments.create(key="pricing", spec=SPEC, actor="ana")
    assert store.experiments.phases(key="pricing") == []
    started = store.experiments.set_status(
        key="pricing", status="running", actor="ana", phase_weights={"control": 0.1, "cheaper": 0.9}
    )
    same = store.experiments.update(
        key="pricing", spec=SPEC, diff=[], actor="bo", phase_weights={"cheaper": 0.9, "control": 0.1}
    )
    ramped = store.experiments.update(
        key="pricing", spec=SPEC, diff=[], actor="bo", phase_weights={"control": 0.5, "cheaper": 0.5}
    )
    first, second = store.experiments.phases(key="pricing")
    assert (first.phase, first.spec_version, first.started_at) == (1, started.version, started.changed_at)
    assert first.weights == {"control": 0.1, "cheaper": 0.9}
    assert (second.phase, second.spec_version, second.started_at) == (2, ramped.version, ramped.changed_at)
    assert second.weights == {"control": 0.5, "cheaper": 0.5}
    assert same.version == ramped.version - 1  # the same weights again: a version, no phase
    assert second.started_at.tzinfo is not None


def test_phase_weights_are_checked_before_anything_is_written(store: Store) -> None:
    store.experiments.create(key="pricing", spec=SPEC, actor="ana")
    with pytest.raises(ValueError, match=r"phase_weights\['control'\] == 1.5, must be in \[0, 1\]"):
        store.experiments.set_status(key="pricing", status="running", actor="ana", phase_weights={"control": 1.5})
    with pytest.raises(TypeError, match="must be a non-empty mapping"):
        store.experiments.update(key="pricing", spec=SPEC, diff=[], actor="ana", phase_weights={})
    assert _versions(store) == 1
    assert store.experiments.phases(key="pricing") == []
    with pytest.raises(NotFoundError, match="'nope' does not exist"):
        store.experiments.phases(key="nope")


def test_the_migration_replays_the_phases_of_experiments_that_ran_before(store: Store) -> None:
    def spec(control: float) -> dict[str, Any]:
        return SPEC | {"variants": [{"key": "control", "weight": control}, {"key": "cheaper", "weight": 1 - control}]}

    bandit = SPEC | {"allocation": {"method": "bandit"}}
    # Written without phase weights (the repository writes today's schema, so the rows go in at head),
    # then the schema goes back to before phases were recorded, and up again.
    store.experiments.create(key="pricing", spec=spec(0.5), actor="ana")
    store.experiments.update(key="pricing", spec=spec(0.2), diff=[], actor="ana")  # a draft: no phase yet
    started = store.experiments.set_status(key="pricing", status="running", actor="ana")
    store.experiments.set_status(key="pricing", status="paused", actor="ana")
    ramped = store.experiments.update(key="pricing", spec=spec(0.5), diff=[], actor="ana")
    store.experiments.set_status(key="pricing", status="running", actor="ana")
    store.experiments.create(key="draft", spec=spec(0.5), actor="ana")
    store.experiments.create(key="bandit", spec=bandit, actor="ana", status="running")
    assert store.experiments.phases(key="pricing") == []
    with store.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0004")
    with store.engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
    phases = store.experiments.phases(key="pricing")
    assert [(p.phase, p.spec_version, p.started_at) for p in phases] == [
        (1, started.version, started.changed_at),
        (2, ramped.version, ramped.changed_at),
    ]
    assert [p.weights for p in phases] == [{"control": 0.2, "cheaper": 0.8}, {"control": 0.5, "cheaper": 0.5}]
    assert store.experiments.phases(key="draft") == []
    assert store.experiments.phases(key="bandit") == []
