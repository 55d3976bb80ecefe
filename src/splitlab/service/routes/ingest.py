"""Exposures and events in batches: each batch validated whole, then written all or nothing, idempotently.

An exposure also records the unit's assignment in a running experiment (the first one recorded
wins), so ``/assign`` keeps giving units that SDKs assigned locally their variant after a weight
change, and their bandit rewards reach the arm they were shown.

Times are taken from :data:`~splitlab.storage.exposures.EARLIEST_TIME` (2000-01-01 UTC) to now plus
the clock-skew allowance (``clock_skew_seconds``): the store checks exposures, this module events.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request, Response, Security, status
from fastapi.concurrency import run_in_threadpool

from splitlab.service.deps import ApiKeyAuth, runtime_of
from splitlab.service.errors import ERRORS, InvalidInputError, http_error
from splitlab.service.hot_path.lean_route import LeanRoute, json_body, json_response, parse_body, read_body
from splitlab.service.hot_path.recorder import RECORD_TIMEOUT_SECONDS, write_failures_as_503
from splitlab.service.routes import API_PREFIX
from splitlab.service.runtime import Runtime
from splitlab.service.schemas import MAX_ATTRIBUTES_BYTES, EventBatch, ExposureBatch, IngestPublic, encoded_size
from splitlab.storage import Exposure, RefusedRowsError, WriteResult
from splitlab.storage.events import COLUMNS, event_problems
from splitlab.storage.exposures import EARLIEST_TIME, time_problem

router = APIRouter(prefix=API_PREFIX, tags=["ingestion"], responses=ERRORS, route_class=LeanRoute)
_any_key = ApiKeyAuth()

MAX_PROBLEMS = 100
"""Most problems listed in one answer (a batch may have thousands)."""

WRITE_TIMEOUT_SECONDS = 60.0
"""How long a request waits for its events' commit before it is answered 503 (the client retries)."""

_PROPERTIES = COLUMNS.index("properties")


def _check_size(count: int, field: str, limit: int) -> None:
    if count > limit:
        raise http_error(status.HTTP_413_CONTENT_TOO_LARGE, field, f"{count} items, at most {limit} per request")


def _public(result: WriteResult) -> IngestPublic:
    return IngestPublic(
        received=result.received, inserted=result.inserted, duplicates=result.duplicates, conflicts=result.conflicts
    )


def _record_exposed(runtime: Runtime, batch: ExposureBatch) -> None:
    """Record the exposed units' assignments in running experiments (the first recorded variant wins)."""
    if runtime.recorder is None:
        return
    by_experiment: dict[str, dict[str, str]] = defaultdict(dict)
    for item in batch.exposures:
        by_experiment[item.experiment].setdefault(item.unit_id, item.variant)
    waiting: list[Future[dict[str, str]]] = []
    for key, variants in by_experiment.items():
        try:
            experiment = runtime.experiments.load(key)
        except ValueError:
            continue
        if experiment is None or not experiment.running:
            continue
        version = experiment.bucket_version
        fresh = {u: v for u, v in variants.items() if not runtime.recorder.seen(key, version, u)}
        # Where no hash reproduces the variant (bandit rewards, random allocation), wait for the write;
        # under hash and attributes allocation the write goes with the next batch, as for /assign.
        future = runtime.recorder.submit(key, experiment.bucket_version, fresh, wait=not experiment.reproducible)
        if future is not None:
            waiting.append(future)
    for future in waiting:
        with write_failures_as_503("the exposed units", "exposures"):
            future.result(timeout=RECORD_TIMEOUT_SECONDS)


async def _ingest(request: Request, write: Callable[[Runtime, bytes], IngestPublic]) -> Response:
    """Parse and write the batch in one worker thread (a batch of thousands keeps the loop free)."""
    runtime, body = runtime_of(request), await read_body(request)
    return json_response(await run_in_threadpool(write, runtime, body))


@router.post(
    "/exposures",
    summary="Log a batch of exposures",
    response_model=IngestPublic,
    openapi_extra=json_body(ExposureBatch),
    dependencies=[Security(_any_key)],
)
async def log_exposures(request: Request) -> Response:
    """Record first exposures; a unit already exposed adds nothing (a unit seen in another variant is a conflict).

    The whole batch is checked before anything is written: experiments exist and run, variants are
    declared, times fall between the experiment's start and now plus the clock-skew allowance.
    """
    return await _ingest(request, _log_exposures)


def _log_exposures(runtime: Runtime, body: bytes) -> IngestPublic:
    batch = parse_body(ExposureBatch, body)
    _check_size(len(batch.exposures), "exposures", runtime.settings.max_batch_size)
    try:
        result = runtime.store.exposures.log_many(
            (
                Exposure(
                    experiment_key=e.experiment,
                    unit_id=e.unit_id,
                    variant=e.variant,
                    timestamp=e.timestamp,
                    attributes=e.attributes,
                )
                for e in batch.exposures
            ),
            clock_skew=timedelta(seconds=runtime.settings.clock_skew_seconds),
        )
    except RefusedRowsError as exc:  # the store checks every row against the experiments it holds
        runtime.telemetry.count_refused_exposures(exc.reasons)
        refused = exc.problems[:MAX_PROBLEMS]
        raise InvalidInputError(
            [(f"exposures.{index}.{field}", message) for index, field, message in refused]
        ) from None
    runtime.telemetry.count_exposures((e.experiment, e.variant) for e in batch.exposures)
    _record_exposed(runtime, batch)
    return _public(result)


@router.post(
    "/events",
    summary="Log a batch of events",
    response_model=IngestPublic,
    openapi_extra=json_body(EventBatch),
    dependencies=[Security(_any_key)],
)
async def log_events(request: Request) -> Response:
    """Record events; an ``event_id`` already stored (or repeated in the batch) adds nothing."""
    runtime, body = runtime_of(request), await read_body(request)
    rows = await run_in_threadpool(_encode_events, runtime, body)
    # Committed with the batches of concurrent requests; the wait holds no thread.
    result = await runtime.event_writer.commit(rows, timeout=WRITE_TIMEOUT_SECONDS, what="events")
    return json_response(_public(result))


def _encode_events(runtime: Runtime, body: bytes) -> list[tuple[Any, ...]]:
    batch = parse_body(EventBatch, body)
    _check_size(len(batch.events), "events", runtime.settings.max_batch_size)
    try:  # the schema checked what an Event checks; the store checks the rest as it encodes
        rows = runtime.store.events.encode_checked(batch.events)
    except ValueError as exc:
        raise InvalidInputError(_event_problems(batch) or [("events", str(exc))]) from None
    if problems := _out_of_bounds(batch, rows, clock_skew=timedelta(seconds=runtime.settings.clock_skew_seconds)):
        raise InvalidInputError(problems)
    return rows


def _out_of_bounds(batch: EventBatch, rows: list[tuple[Any, ...]], *, clock_skew: timedelta) -> list[tuple[str, str]]:
    """What the service refuses of events the store could encode: times out of range, properties over the bytes limit.

    Checked in a few C loops over the batch (min, max, lengths); only a batch that fails them is walked item by item.
    """
    latest = datetime.now(UTC) + clock_skew
    times = [event.timestamp for event in batch.events]
    texts = [row[_PROPERTIES] or "" for row in rows]
    # A character is at most 4 bytes in UTF-8: shorter texts are within the limit without encoding them.
    if not times or (
        min(times) >= EARLIEST_TIME and max(times) <= latest and max(map(len, texts)) <= MAX_ATTRIBUTES_BYTES // 4
    ):
        return []
    problems: list[tuple[str, str]] = []
    for index, (time, text) in enumerate(zip(times, texts, strict=True)):
        if (out_of_range := time_problem(time, latest=latest, clock_skew=clock_skew)) is not None:
            problems.append((f"events.{index}.timestamp", out_of_range[1]))
        if len(text) > MAX_ATTRIBUTES_BYTES // 4 and (size := encoded_size(text)) > MAX_ATTRIBUTES_BYTES:
            problems.append(
                (f"events.{index}.properties", f"is {size} bytes once encoded as JSON, at most {MAX_ATTRIBUTES_BYTES}")
            )
    return problems[:MAX_PROBLEMS]


def _event_problems(batch: EventBatch) -> list[tuple[str, str]]:
    """What the store refused in ``batch``, each problem with its field."""
    problems: list[tuple[str, str]] = []
    for index, event in enumerate(batch.events):
        problems.extend(event_problems(event, f"events.{index}"))
        if len(problems) >= MAX_PROBLEMS:
            break
    return problems[:MAX_PROBLEMS]
