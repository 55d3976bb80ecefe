"""Experiments as code: apply specs (one, or a catalog of files) and move the lifecycle (roll a winner out).

Every check against the store lives here: the metrics a spec refers to must be defined (in the
same catalog or in the store), the namespace range must not overlap another experiment's, and a
change that would move assigned units needs ``rerandomize`` (granted per experiment, used only
by the experiments whose change needs it: :func:`splitlab.specs.check_update`). A catalog is
checked whole before anything is written, so a refused file leaves the store as it was.

A change of the variant weights starts an **allocation phase** (time, version, weights), written
with the version that made it: starting an experiment starts phase 1 with the weights in force,
and an update of an experiment that has run starts a phase when its weights differ from the
current phase's (a coverage ramp or a targeting change keeps the phase). Bandit experiments have
no phases here: their weights move per window (:mod:`splitlab.operations.bandits`). The analysis
checks the split and estimates effects phase by phase (docs/aggregation.md).

Example:
    >>> from splitlab.specs import load_spec
    >>> from splitlab.storage import open_store
    >>> spec = load_spec("{key: cta, variants: [{key: a}, {key: b}]}")
    >>> with open_store("sqlite://") as store:
    ...     created = apply_spec(store, spec, actor="ana")
    ...     again = apply_spec(store, spec, actor="ana")
    ...     moved = change_status(store, key="cta", action="start", actor="ana")
    >>> created.action, again.action, (moved.old_status, moved.record.status, moved.record.current_version)
    ('created', 'unchanged', ('draft', 'running', 2))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from pydantic import ValidationError

from splitlab.operations.errors import ConflictError, InvalidInputError
from splitlab.specs import (
    Action,
    Catalog,
    Change,
    ExperimentSpec,
    MetricDefinition,
    UpdatePlan,
    apply_action,
    has_run,
    load_catalog,
    metric_references,
    plan_update,
    transition,
    undefined_metrics,
)
from splitlab.storage import (
    AllocationPhase,
    ExperimentRecord,
    ExperimentVersion,
    NotFoundError,
    Store,
    VersionConflictError,
)
from splitlab.storage.json_values import json_problems

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

__all__ = [
    "ApplyOutcome",
    "CatalogOutcome",
    "StatusChange",
    "apply_catalog",
    "apply_spec",
    "change_status",
    "days_running",
    "define_metrics",
    "experiment_with_allocation",
    "get_experiment",
    "history",
    "list_experiments",
    "phase_weights",
    "phases",
    "read_catalog",
    "reweight",
    "roll_back",
    "roll_out",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyOutcome:
    """What applying one spec did (or, in a dry run, would do).

    Attributes:
        key: The experiment.
        action: ``created``, ``updated`` or ``unchanged``.
        changes: The diff from the stored spec (empty when created or unchanged).
        rerandomized: Whether the bucket version moved (every unit is re-bucketed).
        version: The experiment's version after applying.
        variants: How many variants the applied spec has.
        record: The experiment after applying; None in a dry run.
        notes: What the user should know about the spec as applied (e.g. when the monitor may act on it).
    """

    key: str
    action: Literal["created", "updated", "unchanged"]
    changes: tuple[Change, ...] = ()
    rerandomized: bool = False
    version: int
    variants: int
    record: ExperimentRecord | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogOutcome:
    """What applying a catalog did: the metric definitions written and each experiment's outcome."""

    metrics: tuple[str, ...]
    experiments: tuple[ApplyOutcome, ...]
    dry_run: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusChange:
    """A lifecycle move: the status before, and the experiment after (its status and version)."""

    old_status: str
    record: ExperimentRecord


def get_experiment(store: Store, key: str) -> ExperimentRecord:
    """The stored experiment ``key``.

    Raises:
        NotFoundError: No experiment ``key``.
    """
    record = store.experiments.get(key=key)
    if record is None:
        msg = f"experiment {key!r} does not exist"
        raise NotFoundError(msg)
    return record


def experiment_with_allocation(
    store: Store, key: str, method: str, *, why: str
) -> tuple[ExperimentRecord, ExperimentSpec]:
    """The stored experiment ``key`` and its spec, refused unless its allocation method is ``method``.

    Raises:
        NotFoundError: No experiment ``key``.
        ConflictError: Another allocation method; the message ends with ``why`` (what needs ``method``).
    """
    record = get_experiment(store, key)
    spec = ExperimentSpec.model_validate(record.spec)
    if spec.allocation.method != method:
        message = f"experiment {key!r} has allocation.method {spec.allocation.method!r}; {why}"
        raise ConflictError("allocation.method", message)
    return record, spec


def list_experiments(store: Store, *, status: str | None = None) -> list[ExperimentRecord]:
    """Every experiment ordered by key, or only those with ``status``.

    Raises:
        InvalidInputError: ``status`` is not a status.
    """
    try:
        return store.experiments.list(status=status)
    except ValueError as exc:
        raise InvalidInputError([("status", str(exc))]) from None


def phases(store: Store, key: str) -> list[AllocationPhase]:
    """The experiment's allocation phases, oldest first (empty until it starts).

    Raises:
        NotFoundError: No experiment ``key``.
    """
    return store.experiments.phases(key=key)


def history(store: Store, key: str) -> list[ExperimentVersion]:
    """The experiment's versions, oldest first (its audit log).

    Raises:
        NotFoundError: No experiment ``key``.
    """
    get_experiment(store, key)
    return store.experiments.history(key=key)


def days_running(store: Store, key: str, *, now: datetime | None = None) -> float | None:
    """Days the experiment has been running: the sum of its running spells in the audit log (None: never started).

    Pauses do not count, and a stopped or rolled-out experiment's count ends where it stopped
    running; a bandit, which records no allocation phases, is counted like any other.

    Raises:
        NotFoundError: No experiment ``key``.
    """
    versions = history(store, key)
    now = now or datetime.now(UTC)
    total, since = 0.0, None
    for version in versions:
        if version.status == "running" and since is None:
            since = version.changed_at
        elif version.status != "running" and since is not None:
            total += (version.changed_at - since).total_seconds()
            since = None
    if since is not None:
        total += (now - since).total_seconds()
    started = any(v.status == "running" for v in versions)
    return total / 86_400 if started else None


def read_catalog(store: Store, path: str | os.PathLike[str]) -> Catalog:
    """The specs and metric definitions in a file or folder, checked against the store's metrics.

    A spec may refer to metrics defined in the same files or already in the store.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        SpecError: Every problem in the files, each with file and line.
    """
    if not os.path.exists(path):  # noqa: PTH110 - path may be str or PathLike; one call either way
        msg = f"PATH {os.fspath(path)!r} does not exist"
        raise FileNotFoundError(msg)
    return load_catalog(path, defined_metrics=store.metrics.list())


def apply_spec(
    store: Store, spec: ExperimentSpec, *, actor: str, rerandomize: bool = False, dry_run: bool = False
) -> ApplyOutcome:
    """Create the experiment, or update it under the rules of :func:`splitlab.specs.check_update`.

    Raises:
        InvalidInputError: The spec refers to metrics with no stored definition, or its namespace
            range overlaps another experiment's.
        ConflictError: The update changes protected fields of an experiment that has run (without
            ``rerandomize``), or someone else changed the experiment meanwhile.
    """
    problems = _store_problems(store, spec, defined_metrics=(), applied={spec.key: spec})
    if problems:
        raise InvalidInputError(problems)
    planned = _plan(store, spec, rerandomize=rerandomize)
    return planned.outcome if dry_run else _write(store, planned, actor=actor)


def apply_catalog(
    store: Store, catalog: Catalog, *, actor: str, rerandomize: bool = False, dry_run: bool = False
) -> CatalogOutcome:
    """Apply a catalog: its metric definitions, then each experiment, all checked before any write.

    Raises:
        InvalidInputError: As :func:`apply_spec`, for every experiment at once (fields prefixed by the key).
        ConflictError: As :func:`apply_spec`, for the first experiment refused.
    """
    problems = []
    for key, spec in catalog.experiments.items():
        found = _store_problems(store, spec, defined_metrics=catalog.metrics, applied=catalog.experiments)
        problems += [(f"{key}: {field}", message) for field, message in found]
    if problems:
        raise InvalidInputError(problems)
    planned = [_plan(store, spec, rerandomize=rerandomize) for spec in catalog.experiments.values()]
    if dry_run:
        outcomes = [p.outcome for p in planned]
    else:
        define_metrics(store, catalog.metrics.values(), actor=actor)
        outcomes = [_write(store, p, actor=actor) for p in planned]
    return CatalogOutcome(metrics=tuple(catalog.metrics), experiments=tuple(outcomes), dry_run=dry_run)


def define_metrics(store: Store, definitions: Iterable[MetricDefinition], *, actor: str) -> tuple[str, ...]:
    """Store metric definitions (each replaces any earlier one of its name); returns their names.

    Raises:
        InvalidInputError: A definition the store cannot keep (text with NUL characters ...).
    """
    bodies = [definition.model_dump(mode="json") for definition in definitions]
    problems = [problem for body in bodies for problem in json_problems(body, "")]
    if problems:
        raise InvalidInputError(problems)
    if bodies:
        store.metrics.put_many(definitions=bodies, actor=actor)
    return tuple(body["name"] for body in bodies)


def change_status(
    store: Store,
    *,
    key: str,
    action: str,
    actor: str,
    reason: str | None = None,
    then: Callable[[Connection, ExperimentVersion], None] | None = None,
) -> StatusChange:
    """Apply a lifecycle ``action`` (start, pause, stop, archive); ``start`` on a paused experiment resumes it.

    Stopping a rolled-out experiment switches its variant off: it then serves nobody, as any
    stopped experiment. Rolling out takes a variant: :func:`roll_out`.

    Args:
        store: The store.
        key: The experiment.
        action: The lifecycle action (:class:`splitlab.specs.Action`).
        actor: Who moves it.
        reason: A note for the audit log.
        then: Run in the status change's transaction after its version is written (see
            :meth:`splitlab.storage.ExperimentRepository.set_status`): what it writes commits
            with the move or not at all.

    Raises:
        NotFoundError: No experiment ``key``.
        InvalidInputError: ``action`` is ``roll_out``, which needs a variant.
        ConflictError: The move is not allowed from the current status.
    """
    record = get_experiment(store, key)
    if action == Action.ROLL_OUT:
        message = f"action == {action!r} needs the variant to serve to every unit: use roll_out(..., variant=...)"
        raise InvalidInputError([("action", message)])
    try:
        status = apply_action(record.status, action)
    except ValueError as exc:
        raise ConflictError("status", str(exc)) from None
    spec = ExperimentSpec.model_validate(record.spec)
    weights = phase_weights(spec) if status == "running" else None
    store.experiments.set_status(
        key=key, status=str(status), actor=actor, reason=reason, phase_weights=weights, then=then
    )
    return StatusChange(old_status=record.status, record=get_experiment(store, key))


def roll_back(
    store: Store,
    *,
    key: str,
    actor: str,
    reason: str | None = None,
    then: Callable[[Connection, ExperimentVersion], None] | None = None,
) -> StatusChange:
    """Take the treatment away from everyone: the experiment is paused (nobody, enrolled units included, is served it).

    What the monitor's ``auto_rollback`` and a canary's harm do, and the dashboard's "roll back"; ``start``
    resumes it. Arguments and errors as :func:`change_status`'s.
    """
    return change_status(store, key=key, action=Action.PAUSE, actor=actor, reason=reason, then=then)


def roll_out(
    store: Store,
    *,
    key: str,
    variant: str,
    actor: str,
    reason: str | None = None,
    then: Callable[[Connection, ExperimentVersion], None] | None = None,
) -> StatusChange:
    """Stop the experiment and serve ``variant`` (and its payload) to every unit from now on.

    A running or paused experiment becomes ``rolled_out`` with ``variant`` recorded, in one version
    of its audit log (:mod:`splitlab.specs.lifecycle`). Every front end then serves that variant to
    every unit but forced (QA) ones, sticky or not, targeted or not, without enrolling anyone, so
    nothing served from then on counts as experiment data. ``stop`` switches it off again.

    Args:
        store: The store.
        key: The experiment.
        variant: The variant to serve, one of the spec's.
        actor: Who rolls it out.
        reason: A note for the audit log.
        then: Run in the status change's transaction after its version is written (see
            :meth:`splitlab.storage.ExperimentRepository.set_status`): what it writes commits
            with the rollout or not at all.

    Raises:
        NotFoundError: No experiment ``key``.
        InvalidInputError: ``variant`` is not one of the spec's variants.
        ConflictError: The experiment is neither running nor paused, or it changed while this ran.

    Example:
        >>> from splitlab.specs import load_spec
        >>> from splitlab.storage import open_store
        >>> with open_store("sqlite://") as store:
        ...     _ = apply_spec(store, load_spec("{key: cta, variants: [{key: a}, {key: b}]}"), actor="ana")
        ...     _ = change_status(store, key="cta", action="start", actor="ana")
        ...     moved = roll_out(store, key="cta", variant="b", actor="ana")
        >>> moved.old_status, moved.record.status, moved.record.rolled_out_variant
        ('running', 'rolled_out', 'b')
    """
    record = get_experiment(store, key)
    spec = ExperimentSpec.model_validate(record.spec)
    if variant not in spec.variant_keys:
        variants = ", ".join(repr(v) for v in spec.variant_keys)
        message = f"{variant!r} is not a variant of experiment {key!r} (its variants: {variants})"
        raise InvalidInputError([("variant", message)])
    try:
        status = transition(record.status, Action.ROLL_OUT)
    except ValueError as exc:
        raise ConflictError("status", str(exc)) from None
    try:
        store.experiments.set_status(
            key=key,
            status=str(status),
            actor=actor,
            reason=reason,
            rolled_out_variant=variant,
            expected_version=record.current_version,
            then=then,
        )
    except VersionConflictError as exc:  # moved by someone else since it was read: decide again
        raise ConflictError("key", str(exc)) from None
    return StatusChange(old_status=record.status, record=get_experiment(store, key))


def reweight(
    store: Store,
    *,
    key: str,
    weights: Mapping[str, float],
    actor: str,
    reason: str | None = None,
    then: Callable[[Connection, ExperimentVersion], None] | None = None,
) -> ApplyOutcome:
    """Give a running experiment's variants new ``weights`` (a new version and allocation phase), as an apply would.

    The monitor moves a canary this way; a person does it by applying the spec with new weights.

    Raises:
        NotFoundError: No experiment ``key``.
        InvalidInputError: ``weights`` do not name every variant once or do not sum to 1.
        ConflictError: The experiment changed while this ran.
    """
    record = get_experiment(store, key)
    spec = ExperimentSpec.model_validate(record.spec)
    if set(weights) != set(spec.variant_keys):
        raise InvalidInputError([("weights", f"must give a weight to each of {', '.join(spec.variant_keys)}")])
    body = spec.model_dump(mode="json")
    body["variants"] = [{**v, "weight": float(weights[v["key"]])} for v in body["variants"]]
    try:
        new_spec = ExperimentSpec.model_validate(body)
    except ValidationError as exc:
        raise InvalidInputError([(".".join(map(str, e["loc"])), e["msg"]) for e in exc.errors()]) from None
    planned = _plan(store, new_spec, rerandomize=False)
    if planned.outcome.action == "unchanged":
        return planned.outcome
    try:
        store.experiments.update(
            key=key,
            spec=planned.plan.spec.model_dump(mode="json"),
            diff=[asdict(c) for c in planned.plan.changes],
            actor=actor,
            reason=reason,
            expected_version=planned.expected_version,
            phase_weights=phase_weights(planned.plan.spec) if planned.ran else None,
            then=then,
        )
    except VersionConflictError as exc:
        raise ConflictError("key", str(exc)) from None
    return _with_record(planned.outcome, get_experiment(store, key))


def phase_weights(spec: ExperimentSpec) -> dict[str, float] | None:
    """The weights that define an allocation phase: ``variant -> weight``; None for a bandit (no fixed weights)."""
    if spec.allocation.method == "bandit":
        return None
    return {variant.key: variant.weight for variant in spec.variants}


@dataclass(frozen=True, slots=True)
class _Planned:
    outcome: ApplyOutcome
    plan: UpdatePlan
    expected_version: int | None
    ran: bool


def _plan(store: Store, spec: ExperimentSpec, *, rerandomize: bool) -> _Planned:
    record = store.experiments.get(key=spec.key)
    current = None if record is None else ExperimentSpec.model_validate(record.spec)
    ran = record is not None and has_run(record.status)
    try:
        plan = plan_update(current, spec, has_run=ran, rerandomize=rerandomize)
    except ValueError as exc:  # a protected field of an experiment that has run
        raise ConflictError("body", str(exc)) from None
    served = None if record is None else record.rolled_out_variant
    if served is not None and served not in plan.spec.variant_keys:
        message = (
            f"experiment {spec.key!r} is rolled out: every unit is served {served!r}, which this spec no "
            "longer has; stop it first"
        )
        raise ConflictError("variants", message)
    from splitlab.operations.monitoring import policy_notes

    notes = tuple(policy_notes(spec))
    if record is None:
        outcome = ApplyOutcome(
            key=spec.key, action="created", version=1, variants=len(spec.variants), record=None, notes=notes
        )
        return _Planned(outcome, plan, None, ran=False)
    unchanged = plan.action == "unchanged"
    outcome = ApplyOutcome(
        key=spec.key,
        action="unchanged" if unchanged else "updated",
        changes=tuple(plan.changes),
        rerandomized=plan.rerandomized,
        version=record.current_version + (0 if unchanged else 1),
        variants=len(plan.spec.variants),
        record=record if unchanged else None,
        notes=notes,
    )
    return _Planned(outcome, plan, record.current_version, ran=ran)


def _write(store: Store, planned: _Planned, *, actor: str) -> ApplyOutcome:
    outcome, plan = planned.outcome, planned.plan
    if outcome.action == "created":
        record = store.experiments.create(key=outcome.key, spec=plan.spec.model_dump(mode="json"), actor=actor)
        return _with_record(outcome, record)
    if outcome.action == "unchanged":
        return outcome
    try:
        store.experiments.update(
            key=outcome.key,
            spec=plan.spec.model_dump(mode="json"),
            diff=[asdict(c) for c in plan.changes],
            actor=actor,
            expected_version=planned.expected_version,
            rerandomize=plan.rerandomized,
            phase_weights=phase_weights(plan.spec) if planned.ran else None,
        )
    except VersionConflictError as exc:
        raise ConflictError("key", str(exc)) from None
    return _with_record(outcome, get_experiment(store, outcome.key))


def _with_record(outcome: ApplyOutcome, record: ExperimentRecord) -> ApplyOutcome:
    return ApplyOutcome(
        key=outcome.key,
        action=outcome.action,
        changes=outcome.changes,
        rerandomized=outcome.rerandomized,
        version=record.current_version,
        variants=outcome.variants,
        record=record,
        notes=outcome.notes,
    )


def _undefined_targets(spec: ExperimentSpec) -> list[tuple[str, str]]:
    """``monitoring.notify`` names neither the spec's targets nor the global ones (``SPLITLAB_NOTIFICATIONS_FILE``)."""
    local = {target.name for target in spec.notifications}
    if all(name in local for name in spec.monitoring.notify):
        return []  # nothing to look up: the global targets file is read only when a name needs it
    from splitlab.notify import global_targets
    from splitlab.specs import SpecError, undefined_targets

    try:
        shared = global_targets()
    except (SpecError, OSError) as exc:
        return [("monitoring.notify", f"the global notification targets cannot be read: {exc}")]
    return undefined_targets(spec, [*local, *(target.name for target in shared)])


def _store_problems(
    store: Store,
    spec: ExperimentSpec,
    *,
    defined_metrics: Collection[str],
    applied: Mapping[str, ExperimentSpec],
) -> list[tuple[str, str]]:
    """What the store says against ``spec``: undefined metrics, a namespace range taken by another experiment.

    ``applied`` are the specs being applied together with ``spec`` (their ranges were checked
    against each other when the catalog was read), so their stored versions are not compared.
    """
    problems: list[tuple[str, str]] = []
    if any(name not in defined_metrics for _, name in metric_references(spec)):
        problems += undefined_metrics(spec, {*defined_metrics, *store.metrics.list()})
    problems += _undefined_targets(spec)
    if spec.namespace is not None:
        start, end = spec.namespace.range
        for other in store.experiments.list():
            layer = other.spec.get("namespace") or {}
            if other.key in applied or other.status == "archived" or layer.get("name") != spec.namespace.name:
                continue
            other_start, other_end = layer["range"]
            if start < other_end and other_start < end:
                message = (
                    f"[{start}, {end}) overlaps [{other_start}, {other_end}) of experiment {other.key!r} in "
                    f"namespace {spec.namespace.name!r}; the ranges of one namespace must be disjoint"
                )
                problems.append(("namespace.range", message))
    return problems
