"""Deterministic, fast assignment of units to variants (pure: no storage, web or CLI code).

>>> from splitlab.assignment import ExperimentPlan, Variant, assign
>>> plan = ExperimentPlan(key="checkout", seed="checkout", variants=(Variant("control", 0.5), Variant("new", 0.5)))
>>> assign(plan, "user-1").variant
'new'
"""

from __future__ import annotations

from splitlab.assignment.batch import BatchAssignment, assign_batch, stratified_assignment, unit_hash_batch
from splitlab.assignment.buckets import (
    bucket_ranges,
    choose_variation,
    equal_weights,
    growthbook_bucket_ranges,
    growthbook_in_namespace,
)
from splitlab.assignment.config import (
    ALLOCATIONS,
    HASH_VERSIONS,
    OPERATORS,
    Condition,
    ExperimentPlan,
    Holdout,
    Namespace,
    Targeting,
    Variant,
)
from splitlab.assignment.engine import (
    HASH_ATTRIBUTE_SEPARATOR,
    REASONS,
    Assignment,
    CompiledPlan,
    assign,
    compile_plan,
)
from splitlab.assignment.hashing import fnv1a32, growthbook_hash, unit_hash
from splitlab.assignment.targeting import CompiledTargeting, compile_condition, compile_targeting, matches, version_key

__all__ = [
    "ALLOCATIONS",
    "HASH_ATTRIBUTE_SEPARATOR",
    "HASH_VERSIONS",
    "OPERATORS",
    "REASONS",
    "Assignment",
    "BatchAssignment",
    "CompiledPlan",
    "CompiledTargeting",
    "Condition",
    "ExperimentPlan",
    "Holdout",
    "Namespace",
    "Targeting",
    "Variant",
    "assign",
    "assign_batch",
    "bucket_ranges",
    "choose_variation",
    "compile_condition",
    "compile_plan",
    "compile_targeting",
    "equal_weights",
    "fnv1a32",
    "growthbook_bucket_ranges",
    "growthbook_hash",
    "growthbook_in_namespace",
    "matches",
    "stratified_assignment",
    "unit_hash",
    "unit_hash_batch",
    "version_key",
]
