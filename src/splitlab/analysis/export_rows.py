"""Readouts and spec versions as the rows of the normalised results tables (``splitlab export``).

Pure: no I/O. :data:`TABLES` is the schema every target writes (docs/export.md documents each
column; a test keeps the two equal), and the row builders return plain dictionaries keyed by
those columns. Figures a readout could not compute (NaN, an unbounded interval) are None, so every
target stores SQL NULL rather than a NaN that only some engines would compare.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from splitlab.analysis.readout import ExperimentReadout
    from splitlab.analysis.results import MetricResult
    from splitlab.storage.records import ExperimentVersion

__all__ = [
    "DECISIONS",
    "EXPERIMENTS",
    "HEALTH_CHECKS",
    "RESULTS",
    "TABLES",
    "Column",
    "ColumnType",
    "Table",
    "experiment_rows",
    "snapshot_rows",
]

ColumnType = Literal["text", "bigint", "double", "boolean", "timestamp"]
"""The five column types; each target maps them to its own (docs/export.md, "Types")."""

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its snake_case name, its type, and whether it may be NULL."""

    name: str
    type: ColumnType
    nullable: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Table:
    """One results table.

    Attributes:
        name: the table's name in every target.
        columns: in order.
        key: the columns that identify a row.
        replace_by: the columns whose values an export replaces as a whole (delete, then insert,
            in one transaction): every row of one snapshot, or of one experiment.
    """

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    replace_by: tuple[str, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        """The columns' names, in order."""
        return tuple(column.name for column in self.columns)


def _columns(spec: str) -> tuple[Column, ...]:
    """Columns from ``name type`` lines; ``!`` after the type marks NOT NULL."""
    columns = []
    for line in filter(str.strip, spec.splitlines()):
        name, kind = line.split()
        columns.append(Column(name, kind.rstrip("!"), nullable=not kind.endswith("!")))  # type: ignore[arg-type]
    return tuple(columns)


_SNAPSHOT = """
experiment text!
version bigint!
snapshot_id bigint!
snapshot_time timestamp!
analysed_at timestamp!
"""

EXPERIMENTS = Table(
    name="splitlab_experiments",
    columns=_columns("""
experiment text!
version bigint!
name text!
owner text!
description text!
status text!
hypothesis text
primary_metric text
mde double
mde_type text
analysis_method text!
alpha double!
correction text!
variants text!
changed_at timestamp!
changed_by text!
exported_at timestamp!
"""),
    key=("experiment", "version"),
    replace_by=("experiment",),
)

RESULTS = Table(
    name="splitlab_results",
    columns=_columns(
        _SNAPSHOT
        + """
metric text!
metric_role text
metric_kind text!
variant text!
control text!
segment_dimension text
segment_level text
higher_is_better boolean!
control_n bigint!
treatment_n bigint!
control_estimate double
treatment_estimate double
absolute_effect double
absolute_ci_lower double
absolute_ci_upper double
absolute_se double
relative_effect double
relative_ci_lower double
relative_ci_upper double
relative_se double
p_value double
unadjusted_p_value double
significant boolean!
alpha double!
test text!
alternative text!
correction text
cuped boolean!
chance_to_win double
expected_loss double
sequential boolean!
sequential_method text
sequential_decision text
sequential_p_value double
sequential_ci_lower double
sequential_ci_upper double
max_degradation double
error_code text
error_message text
exported_at timestamp!
"""
    ),
    key=("experiment", "snapshot_id", "metric", "variant", "segment_dimension", "segment_level"),
    replace_by=("experiment", "snapshot_id"),
)

DECISIONS = Table(
    name="splitlab_decisions",
    columns=_columns(
        _SNAPSHOT
        + """
status text!
decision text
decision_variant text
reasons text!
srm_p_value double
srm_flag boolean!
healthy boolean!
failed_checks text!
units bigint!
units_per_variant text!
excluded_units bigint!
planned_units_per_variant bigint
days_running double!
exported_at timestamp!
"""
    ),
    key=("experiment", "snapshot_id"),
    replace_by=("experiment", "snapshot_id"),
)

HEALTH_CHECKS = Table(
    name="splitlab_health_checks",
    columns=_columns(
        _SNAPSHOT
        + """
check_name text!
passed boolean!
severity text!
value double
message text!
exported_at timestamp!
"""
    ),
    key=("experiment", "snapshot_id", "check_name"),
    replace_by=("experiment", "snapshot_id"),
)

TABLES: tuple[Table, ...] = (EXPERIMENTS, RESULTS, DECISIONS, HEALTH_CHECKS)
"""Every table, in the order an export writes them."""


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _utc(value: datetime) -> datetime:
    # The store and the readout keep aware UTC times; a naive one (an old payload) means UTC too.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def snapshot_rows(
    readout: ExperimentReadout, *, snapshot_id: int, snapshot_time: datetime, exported_at: datetime
) -> dict[str, list[Row]]:
    """The rows of one stored readout: ``splitlab_results``, ``splitlab_decisions``, ``splitlab_health_checks``.

    Args:
        readout: the snapshot's readout (``readout_from_dict`` of its payload).
        snapshot_id: the snapshot's id in the store.
        snapshot_time: when the snapshot was stored.
        exported_at: when this export runs (the same for every row of one export).

    Returns:
        ``{table name: rows}``; results hold the overall metrics, then the segment ones.
    """
    base: Row = {
        "experiment": readout.experiment_key,
        "version": readout.spec_version,
        "snapshot_id": snapshot_id,
        "snapshot_time": _utc(snapshot_time),
        "analysed_at": _utc(readout.analysed_at),
    }
    stamp = {"exported_at": _utc(exported_at)}
    results = [{**base, **_result(metric), **stamp} for metric in (*readout.metrics, *readout.segments)]
    verdict = readout.decision
    failed = [check.name for check in readout.health if not check.passed]
    decision = {
        **base,
        "status": readout.status,
        "decision": None if verdict is None else str(verdict.category),
        "decision_variant": None if verdict is None else verdict.variant,
        "reasons": _json([] if verdict is None else list(verdict.reasons)),
        "srm_p_value": _number(readout.srm.p_value),
        "srm_flag": bool(readout.srm.flag),
        # The decision engine's rule: a failed check of severity error makes the readout INVALID.
        "healthy": not any(not check.passed and check.severity == "error" for check in readout.health),
        "failed_checks": _json(failed),
        "units": int(sum(readout.units.values())),
        "units_per_variant": _json({variant: int(n) for variant, n in readout.units.items()}),
        "excluded_units": int(readout.excluded_units),
        "planned_units_per_variant": readout.planned_units_per_variant,
        "days_running": float(readout.days_running),
        **stamp,
    }
    checks = [
        {
            **base,
            "check_name": check.name,
            "passed": bool(check.passed),
            "severity": check.severity,
            "value": _number(check.value),
            "message": check.message,
            **stamp,
        }
        for check in readout.health
    ]
    return {RESULTS.name: results, DECISIONS.name: [decision], HEALTH_CHECKS.name: checks}


def _result(metric: MetricResult) -> Row:
    effect = metric.effect
    sequential = metric.sequential
    last = sequential.looks[-1] if sequential is not None and sequential.looks else None
    sequential_ci = last.ci if last is not None else (None, None)
    dimension, level = metric.segment if metric.segment is not None else (None, None)
    return {
        "metric": metric.metric,
        "metric_role": metric.role,
        "metric_kind": metric.kind,
        "variant": metric.variant,
        "control": metric.control,
        "segment_dimension": dimension,
        "segment_level": level,
        "higher_is_better": bool(metric.higher_is_better),
        "control_n": int(effect.control_n),
        "treatment_n": int(effect.treatment_n),
        "control_estimate": _number(effect.control_mean),
        "treatment_estimate": _number(effect.treatment_mean),
        "absolute_effect": _number(effect.absolute_effect),
        "absolute_ci_lower": _number(effect.absolute_ci[0]),
        "absolute_ci_upper": _number(effect.absolute_ci[1]),
        "absolute_se": _number(metric.absolute_se),
        "relative_effect": _number(effect.relative_effect),
        "relative_ci_lower": _number(effect.relative_ci[0]),
        "relative_ci_upper": _number(effect.relative_ci[1]),
        "relative_se": _number(metric.relative_se),
        "p_value": _number(effect.p_value),
        "unadjusted_p_value": _number(effect.unadjusted_p_value),
        "significant": bool(effect.significant),
        "alpha": float(effect.alpha),
        "test": effect.test,
        "alternative": effect.alternative,
        "correction": effect.correction,
        "cuped": bool(effect.cuped),
        "chance_to_win": _number(metric.chance_to_win),
        "expected_loss": _number(metric.expected_loss),
        "sequential": sequential is not None,
        "sequential_method": None if sequential is None else sequential.method,
        "sequential_decision": None if sequential is None else sequential.decision,
        "sequential_p_value": None if last is None else _number(last.p_value),
        "sequential_ci_lower": _number(sequential_ci[0]),
        "sequential_ci_upper": _number(sequential_ci[1]),
        "max_degradation": _number(metric.max_degradation),
        "error_code": None if effect.error_code is None else str(effect.error_code),
        "error_message": effect.error_message,
    }


def experiment_rows(versions: Iterable[ExperimentVersion], *, exported_at: datetime) -> list[Row]:
    """One ``splitlab_experiments`` row per stored version of an experiment's spec (status changes included).

    Args:
        versions: the experiment's versions (``store.experiments.history``).
        exported_at: when this export runs.

    Raises:
        pydantic.ValidationError: a stored spec that is not a valid spec (the store keeps only valid ones).
    """
    from splitlab.specs.model import ExperimentSpec

    rows = []
    for version in versions:
        spec = ExperimentSpec.model_validate(version.spec)
        hypothesis = spec.hypothesis
        rows.append(
            {
                "experiment": version.experiment_key,
                "version": version.version,
                "name": spec.name,
                "owner": spec.owner,
                "description": spec.description,
                "status": version.status,
                "hypothesis": None if hypothesis is None else hypothesis.statement or None,
                "primary_metric": None if hypothesis is None else hypothesis.primary_metric,
                "mde": None if hypothesis is None else hypothesis.mde,
                "mde_type": None if hypothesis is None else hypothesis.mde_type,
                "analysis_method": spec.analysis.method,
                "alpha": spec.alpha,
                "correction": spec.analysis.correction,
                "variants": _json({variant.key: variant.weight for variant in spec.variants}),
                "changed_at": _utc(version.changed_at),
                "changed_by": version.changed_by,
                "exported_at": _utc(exported_at),
            }
        )
    return rows
