"""Experiments: list, get, create-or-update from a spec (JSON or YAML), the lifecycle moves, status and results.

Thin adapters over :mod:`splitlab.operations`: the same rules and error texts as the CLI. The
app turns the operations' errors into answers (``InvalidInputError`` 422, ``ConflictError`` 409,
``NotFoundError`` 404: see :mod:`splitlab.service.app`).
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import StringConstraints, ValidationError

from splitlab.operations import analysis, experiments
from splitlab.operations.errors import InvalidInputError
from splitlab.service.deps import AdminKey, RuntimeDep, StoreDep, actor
from splitlab.service.errors import ERRORS, http_error, is_json, unsupported_media_type
from splitlab.service.routes import API_PREFIX
from splitlab.service.runtime import Runtime
from splitlab.service.schemas import (
    NO_NUL,
    ChangePublic,
    ExperimentApplyPublic,
    ExperimentPublic,
    ResultsPublic,
    StatusPublic,
    body_schema,
)
from splitlab.specs import ExperimentSpec, SpecError, load_spec
from splitlab.storage.json_values import json_problems

router = APIRouter(prefix=f"{API_PREFIX}/experiments", tags=["experiments"], responses=ERRORS)

KeyPath = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
"""The media types of a spec sent as YAML (and any ``+yaml`` type); anything else but JSON is a 415."""
_STATUSES = Literal["draft", "running", "paused", "stopped", "archived", "rolled_out"]
_SPEC_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": body_schema(ExperimentSpec)},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


@router.get("", summary="List experiments")
def list_experiments(
    store: StoreDep, _key: AdminKey, status_: Annotated[_STATUSES | None, Query(alias="status")] = None
) -> list[ExperimentPublic]:
    """Every experiment ordered by key, or only those with ``status``."""
    return [ExperimentPublic.of(r) for r in experiments.list_experiments(store, status=status_)]


@router.get("/{key}", summary="Get an experiment")
def get_experiment(key: KeyPath, store: StoreDep, _key: AdminKey) -> ExperimentPublic:
    """The experiment's current state and spec."""
    return ExperimentPublic.of(experiments.get_experiment(store, key))


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

    The body is the spec as JSON, or as YAML with ``Content-Type: application/yaml`` (or
    ``text/yaml``, ``application/x-yaml``); any other type is a 415.
    """
    content_type = request.headers.get("content-type", "application/json")
    if not (is_json(content_type) or is_yaml(content_type)):
        raise unsupported_media_type(content_type, "application/json or application/yaml")
    body = await request.body()
    return await run_in_threadpool(_put, runtime, key, body, content_type, actor(api_key), rerandomize)


def is_yaml(content_type: str) -> bool:
    """Whether a ``Content-Type`` names YAML: one of :data:`YAML_TYPES`, or a ``+yaml`` type."""
    media = content_type.partition(";")[0].strip().lower()
    return media in YAML_TYPES or media.endswith("+yaml")


def _put(
    runtime: Runtime, key: str, body: bytes, content_type: str, actor: str, rerandomize: bool
) -> ExperimentApplyPublic:
    try:
        spec = parse_spec(body, content_type=content_type, key=key)
    except SpecError as exc:
        raise http_error(status.HTTP_422_UNPROCESSABLE_CONTENT, "body", str(exc)) from None
    with runtime.changing(key):
        outcome = experiments.apply_spec(runtime.store, spec, actor=actor, rerandomize=rerandomize)
    assert outcome.record is not None  # noqa: S101 - not a dry run: the experiment was written
    return ExperimentApplyPublic(
        action=outcome.action,
        changes=[ChangePublic(path=c.path, old=c.old, new=c.new) for c in outcome.changes],
        notes=list(outcome.notes),
        experiment=ExperimentPublic.of(outcome.record),
    )


def _lifecycle(runtime: Runtime, key: str, action: str, actor: str, reason: str | None) -> ExperimentPublic:
    with runtime.changing(key):
        moved = experiments.change_status(runtime.store, key=key, action=action, actor=actor, reason=reason)
    return ExperimentPublic.of(moved.record)


def parse_spec(body: bytes, *, content_type: str, key: str) -> ExperimentSpec:
    """The spec in a request body: JSON, or YAML when the content type says so.

    Raises:
        InvalidInputError: The body is not UTF-8, not JSON/YAML, not a valid spec, or names another key.
        SpecError: YAML that is not a valid spec (its problems carry line numbers).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError([("body", f"is not UTF-8 text: {exc.reason} at byte {exc.start}")]) from None
    if is_yaml(content_type):
        # load_spec reads a one-line text ending in .yaml as a file path: a newline keeps a request
        # body from ever naming a file on the server.
        try:
            spec = load_spec(text + "\n")
        except RecursionError:
            raise InvalidInputError([("body", "is nested too deeply")]) from None
    else:
        try:
            document = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise InvalidInputError([("body", f"is not valid JSON: {exc}")]) from None
        if not isinstance(document, dict):
            raise InvalidInputError([("body", f"must be a JSON object (a spec), got {type(document).__name__}")])
        if problems := json_problems(document, ""):
            raise InvalidInputError(problems)
        try:
            spec = ExperimentSpec.model_validate(document)
        except ValidationError as exc:
            raise InvalidInputError(
                [(".".join(map(str, e["loc"])) or "body", e["msg"]) for e in exc.errors(include_input=False)]
            ) from None
    if problems := json_problems(spec.model_dump(mode="json"), ""):
        raise InvalidInputError(problems)
    if spec.key != key:
        raise InvalidInputError([("key", f"{spec.key!r} differs from the key in the URL, {key!r}")])
    return spec


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


@router.post("/{key}/roll-out", summary="Roll a variant out to every unit")
def roll_out(
    key: KeyPath,
    runtime: RuntimeDep,
    api_key: AdminKey,
    variant: Annotated[
        str, Query(min_length=1, max_length=200, pattern=NO_NUL, description="The variant to serve to every unit.")
    ],
    reason: ReasonQuery = None,
) -> ExperimentPublic:
    """Stop a running or paused experiment and serve ``variant`` and its payload to every unit from now on
    (`/assign`, `/config` and the SDKs, reason `rolled_out`): nobody is enrolled any more. `stop` switches
    it off. As `splitlab roll-out`.
    """  # noqa: D205
    with runtime.changing(key):
        moved = experiments.roll_out(runtime.store, key=key, variant=variant, actor=actor(api_key), reason=reason)
    return ExperimentPublic.of(moved.record)


@router.get("/{key}/status", summary="Where an experiment stands: split, SRM and sample")
def experiment_status(key: KeyPath, store: StoreDep, _key: AdminKey) -> StatusPublic:
    """Status, days running, configured split against units per variant with the SRM check, and the
    planned sample per variant: `splitlab status`, computed now from the exposures (nothing stored).
    """  # noqa: D205
    readout = analysis.analyze(store, key, save=False).readout
    return StatusPublic.model_validate(readout.status_summary())


@router.get("/{key}/results", summary="An experiment's latest results, or a fresh analysis")
def results(
    key: KeyPath,
    store: StoreDep,
    _key: AdminKey,
    fresh: Annotated[
        bool, Query(description="Analyse now (and store the readout) instead of reading the latest.")
    ] = False,
    segment: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]] | None,
        Query(description="With fresh: segment dimensions (exposure attributes, repeated), as `analyze --segment`."),
    ] = None,
) -> ResultsPublic:
    """The latest stored readout (from `splitlab analyze` or an earlier fresh analysis), or a new one with ``fresh``."""
    snapshot, _ = analysis.latest_results(store, key, fresh=fresh, segments=segment)
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
