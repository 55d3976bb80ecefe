"""What assignment needs to know about an experiment, as plain frozen records.

``splitlab.specs`` compiles a validated YAML spec into an :class:`ExperimentPlan` once; the hot
path then touches only these records, never pydantic models or YAML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

OPERATORS = (
    "eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "regex",
    "version_eq", "version_gt", "version_gte", "version_lt", "version_lte", "exists",
)  # fmt: skip
HASH_VERSIONS = ("1", "growthbook-v2")
ALLOCATIONS = ("hash", "attributes", "random", "bandit")


@dataclass(frozen=True, slots=True)
class Condition:
    """``attributes[attribute] <operator> value``; a missing attribute never matches (except ``exists``)."""

    attribute: str
    operator: str
    value: Any = None


@dataclass(frozen=True, slots=True)
class Targeting:
    """A unit is eligible when every ``include`` condition holds and no ``exclude`` condition does."""

    include: tuple[Condition, ...] = ()
    exclude: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class Namespace:
    """A layer of mutually exclusive experiments: this one takes the units whose namespace hash is in [start, end)."""

    name: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Holdout:
    """Units whose hash under ``seed`` is below ``share`` are held out of the experiment (they get no variant)."""

    seed: str
    share: float


@dataclass(frozen=True, slots=True)
class Variant:
    """One arm: its key, its traffic weight and the payload the application receives."""

    key: str
    weight: float
    payload: Any = None


@dataclass(frozen=True, slots=True)
class ExperimentPlan:
    """Everything assignment needs, compiled from a spec.

    Attributes:
        key: the experiment key.
        seed: hashing seed (the spec's ``seed``, default the key).
        variants: arms in spec order (the GrowthBook variation index is the position here).
        coverage: share of eligible units enrolled, in [0, 1].
        hash_version: ``"1"`` (splitlab's MurmurHash3 scheme) or ``"growthbook-v2"``.
        bucket_version: bumped by a re-randomisation; part of the hash input in version 1.
        hash_attributes: the attribute(s) whose value(s) are hashed; ``("unit_id",)`` hashes the unit.
        allocation: ``hash``, ``attributes`` (hash on ``hash_attributes``), ``random`` or ``bandit``.
        targeting, namespace, holdout: eligibility rules.
        forced: unit id -> variant key, for QA (bypasses everything but the variant's existence).
        active: whether the experiment enrols units at all (a stopped or paused one does not).
        rolled_out: a variant key when the experiment was rolled out: every unit (forced ones
            excepted) is served that variant and its payload without being enrolled, whatever
            ``active``, sticky assignments, targeting, namespace, holdout and coverage say; None
            otherwise.
    """

    key: str
    seed: str
    variants: tuple[Variant, ...]
    coverage: float = 1.0
    hash_version: str = "1"
    bucket_version: int = 1
    hash_attributes: tuple[str, ...] = ("unit_id",)
    allocation: str = "hash"
    targeting: Targeting = field(default_factory=Targeting)
    namespace: Namespace | None = None
    holdout: Holdout | None = None
    forced: Mapping[str, str] = field(default_factory=dict)
    active: bool = True
    rolled_out: str | None = None

    @property
    def weights(self) -> tuple[float, ...]:
        """Traffic weights in variant order."""
        return tuple(v.weight for v in self.variants)
