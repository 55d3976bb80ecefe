"""Bucket ranges: which slice of [0, 1) each variant owns, as GrowthBook lays them out.

Variant ``i`` with weight ``w_i`` owns ``[cum_i, cum_i + coverage * w_i)`` where
``cum_i = w_0 + ... + w_{i-1}`` (summed left to right in floating point, exactly as the GrowthBook
SDKs do). Raising the coverage only lengthens each range from its fixed start, so a unit already
enrolled keeps its variant and new units join; changing the weights moves the starts, so it can move
units (hence sticky assignments).

References:
    GrowthBook SDK ``getBucketRanges``, ``chooseVariation``, ``inNamespace``, ``getEqualWeights``:
    growthbook/growthbook, packages/sdk-js/src/util.ts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from splitlab.assignment.hashing import growthbook_hash

Range = tuple[float, float]


def bucket_ranges(weights: Sequence[float], coverage: float = 1.0) -> tuple[Range, ...]:
    """Ranges ``[cum_i, cum_i + coverage * w_i)`` for already validated weights and coverage.

    >>> bucket_ranges([0.2, 0.3, 0.5], 0.5)
    ((0.0, 0.1), (0.2, 0.35), (0.5, 0.75))
    """
    ranges = []
    cumulative = 0.0
    for w in weights:
        start = cumulative
        cumulative += w
        ranges.append((start, start + coverage * w))
    return tuple(ranges)


def equal_weights(num_variations: int) -> list[float]:
    """``[1/n] * n``, and ``[]`` for ``n < 1``, as GrowthBook's ``getEqualWeights``.

    >>> equal_weights(4)
    [0.25, 0.25, 0.25, 0.25]
    """
    if num_variations < 1:
        return []
    return [1 / num_variations] * num_variations


def growthbook_bucket_ranges(
    num_variations: int, coverage: float | None = 1.0, weights: Sequence[float] | None = None
) -> list[Range]:
    """GrowthBook's ``getBucketRanges``, fallbacks included.

    Coverage is clamped to [0, 1]; weights that are missing, of the wrong length, negative or not
    finite, or that do not sum to within [0.99, 1.01], are replaced by equal weights (the JS SDK
    skips the sign check; the Python SDK has it).

    >>> growthbook_bucket_ranges(2, 0.5)
    [(0.0, 0.25), (0.5, 0.75)]
    >>> growthbook_bucket_ranges(2, 1, [0.4, 0.1])
    [(0.0, 0.5), (0.5, 1.0)]
    """
    c = 1.0 if coverage is None else min(max(float(coverage), 0.0), 1.0)
    w: Sequence[float] = equal_weights(num_variations)
    if (
        weights is not None
        and len(weights) == num_variations
        and all(math.isfinite(x) and x >= 0 for x in weights)
        and 0.99 <= sum(weights) <= 1.01
    ):
        w = weights
    return list(bucket_ranges(w, c))


def in_range(n: float, bounds: Sequence[float]) -> bool:
    """``start <= n < end``."""
    return bounds[0] <= n < bounds[1]


def choose_variation(n: float, ranges: Sequence[Sequence[float]]) -> int:
    """The first range holding ``n``, or -1, as GrowthBook's ``chooseVariation``.

    >>> choose_variation(0.5, [(0, 0.5), (0.5, 0.5), (0.5, 1)])
    2
    """
    for i, bounds in enumerate(ranges):
        if bounds[0] <= n < bounds[1]:
            return i
    return -1


def growthbook_in_namespace(hash_value: str, namespace: tuple[str, float, float]) -> bool:
    """GrowthBook's ``inNamespace``: hash v1 of ``hash_value`` under seed ``"__" + name`` in [start, end).

    >>> growthbook_in_namespace("1", ("namespace1", 0.4, 1))
    True
    """
    name, start, end = namespace
    n = growthbook_hash("__" + name, hash_value, 1)
    return n is not None and start <= n < end
