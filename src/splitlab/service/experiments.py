"""Experiments over HTTP: create-or-update from a spec, and lifecycle moves, with `splitlab apply`'s rules.

Pure service logic on a :class:`~splitlab.storage.Store`: it raises the domain's errors
(``ValueError``, :class:`~splitlab.specs.SpecError`, :class:`~splitlab.storage.NotFoundError`);
the routes turn them into HTTP answers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from pydantic import ValidationError

from splitlab.service.problems import InvalidInputError
from splitlab.specs import (
    Change,
    ExperimentSpec,
    apply_action,
    has_run,
    load_spec,
    metric_references,
    plan_update,
)
from splitlab.storage import ExperimentRecord, NotFoundError, Store
from splitlab.storage.json_values import json_problems

__all__ = ["ApplyOutcome", "apply_spec", "change_status", "parse_spec"]


@dataclass(frozen=True, slots=True)
class ApplyOutcome:
    """What applying a spec did: ``created``, ``updated`` or ``unchanged``, and the experiment after."""

    action: str
    changes: list[Change]
    record: ExperimentRecord


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
    if "yaml" in content_type.lower():
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


def apply_spec(store: Store, spec: ExperimentSpec, *, actor: str, rerandomize: bool = False) -> ApplyOutcome:
    """Create the experiment, or update it under the immutability rules of :func:`splitlab.specs.check_update`.

    Raises:
        InvalidInputError: The spec refers to metrics with no stored definition, or its namespace range
            overlaps another experiment's in the same namespace (the checks `splitlab apply` makes
            across its files, made here against the store).
        ValueError: The update changes protected fields of an experiment that has run (without
            ``rerandomize``).
        VersionConflictError: Someone else changed the experiment meanwhile.
    """
    _check_against_store(store, spec)
    record = store.experiments.get(key=spec.key)
    current = None if record is None else ExperimentSpec.model_validate(record.spec)
    plan = plan_update(current, spec, has_run=record is not None and has_run(record.status), rerandomize=rerandomize)
    if record is None:
        store.experiments.create(key=spec.key, spec=spec.model_dump(mode="json"), actor=actor)
        return ApplyOutcome("created", [], _get(store, spec.key))
    if plan.action == "unchanged":
        return ApplyOutcome("unchanged", [], record)
    store.experiments.update(
        key=spec.key,
        spec=plan.spec.model_dump(mode="json"),
        diff=[asdict(c) for c in plan.changes],
        actor=actor,
        expected_version=record.current_version,
        rerandomize=plan.rerandomized,
    )
    return ApplyOutcome("updated", plan.changes, _get(store, spec.key))


def _check_against_store(store: Store, spec: ExperimentSpec) -> None:
    problems: list[tuple[str, str]] = []
    references = metric_references(spec)
    if references:
        defined = store.metrics.get_many(names=[name for _, name in references])
        problems += [
            (path, f"{name!r} is not a defined metric (define it with `splitlab apply` on a metrics file)")
            for path, name in references
            if name not in defined
        ]
    if spec.namespace is not None:
        start, end = spec.namespace.range
        for other in store.experiments.list():
            layer = other.spec.get("namespace") or {}
            if other.key == spec.key or other.status == "archived" or layer.get("name") != spec.namespace.name:
                continue
            other_start, other_end = layer["range"]
            if start < other_end and other_start < end:
                message = (
                    f"[{start}, {end}) overlaps [{other_start}, {other_end}) of experiment {other.key!r} in "
                    f"namespace {spec.namespace.name!r}; the ranges of one namespace must be disjoint"
                )
                problems.append(("namespace.range", message))
    if problems:
        raise InvalidInputError(problems)


def change_status(store: Store, *, key: str, action: str, actor: str, reason: str | None = None) -> ExperimentRecord:
    """Apply a lifecycle ``action``; ``start`` on a paused experiment resumes it, as in the CLI.

    Raises:
        NotFoundError: No experiment ``key``.
        ValueError: The move is not allowed from the current status.
    """
    record = _get(store, key)
    status = apply_action(record.status, action)
    store.experiments.set_status(key=key, status=str(status), actor=actor, reason=reason)
    return _get(store, key)


def _get(store: Store, key: str) -> ExperimentRecord:
    record = store.experiments.get(key=key)
    if record is None:
        msg = f"experiment {key!r} does not exist"
        raise NotFoundError(msg)
    return record
