"""Sticky assignments: one per experiment and unit, the first one recorded wins."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import IntegrityError

from splitlab.storage import NotFoundError, Store
from splitlab.storage.tables import assignments


def test_record_many_stores_new_units_and_keeps_the_first_variant(store: Store, experiment: str) -> None:
    first = store.assignments.record_many(experiment_key=experiment, variants={"u1": "control", "u2": "treatment"})
    assert first == {"u1": "control", "u2": "treatment"}
    second = store.assignments.record_many(experiment_key=experiment, variants={"u1": "treatment", "u3": "treatment"})
    assert second == {"u1": "control", "u3": "treatment"}
    assert store.assignments.record(experiment_key=experiment, unit_id="u2", variant="control") == "treatment"
    stored = store.assignments.get(experiment_key=experiment, unit_id="u1")
    assert stored is not None
    assert (stored.variant, stored.bucket_version) == ("control", 1)
    assert stored.assigned_at.tzinfo == UTC
    assert store.assignments.get(experiment_key=experiment, unit_id="nobody") is None
    many = store.assignments.get_many(experiment_key=experiment, unit_ids=["u1", "u3", "nobody", "u1"])
    assert {u: a.variant for u, a in many.items()} == {"u1": "control", "u3": "treatment"}


def test_add_many_keeps_the_same_rule_without_reading_back(store: Store, experiment: str) -> None:
    store.assignments.record(experiment_key=experiment, unit_id="u1", variant="treatment")
    written = store.assignments.add_many(experiment_key=experiment, variants={"u1": "control", "u2": "control"})
    assert written == 1  # u1 had an assignment: the first one stays
    assert store.assignments.add_many(experiment_key=experiment, variants={}) == 0
    assert store.assignments.add_many(experiment_key=experiment, variants={"u1": "control"}, bucket_version=2) == 1
    stored = store.assignments.get_many(experiment_key=experiment, unit_ids=["u1", "u2"])
    assert {u: (a.variant, a.bucket_version) for u, a in stored.items()} == {"u1": ("control", 2), "u2": ("control", 1)}
    assert stored["u2"].assigned_at.tzinfo == UTC
    quoted = {'ü-"ñ"\\ 😀': "treatment", "x" * 500: "control"}  # JSON-escaped text goes in as given
    assert store.assignments.add_many(experiment_key=experiment, variants=quoted) == 2
    back = store.assignments.get_many(experiment_key=experiment, unit_ids=list(quoted))
    assert {u: a.variant for u, a in back.items()} == quoted
    with pytest.raises(ValueError, match="is not a variant of experiment"):
        store.assignments.add_many(experiment_key=experiment, variants={"u3": "nope"})
    with pytest.raises(NotFoundError):
        store.assignments.add_many(experiment_key="missing", variants={"u3": "control"})
    with pytest.raises(ValueError, match="bucket_version == 0"):
        store.assignments.add_many(experiment_key=experiment, variants={"u3": "control"}, bucket_version=0)


def test_the_database_refuses_a_second_row_for_a_unit(store: Store, experiment: str) -> None:
    store.assignments.record(experiment_key=experiment, unit_id="u1", variant="control")
    row = {
        "experiment_key": experiment,
        "unit_id": "u1",
        "variant": "treatment",
        "bucket_version": 1,
        "assigned_at": datetime.now(UTC),
    }
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(assignments.insert().values(row))
    assert store.assignments.get(experiment_key=experiment, unit_id="u1").variant == "control"  # type: ignore[union-attr]


def test_a_newer_bucket_version_replaces_an_older_assignment(store: Store, experiment: str) -> None:
    store.assignments.record(experiment_key=experiment, unit_id="u1", variant="control")
    assert store.assignments.record(experiment_key=experiment, unit_id="u1", variant="treatment", bucket_version=2) == (
        "treatment"
    )
    assert store.assignments.record(experiment_key=experiment, unit_id="u1", variant="control", bucket_version=1) == (
        "treatment"
    )
    stored = store.assignments.get(experiment_key=experiment, unit_id="u1")
    assert stored is not None
    assert (stored.variant, stored.bucket_version) == ("treatment", 2)


def test_bad_assignments_write_nothing(store: Store, experiment: str) -> None:
    with pytest.raises(
        ValueError, match=r"variant 'blue' is not a variant of experiment 'checkout' \(control, treatment\)"
    ):
        store.assignments.record_many(experiment_key=experiment, variants={"u1": "control", "u2": "blue"})
    with pytest.raises(NotFoundError, match="'nope' does not exist"):
        store.assignments.record_many(experiment_key="nope", variants={"u1": "control"})
    with pytest.raises(ValueError, match="unit_id"):
        store.assignments.record_many(experiment_key=experiment, variants={"": "control"})
    with pytest.raises(ValueError, match="bucket_version == 0"):
        store.assignments.record_many(experiment_key=experiment, variants={"u1": "control"}, bucket_version=0)
    assert store.assignments.get_many(experiment_key=experiment, unit_ids=["u1", "u2"]) == {}
    assert store.assignments.record_many(experiment_key=experiment, variants={}) == {}


def test_racing_writers_all_see_the_first_variant(store: Store, experiment: str) -> None:
    units = [f"u{i}" for i in range(200)]
    seen: dict[str, dict[str, str]] = {}
    barrier = threading.Barrier(2)

    def assign(variant: str) -> None:
        barrier.wait()
        seen[variant] = store.assignments.record_many(experiment_key=experiment, variants=dict.fromkeys(units, variant))

    threads = [threading.Thread(target=assign, args=(v,)) for v in ("control", "treatment")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen["control"] == seen["treatment"]
    stored = store.assignments.get_many(experiment_key=experiment, unit_ids=units)
    assert {u: a.variant for u, a in stored.items()} == seen["control"]
    assert len(set(seen["control"].values())) == 1  # one writer's batch won as a whole
