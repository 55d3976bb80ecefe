"""Exposures and events in batches: each batch validated whole, then written all or nothing, idempotently."""

from __future__ import annotations

from fastapi import APIRouter, status

from splitlab.service.deps import AnyKey, SettingsDep, StoreDep, TelemetryDep, http_error, invalid
from splitlab.service.problems import InvalidInputError
from splitlab.service.schemas import EventBatch, ExposureBatch, IngestPublic
from splitlab.storage import Event, Exposure, NotFoundError, Store, WriteResult

router = APIRouter(tags=["ingestion"])

MAX_PROBLEMS = 100
"""Most problems listed in one answer (a batch may have thousands)."""


def _check_size(count: int, field: str, limit: int) -> None:
    if count > limit:
        raise http_error(status.HTTP_413_CONTENT_TOO_LARGE, field, f"{count} items, at most {limit} per request")


def _public(result: WriteResult) -> IngestPublic:
    return IngestPublic(received=result.received, inserted=result.inserted, duplicates=result.duplicates)


def _exposure_problems(store: Store, batch: ExposureBatch) -> list[tuple[str, str]]:
    variants: dict[str, frozenset[str] | None] = {}
    problems = []
    for index, item in enumerate(batch.exposures):
        if item.experiment not in variants:
            record = store.experiments.get(key=item.experiment)
            variants[item.experiment] = (
                None if record is None else frozenset(str(v.get("key")) for v in record.spec.get("variants", []))
            )
        known = variants[item.experiment]
        if known is None:
            problems.append((f"exposures.{index}.experiment", f"experiment {item.experiment!r} does not exist"))
        elif known and item.variant not in known:
            message = f"{item.variant!r} is not a variant of {item.experiment!r} ({', '.join(sorted(known))})"
            problems.append((f"exposures.{index}.variant", message))
        if len(problems) >= MAX_PROBLEMS:
            break
    return problems


@router.post("/exposures", summary="Log a batch of exposures")
def log_exposures(
    batch: ExposureBatch, store: StoreDep, settings: SettingsDep, telemetry: TelemetryDep, _key: AnyKey
) -> IngestPublic:
    """Record first exposures; a unit already exposed adds nothing (a unit seen in another variant is flagged).

    The whole batch is checked (experiments exist, variants are declared) before anything is written.
    """
    _check_size(len(batch.exposures), "exposures", settings.max_batch_size)
    if problems := _exposure_problems(store, batch):
        raise invalid(InvalidInputError(problems))
    exposures = [
        Exposure(
            experiment_key=e.experiment,
            unit_id=e.unit_id,
            variant=e.variant,
            timestamp=e.timestamp,
            attributes=e.attributes,
        )
        for e in batch.exposures
    ]
    try:
        result = store.exposures.log_many(exposures)
    except (NotFoundError, ValueError) as exc:  # an experiment changed between the check and the write
        raise http_error(status.HTTP_422_UNPROCESSABLE_CONTENT, "exposures", str(exc)) from None
    telemetry.count_exposures((e.experiment, e.variant) for e in batch.exposures)
    return _public(result)


@router.post("/events", summary="Log a batch of events")
def log_events(
    batch: EventBatch, store: StoreDep, settings: SettingsDep, telemetry: TelemetryDep, _key: AnyKey
) -> IngestPublic:
    """Record events; an ``event_id`` already stored (or repeated in the batch) adds nothing."""
    if len(batch.events) > settings.max_batch_size:
        telemetry.event_batches_rejected.labels("too_large").inc()
    _check_size(len(batch.events), "events", settings.max_batch_size)
    events = [
        Event(
            event_id=e.event_id,
            unit_id=e.unit_id,
            name=e.name,
            timestamp=e.timestamp,
            value=e.value,
            properties=e.properties,
        )
        for e in batch.events
    ]
    try:
        result = store.events.log_many(events)
    except ValueError as exc:
        telemetry.event_batches_rejected.labels("invalid").inc()
        raise http_error(status.HTTP_422_UNPROCESSABLE_CONTENT, "events", str(exc)) from None
    telemetry.events_ingested.inc(result.inserted)
    telemetry.events_duplicate.inc(result.duplicates)
    return _public(result)
