"""Compile a validated spec into the plain records the assignment engine runs on."""

from __future__ import annotations

from collections.abc import Mapping

from splitlab.assignment import config
from splitlab.specs.model import Condition, ExperimentSpec

__all__ = ["to_plan"]


def _conditions(conditions: tuple[Condition, ...]) -> tuple[config.Condition, ...]:
    return tuple(config.Condition(c.attribute, c.operator, c.value) for c in conditions)


def effective_seed(spec: ExperimentSpec) -> str:
    """The hashing seed: the spec's seed, plus ``:v<bucket_version>`` in GrowthBook mode after a re-randomisation.

    Version 1 hashes the bucket version itself; GrowthBook's hash has no such input, so a
    re-randomisation there changes the seed instead (and GrowthBook SDKs must be given this seed).
    """
    if spec.hash_version == "growthbook-v2" and spec.bucket_version > 1:
        return f"{spec.seed}:v{spec.bucket_version}"
    return spec.seed


def to_plan(
    spec: ExperimentSpec,
    *,
    forced: Mapping[str, str] | None = None,
    active: bool = True,
    rolled_out: str | None = None,
) -> config.ExperimentPlan:
    """The :class:`~splitlab.assignment.config.ExperimentPlan` of ``spec``.

    Args:
        spec: a validated spec.
        forced: unit id -> variant key for QA (default none); every key must be a variant of ``spec``.
        active: whether the experiment enrols units (False when paused or stopped); default True.
        rolled_out: the variant served to every unit of a rolled-out experiment (forced units
            excepted), which must be a variant of ``spec``; default None (not rolled out).

    Returns:
        The plan: ``hash_attributes`` is ``allocation.attributes`` with method ``attributes`` and
        ``("unit_id",)`` otherwise.

    Raises:
        ValueError: a forced or rolled-out variant is not a variant of ``spec``.

    Example:
        >>> spec = ExperimentSpec(key="x", variants=[{"key": "a"}, {"key": "b"}])
        >>> plan = to_plan(spec, forced={"qa-user": "b"})
        >>> plan.seed, plan.weights, plan.hash_attributes, dict(plan.forced)
        ('x', (0.5, 0.5), ('unit_id',), {'qa-user': 'b'})
    """
    forced = dict(forced or {})
    for unit_id, variant in forced.items():
        if variant not in spec.variant_keys:
            msg = f"forced[{unit_id!r}] == {variant!r}, must be one of the variant keys {list(spec.variant_keys)}"
            raise ValueError(msg)
    if rolled_out is not None and rolled_out not in spec.variant_keys:
        msg = f"rolled_out == {rolled_out!r}, must be one of the variant keys {list(spec.variant_keys)}"
        raise ValueError(msg)
    allocation = spec.allocation
    return config.ExperimentPlan(
        key=spec.key,
        seed=effective_seed(spec),
        variants=tuple(config.Variant(v.key, v.weight, v.payload) for v in spec.variants),
        coverage=spec.coverage,
        hash_version=spec.hash_version,
        bucket_version=spec.bucket_version,
        hash_attributes=allocation.attributes if allocation.method == "attributes" else ("unit_id",),
        allocation=allocation.method,
        targeting=config.Targeting(_conditions(spec.targeting.include), _conditions(spec.targeting.exclude)),
        namespace=config.Namespace(spec.namespace.name, *spec.namespace.range) if spec.namespace else None,
        holdout=config.Holdout(spec.holdout.seed, spec.holdout.share) if spec.holdout else None,
        forced=forced,
        active=active,
        rolled_out=rolled_out,
    )
