"""Experiments: list, get, create-or-update from a spec (JSON or YAML), and the lifecycle moves."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool

from splitlab.service.deps import AdminKey, RuntimeDep, StoreDep, actor, http_error, invalid
from splitlab.service.experiments import apply_spec, change_status, parse_spec
from splitlab.service.problems import NO_NUL, InvalidInputError
from splitlab.service.responses import ERRORS
from splitlab.service.runtime import Runtime
from splitlab.service.schemas import ChangePublic, ExperimentApplyPublic, ExperimentPublic, ResultsPublic, StatusPublic
from splitlab.specs import ExperimentSpec, SpecError
from splitlab.storage import NotFoundError, VersionConflictError

router = APIRouter(prefix="/experiments", tags=["experiments"], responses=ERRORS)

KeyPath = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
_STATUSES = Literal["draft", "running", "paused", "stopped", "archived"]
_SPEC_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": ExperimentSpec.model_json_schema()},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


@router.get("", summary="List experiments")
def list_experiments(
    store: StoreDep, _key: AdminKey, status_: Annotated[_STATUSES | None, Query(alias="status")] = None
) -> list[ExperimentPublic]:
    """Every experiment ordered by key, or only those with ``status``."""
    return [ExperimentPublic.of(r) for r in store.experiments.list(status=status_)]


@router.get("/{key}", summary="Get an experiment")
def get_experiment(key: KeyPath, store: StoreDep, _key: AdminKey) -> ExperimentPublic:
    """The experiment's current state and spec."""
    record = store.experiments.get(key=key)
    if record is None:
        raise http_error(status.HTTP_404_NOT_FOUND, "key", f"experiment {key!r} does not exist")
    return ExperimentPublic.of(record)


@router.put("/{key}", summary="Create or update an experiment from its spec", openapi_extra=_SPEC_BODY)
async def put_experiment(
    key: KeyPath,
    request: Request,
    runtime: RuntimeDep,
    api_key: AdminKey,
    rerandomize: Annotated[
        bool, Query(description="Allow changes that move units by bumping the bucket version.")
    ] = False,
) -> ExperimentApplyPublic:
    """Create the experiment, or update it with the same validation and immutability rules as `splitlab apply`.

    The body is the spec as JSON, or as YAML with ``Content-Type: application/yaml``.
    """
    body = await request.body()
    content_type = request.headers.get("content-type", "application/json")
    return await run_in_threadpool(_put, runtime, key, body, content_type, actor(api_key), rerandomize)


def _put(
    runtime: Runtime, key: str, body: bytes, content_type: str, actor: str, rerandomize: bool
) -> ExperimentApplyPublic:
    try:
        spec = parse_spec(body, content_type=content_type, key=key)
        with runtime.changing(key):
            outcome = apply_spec(runtime.store, spec, actor=actor, rerandomize=rerandomize)
    except InvalidInputError as exc:
        raise invalid(exc) from None
    except SpecError as exc:
        raise http_error(status.HTTP_422_UNPROCESSABLE_CONTENT, "body", str(exc)) from None
    except VersionConflictError as exc:
        raise http_error(status.HTTP_409_CONFLICT, "key", str(exc)) from None
    except ValueError as exc:  # check_update: a protected field of an experiment that has run
        raise http_error(status.HTTP_409_CONFLICT, "body", str(exc)) from None
    return ExperimentApplyPublic(
        action=outcome.action,
        changes=[ChangePublic(path=c.path, old=c.old, new=c.new) for c in outcome.changes],
        experiment=ExperimentPublic.of(outcome.record),
    )


def _lifecycle(runtime: Runtime, key: str, action: str, actor: str, reason: str | None) -> ExperimentPublic:
    try:
        with runtime.changing(key):
            record = change_status(runtime.store, key=key, action=action, actor=actor, reason=reason)
    except NotFoundError as exc:
        raise http_error(status.HTTP_404_NOT_FOUND, "key", str(exc)) from None
    except ValueError as exc:
        raise http_error(status.HTTP_409_CONFLICT, "status", str(exc)) from None
    return ExperimentPublic.of(record)


# NO_NUL: the reason is stored with the move, and PostgreSQL refuses NUL (a 500 instead of a 422).
ReasonQuery = Annotated[str | None, Query(max_length=1000, pattern=NO_NUL, description="A note for the audit log.")]


@router.post("/{key}/start", summary="Start (or resume) an experiment")
def start(key: KeyPath, runtime: RuntimeDep, api_key: AdminKey, reason: ReasonQuery = None) -> ExperimentPublic:
    """Start a draft, or resume a paused experiment: it enrols units."""
    return _lifecycle(runtime, key, "start", actor(api_key), reason)


@router.post("/{key}/pause", summary="Pause an experiment")
def pause(key: KeyPath, runtime: RuntimeDep, api_key: AdminKey, reason: ReasonQuery = None) -> ExperimentPublic:
    """Pause a running experiment: no new units are enrolled; assigned units keep their variant."""
    return _lifecycle(runtime, key, "pause", actor(api_key), reason)


@router.post("/{key}/stop", summary="Stop an experiment")
def stop(key: KeyPath, runtime: RuntimeDep, api_key: AdminKey, reason: ReasonQuery = None) -> ExperimentPublic:
    """Stop an experiment for good (it can then only be archived)."""
    return _lifecycle(runtime, key, "stop", actor(api_key), reason)


@router.get("/{key}/status", summary="Where an experiment stands: split, SRM and sample")
def experiment_status(key: KeyPath, store: StoreDep, _key: AdminKey) -> StatusPublic:
    """Status, days running, configured split against units per variant with the SRM check, and the
    planned sample per variant: `splitlab status`, computed now from the exposures (nothing stored).
    """  # noqa: D205
    from splitlab.analysis.experiment import analyze_experiment

    if store.experiments.get(key=key) is None:
        raise http_error(status.HTTP_404_NOT_FOUND, "key", f"experiment {key!r} does not exist")
    try:
        readout = analyze_experiment(store, key, save=False)
    except ValueError as exc:  # e.g. no metrics: the stored experiment cannot be analysed, the request is fine
        raise http_error(status.HTTP_409_CONFLICT, "spec.metrics", str(exc)) from None
    return StatusPublic.model_validate(readout.status_summary())


@router.get("/{key}/results", summary="An experiment's latest results, or a fresh analysis")
def results(
    key: KeyPath,
    store: StoreDep,
    _key: AdminKey,
    fresh: Annotated[
        bool, Query(description="Analyse now (and store the readout) instead of reading the latest.")
    ] = False,
) -> ResultsPublic:
    """The latest stored readout (from `splitlab analyze` or an earlier fresh analysis), or a new one with ``fresh``."""
    if store.experiments.get(key=key) is None:
        raise http_error(status.HTTP_404_NOT_FOUND, "key", f"experiment {key!r} does not exist")
    if fresh:
        from splitlab.analysis.experiment import analyze_experiment

        try:
            analyze_experiment(store, key, save=True)
        except ValueError as exc:  # as in experiment_status
            raise http_error(status.HTTP_409_CONFLICT, "spec.metrics", str(exc)) from None
    snapshot = store.snapshots.latest(experiment_key=key)
    if snapshot is None:
        message = f"experiment {key!r} has no stored results yet; ?fresh=true runs an analysis"
        raise http_error(status.HTTP_404_NOT_FOUND, "results", message)
    return ResultsPublic(
        experiment=key,
        snapshot_id=snapshot.id,
        spec_version=snapshot.spec_version,
        created_at=snapshot.created_at,
        fresh=fresh,
        payload=snapshot.payload,
    )
