"""Analyse a stored experiment, keep its readout as a snapshot, and read the latest one.

The analysis itself (one aggregation query, the tests, the health checks, the decision) is
:func:`splitlab.analysis.experiment.analyze_experiment`; this module owns the rules around it:
which experiment, which data (the store or the user's warehouse tables), which allocation phases
(a bandit's are its windows, :func:`splitlab.operations.bandits.window_phases`: the split is
checked per window against the weights in force, and effects are period-weighted over them), and
what happens when the readout cannot be kept. A store that refuses the snapshot (read-only, full) does not cost
the user the readout: it is returned with ``saved`` False and the reason.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError

from splitlab.operations.errors import ConflictError, InvalidInputError
from splitlab.operations.experiments import get_experiment
from splitlab.storage import Snapshot, Store, store_failure

if TYPE_CHECKING:
    from splitlab.analysis.readout import ExperimentReadout

__all__ = ["AnalysisOutcome", "aggregation_statement", "analyze", "latest_results"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalysisOutcome:
    """A readout and whether it was kept.

    Attributes:
        readout: The experiment's readout (health checks, results, decision).
        snapshot: The stored snapshot, when it was saved.
        not_saved: Why the readout was not kept (asked not to, or the store refused it), else None.
        warnings: What went wrong after the snapshot was kept (an export to the spec's ``export``
            target that failed), without undoing it.
    """

    readout: ExperimentReadout
    snapshot: Snapshot | None
    not_saved: str | None
    warnings: tuple[str, ...] = ()

    @property
    def saved(self) -> bool:
        """Whether the readout was stored as a snapshot."""
        return self.snapshot is not None


def analyze(
    store: Store,
    key: str,
    *,
    segments: Sequence[str] | None = None,
    as_of: datetime | None = None,
    save: bool = True,
    source: str | os.PathLike[str] | None = None,
) -> AnalysisOutcome:
    """Analyse experiment ``key`` from the store's exposures and events, or from the tables ``source`` maps.

    Args:
        store: The store (specs, metric definitions, snapshots; and the data unless ``source``).
        key: The experiment.
        segments: Segment dimensions; default the spec's ``stratify_by``.
        as_of: Analyse only what happened before this (aware) time.
        save: Keep the readout as a snapshot.
        source: A YAML file mapping the user's own exposure and event tables
            (:mod:`splitlab.analysis.warehouse`), read-only.

    Raises:
        NotFoundError: No experiment ``key``.
        InvalidInputError: A segment dimension that no exposure of the experiment carries
            (``segments``; not checked against a ``source``).
        ConflictError: The experiment cannot be analysed as specified (no metrics, metrics with no
            stored definition, invalid decision rules).
    """
    from splitlab.analysis.experiment import analyze_experiment

    record = get_experiment(store, key)
    if segments and source is None:
        # A dimension no exposure carries would put every unit in one "other" level: a typo, said as one.
        missing = store.exposures.missing_attributes(experiment_key=key, names=segments)
        if missing:
            names = ", ".join(repr(name) for name in missing)
            message = f"{names}: no exposure of experiment {key!r} carries that attribute"
            raise InvalidInputError([("segments", message)])
    phases = None
    if record.spec.get("allocation", {}).get("method") == "bandit":
        from splitlab.operations.bandits import window_phases

        phases = window_phases(store, key, as_of=as_of)
    try:
        if source is None:
            readout = analyze_experiment(store, key, segments=segments, as_of=as_of, save=False, phases=phases)
        else:
            from splitlab.analysis.warehouse import warehouse

            with warehouse(Path(source)) as data:
                readout = analyze_experiment(
                    store, key, segments=segments, as_of=as_of, save=False, data=data, phases=phases
                )
    except ValueError as exc:
        raise ConflictError("spec.metrics", str(exc)) from None
    if not save:
        return AnalysisOutcome(readout=readout, snapshot=None, not_saved="not asked to save")
    return _keep(store, readout)


def _keep(store: Store, readout: ExperimentReadout) -> AnalysisOutcome:
    from splitlab.analysis.report import readout_to_dict

    payload: dict[str, Any] = readout_to_dict(readout)
    try:
        snapshot = store.snapshots.add(
            experiment_key=readout.experiment_key, spec_version=readout.spec_version, payload=payload
        )
    except DBAPIError as exc:
        failure = store_failure(exc, store.engine.url, opening=False)
        if failure is None:  # not the store's condition but a fault of the code: let it show
            raise
        # Read-only, locked past the timeout, gone: the readout still stands, and the user sees why it was not kept.
        return AnalysisOutcome(readout=readout, snapshot=None, not_saved=str(failure))
    from splitlab.operations.export import export_saved

    # After the snapshot's commit: a spec's `export` target that fails is a warning, never a lost snapshot.
    export_warning = export_saved(store, snapshot, readout)
    warnings = () if export_warning is None else (export_warning,)
    return AnalysisOutcome(readout=readout, snapshot=snapshot, not_saved=None, warnings=warnings)


def latest_results(
    store: Store, key: str, *, fresh: bool = False, segments: Sequence[str] | None = None
) -> tuple[Snapshot | None, AnalysisOutcome | None]:
    """The latest stored readout of ``key``, after a fresh analysis (by ``segments``, as :func:`analyze`) if asked.

    Returns:
        The latest snapshot (None when there is none), and the fresh analysis when one ran.

    Raises:
        NotFoundError: No experiment ``key``.
        ConflictError: As :func:`analyze`, or a fresh readout the store refused to keep.
    """
    get_experiment(store, key)
    outcome = None
    if fresh:
        outcome = analyze(store, key, segments=segments)
        if outcome.snapshot is None:
            raise ConflictError("results", f"the readout of {key!r} was not saved: {outcome.not_saved}")
    return store.snapshots.latest(experiment_key=key), outcome


def aggregation_statement(
    store: Store,
    key: str,
    *,
    dialect: str,
    source: str | os.PathLike[str] | None = None,
    segments: Sequence[str] | None = None,
) -> str:
    """The aggregation statement ``analyze`` would run for ``key``, written in ``dialect``'s SQL.

    For a warehouse splitlab does not connect to (BigQuery, Snowflake, Trino, Databricks): run it
    there and analyse its rows (docs/scale.md). ``source`` is a source file whose table mapping the
    statement reads (its ``database`` is not opened); default the store's own tables.

    Raises:
        NotFoundError: No experiment ``key``.
        InvalidInputError: An unknown dialect or a bad source file (the field is named).
    """
    from splitlab.analysis.experiment import experiment_sql
    from splitlab.analysis.warehouse import read_source

    get_experiment(store, key)
    try:
        mapping = None if source is None else read_source(Path(source))[2]
        return experiment_sql(store, key, dialect=dialect, source=mapping, segments=segments)
    except (ValueError, FileNotFoundError) as exc:
        field = "dialect" if str(exc).startswith("dialect ==") else "source"
        raise InvalidInputError([(field, str(exc))]) from None
