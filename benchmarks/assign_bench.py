"""splitlab.assign vs the GrowthBook Python SDK's run() on one targeted 3-variant experiment; batch throughput.

The experiment: weights 50/25/25, coverage 90 %, targeting ``country in [US, CA, GB]`` and
``app_version >= 2.1.0`` (GrowthBook: ``{"country": {"$in": [...]}, "app_version": {"$vgte": "2.1.0"}}``).
The same units and attributes go to both libraries, in one process, alternating runs; the figure is
the ratio of median times per call.

GrowthBook is timed two ways, both as its docs show them for a server: a client created per unit
(``GrowthBook(attributes=...).run(experiment)``, one client per request) and one client reused with
``set_attributes`` (the fastest way to call it; the goal is measured against this one). splitlab is
timed on its default hash (version 1) and on its GrowthBook-compatible mode, whose assignments are
checked to equal GrowthBook's on every unit.

Batch: ``assign_batch`` on 1,000,000 ids, untargeted and targeted (attribute columns as lists).

    .venv/bin/python benchmarks/assign_bench.py [--units 20000] [--batch 1000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable

import numpy as np
from growthbook import Experiment, GrowthBook

from splitlab.assignment import Condition, ExperimentPlan, Targeting, Variant, assign, assign_batch

GOAL_RATIO = 5.0
GOAL_BATCH = 2_000_000


def make_units(n: int, seed: int = 1) -> tuple[list[str], list[dict[str, str]]]:
    rng = np.random.default_rng(seed)
    countries = rng.choice(["US", "CA", "GB", "FR", "DE"], n).tolist()
    versions = rng.choice(["2.0.9", "2.1.0", "2.3.4", "2.10.1", "3.0.0"], n).tolist()
    ids = [f"user-{i:08d}" for i in range(n)]
    attributes = [{"country": c, "app_version": v} for c, v in zip(countries, versions, strict=True)]
    return ids, attributes


def make_plan(hash_version: str) -> ExperimentPlan:
    return ExperimentPlan(
        key="rec-algo",
        seed="rec-algo",
        variants=(Variant("control", 0.5), Variant("popular", 0.25), Variant("ml", 0.25)),
        coverage=0.9,
        hash_version=hash_version,
        targeting=Targeting(
            include=(
                Condition("country", "in", ["US", "CA", "GB"]),
                Condition("app_version", "version_gte", "2.1.0"),
            )
        ),
    )


GB_EXPERIMENT = Experiment(
    key="rec-algo",
    variations=["control", "popular", "ml"],
    weights=[0.5, 0.25, 0.25],
    coverage=0.9,
    hashVersion=2,
    condition={"country": {"$in": ["US", "CA", "GB"]}, "app_version": {"$vgte": "2.1.0"}},
)


def seconds_per_call(run: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("growthbook").setLevel(logging.ERROR)

    ids, attributes = make_units(args.units)
    v1, gb_mode = make_plan("1"), make_plan("growthbook-v2")
    pairs = list(zip(ids, attributes, strict=True))

    def splitlab_v1() -> list[object]:
        return [assign(v1, u, a) for u, a in pairs]

    def splitlab_gb() -> list[object]:
        return [assign(gb_mode, u, a) for u, a in pairs]

    def growthbook_per_unit() -> list[object]:
        return [GrowthBook(attributes={"id": u, **a}).run(GB_EXPERIMENT) for u, a in pairs]

    reused = GrowthBook(attributes={})

    def growthbook_reused() -> list[object]:
        out: list[object] = []
        for u, a in pairs:
            reused.set_attributes({"id": u, **a})
            out.append(reused.run(GB_EXPERIMENT))
        return out

    # The GrowthBook-compatible mode must agree with the SDK on every unit.
    ours, theirs = splitlab_gb(), growthbook_reused()
    mismatches = sum(
        (a.variation_index if a.enrolled else -1) != (r.variationId if r.inExperiment else -1)  # type: ignore[attr-defined]
        for a, r in zip(ours, theirs, strict=True)
    )
    enrolled = sum(r.inExperiment for r in theirs)  # type: ignore[attr-defined]

    runners = {
        "splitlab assign (hash v1)": splitlab_v1,
        "splitlab assign (growthbook-v2 mode)": splitlab_gb,
        "GrowthBook run(), client reused": growthbook_reused,
        "GrowthBook run(), client per unit": growthbook_per_unit,
    }
    timings: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, runner in runners.items():
            timings[name].append(seconds_per_call(runner, len(pairs)))
    per_call = {name: statistics.median(t) for name, t in timings.items()}

    print(f"Per-call assignment, {args.units:,} units, targeted 3-variant experiment, median of {args.repeats} runs")
    print(f"  units enrolled: {enrolled:,}; growthbook-v2 mode vs GrowthBook SDK mismatches: {mismatches}")
    for name, seconds in per_call.items():
        print(f"  {name:<40} {seconds * 1e6:8.2f} µs/call")
    base = per_call["splitlab assign (hash v1)"]
    for gb in ("GrowthBook run(), client reused", "GrowthBook run(), client per unit"):
        ratio = per_call[gb] / base
        print(f"  ratio {gb} / splitlab v1: {ratio:6.1f}x")
    gb_ratio = per_call["GrowthBook run(), client reused"] / per_call["splitlab assign (growthbook-v2 mode)"]
    print(f"  ratio GrowthBook reused / splitlab growthbook-v2 mode: {gb_ratio:6.1f}x")
    goal = per_call["GrowthBook run(), client reused"] / base
    verdict = "met" if goal >= GOAL_RATIO else "MISSED"
    print(f"  goal splitlab >= {GOAL_RATIO:.0f}x faster than the reused client: {verdict}")

    batch_ids, batch_attributes = make_units(args.batch, seed=2)
    columns = {
        "country": [a["country"] for a in batch_attributes],
        "app_version": [a["app_version"] for a in batch_attributes],
    }
    untargeted = ExperimentPlan(key="rec-algo", seed="rec-algo", variants=v1.variants)
    cases = {
        "untargeted, hash v1": (untargeted, None),
        "targeted, hash v1": (v1, columns),
        "targeted, growthbook-v2 mode": (gb_mode, columns),
    }
    print(f"\nBatch assignment of {args.batch:,} units (assign_batch), best of {args.repeats}")
    for name, (plan, cols) in cases.items():
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            assign_batch(plan, batch_ids, cols)
            best = min(best, time.perf_counter() - start)
        rate = args.batch / best
        verdict = "met" if rate >= GOAL_BATCH else "MISSED"
        print(f"  {name:<32} {best:6.3f} s  {rate / 1e6:6.2f} M units/s  (goal >= 2 M/s: {verdict})")


if __name__ == "__main__":
    main()
