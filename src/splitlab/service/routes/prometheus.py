"""``/metrics``: the app's counters and latency histograms in the Prometheus text format (admin key)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from splitlab.service.deps import AdminKey, TelemetryDep
from splitlab.service.errors import ERRORS
from splitlab.service.telemetry import CONTENT_TYPE

router = APIRouter(tags=["metrics"], responses=ERRORS)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(telemetry: TelemetryDep, _key: AdminKey) -> Response:
    """Assignments and exposures by experiment and variant, events ingested and rejected, request latency."""
    return Response(telemetry.render(), media_type=CONTENT_TYPE)
