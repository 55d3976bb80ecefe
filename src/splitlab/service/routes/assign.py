"""Assignments: one unit, or a batch of units, to variants of a stored experiment (sdk or admin key)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, Security, status
from pydantic_core import to_json
from sqlalchemy.exc import OperationalError

from splitlab.operations.assignment import UnitAssignment
from splitlab.service.deps import AnyKey, ApiKeyAuth, runtime_of
from splitlab.service.errors import ERRORS, http_error
from splitlab.service.hot_path.lean_route import EncodedJSON, LeanRoute, json_body, parse_body, read_body
from splitlab.service.routes import API_PREFIX
from splitlab.service.runtime import Runtime
from splitlab.service.schemas import AssignBatchRequest, AssignmentBatchPublic, AssignmentPublic, AssignRequest
from splitlab.storage import NotFoundError

# A body without a Content-Type is read as JSON, as on /assign (a LeanRoute); any other type but JSON is a 415.
router = APIRouter(prefix=f"{API_PREFIX}/assign", tags=["assignments"], strict_content_type=False)
hot = APIRouter(prefix=f"{API_PREFIX}/assign", tags=["assignments"], route_class=LeanRoute)
"""The lean routes (see :mod:`splitlab.service.hot_path.lean_route`), which the app matches first."""


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


async def _assign(request: AssignBatchRequest | AssignRequest, runtime: Runtime) -> list[UnitAssignment]:
    if isinstance(request, AssignRequest):
        units = [(request.unit_id, request.attributes)]
    else:
        units = [(u.unit_id, u.attributes) for u in request.units]
    try:
        results = await runtime.assigner.assign(request.experiment, units)
    except NotFoundError as exc:
        raise http_error(status.HTTP_404_NOT_FOUND, "experiment", str(exc)) from None
    except OperationalError:
        raise  # the store is unreachable: the app answers 503
    except ValueError as exc:
        field = "attributes" if isinstance(request, AssignRequest) else "units"
        raise http_error(status.HTTP_422_UNPROCESSABLE_CONTENT, field, str(exc)) from None
    runtime.telemetry.count_assignments(request.experiment, [r.variant for r in results])
    return results


_any_key = ApiKeyAuth()


@hot.post(
    "",
    summary="Assign one unit",
    response_model=AssignmentPublic,
    responses=ERRORS,
    openapi_extra=json_body(AssignRequest),
    dependencies=[Security(_any_key)],
)
async def assign_one(request: Request) -> Response:
    """The unit's variant, its payload, whether it is enrolled, its bucket and the reason.

    A unit of a running experiment is enrolled and recorded, so it keeps its variant when weights
    change; a draft, paused or stopped experiment serves nobody (reason ``inactive``).
    """
    # The hottest route: a LeanRoute (see splitlab.service.hot_path.lean_route), answered with the fields of
    # AssignmentPublic encoded in one call, without building the model to serialise it.
    runtime = runtime_of(request)  # the route checked the key (see LeanRoute)
    body = parse_body(AssignRequest, await read_body(request))
    result = (await _assign(body, runtime))[0]
    answer = {
        "experiment": body.experiment,
        "unit_id": result.unit_id,
        "variant": result.variant,
        "payload": result.payload,
        "enrolled": result.enrolled,
        "bucket": result.bucket,
        "reason": result.reason,
    }
    return EncodedJSON(to_json(answer, inf_nan_mode="null"))


@router.post("/batch", summary="Assign a batch of units", responses=ERRORS)
async def assign_many(body: AssignBatchRequest, request: Request, _key: AnyKey) -> AssignmentBatchPublic:
    """Each unit's assignment, in request order; at most ``max_batch_size`` units (413 beyond)."""
    runtime = runtime_of(request)
    limit = runtime.settings.max_batch_size
    if len(body.units) > limit:
        raise http_error(
            status.HTTP_413_CONTENT_TOO_LARGE, "units", f"{len(body.units)} units, at most {limit} per request"
        )
    if not body.units:
        return AssignmentBatchPublic(experiment=body.experiment, assignments=[])
    results = await _assign(body, runtime)
    return AssignmentBatchPublic(experiment=body.experiment, assignments=[_public(body.experiment, r) for r in results])
