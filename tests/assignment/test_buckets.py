"""Bucket ranges, choice of variation and namespaces against GrowthBook's cross-SDK vectors."""

from __future__ import annotations

import json
from bisect import bisect_right
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from splitlab.assignment import (
    bucket_ranges,
    choose_variation,
    equal_weights,
    growthbook_bucket_ranges,
    growthbook_in_namespace,
)

GROWTHBOOK = json.loads((Path(__file__).parent / "data" / "growthbook_cases.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", GROWTHBOOK["getBucketRange"], ids=lambda c: c[0])
def test_bucket_ranges_reproduce_growthbook(case: list[Any]) -> None:
    _, (num_variations, coverage, weights), expected = case
    got = growthbook_bucket_ranges(num_variations, coverage, weights)
    assert len(got) == len(expected)
    # GrowthBook's own SDK tests round to 6 places: 0.2 * 0.2 is 0.04000000000000001 in every language.
    assert np.allclose(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("case", GROWTHBOOK["chooseVariation"], ids=lambda c: c[0])
def test_choose_variation_reproduces_growthbook(case: list[Any]) -> None:
    _, n, ranges, expected = case
    assert choose_variation(n, ranges) == expected


@pytest.mark.parametrize("case", GROWTHBOOK["inNamespace"], ids=lambda c: c[0])
def test_in_namespace_reproduces_growthbook(case: list[Any]) -> None:
    _, unit, (name, start, end), expected = case
    assert growthbook_in_namespace(unit, (name, start, end)) is expected


def test_equal_weights() -> None:
    assert equal_weights(-1) == []
    assert equal_weights(0) == []
    assert equal_weights(3) == [1 / 3] * 3


def test_bucket_ranges_equal_the_installed_sdk() -> None:
    core = pytest.importorskip("growthbook.core")
    rng = np.random.default_rng(5)
    for _ in range(500):
        k = int(rng.integers(2, 6))
        weights = rng.dirichlet(np.ones(k)).tolist()
        coverage = float(rng.choice([0.0, 0.05, 0.5, 0.77, 1.0, rng.random()]))
        assert growthbook_bucket_ranges(k, coverage, weights) == [
            tuple(r) for r in core.getBucketRanges(k, coverage, weights)
        ]
        assert list(bucket_ranges(weights, coverage)) == [tuple(r) for r in core.getBucketRanges(k, coverage, weights)]


def test_bisect_on_starts_equals_growthbook_linear_scan() -> None:
    """The engine's O(log k) look-up picks exactly GrowthBook's first matching range, zero weights included."""
    rng = np.random.default_rng(11)
    for _ in range(300):
        k = int(rng.integers(2, 7))
        weights = rng.dirichlet(np.ones(k))
        weights[rng.random(k) < 0.3] = 0.0
        if weights.sum() == 0:
            weights[0] = 1.0
        weights = (weights / weights.sum()).tolist()
        coverage = float(rng.random())
        ranges = bucket_ranges(weights, coverage)
        starts = [r[0] for r in ranges]
        for n in [*rng.random(50).tolist(), *starts, *(r[1] for r in ranges), 0.0]:
            if not 0 <= n < 1:
                continue
            i = bisect_right(starts, n) - 1
            fast = i if n < ranges[i][1] else -1
            assert fast == choose_variation(n, ranges)


def test_raising_coverage_only_extends_ranges() -> None:
    weights = [0.2, 0.3, 0.5]
    low, high = bucket_ranges(weights, 0.3), bucket_ranges(weights, 0.8)
    for (s_low, e_low), (s_high, e_high) in zip(low, high, strict=True):
        assert s_low == s_high
        assert e_low <= e_high
