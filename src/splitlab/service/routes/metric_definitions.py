"""Metric definitions, so experiments that refer to metrics can be created and analysed over HTTP."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, status

from splitlab.operations.experiments import define_metrics
from splitlab.service.deps import AdminKey, StoreDep, actor
from splitlab.service.errors import ERRORS, http_error
from splitlab.service.routes import API_PREFIX
from splitlab.specs import MetricDefinition

router = APIRouter(prefix=f"{API_PREFIX}/metrics", tags=["metrics"], responses=ERRORS)

NamePath = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[a-z0-9][a-z0-9_-]*$")]


@router.get("", summary="List metric definitions")
def list_metrics(store: StoreDep, _key: AdminKey) -> list[dict[str, Any]]:
    """Every stored metric definition, by name order."""
    return list(store.metrics.list().values())


@router.put("/{name}", summary="Create or replace a metric definition")
def put_metric(name: NamePath, definition: MetricDefinition, store: StoreDep, api_key: AdminKey) -> dict[str, Any]:
    """Store ``definition`` under ``name`` (replacing any earlier one), as `splitlab apply` does for metrics files."""
    if definition.name != name:
        raise http_error(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "name",
            f"{definition.name!r} differs from the name in the URL, {name!r}",
        )
    define_metrics(store, [definition], actor=actor(api_key))
    return definition.model_dump(mode="json")
