"""Assignments: one unit, or a batch of units, to variants of a stored experiment (sdk or admin key)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, Security, status
from fastapi.routing import APIRoute
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from splitlab.service.assignments import UnitAssignment
from splitlab.service.deps import AnyKey, ApiKeyAuth, http_error, runtime_of
from splitlab.service.problems import validation_problems
from splitlab.service.responses import ERRORS
from splitlab.service.runtime import Runtime
from splitlab.service.schemas import AssignBatchRequest, AssignmentBatchPublic, AssignmentPublic, AssignRequest
from splitlab.storage import NotFoundError

router = APIRouter(prefix="/assign", tags=["assignments"])


class LeanRoute(APIRoute):
    """A route whose endpoint takes the :class:`Request` and returns the :class:`Response` itself.

    FastAPI's usual handler (solving dependencies, reading and validating the body, validating
    and encoding the return value) costs about as much as the whole of ``/assign``; this is its
    documented extension point. The OpenAPI schema still comes from the route's declaration
    (``response_model``, ``openapi_extra``, ``dependencies``), which the endpoint must honour.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The endpoint itself."""
        return self.endpoint


lean = APIRouter(prefix="/assign", tags=["assignments"], route_class=LeanRoute)


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
    runtime.telemetry.count_assignments(request.experiment, (r.variant for r in results))
    return results


_any_key = ApiKeyAuth()
_ASSIGN_BODY = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": AssignRequest.model_json_schema()}}}
}


@lean.post(
    "",
    summary="Assign one unit",
    response_model=AssignmentPublic,
    responses=ERRORS,
    openapi_extra=_ASSIGN_BODY,
    dependencies=[Security(_any_key)],
)
async def assign_one(request: Request) -> Response:
    """The unit's variant, its payload, whether it is enrolled, its bucket and the reason.

    A unit of a running experiment is enrolled and recorded, so it keeps its variant when weights
    change; a draft, paused or stopped experiment serves nobody (reason ``inactive``).
    """
    # The hottest route (a LeanRoute): authenticated, parsed straight from bytes by pydantic and
    # encoded once here, which FastAPI's handler would otherwise do at twice the cost.
    await _any_key(request)
    try:
        body = AssignRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        problems = validation_problems(exc.errors(include_url=False, include_input=False))
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=problems) from None
    public = _public(body.experiment, (await _assign(body, runtime_of(request)))[0])
    return Response(public.model_dump_json(), media_type="application/json")


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
