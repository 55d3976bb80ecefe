"""Import exposures or events from a CSV or Parquet file, with a report of the rows refused.

Columns (names exact, surrounding spaces ignored):

- exposures: ``experiment, unit_id, variant, timestamp``; every other column is a segment
  attribute, kept in the exposure's ``attributes`` JSON.
- events: ``event_id, unit_id, event, value, timestamp``; every other column is a property,
  kept in the event's ``properties`` JSON.

Rows are numbered as in the file with the header as row 1, so the first data row is row 2 (the
number a spreadsheet shows); Parquet files are numbered the same way, so a CSV and a Parquet
export of one table give the same numbers. A row is rejected, with its number and every reason,
for: an empty id, experiment, variant or event name; a missing or unparsable timestamp (ISO 8601;
a time without an offset is taken as UTC); a value that is not a finite number with a finite
square (an empty value is stored as NULL); and, for exposures, the store's own rules in its own words
(:func:`splitlab.storage.exposures.check_experiments`): an experiment that does not exist or is not
running, a variant its spec does not declare (when the spec lists its variants), a time before the
experiment started or later than now plus the clock-skew allowance. The other rows are written in
one transaction, idempotently: rows already stored count as duplicates, exposures of a unit in
another variant than its recorded one as conflicts. A file that cannot be read, or lacks a
required column, raises ValueError and writes nothing.

Parsing is vectorised with pandas (one pass per column); only rejected rows are visited in Python.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from splitlab.storage._sql import (
    Transactions,
    before_start,
    chunks,
    in_future,
    not_running,
    now,
    sqlite_time,
    undeclared_variant,
    unknown_experiment,
    variant_keys,
)
from splitlab.storage.database import Store
from splitlab.storage.events import write_event_rows
from splitlab.storage.exposures import CLOCK_SKEW, experiment_states, write_exposures
from splitlab.storage.records import MAX_VALUE

__all__ = ["EVENT_COLUMNS", "EXPOSURE_COLUMNS", "ImportReport", "RejectedRow", "import_file"]

EXPOSURE_COLUMNS = ("experiment", "unit_id", "variant", "timestamp")
EVENT_COLUMNS = ("event_id", "unit_id", "event", "value", "timestamp")
_WRITE_CHUNK = 50_000
_SQUARE = f"has a square that is not finite (at most {MAX_VALUE:.4g} in magnitude)"
_FIRST_DATA_ROW = 2  # the header is row 1

Kind = Literal["exposures", "events"]


class RejectedRow(NamedTuple):
    """A refused row: its number in the file (header = 1) and why."""

    row_number: int
    reason: str


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What :func:`import_file` did. ``rows == inserted + duplicates + conflicts + len(rejected)``.

    Attributes:
        kind: ``"exposures"`` or ``"events"``.
        rows: Data rows in the file.
        inserted: New rows stored (new event ids; new (experiment, unit) exposures).
        duplicates: Valid rows that added nothing (already stored, or repeated in the file).
        rejected: Refused rows, by row number.
        conflicts: Exposures of a unit in another variant than its recorded one (the unit is
            flagged and left out of analysis); always 0 for events.
    """

    kind: Kind
    rows: int
    inserted: int
    duplicates: int
    rejected: tuple[RejectedRow, ...]
    conflicts: int = 0


def import_file(
    store: Store, path: str | Path, *, kind: Kind | None = None, clock_skew: timedelta = CLOCK_SKEW
) -> ImportReport:
    """Load exposures or events from a CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``) file.

    Args:
        store: The store to write to.
        path: The file.
        kind: ``"exposures"`` or ``"events"``; default None infers it from the columns.
        clock_skew: How far past the store's clock an exposure may be dated; default 5 minutes.

    Returns:
        An :class:`ImportReport`; the valid rows are written in one transaction.

    Raises:
        FileNotFoundError: No such file.
        ValueError: An unknown ``kind``, a file that cannot be read (format, encoding), or
            missing required columns (named in the message). Nothing is written.
    """
    if kind is not None and kind not in ("exposures", "events"):
        msg = f"kind == {kind!r}, must be 'exposures', 'events' or None"
        raise ValueError(msg)
    if clock_skew < timedelta(0):
        msg = f"clock_skew == {clock_skew}, must be >= 0"
        raise ValueError(msg)
    file = Path(path)
    frame = read_table(file)
    chosen = _kind(frame, file, kind)
    tx = Transactions(store.engine)
    if chosen == "events":
        return _import_events(tx, frame)
    return _import_exposures(tx, frame, clock_skew=clock_skew)


def read_table(path: Path) -> pd.DataFrame:
    """A CSV (as text: every cell a string) or Parquet file as a frame; a clear ValueError when it cannot be read."""
    if not path.is_file():
        msg = f"no such file: {path}"
        raise FileNotFoundError(msg)
    suffixes = [s.lower() for s in path.suffixes]
    reader: Callable[[Path], pd.DataFrame]
    if suffixes and suffixes[-1] in (".parquet", ".pq"):
        reader = pd.read_parquet
    elif ".csv" in suffixes[-2:]:
        reader = _read_csv
    else:
        msg = f"{path}: unknown file type; use .csv, .csv.gz or .parquet"
        raise ValueError(msg)
    try:
        frame = reader(path)
    except (
        pd.errors.ParserError,
        pd.errors.ParserWarning,
        pd.errors.EmptyDataError,
        UnicodeDecodeError,
        OSError,
        ValueError,
    ) as exc:
        msg = f"cannot read {path}: {exc}"
        raise ValueError(msg) from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.columns.duplicated().any():
        msg = f"{path}: duplicate column names {sorted(set(frame.columns[frame.columns.duplicated()]))}"
        raise ValueError(msg)
    return frame.reset_index(drop=True)


def _read_csv(path: Path) -> pd.DataFrame:
    # Everything as text: the import parses each column itself and reports the bad cells.
    # utf-8-sig: spreadsheet exports often start with a byte-order mark.
    # index_col=False: a row with more fields than the header is an error, never a silent
    # index (pandas only warns about it, so the warning is raised).
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        return pd.read_csv(
            path, dtype=str, keep_default_na=False, na_filter=False, index_col=False, encoding="utf-8-sig"
        )


def _kind(frame: pd.DataFrame, path: Path, kind: Kind | None) -> Kind:
    present = set(frame.columns)
    missing: dict[Kind, list[str]] = {
        "events": [c for c in EVENT_COLUMNS if c not in present],
        "exposures": [c for c in EXPOSURE_COLUMNS if c not in present],
    }
    if kind is not None:
        if missing[kind]:
            msg = f"{path} is missing the {kind} columns {missing[kind]} (has {list(frame.columns)})"
            raise ValueError(msg)
        return kind
    fits = [k for k in missing if not missing[k]]
    if len(fits) == 1:
        return fits[0]
    if fits:
        msg = f"{path} has both the event and the exposure columns; pass kind='events' or kind='exposures'"
        raise ValueError(msg)
    msg = (
        f"{path} has neither the event columns (missing {missing['events']}) "
        f"nor the exposure columns (missing {missing['exposures']})"
    )
    raise ValueError(msg)


class _Rejections:
    """Reasons per row index, collected column check by column check."""

    def __init__(self, length: int) -> None:
        self.mask = np.zeros(length, dtype=bool)
        self._reasons: dict[int, list[str]] = {}

    def add(self, bad: pd.Series | np.ndarray, reason: Callable[[int], str]) -> None:
        flags = np.asarray(bad, dtype=bool)
        for index in np.flatnonzero(flags):
            self._reasons.setdefault(int(index), []).append(reason(int(index)))
        self.mask |= flags

    def rows(self) -> tuple[RejectedRow, ...]:
        return tuple(
            RejectedRow(index + _FIRST_DATA_ROW, "; ".join(reasons)) for index, reasons in sorted(self._reasons.items())
        )


def _text(frame: pd.DataFrame, column: str, rejections: _Rejections) -> pd.Series:
    """The column as stripped text, missing cells as ""; empty cells are rejected."""
    values = frame[column].astype("string").str.strip().fillna("")
    rejections.add(values == "", lambda _i: f"empty {column}")
    return values


def _timestamps(frame: pd.DataFrame, rejections: _Rejections) -> pd.Series:
    """Aware UTC times floored to microseconds (the stores' resolution); missing or unparsable ones rejected."""
    raw = frame["timestamp"]
    parsed: pd.Series
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        parsed = raw.dt.tz_convert("UTC")
        rejections.add(parsed.isna(), lambda _i: "missing timestamp")
    elif pd.api.types.is_datetime64_dtype(raw.dtype):
        parsed = raw.dt.tz_localize("UTC")
        rejections.add(parsed.isna(), lambda _i: "missing timestamp")
    else:
        text = raw.astype("string").str.strip().fillna("")
        parsed = pd.Series(pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601"), index=text.index)
        rejections.add(text == "", lambda _i: "missing timestamp")
        rejections.add(parsed.isna() & (text != ""), lambda i: f"timestamp {text.iloc[i]!r} is not an ISO 8601 time")
    floored: pd.Series = parsed.dt.floor("us")
    return floored


def _values(frame: pd.DataFrame, rejections: _Rejections) -> pd.Series:
    raw = frame["value"]
    if pd.api.types.is_numeric_dtype(raw.dtype) or pd.api.types.is_bool_dtype(raw.dtype):
        numbers = raw.astype("float64")
        magnitude = np.abs(numbers.to_numpy(na_value=0.0))
        rejections.add(np.isinf(magnitude), lambda i: f"value {numbers.iloc[i]} is not finite")
        rejections.add(_too_large(magnitude), lambda i: f"value {numbers.iloc[i]} {_SQUARE}")
        return numbers
    text = raw.astype("string").str.strip()
    empty = (text.isna() | (text == "")).to_numpy(dtype=bool)
    numbers = pd.to_numeric(text.where(~empty), errors="coerce").astype("float64")
    magnitude = np.abs(numbers.to_numpy(na_value=np.nan))
    rejections.add(~empty & ~np.isfinite(magnitude), lambda i: f"value {text.iloc[i]!r} is not a finite number")
    rejections.add(_too_large(magnitude), lambda i: f"value {text.iloc[i]!r} {_SQUARE}")
    return numbers


def _too_large(magnitude: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Finite values whose square is not (the statistics sum squares)."""
    too_large: npt.NDArray[np.bool_] = np.isfinite(magnitude) & (magnitude > MAX_VALUE)
    return too_large


def _json_lines(frame: pd.DataFrame, columns: list[str]) -> list[str | None]:
    """One JSON object per row of the extra columns (empty text as null), or None when there are none."""
    if not columns:
        return [None] * len(frame)
    extra = frame[columns]
    extra = extra.mask(extra.astype("string") == "")  # an empty CSV cell means "no value"
    text = extra.to_json(orient="records", lines=True, force_ascii=False, date_format="iso")
    lines = text.split("\n")
    return list(lines[: len(frame)])


def _import_events(tx: Transactions, frame: pd.DataFrame) -> ImportReport:
    rejections = _Rejections(len(frame))
    event_ids = _text(frame, "event_id", rejections)
    unit_ids = _text(frame, "unit_id", rejections)
    names = _text(frame, "event", rejections)
    values = _values(frame, rejections)
    times = _timestamps(frame, rejections)
    properties = _json_lines(frame, [c for c in frame.columns if c not in EVENT_COLUMNS])
    keep = ~rejections.mask
    kept = np.flatnonzero(keep)
    value_list = values.astype(object).where(values.notna(), None).to_numpy(dtype=object)[keep]
    stamp_time = now()
    if tx.dialect == "sqlite":
        time_list: list[Any] = _sqlite_times(times[keep])
        stamp: Any = sqlite_time(stamp_time)
    else:
        time_list = list(times[keep].dt.to_pydatetime())
        stamp = stamp_time
    rows = list(
        zip(
            event_ids.to_numpy(dtype=object)[keep],
            unit_ids.to_numpy(dtype=object)[keep],
            names.to_numpy(dtype=object)[keep],
            value_list,
            time_list,
            [properties[i] for i in kept],
            [stamp] * len(kept),
            strict=True,
        )
    )
    inserted = 0
    with tx.write() as conn:
        for chunk in chunks(rows, _WRITE_CHUNK):
            inserted += write_event_rows(conn, chunk)
    return _report("events", frame, rows=len(rows), inserted=inserted, rejections=rejections)


def _sqlite_times(times: pd.Series) -> list[str]:
    """UTC times as SQLite stores them, formatted by numpy in one call (no per-row strftime)."""
    if times.empty:
        return []
    naive = times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    return list(np.char.replace(np.datetime_as_string(naive, unit="us"), "T", " ").tolist())


def _import_exposures(tx: Transactions, frame: pd.DataFrame, *, clock_skew: timedelta) -> ImportReport:
    rejections = _Rejections(len(frame))
    experiment_keys = _text(frame, "experiment", rejections)
    unit_ids = _text(frame, "unit_id", rejections)
    variants = _text(frame, "variant", rejections)
    times = _timestamps(frame, rejections)
    attributes = _json_lines(frame, [c for c in frame.columns if c not in EXPOSURE_COLUMNS])
    with tx.write() as conn:
        states = experiment_states(conn, [k for k in experiment_keys.unique().tolist() if k])
        unknown = ~experiment_keys.isin(list(states)) & (experiment_keys != "")
        rejections.add(unknown, lambda i: unknown_experiment(experiment_keys.iloc[i]))
        latest = now() + clock_skew
        rejections.add(times > latest, lambda i: in_future(times.iloc[i], latest, clock_skew))
        for key, state in states.items():
            rows_of_key = experiment_keys == key
            declared = variant_keys(state.spec)
            if declared is not None:
                wrong = rows_of_key & ~variants.isin(sorted(declared)) & (variants != "")
                rejections.add(wrong, _undeclared_variant(variants, key, declared))
            started = state.started_at
            if state.status != "running" or started is None:
                rejections.add(rows_of_key, _not_running(key, state.status))
            else:
                rejections.add(rows_of_key & (times < started), _before_start(times, key, started))
        keep = ~rejections.mask
        rows = [
            {
                "experiment_key": experiment_key,
                "unit_id": unit_id,
                "variant": variant,
                "first_exposed_at": time,
                "attributes": None if attribute is None else json.loads(attribute),
                "multiple_variants": False,
            }
            for experiment_key, unit_id, variant, time, attribute in zip(
                experiment_keys.to_numpy(dtype=object)[keep],
                unit_ids.to_numpy(dtype=object)[keep],
                variants.to_numpy(dtype=object)[keep],
                list(times[keep].dt.to_pydatetime()),
                [attributes[i] for i in np.flatnonzero(keep)],
                strict=True,
            )
        ]
        inserted, conflicts = write_exposures(conn, rows, dialect=tx.dialect)
    return _report("exposures", frame, rows=len(rows), inserted=inserted, rejections=rejections, conflicts=conflicts)


def _not_running(key: str, status: str) -> Callable[[int], str]:
    return lambda _i: not_running(key, status)


def _before_start(times: pd.Series, key: str, started: datetime) -> Callable[[int], str]:
    return lambda i: before_start(times.iloc[i], key, started)


def _undeclared_variant(variants: pd.Series, key: str, declared: frozenset[str]) -> Callable[[int], str]:
    return lambda i: undeclared_variant(variants.iloc[i], key, declared)


def _report(
    kind: Kind, frame: pd.DataFrame, *, rows: int, inserted: int, rejections: _Rejections, conflicts: int = 0
) -> ImportReport:
    return ImportReport(
        kind=kind,
        rows=len(frame),
        inserted=inserted,
        duplicates=rows - inserted - conflicts,
        rejected=rejections.rows(),
        conflicts=conflicts,
    )
