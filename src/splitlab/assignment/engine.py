"""Assign one unit to a variant: a pure, deterministic function of (plan, unit id, attributes).

Order of checks (the first that applies gives the ``reason``):

1. ``forced`` — the unit id is in ``plan.forced`` (QA): its variant, whatever else holds.
2. ``rolled_out`` — ``plan.rolled_out`` names a variant (the experiment was rolled out): every unit
   gets it and its payload, sticky, untargeted and uncovered units alike, with ``enrolled`` False:
   the experiment is over and the unit is in no comparison.
3. ``inactive`` — ``plan.active`` is false (draft, paused, stopped): nobody is in, sticky units
   neither, as GrowthBook does for inactive experiments.
4. ``sticky`` — the caller passes the variant recorded earlier (``sticky=``) and it is still one of
   the plan's variant keys: that variant, even after weights, coverage, targeting or namespace changed.
   A key that no longer exists is ignored.
5. ``not_targeted`` — the unit fails targeting, or has nothing to hash (an empty unit id, or a missing
   hash attribute under allocation ``"attributes"``; then ``bucket`` is None).
6. ``namespace`` — the unit's namespace hash falls outside the plan's namespace range.
7. ``holdout`` — the unit's holdout hash is below the holdout share.
8. ``coverage`` / ``enrolled`` — variant ``i`` owns ``[cum_i, cum_i + coverage·w_i)`` of [0, 1)
   (:func:`~splitlab.assignment.buckets.bucket_ranges`); a bucket in no range is ``coverage``.

Hashes (``h_v(text, seed)`` is :func:`~splitlab.assignment.hashing.unit_hash` in the plan's version):

- the bucket: ``h(hash value, plan.seed, bucket_version=plan.bucket_version)``; the hash value is the
  unit id, or under allocation ``"attributes"`` the ``hash_attributes`` values joined by the ASCII
  unit separator U+001F (:data:`HASH_ATTRIBUTE_SEPARATOR`);
- the namespace: version 1, ``h_1(unit id, "__" + name, bucket_version=1)``; GrowthBook mode,
  GrowthBook's ``inNamespace`` (its hash v1 of the hash value under ``"__" + name``);
- the holdout: version 1, ``h_1(unit id, holdout.seed, bucket_version=1)``; GrowthBook mode,
  ``h_gb2(hash value, holdout.seed)``. Neither depends on the experiment, so one holdout or namespace
  is shared by every experiment that names it.

In ``growthbook-v2`` mode the result equals the GrowthBook SDK's ``run()`` for an experiment with the
same key/seed, variations in plan order, weights, coverage and namespace (``hashVersion: 2``,
``hashAttribute`` the unit id or the single hash attribute). GrowthBook's hash ignores the bucket
version, so there a re-randomisation needs a new seed.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, NamedTuple

import mmh3
import numpy as np

from splitlab.assignment.buckets import bucket_ranges
from splitlab.assignment.config import ALLOCATIONS, HASH_VERSIONS, ExperimentPlan
from splitlab.assignment.hashing import HASH_SCALE, fnv1a32, growthbook_hash, js_number_string
from splitlab.assignment.targeting import CompiledTargeting, _number, compile_targeting

REASONS: Final = (
    "forced",
    "inactive",
    "sticky",
    "not_targeted",
    "namespace",
    "holdout",
    "coverage",
    "enrolled",
    "rolled_out",
)
"""Every ``Assignment.reason``; a reason's position is its code in batch results, so new reasons are appended.

The checks run in the order of the module docstring (``rolled_out`` second, after ``forced``).
"""

HASH_ATTRIBUTE_SEPARATOR: Final = "\x1f"
"""Joins the values of several hash attributes (ASCII unit separator, rare in real values)."""

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})
_WEIGHT_TOLERANCE_V1: Final = 1e-6
_PLAN_CACHE_SIZE: Final = 256


class Assignment(NamedTuple):
    """The outcome of :func:`assign` (an immutable record; a NamedTuple because it is built per call).

    Attributes:
        variant: the variant key, or None when the unit gets no variant.
        bucket: the unit's hash in [0, 1) (a uniform draw under allocation ``"random"``); None when
            there is nothing to hash.
        enrolled: whether the unit is in a variant (forced and sticky units included; units served a
            rolled-out variant are not).
        reason: one of :data:`REASONS`.
        variation_index: the variant's position in ``plan.variants`` (GrowthBook's variation id), or
            None when the unit gets no variant.
        payload: the variant's payload, or None when the unit gets no variant.
    """

    variant: str | None
    bucket: float | None
    enrolled: bool
    reason: str
    variation_index: int | None
    payload: Any


def v1_hash_text(value: Any) -> str | None:
    """How allocation ``"attributes"`` writes one value in version 1 (None when it cannot be hashed).

    Non-empty strings as they are; booleans ``"true"`` / ``"false"``; finite numbers in JS form
    (``2`` and ``2.0`` are ``"2"``). Empty strings, None, NaN and other types cannot be hashed.

    >>> v1_hash_text("DE"), v1_hash_text(2.0), v1_hash_text(False), v1_hash_text("")
    ('DE', '2', 'false', None)
    """
    if isinstance(value, str):
        return value or None
    if value is True or value is False:
        return "true" if value else "false"
    number = _number(value)
    return None if number is None else js_number_string(number)


def growthbook_hash_text(value: Any) -> str | None:
    """GrowthBook's hash value of an attribute: non-empty strings, finite non-zero numbers (JS form).

    >>> growthbook_hash_text(123), growthbook_hash_text(0), growthbook_hash_text(True)
    ('123', None, None)
    """
    if isinstance(value, str):
        return value or None
    if value is True or value is False:
        return None
    number = _number(value)
    return None if number is None or number == 0 else js_number_string(number)


def _checked_weights(weights: Sequence[float], k: int, where: str, hash_version: str) -> tuple[float, ...]:
    if len(weights) != k:
        raise ValueError(f"len({where}) == {len(weights)}, must equal the number of variants ({k})")
    for i, w in enumerate(weights):
        if isinstance(w, bool) or _number(w) is None or w < 0:
            raise ValueError(f"{where}[{i}] == {w!r}, must be a finite number >= 0")
    total = math.fsum(float(w) for w in weights)
    if hash_version == "growthbook-v2":
        # GrowthBook's own tolerance, and its weights as given, so the ranges are GrowthBook's.
        if not 0.99 <= total <= 1.01:
            raise ValueError(f"sum({where}) == {total!r}, must be within [0.99, 1.01] in growthbook-v2 mode")
        return tuple(float(w) for w in weights)
    if abs(total - 1.0) > _WEIGHT_TOLERANCE_V1:
        raise ValueError(f"sum({where}) == {total!r}, must be 1 (within {_WEIGHT_TOLERANCE_V1})")
    return tuple(float(w) / total for w in weights)


class CompiledPlan:
    """An :class:`ExperimentPlan` validated and prepared once; :func:`compile_plan` caches them.

    Attributes are read by :func:`assign` and :func:`~splitlab.assignment.batch.assign_batch`;
    treat them as private.
    """

    __slots__ = (
        "_range_cache",
        "active",
        "allocation",
        "bucket_prefix",
        "forced",
        "gb_mode",
        "hash_attributes",
        "holdout_prefix",
        "holdout_seed",
        "holdout_share",
        "index",
        "keys",
        "namespace",
        "namespace_prefix",
        "payloads",
        "plan",
        "rolled_out",
        "seed",
        "seed_state",
        "starts_ends",
        "targeting",
        "targeting_check",
        "weights",
    )

    def __init__(self, plan: ExperimentPlan) -> None:
        """Validate ``plan`` (``ValueError`` names the field and the bound) and precompute."""
        self.plan = plan
        if plan.hash_version not in HASH_VERSIONS:
            raise ValueError(f"hash_version == {plan.hash_version!r}, must be one of {HASH_VERSIONS}")
        if plan.allocation not in ALLOCATIONS:
            raise ValueError(f"allocation == {plan.allocation!r}, must be one of {ALLOCATIONS}")
        if not isinstance(plan.seed, str):
            raise TypeError(f"seed == {plan.seed!r}, must be a string")
        bv = plan.bucket_version
        if isinstance(bv, bool) or not isinstance(bv, int) or bv < 0:
            raise ValueError(f"bucket_version == {bv!r}, must be an integer >= 0")
        if len(plan.variants) < 2:
            raise ValueError(f"len(variants) == {len(plan.variants)}, must be >= 2")
        keys = tuple(v.key for v in plan.variants)
        if len(set(keys)) != len(keys):
            duplicated = sorted({k for k in keys if keys.count(k) > 1})
            raise ValueError(f"variants has duplicate keys {duplicated}, keys must be unique")
        c = plan.coverage
        if isinstance(c, bool) or _number(c) is None or not 0.0 <= c <= 1.0:
            raise ValueError(f"coverage == {c!r}, must be in [0, 1]")
        self.gb_mode = plan.hash_version == "growthbook-v2"
        self.seed = plan.seed
        self.seed_state = fnv1a32(plan.seed)  # GrowthBook hashes seed + value: the seed's FNV state is shared
        self.keys = keys
        self.index = {k: i for i, k in enumerate(keys)}
        self.payloads = tuple(v.payload for v in plan.variants)
        self.weights = _checked_weights(plan.weights, len(keys), "weights", plan.hash_version)
        self.allocation = plan.allocation
        self.active = bool(plan.active)
        self.bucket_prefix = f"{plan.seed}:{bv}:"
        starts, ends = zip(*bucket_ranges(self.weights, float(c)), strict=True)
        self.starts_ends: tuple[tuple[float, ...], tuple[float, ...]] = (starts, ends)
        self._range_cache: dict[tuple[float, ...], tuple[tuple[float, ...], tuple[float, ...]]] = {}
        self.hash_attributes = self._checked_hash_attributes(plan)
        self.targeting: CompiledTargeting | None = compile_targeting(plan.targeting) or None
        self.targeting_check = None if self.targeting is None else self.targeting.check
        self.namespace, self.namespace_prefix = self._checked_namespace(plan)
        self.holdout_share, self.holdout_seed = self._checked_holdout(plan)
        self.holdout_prefix = f"{self.holdout_seed}:1:"
        self.forced = self._checked_forced(plan)
        self.rolled_out = self._checked_rolled_out(plan)

    def _checked_hash_attributes(self, plan: ExperimentPlan) -> tuple[str, ...] | None:
        names = tuple(plan.hash_attributes)
        if plan.allocation != "attributes":
            if names != ("unit_id",):
                raise ValueError(
                    f"hash_attributes == {names!r}, only allocation 'attributes' reads it (allocation == "
                    f"{plan.allocation!r} hashes the unit id)"
                )
            return None
        if not names or any(not isinstance(n, str) or not n for n in names) or len(set(names)) != len(names):
            raise ValueError(f"hash_attributes == {names!r}, must be distinct non-empty attribute names")
        if self.gb_mode and len(names) != 1:
            raise ValueError(f"hash_attributes == {names!r}, growthbook-v2 mode hashes exactly one attribute")
        return names

    def _checked_namespace(self, plan: ExperimentPlan) -> tuple[tuple[str, float, float] | None, str]:
        ns = plan.namespace
        if ns is None:
            return None, ""
        if not isinstance(ns.name, str) or not ns.name:
            raise ValueError(f"namespace.name == {ns.name!r}, must be a non-empty string")
        if _number(ns.start) is None or _number(ns.end) is None or not 0.0 <= ns.start < ns.end <= 1.0:
            raise ValueError(f"namespace range == [{ns.start!r}, {ns.end!r}), must satisfy 0 <= start < end <= 1")
        if not self.gb_mode and "__" + ns.name == plan.seed and plan.bucket_version == 1:
            raise ValueError(f"seed == {plan.seed!r}, must differ from the namespace seed '__{ns.name}'")
        return (ns.name, float(ns.start), float(ns.end)), f"__{ns.name}:1:"

    def _checked_holdout(self, plan: ExperimentPlan) -> tuple[float, str]:
        holdout = plan.holdout
        if holdout is None:
            return 0.0, ""
        if not isinstance(holdout.seed, str) or not holdout.seed:
            raise ValueError(f"holdout.seed == {holdout.seed!r}, must be a non-empty string")
        if holdout.seed == plan.seed:
            # The holdout would then cut the lowest buckets, i.e. most of the first variant.
            raise ValueError(f"holdout.seed == {holdout.seed!r}, must differ from the experiment seed")
        share = holdout.share
        if isinstance(share, bool) or _number(share) is None or not 0.0 <= share <= 1.0:
            raise ValueError(f"holdout.share == {share!r}, must be in [0, 1]")
        return float(share), holdout.seed

    def _checked_forced(self, plan: ExperimentPlan) -> dict[str, int]:
        forced = {}
        for unit, key in plan.forced.items():
            if key not in self.index:
                raise ValueError(f"forced[{unit!r}] == {key!r}, must be one of the variant keys {self.keys}")
            forced[unit] = self.index[key]
        return forced

    def _checked_rolled_out(self, plan: ExperimentPlan) -> int | None:
        if plan.rolled_out is None:
            return None
        if plan.rolled_out not in self.index:
            raise ValueError(f"rolled_out == {plan.rolled_out!r}, must be one of the variant keys {self.keys}")
        return self.index[plan.rolled_out]

    def ranges(self, weights: Sequence[float] | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Range starts and ends, for the plan's weights or a bandit's current ones (validated, cached)."""
        if weights is None:
            return self.starts_ends
        if self.allocation != "bandit":
            raise ValueError(f"weights == {list(weights)!r}, only allocation 'bandit' takes weights per call")
        key = tuple(weights)
        cached = self._range_cache.get(key)
        if cached is None:
            checked = _checked_weights(key, len(self.keys), "weights", self.plan.hash_version)
            starts, ends = zip(*bucket_ranges(checked, float(self.plan.coverage)), strict=True)
            cached = (starts, ends)
            if len(self._range_cache) >= 64:
                self._range_cache.clear()
            self._range_cache[key] = cached
        return cached

    def hash_value(self, unit_id: str, attributes: Mapping[str, Any]) -> str | None:
        """The text hashed for the bucket (None when there is nothing to hash)."""
        names = self.hash_attributes
        if names is None:
            return unit_id or None
        to_text = growthbook_hash_text if self.gb_mode else v1_hash_text
        parts = []
        for name in names:
            text = to_text(unit_id if name == "unit_id" else attributes.get(name))
            if text is None:
                return None
            parts.append(text)
        return HASH_ATTRIBUTE_SEPARATOR.join(parts)

    def assign(
        self,
        unit_id: str,
        attributes: Mapping[str, Any] | None = None,
        *,
        sticky: str | None = None,
        weights: Sequence[float] | None = None,
        rng: np.random.Generator | None = None,
    ) -> Assignment:
        """See :func:`assign`."""
        return _assign(self, unit_id, attributes, sticky, weights, rng)

    def in_namespace(self, unit_id: str, hv: str) -> bool:
        """Whether the unit's namespace hash is in the plan's namespace range (plans with a namespace)."""
        name, start, end = self.namespace  # type: ignore[misc]  # only called with a namespace
        if self.gb_mode:
            n = (fnv1a32(hv + "__" + name) % 1000) / 1000
        else:
            n = mmh3.hash((self.namespace_prefix + unit_id).encode(), 0, False) * HASH_SCALE
        return start <= n < end

    def held_out(self, unit_id: str, hv: str) -> bool:
        """Whether the unit's holdout hash is below the holdout share (plans with a holdout)."""
        if self.gb_mode:
            n = growthbook_hash(self.holdout_seed, hv, 2)
            return n is not None and n < self.holdout_share
        return mmh3.hash((self.holdout_prefix + unit_id).encode(), 0, False) * HASH_SCALE < self.holdout_share


_new_assignment = tuple.__new__  # NamedTuple.__new__ without its Python-level wrapper (this is the hot path)


def _assign(
    c: CompiledPlan,
    unit_id: str,
    attributes: Mapping[str, Any] | None,
    sticky: str | None,
    weights: Sequence[float] | None,
    rng: np.random.Generator | None,
) -> Assignment:
    if not isinstance(unit_id, str):
        raise TypeError(f"unit_id == {unit_id!r}, must be a str")
    attrs = _EMPTY if attributes is None else attributes
    hv = (unit_id or None) if c.hash_attributes is None else c.hash_value(unit_id, attrs)
    if c.allocation == "random":
        if rng is None:
            raise ValueError("rng is None, allocation 'random' needs a numpy Generator")
        bucket: float | None = float(rng.random())
    elif rng is not None:
        raise ValueError(f"rng == {rng!r}, only allocation 'random' draws from it")
    elif hv is None:
        bucket = None
    elif c.gb_mode:
        bucket = (fnv1a32(str(fnv1a32(hv, start=c.seed_state))) % 10000) / 10000
    else:
        bucket = mmh3.hash((c.bucket_prefix + hv).encode(), 0, False) * HASH_SCALE

    forced = c.forced
    if forced and unit_id in forced:
        i = forced[unit_id]
        return _new_assignment(Assignment, (c.keys[i], bucket, True, "forced", i, c.payloads[i]))
    if c.rolled_out is not None:
        i = c.rolled_out
        return _new_assignment(Assignment, (c.keys[i], bucket, False, "rolled_out", i, c.payloads[i]))
    if not c.active:
        return _new_assignment(Assignment, (None, bucket, False, "inactive", None, None))
    if sticky is not None:
        i_sticky = c.index.get(sticky)
        if i_sticky is not None:
            return _new_assignment(Assignment, (sticky, bucket, True, "sticky", i_sticky, c.payloads[i_sticky]))
    if hv is None or bucket is None or (c.targeting_check is not None and not c.targeting_check(attrs)):
        return _new_assignment(Assignment, (None, bucket, False, "not_targeted", None, None))
    if c.namespace is not None and not c.in_namespace(unit_id, hv):
        return _new_assignment(Assignment, (None, bucket, False, "namespace", None, None))
    if c.holdout_share and c.held_out(unit_id, hv):
        return _new_assignment(Assignment, (None, bucket, False, "holdout", None, None))
    starts, ends = c.starts_ends if weights is None else c.ranges(weights)
    i = bisect_right(starts, bucket) - 1
    if bucket < ends[i]:
        return _new_assignment(Assignment, (c.keys[i], bucket, True, "enrolled", i, c.payloads[i]))
    return _new_assignment(Assignment, (None, bucket, False, "coverage", None, None))


_PLANS: dict[int, CompiledPlan] = {}


def compile_plan(plan: ExperimentPlan | CompiledPlan) -> CompiledPlan:
    """Validate and prepare a plan once (cached by identity; a compiled plan is returned as is).

    Raises:
        ValueError: a field out of bounds, naming it (``"coverage == 1.5, must be in [0, 1]"``), an
            unknown targeting operator, an invalid regular expression or version, a forced unit or
            a rolled-out variant pointing to a missing variant, a holdout seed equal to the
            experiment seed.
    """
    if isinstance(plan, CompiledPlan):
        return plan
    compiled = _PLANS.get(id(plan))
    if compiled is not None and compiled.plan is plan:
        return compiled
    compiled = CompiledPlan(plan)
    if len(_PLANS) >= _PLAN_CACHE_SIZE:
        _PLANS.pop(next(iter(_PLANS)))
    _PLANS[id(plan)] = compiled  # the entry keeps the plan alive, so its id cannot be reused meanwhile
    return compiled


def assign(
    plan: ExperimentPlan | CompiledPlan,
    unit_id: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    sticky: str | None = None,
    weights: Sequence[float] | None = None,
    rng: np.random.Generator | None = None,
) -> Assignment:
    """Assign one unit; see the module docstring for the order of checks and the hashes.

    Args:
        plan: the experiment (compiled on first use and cached by identity).
        unit_id: the unit's id (user id, device id ...), a str.
        attributes: the unit's attributes for targeting and allocation ``"attributes"``.
        sticky: the variant key recorded for this unit earlier, if any; it wins while it is still
            a variant key.
        weights: allocation ``"bandit"`` only: the bandit's current weights, overriding the plan's.
        rng: allocation ``"random"`` only (required there): the Generator to draw the bucket from.
            Random allocation is not reproducible by design; record the assignment to keep it.

    Returns:
        An :class:`Assignment`.

    Raises:
        ValueError: an invalid plan (at first use), weights or rng given to the wrong allocation,
            invalid bandit weights, or a unit id that is not valid Unicode.
        TypeError: a unit id that is not a str.

    Examples:
        >>> from splitlab.assignment.config import ExperimentPlan, Variant
        >>> plan = ExperimentPlan(
        ...     key="checkout", seed="checkout", variants=(Variant("control", 0.5), Variant("new", 0.5))
        ... )
        >>> a = assign(plan, "user-1")
        >>> a.variant, a.enrolled, a.reason, round(a.bucket, 4)
        ('new', True, 'enrolled', 0.9382)
        >>> assign(plan, "user-1", sticky="control").variant
        'control'
    """
    compiled = _PLANS.get(id(plan))
    if compiled is None or compiled.plan is not plan:
        compiled = compile_plan(plan)
    return _assign(compiled, unit_id, attributes, sticky, weights, rng)
