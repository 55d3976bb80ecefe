"""Assignments: one unit, or a batch of units, to variants of a stored experiment (sdk or admin key)."""

from __future__ import annotations

from fastapi import APIRouter, status

from splitlab.service.assignments import UnitAssignment, assign_units
from splitlab.service.deps import AnyKey, SettingsDep, StoreDep, TelemetryDep, http_error
from splitlab.service.schemas import AssignBatchRequest, AssignmentBatchPublic, AssignmentPublic, AssignRequest
from splitlab.service.settings import Settings
from splitlab.service.telemetry import Telemetry
from splitlab.storage import NotFoundError, Store

router = APIRouter(prefix="/assign", tags=["assignments"])


def _public(experiment: str, result: UnitAssignment) -> AssignmentPublic:
    return AssignmentPublic(
        experiment=experiment,
        unit_id=result.unit_id,
        variant=result.variant,
        payload=result.payload,
        enrolled=result.enrolled,
        bucket=result.bucket,
        reason=result.reason,
    )


def _assign(
    request: AssignBatchRequest | AssignRequest, store: Store, settings: Settings, telemetry: Telemetry
) -> list[UnitAssignment]:
    if isinstance(request, AssignRequest):
        units = [(request.unit_id, request.attributes)]
    else:
        units = [(u.unit_id, u.attributes) for u in request.units]
    try:
        results = assign_units(store, key=request.experiment, units=units, record=settings.record_assignments)
    except NotFoundError as exc:
        raise http_error(status.HTTP_404_NOT_FOUND, "experiment", str(exc)) from None
    except ValueError as exc:
        field = "attributes" if isinstance(request, AssignRequest) else "units"
        raise http_error(status.HTTP_422_UNPROCESSABLE_CONTENT, field, str(exc)) from None
    telemetry.count_assignments(request.experiment, (r.variant for r in results))
    return results


@router.post("", summary="Assign one unit")
def assign_one(
    request: AssignRequest, store: StoreDep, settings: SettingsDep, telemetry: TelemetryDep, _key: AnyKey
) -> AssignmentPublic:
    """The unit's variant, its payload, whether it is enrolled, its bucket and the reason.

    A unit of a running experiment is enrolled and recorded, so it keeps its variant when weights
    change; a draft, paused or stopped experiment serves nobody (reason ``inactive``).
    """
    return _public(request.experiment, _assign(request, store, settings, telemetry)[0])


@router.post("/batch", summary="Assign a batch of units")
def assign_many(
    request: AssignBatchRequest, store: StoreDep, settings: SettingsDep, telemetry: TelemetryDep, _key: AnyKey
) -> AssignmentBatchPublic:
    """Each unit's assignment, in request order; at most ``max_batch_size`` units (413 beyond)."""
    if len(request.units) > settings.max_batch_size:
        raise http_error(
            status.HTTP_413_CONTENT_TOO_LARGE,
            "units",
            f"{len(request.units)} units, at most {settings.max_batch_size} per request",
        )
    if not request.units:
        return AssignmentBatchPublic(experiment=request.experiment, assignments=[])
    results = _assign(request, store, settings, telemetry)
    return AssignmentBatchPublic(
        experiment=request.experiment, assignments=[_public(request.experiment, r) for r in results]
    )
