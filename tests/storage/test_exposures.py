"""Exposures: the first time is kept, a unit seen in two variants is flagged, batches are atomic."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from splitlab.storage import Exposure, ExposureConflict, RefusedRowsError, Store, WriteResult

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)  # the experiment fixture runs from 2024-05-01 00:00
StartAt = Callable[[Store, str, datetime], None]


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
    assert result == WriteResult(received=2, inserted=0, conflicts=2)
    assert result.duplicates == 0  # a conflict is not "already stored"
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


def test_exposures_are_kept_per_experiment(store: Store, experiment: str, start_at: StartAt) -> None:
    store.experiments.create(key="search", spec={}, actor="ana")  # no variant list: any variant is accepted
    start_at(store, "search", T0)
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


def _at(unit: str, time: datetime, experiment: str = "checkout") -> Exposure:
    return Exposure(experiment_key=experiment, unit_id=unit, variant="control", timestamp=time)


def _refused(store: Store, *batch: Exposure, **options: object) -> list[tuple[int, str, str, str]]:
    with pytest.raises(RefusedRowsError) as refused:
        store.exposures.log_many(batch, **options)  # type: ignore[arg-type]
    return [(*problem, reason) for problem, reason in zip(refused.value.problems, refused.value.reasons, strict=True)]


def test_only_a_running_experiment_takes_exposures(store: Store, experiment: str) -> None:
    store.experiments.create(key="draft", spec={}, actor="ana")
    assert _refused(store, _exposure("u1", "control", 0), _at("u1", T0, experiment="draft")) == [
        (1, "experiment", "experiment 'draft' is draft, not running", "not_running")
    ]
    for status in ("paused", "stopped", "archived"):
        store.experiments.set_status(key=experiment, status=status, actor="ana")
        assert _refused(store, _exposure("u1", "control", 0)) == [
            (0, "experiment", f"experiment 'checkout' is {status}, not running", "not_running")
        ]
    assert store.exposures.count(experiment_key=experiment) == 0


def test_the_start_is_the_first_time_the_experiment_ran(store: Store, experiment: str) -> None:
    just_before = datetime(2024, 5, 1, tzinfo=UTC) - timedelta(microseconds=1)
    message = "2024-04-30T23:59:59.999999Z is before experiment 'checkout' started (2024-05-01T00:00:00Z)"
    assert _refused(store, _exposure("u1", "control", 0), _at("u2", just_before)) == [
        (1, "timestamp", message, "before_start")
    ]
    # A pause and a resume do not move the start: exposures dated during the pause are still taken.
    store.experiments.set_status(key=experiment, status="paused", actor="ana")
    store.experiments.set_status(key=experiment, status="running", actor="ana")
    assert store.exposures.log(_exposure("u1", "control", 0)) == WriteResult(1, 1)


def test_a_time_past_now_and_the_clock_skew_is_refused(store: Store, experiment: str) -> None:
    now = datetime.now(UTC)
    assert store.exposures.log(_at("u1", now + timedelta(minutes=4))) == WriteResult(1, 1)  # within 5 minutes
    far = _at("u2", now + timedelta(minutes=6))
    [(index, field, message, reason)] = _refused(store, far)
    assert (index, field, reason) == (0, "timestamp", "in_future")
    assert "is in the future: later than now plus the clock-skew allowance of 300 s" in message
    assert store.exposures.log_many([far], clock_skew=timedelta(minutes=10)) == WriteResult(1, 1)
    assert _refused(store, _at("u3", datetime(2999, 1, 1, tzinfo=UTC)), clock_skew=timedelta(days=1))[0][3] == (
        "in_future"
    )
    with pytest.raises(ValueError, match=r"clock_skew == -1 day, 23:59:00, must be >= 0"):
        store.exposures.log_many([far], clock_skew=timedelta(minutes=-1))


def test_a_backfill_takes_times_before_the_start_and_nothing_else(store: Store, experiment: str) -> None:
    old = _at("u1", datetime(2023, 1, 1, tzinfo=UTC))
    assert store.exposures.log_many([old], backfill=True) == WriteResult(1, 1)
    assert _refused(store, _at("u2", datetime(2999, 1, 1, tzinfo=UTC)), backfill=True)[0][3] == "in_future"
    store.experiments.set_status(key=experiment, status="stopped", actor="ana")
    assert _refused(store, old, backfill=True)[0][3] == "not_running"


def test_conflicts_are_counted_apart_from_duplicates(store: Store, experiment: str) -> None:
    first = store.exposures.log_many([_exposure("u1", "control", 0), _exposure("u1", "treatment", 1)])
    assert (first.inserted, first.conflicts, first.duplicates) == (1, 1, 0)
    again = store.exposures.log_many(
        [_exposure("u1", "control", 5), _exposure("u1", "treatment", 5), _exposure("u2", "treatment", 5)]
    )
    assert again == WriteResult(received=3, inserted=1, conflicts=1)
    assert again.duplicates == 1
    assert repr(again) == "WriteResult(received=3, inserted=1, conflicts=1)"


def test_a_long_refusal_names_the_first_rows_and_counts_the_rest(store: Store, experiment: str) -> None:
    batch = [_exposure(f"u{i}", "blue", 0) for i in range(25)]
    with pytest.raises(RefusedRowsError, match=r"exposures\[19\]\.variant: [^;]*; and 5 more$") as refused:
        store.exposures.log_many(batch)
    assert len(refused.value.problems) == 25
