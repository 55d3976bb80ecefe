"""What changed between two versions of a spec, and which changes a running experiment may take.

Once units have been assigned, some fields decide *which* units are in *which* variant. Changing
them re-shuffles units between arms mid-experiment: a unit's earlier events would be attributed to
one variant and its later ones to another, and the comparison between arms stops being a
randomised one. These are refused after an experiment has run (see :data:`PROTECTED`) unless the
user asks for a re-randomisation, which bumps ``bucket_version``: every unit is hashed afresh, and
the analysis starts over on the new bucket version.

Weights and coverage may change: a coverage ramp only adds units (bucket ranges are nested, so an
enrolled unit stays enrolled in its variant), and after a weight change sticky assignments kept in
the store hold every already-assigned unit in its variant. Targeting, schedule, metrics, analysis,
hypothesis and the descriptive fields change who is *newly* eligible or how results are read, never
the variant of an assigned unit.

Example:
    >>> from splitlab.specs.model import ExperimentSpec
    >>> old = ExperimentSpec(key="x", variants=[{"key": "a"}, {"key": "b"}])
    >>> new = ExperimentSpec(key="x", variants=[{"key": "a", "weight": 0.2}, {"key": "b", "weight": 0.8}])
    >>> [(c.path, c.old, c.new) for c in diff(old, new)]
    [('variants.a.weight', 0.5, 0.2), ('variants.b.weight', 0.5, 0.8)]
    >>> check_update(old, new, has_run=True) == new
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from splitlab.specs.model import ExperimentSpec

__all__ = ["PROTECTED", "Change", "UpdatePlan", "check_update", "diff", "plan_update"]


@dataclass(frozen=True, slots=True)
class Change:
    """One changed value: its dotted path in the spec's JSON form, old and new (None when absent).

    Variants are addressed by key (``variants.treatment.weight``) and guardrails by metric
    (``metrics.guardrails.average_order_value.max_degradation``); an added variant has ``old``
    None, a removed one ``new`` None. A change of variant order is reported at path ``variants``
    with the old and new key lists. Other lists are compared whole.
    """

    path: str
    old: Any
    new: Any


# Lists of objects matched by a natural key rather than by position.
_KEYED_LISTS = {"variants": "key", "metrics.guardrails": "metric"}


def diff(old: ExperimentSpec, new: ExperimentSpec) -> list[Change]:
    """Every value that differs between ``old`` and ``new``, in field order."""
    changes: list[Change] = []
    _diff_values("", old.model_dump(mode="json"), new.model_dump(mode="json"), changes)
    return changes


def _diff_values(path: str, old: Any, new: Any, out: list[Change]) -> None:
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            _diff_values(f"{path}.{key}" if path else str(key), old.get(key), new.get(key), out)
    elif path in _KEYED_LISTS and isinstance(old, list) and isinstance(new, list):
        _diff_keyed(path, _KEYED_LISTS[path], old, new, out)
    else:
        out.append(Change(path, old, new))


def _diff_keyed(path: str, key: str, old: list[dict[str, Any]], new: list[dict[str, Any]], out: list[Change]) -> None:
    old_by_key = {item[key]: item for item in old}
    new_by_key = {item[key]: item for item in new}
    old_common = [k for k in old_by_key if k in new_by_key]
    new_common = [k for k in new_by_key if k in old_by_key]
    if old_common != new_common:
        out.append(Change(path, list(old_by_key), list(new_by_key)))
    for name in [*old_by_key, *(k for k in new_by_key if k not in old_by_key)]:
        _diff_values(f"{path}.{name}", old_by_key.get(name), new_by_key.get(name), out)


def _variant_keys(spec: ExperimentSpec) -> Any:
    return sorted(spec.variant_keys)


def _variant_order(spec: ExperimentSpec) -> Any:
    # Only a reordering of the same keys is reported here; added or removed keys are reported above.
    return list(spec.variant_keys)


def _namespace_name(spec: ExperimentSpec) -> Any:
    return spec.namespace.name if spec.namespace else None


def _holdout_seed(spec: ExperimentSpec) -> Any:
    return spec.holdout.seed if spec.holdout else None


PROTECTED: Mapping[str, Callable[[ExperimentSpec], Any]] = MappingProxyType(
    {
        # Units of one kind cannot be compared with earlier assignments of another kind.
        "unit": lambda s: s.unit,
        # Adding, removing or renaming an arm re-partitions the bucket ranges of every arm.
        "variant keys": _variant_keys,
        # Bucket ranges are laid out in variant order (and GrowthBook's variation index is the position).
        "variant order": _variant_order,
        # Seed, hash version and bucket version are hash inputs: any change re-hashes every unit.
        "seed": lambda s: s.seed,
        "hash_version": lambda s: s.hash_version,
        "bucket_version": lambda s: s.bucket_version,
        # What is hashed (or whether anything is) decides the arm.
        "allocation.method": lambda s: s.allocation.method,
        "allocation.attributes": lambda s: s.allocation.attributes,
        # The namespace name and holdout seed are hash inputs for who is in the layer / the holdout.
        "namespace.name": _namespace_name,
        "holdout.seed": _holdout_seed,
    }
)
"""Fields that a run experiment may change only with a re-randomisation, with what is compared."""


def _protected_changes(old: ExperimentSpec, new: ExperimentSpec) -> list[str]:
    found = []
    for field, value in PROTECTED.items():
        before, after = value(old), value(new)
        if field == "variant order" and sorted(before) != sorted(after):
            continue
        if field in ("namespace.name", "holdout.seed") and None in (before, after):
            continue  # adding or removing a namespace / holdout narrows or widens eligibility, like coverage
        if before != after:
            found.append(f"{field} ({_show(before)} -> {_show(after)})")
    return found


def _show(value: Any) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def check_update(
    old: ExperimentSpec, new: ExperimentSpec, *, has_run: bool, rerandomize: bool = False
) -> ExperimentSpec:
    """Validate replacing ``old`` by ``new`` and return the spec to store.

    Args:
        old, new: the current and the proposed spec; their keys must match.
        has_run: whether units may have been assigned (see :func:`splitlab.specs.lifecycle.has_run`).
        rerandomize: permission to accept changes to :data:`PROTECTED` fields of an experiment that has
            run by starting a new bucket version. It is used only where it is needed: an update that
            moves no assigned unit (no protected change, or an experiment that never ran) keeps its
            bucket version, so one ``--rerandomize`` over a folder re-randomises only the experiments
            whose changes require it. To re-shuffle an experiment on purpose, change its ``seed``.

    Returns:
        ``new``, or, when a protected change of an experiment that has run is permitted, a copy of
        ``new`` whose ``bucket_version`` is ``old.bucket_version + 1`` (every unit is hashed afresh).

    Raises:
        ValueError: the keys differ, or the experiment has run and ``new`` changes protected fields
            without ``rerandomize``; the message names the fields and how to proceed.
    """
    if old.key != new.key:
        msg = f"key == {new.key!r} differs from {old.key!r}: the key is the experiment's identity, create a new one"
        raise ValueError(msg)
    found = _protected_changes(old, new) if has_run else []
    if found and rerandomize:
        return new.model_copy(update={"bucket_version": old.bucket_version + 1})
    if found:
        msg = (
            f"experiment {old.key!r} has run, so changing {', '.join(found)} would move assigned units between "
            f"variants and corrupt its analysis. Revert these fields, or apply with --rerandomize to start bucket "
            f"version {old.bucket_version + 1} (every unit is re-assigned; the analysis starts over)."
        )
        raise ValueError(msg)
    return new


@dataclass(frozen=True, slots=True)
class UpdatePlan:
    """What applying ``proposed`` over the current spec would do.

    Attributes:
        action: ``create`` (no current spec), ``unchanged`` or ``update``.
        spec: the spec to store (for a re-randomisation, with the bucket version bumped).
        changes: the diff from the current spec.
        rerandomized: whether the bucket version moves (every unit is re-bucketed).
    """

    action: str
    spec: ExperimentSpec
    changes: list[Change]
    rerandomized: bool = False


def plan_update(
    current: ExperimentSpec | None, proposed: ExperimentSpec, *, has_run: bool, rerandomize: bool = False
) -> UpdatePlan:
    """Decide how to apply ``proposed``: create, leave unchanged, or update under :func:`check_update`'s rules.

    One place for the rule that ``splitlab apply`` and the HTTP service share.

    Raises:
        ValueError: as :func:`check_update` (protected fields of an experiment that has run).
    """
    if current is None:
        return UpdatePlan("create", proposed, [])
    if not diff(current, proposed):
        return UpdatePlan("unchanged", current, [])
    new = check_update(current, proposed, has_run=has_run, rerandomize=rerandomize)
    return UpdatePlan("update", new, diff(current, new), new.bucket_version != current.bucket_version)
