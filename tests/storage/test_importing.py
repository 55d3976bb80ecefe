"""Importing exposures and events from CSV and Parquet, with a report of refused rows."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from splitlab.storage import ImportReport, RejectedRow, Store, import_file

EVENTS_CSV = """event_id,unit_id,event,value,timestamp,currency,coupon
e1,u1,purchase,12.5,2024-05-01T10:00:00Z,EUR,SPRING
e2,u2,purchase,abc,2024-05-01T10:01:00Z,EUR,
e3,,purchase,3,2024-05-01T10:02:00Z,EUR,
e4,u4,purchase,4,yesterday,USD,
e5,u5,page_view,,2024-05-01 12:00:00+02:00,,
e1,u1,purchase,12.5,2024-05-01T10:00:00Z,EUR,SPRING
e7, u7 ,purchase,inf,,SEK,
e8,u8,purchase,8,2024-05-01T10:08:00,SEK,
"""

EXPOSURES_CSV = """experiment,unit_id,variant,timestamp,device,country
checkout,u1,control,2024-05-01T09:00:00Z,ios,SE
checkout,u2,treatment,2024-05-01T09:01:00Z,android,
checkout,u3,blue,2024-05-01T09:02:00Z,web,DE
nope,u4,control,2024-05-01T09:03:00Z,web,DE
checkout,u1,control,2024-05-01T08:00:00Z,web,SE
,u6,control,2024-05-01T09:05:00Z,web,DE
checkout,u2,control,2024-05-01T09:30:00Z,android,FR
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_events_csv_rejects_bad_rows_with_their_numbers_and_writes_the_rest(store: Store, tmp_path: Path) -> None:
    report = import_file(store, _write(tmp_path, "events.csv", EVENTS_CSV))
    assert report == ImportReport(
        kind="events",
        rows=8,
        inserted=3,
        duplicates=1,
        rejected=(
            RejectedRow(3, "value 'abc' is not a finite number"),
            RejectedRow(4, "empty unit_id"),
            RejectedRow(5, "timestamp 'yesterday' is not an ISO 8601 time"),
            RejectedRow(8, "value 'inf' is not a finite number; missing timestamp"),
        ),
    )
    assert report.rows == report.inserted + report.duplicates + len(report.rejected)
    assert store.events.count() == 3
    purchase = store.events.get(event_id="e1")
    assert purchase is not None
    assert (purchase.unit_id, purchase.name, purchase.value) == ("u1", "purchase", 12.5)
    assert purchase.timestamp == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert purchase.properties == {"currency": "EUR", "coupon": "SPRING"}
    view = store.events.get(event_id="e5")
    assert view is not None
    assert (view.value, view.properties, view.timestamp) == (
        None,
        {"currency": None, "coupon": None},
        datetime(2024, 5, 1, 10, tzinfo=UTC),
    )
    naive = store.events.get(event_id="e8")
    assert naive is not None
    assert naive.timestamp == datetime(2024, 5, 1, 10, 8, tzinfo=UTC)  # no offset: taken as UTC


def test_importing_the_same_file_again_adds_nothing(store: Store, tmp_path: Path) -> None:
    path = _write(tmp_path, "events.csv", EVENTS_CSV)
    import_file(store, path)
    again = import_file(store, path)
    assert (again.inserted, again.duplicates, len(again.rejected)) == (0, 4, 4)
    assert store.events.count() == 3


def test_exposures_csv_checks_experiments_and_variants(store: Store, experiment: str, tmp_path: Path) -> None:
    report = import_file(store, _write(tmp_path, "exposures.csv", EXPOSURES_CSV))
    assert report.kind == "exposures"
    assert report.rejected == (
        RejectedRow(4, "variant 'blue' is not a variant of experiment 'checkout' (control, treatment)"),
        RejectedRow(5, "experiment 'nope' does not exist"),
        RejectedRow(7, "empty experiment"),
    )
    assert (report.rows, report.inserted, report.duplicates, report.conflicts) == (7, 2, 1, 1)
    first = store.exposures.get(experiment_key=experiment, unit_id="u1")
    assert first is not None
    assert (first.variant, first.first_exposed_at) == ("control", datetime(2024, 5, 1, 8, tzinfo=UTC))
    assert first.attributes == {"device": "web", "country": "SE"}
    two = store.exposures.get(experiment_key=experiment, unit_id="u2")
    assert two is not None
    assert (two.variant, two.multiple_variants, two.attributes) == (
        "treatment",
        True,
        {"device": "android", "country": None},
    )
    assert [(c.unit_id, c.variant) for c in store.exposures.conflicts(experiment_key=experiment)] == [("u2", "control")]


def test_parquet_files_keep_their_types(store: Store, experiment: str, tmp_path: Path) -> None:
    events = pd.DataFrame(
        {
            "event_id": ["p1", "p2", "p3"],
            "unit_id": ["u1", "u2", "u3"],
            "event": ["purchase", "purchase", "refund"],
            "value": [1.25, None, float("-inf")],
            "timestamp": pd.to_datetime(["2024-05-01 10:00", "2024-05-01 11:00", "2024-05-01 12:00"]).tz_localize(
                "Europe/Stockholm"
            ),
            "items": [3, 1, 2],
        }
    )
    events.to_parquet(tmp_path / "events.parquet")
    report = import_file(store, tmp_path / "events.parquet")
    assert (report.kind, report.inserted, report.rejected) == (
        "events",
        2,
        (RejectedRow(4, "value -inf is not finite"),),
    )
    stored = store.events.get(event_id="p1")
    assert stored is not None
    assert (stored.value, stored.properties) == (1.25, {"items": 3})
    assert stored.timestamp == datetime(2024, 5, 1, 8, tzinfo=UTC)
    assert store.events.get(event_id="p2").value is None  # type: ignore[union-attr]
    exposures = pd.DataFrame(
        {
            "experiment": [experiment, experiment],
            "unit_id": ["u1", "u2"],
            "variant": ["control", "treatment"],
            "timestamp": pd.to_datetime(["2024-05-01 09:00", None]),
            "age": [31, 45],
        }
    )
    exposures.to_parquet(tmp_path / "exposures.parquet")
    report = import_file(store, tmp_path / "exposures.parquet")
    assert (report.kind, report.inserted, report.rejected) == ("exposures", 1, (RejectedRow(3, "missing timestamp"),))
    exposure = store.exposures.get(experiment_key=experiment, unit_id="u1")
    assert exposure is not None
    assert (exposure.first_exposed_at, exposure.attributes) == (datetime(2024, 5, 1, 9, tzinfo=UTC), {"age": 31})


def test_gzipped_csv_with_a_byte_order_mark_and_an_explicit_kind(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "events.csv.gz"
    path.write_bytes(gzip.compress(EVENTS_CSV.encode("utf-8-sig")))
    assert import_file(store, path, kind="events").inserted == 3


@pytest.mark.parametrize(
    ("text", "kind", "match"),
    [
        ("event_id,unit_id,event,timestamp\ne1,u1,buy,2024-01-01\n", None, r"missing \['value'\]"),
        (
            "event_id,unit_id,event,timestamp\ne1,u1,buy,2024-01-01\n",
            "events",
            r"missing the events columns \['value'\]",
        ),
        (EVENTS_CSV, "exposures", r"missing the exposures columns \['experiment', 'variant'\]"),
        ("", None, "cannot read"),
        ("event_id,unit_id,event,value,timestamp\ne1,u1,buy,1,2024-01-01,extra\n", None, "cannot read"),
        ('event_id,unit_id,event,value,timestamp\ne1,"u1,buy,1,2024-01-01\n', None, "cannot read"),
    ],
)
def test_a_malformed_file_raises_and_writes_nothing(
    store: Store, tmp_path: Path, text: str, kind: str | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        import_file(store, _write(tmp_path, "bad.csv", text), kind=kind)  # type: ignore[arg-type]
    assert store.events.count() == 0


def test_unreadable_and_ambiguous_files_are_refused(store: Store, tmp_path: Path) -> None:
    garbage = tmp_path / "events.parquet"
    garbage.write_bytes(b"this is not parquet")
    with pytest.raises(ValueError, match="cannot read"):
        import_file(store, garbage)
    with pytest.raises(ValueError, match="unknown file type"):
        import_file(store, _write(tmp_path, "events.json", "{}"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        import_file(store, tmp_path / "missing.csv")
    both = "event_id,unit_id,event,value,timestamp,experiment,variant\n"
    with pytest.raises(ValueError, match="both the event and the exposure columns"):
        import_file(store, _write(tmp_path, "both.csv", both))
    with pytest.raises(ValueError, match="kind == 'users'"):
        import_file(store, _write(tmp_path, "x.csv", EVENTS_CSV), kind="users")  # type: ignore[arg-type]
    assert store.events.count() == 0


def test_a_header_only_file_imports_nothing(store: Store, tmp_path: Path) -> None:
    report = import_file(store, _write(tmp_path, "empty.csv", "event_id,unit_id,event,value,timestamp\n"))
    assert report == ImportReport(kind="events", rows=0, inserted=0, duplicates=0, rejected=())


def test_exposures_csv_refuses_rows_the_experiment_does_not_take(
    store: Store, experiment: str, tmp_path: Path, start_at: Callable[[Store, str, datetime], None]
) -> None:
    store.experiments.create(key="draft", spec={}, actor="ana")
    store.experiments.create(key="paused", spec={}, actor="ana")
    start_at(store, "paused", datetime(2024, 5, 1, tzinfo=UTC))
    store.experiments.set_status(key="paused", status="paused", actor="ana")
    soon = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()
    later = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    text = (
        "experiment,unit_id,variant,timestamp\n"
        "checkout,u1,control,2024-05-01T09:00:00Z\n"
        "checkout,u2,control,2024-04-30T23:59:59Z\n"
        f"checkout,u3,control,{soon}\n"
        f"checkout,u4,control,{later}\n"
        "draft,u5,a,2024-05-02T00:00:00Z\n"
        "paused,u6,a,2024-05-02T00:00:00Z\n"
        "draft,u7,a,2999-01-01T00:00:00Z\n"
    )
    report = import_file(store, _write(tmp_path, "exposures.csv", text))
    reasons = dict(report.rejected)
    assert sorted(reasons) == [3, 5, 6, 7, 8]
    assert reasons[3] == "2024-04-30T23:59:59Z is before experiment 'checkout' started (2024-05-01T00:00:00Z)"
    assert reasons[5].startswith(later[:19])
    assert "is in the future: later than now plus the clock-skew allowance of 300 s" in reasons[5]
    assert reasons[6] == "experiment 'draft' is draft, not running"
    assert reasons[7] == "experiment 'paused' is paused, not running"
    assert "experiment 'draft' is draft, not running" in reasons[8]
    assert "is in the future" in reasons[8]  # every reason of a row
    assert (report.inserted, report.duplicates, report.conflicts) == (2, 0, 0)  # u1 and u3 (within the skew)
    # A larger allowance, as `splitlab events import --clock-skew 3600` passes it, takes the half-hour-fast clock.
    again = import_file(store, _write(tmp_path, "exposures.csv", text), clock_skew=timedelta(hours=1))
    assert 5 not in dict(again.rejected)
    with pytest.raises(ValueError, match=r"clock_skew == -1 day, 23:59:59, must be >= 0"):
        import_file(store, _write(tmp_path, "exposures.csv", text), clock_skew=timedelta(seconds=-1))


def test_event_values_whose_square_overflows_are_rejected(store: Store, tmp_path: Path) -> None:
    text = "event_id,unit_id,event,value,timestamp\ne1,u1,buy,1e308,2024-05-01\ne2,u1,buy,-1e154,2024-05-01\n"
    report = import_file(store, _write(tmp_path, "events.csv", text))
    assert report.rejected == (
        RejectedRow(2, "value '1e308' has a square that is not finite (at most 1.341e+154 in magnitude)"),
    )
    assert report.inserted == 1
