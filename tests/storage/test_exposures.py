"""Exposures: the first time is kept, a unit seen in two variants is flagged, batches are atomic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from splitlab.storage import Exposure, ExposureConflict, RefusedRowsError, Store, WriteResult

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _exposure(unit: str, variant: str, minutes: float, experiment: str = "checkout", **attributes: object) -> Exposure:
    return Exposure(
        experiment_key=experiment,
        unit_id=unit,
        variant=variant,
        timestamp=T0 + timedelta(minutes=minutes),
        attributes=attributes or None,
    )


def test_the_first_exposure_time_is_kept(store: Store, experiment: str) -> None:
    assert store.exposures.log(_exposure("u1", "control", 10, device="ios")) == WriteResult(1, 1)
    assert store.exposures.log(_exposure("u1", "control", 20, device="android")) == WriteResult(1, 0)
    stored = store.exposures.get(experiment_key=experiment, unit_id="u1")
    assert stored is not None
    assert (stored.variant, stored.first_exposed_at, stored.attributes) == (
        "control",
        T0 + timedelta(minutes=10),
        {"device": "ios"},
    )
    assert stored.multiple_variants is False
    # an earlier exposure that arrives late is the first one after all
    store.exposures.log(_exposure("u1", "control", 5, device="web"))
    stored = store.exposures.get(experiment_key=experiment, unit_id="u1")
    assert stored is not None
    assert (stored.first_exposed_at, stored.attributes) == (T0 + timedelta(minutes=5), {"device": "web"})
    assert store.exposures.count(experiment_key=experiment) == 1


def test_re_sending_a_batch_changes_nothing(store: Store, experiment: str) -> None:
    batch = [_exposure(f"u{i}", "control" if i % 2 else "treatment", i, country="se") for i in range(50)]
    assert store.exposures.log_many(batch) == WriteResult(received=50, inserted=50)
    before = [store.exposures.get(experiment_key=experiment, unit_id=f"u{i}") for i in range(50)]
    assert store.exposures.log_many(batch) == WriteResult(received=50, inserted=0)
    assert store.exposures.log_many(batch).duplicates == 50
    assert [store.exposures.get(experiment_key=experiment, unit_id=f"u{i}") for i in range(50)] == before
    assert store.exposures.conflicts(experiment_key=experiment) == []


def test_a_unit_seen_in_a_second_variant_is_flagged(store: Store, experiment: str) -> None:
    store.exposures.log_many([_exposure("u1", "control", 0), _exposure("u2", "control", 0)])
    result = store.exposures.log_many([_exposure("u1", "treatment", 30), _exposure("u1", "treatment", 20)])
    assert result == WriteResult(received=2, inserted=0)
    stored = store.exposures.get(experiment_key=experiment, unit_id="u1")
    assert stored is not None
    assert (stored.variant, stored.first_exposed_at, stored.multiple_variants) == ("control", T0, True)
    assert store.exposures.conflicts(experiment_key=experiment) == [
        ExposureConflict(
            experiment_key=experiment, unit_id="u1", variant="treatment", first_seen_at=T0 + timedelta(minutes=20)
        )
    ]
    store.exposures.log(_exposure("u1", "treatment", 10))
    [conflict] = store.exposures.conflicts(experiment_key=experiment)
    assert conflict.first_seen_at == T0 + timedelta(minutes=10)
    assert store.exposures.count(experiment_key=experiment) == 2
    assert store.exposures.count(experiment_key=experiment, exclude_multiple=True) == 1
    assert store.exposures.get(experiment_key=experiment, unit_id="u2").multiple_variants is False  # type: ignore[union-attr]


def test_within_a_batch_the_earliest_exposure_decides_the_variant(store: Store, experiment: str) -> None:
    store.exposures.log_many(
        [_exposure("u1", "treatment", 9), _exposure("u1", "control", 3), _exposure("u1", "control", 1)]
    )
    stored = store.exposures.get(experiment_key=experiment, unit_id="u1")
    assert stored is not None
    assert (stored.variant, stored.first_exposed_at, stored.multiple_variants) == (
        "control",
        T0 + timedelta(minutes=1),
        True,
    )
    assert [c.variant for c in store.exposures.conflicts(experiment_key=experiment)] == ["treatment"]


def test_exposures_are_kept_per_experiment(store: Store, experiment: str) -> None:
    store.experiments.create(key="search", spec={}, actor="ana")  # no variant list: any variant is accepted
    store.exposures.log_many([_exposure("u1", "control", 0), _exposure("u1", "ranker-b", 0, experiment="search")])
    assert store.exposures.get(experiment_key="search", unit_id="u1").variant == "ranker-b"  # type: ignore[union-attr]
    assert store.exposures.get(experiment_key=experiment, unit_id="u1").multiple_variants is False  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (
            _exposure("u9", "control", 0, experiment="nope"),
            RefusedRowsError,
            r"^exposures\[2\]\.experiment: experiment 'nope' does not exist$",
        ),
        (
            _exposure("u9", "blue", 0),
            RefusedRowsError,
            (
                r"^exposures\[2\]\.variant: variant 'blue' is not a variant of experiment 'checkout' "
                r"\(control, treatment\)$"
            ),
        ),
        (_exposure("u9", "control", 0, score=float("nan")), ValueError, r"exposures\[2\].attributes is not JSON"),
        ({"unit_id": "u9"}, TypeError, r"exposures\[2\] is a dict, must be an Exposure"),
    ],
)
def test_a_batch_with_one_bad_row_writes_nothing(
    store: Store, experiment: str, bad: object, error: type[Exception], match: str
) -> None:
    store.exposures.log(_exposure("u0", "control", 0))
    batch = [_exposure("u1", "control", 0), _exposure("u0", "treatment", 0), bad]
    with pytest.raises(error, match=match):
        store.exposures.log_many(batch)  # type: ignore[arg-type]
    assert store.exposures.count(experiment_key=experiment) == 1
    assert store.exposures.conflicts(experiment_key=experiment) == []
    assert store.exposures.get(experiment_key=experiment, unit_id="u0").multiple_variants is False  # type: ignore[union-attr]
