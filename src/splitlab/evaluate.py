"""``splitlab.assign``: the variant a unit gets in an experiment spec, computed locally."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from splitlab.assignment.engine import Assignment
from splitlab.assignment.engine import assign as assign_plan
from splitlab.specs.model import ExperimentSpec
from splitlab.specs.plan import to_plan


def assign(
    spec: ExperimentSpec, unit_id: str, attributes: Mapping[str, Any] | None = None, *, sticky: str | None = None
) -> Assignment:
    r"""Assign one unit to a variant of ``spec`` (deterministic: the same answer on every machine).

    Args:
        spec: a validated spec (``splitlab.load_spec``).
        unit_id: the unit's id (user, device, session ...).
        attributes: the unit's attributes, for targeting and attribute hashing.
        sticky: a variant recorded for this unit earlier, honoured while it is still a variant.

    Returns:
        An :class:`~splitlab.assignment.engine.Assignment`: ``variant`` (None when the unit is not
        enrolled), ``bucket`` (its hash in [0, 1)), ``reason`` and ``payload``.

    Example:
        >>> import splitlab
        >>> spec = splitlab.load_spec("key: demo\nvariants: [{key: a, weight: 0.5}, {key: b, weight: 0.5}]")
        >>> result = splitlab.assign(spec, "user-42")
        >>> result.variant in ("a", "b"), 0 <= result.bucket < 1
        (True, True)
    """
    return assign_plan(_plan(spec), unit_id, attributes, sticky=sticky)


_PLANS: dict[int, tuple[ExperimentSpec, Any]] = {}


def _plan(spec: ExperimentSpec) -> Any:
    """The compiled plan of ``spec``, cached by identity (specs are frozen) so repeated calls stay fast."""
    cached = _PLANS.get(id(spec))
    if cached is not None and cached[0] is spec:
        return cached[1]
    if len(_PLANS) > 256:
        _PLANS.clear()
    plan = to_plan(spec)
    _PLANS[id(spec)] = (spec, plan)
    return plan
