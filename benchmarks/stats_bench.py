"""splitlab.analyze vs tea-tasting's Experiment.analyze on the same 1,000,000-row frame.

Three metrics, as the issue asks: a proportion (conversion), a mean with CUPED (revenue per
user, pre-period revenue as covariate) and a ratio (orders per session). Both libraries get the
same pandas frame, in one process, alternating runs; the figure is the ratio of median times.

    .venv/bin/python benchmarks/stats_bench.py [--rows 1000000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import tea_tasting as tt

import splitlab
from splitlab.datasets import make_checkout_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    data = make_checkout_data(args.rows, seed=1)
    experiment = tt.Experiment(
        variant="variant",
        conversion=tt.Mean("converted"),
        revenue_per_user=tt.Mean("revenue", "pre_revenue"),
        orders_per_session=tt.RatioOfMeans("orders", "sessions"),
    )

    def run_splitlab() -> object:
        return splitlab.analyze(
            data,
            control="control",
            metrics={
                "conversion": "converted",
                "revenue_per_user": "revenue:mean",
                "orders_per_session": "orders/sessions",
            },
            covariates={"revenue_per_user": "pre_revenue"},
        )

    def run_tea_tasting() -> object:
        return experiment.analyze(data, control="control")

    timings: dict[str, list[float]] = {"splitlab": [], "tea-tasting": []}
    runners = {"splitlab": run_splitlab, "tea-tasting": run_tea_tasting}
    for name, runner in runners.items():  # warm-up: imports, caches
        runner()
        del name
    for _ in range(args.repeats):
        for name, runner in runners.items():
            start = time.perf_counter()
            runner()
            timings[name].append(time.perf_counter() - start)

    ours, theirs = statistics.median(timings["splitlab"]), statistics.median(timings["tea-tasting"])
    print(f"rows: {args.rows:,}; metrics: proportion, mean + CUPED, ratio; repeats: {args.repeats}")
    print(f"splitlab.analyze          median {ours * 1000:8.1f} ms")
    print(f"tea-tasting analyze       median {theirs * 1000:8.1f} ms")
    print(f"ratio tea-tasting / splitlab: {theirs / ours:.2f}x (> 1 means splitlab is faster)")


if __name__ == "__main__":
    main()
