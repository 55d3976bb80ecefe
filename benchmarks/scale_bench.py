"""The aggregation query at 1 M, 10 M and 50 M events: DuckDB against Spark local, time per event at each size.

Issue 19's evidence that the one aggregation query scales: the same ``aggregate_experiment`` call,
the same seeded Parquet files, read by DuckDB (an in-memory connection over ``read_parquet`` views,
one thread per core) and by Spark in local mode (``local[*]``, this process's JVM on every core).

The data: one experiment, 2 variants, units = events / 10 (5 % of the events belong to units that
were never exposed), one exposure row per unit spread over 14 days with a country column and a
multiple-variant flag on 0.5 % of them; events ``purchase`` (a lognormal value, treatment buys a
little more often), ``session_start`` and ``page_view`` (no value), from 14 days before a unit's
exposure to 21 days after, so the windows, the CUPED pre-period and the unexposed units all have
rows to drop. Written with numpy and pyarrow, vectorised, as Parquet parts of 5 M events, and kept
in ``--data-dir`` for the next run (one folder per size and seed).

The query is the one ``splitlab analyze`` runs: five metrics (binary with a CUPED covariate, a sum
capped at its 99th percentile with a CUPED covariate, a count, a ratio of counts, the 90th
percentile of revenue), segmented by country, with cumulative cells per day of exposure.

Timing: the Spark session is started once (its start is printed apart), then one warm-up
aggregation on each engine at the smallest size, not counted, so the JVM's start and JIT and
DuckDB's first touch are out of the figures. Then, per size, ``--repeats`` runs alternating the
engines; the median is reported. Registering the Parquet files as tables is not timed (Spark lists
the files and reads their footers there). Every run's statistics are checked: both engines must
agree on every cell to a relative 1e-9 (the order statistics of quantile metrics too), or the
script stops with the difference.

Printed per size: events, seconds per engine, nanoseconds per event, Spark / DuckDB; then the
growth of the time per event from the smallest size to the largest (linear cost: ~1.0).

    .venv/bin/python benchmarks/scale_bench.py [--sizes 1e6 1e7 5e7] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

DAY_US = 86_400_000_000
BASE_US = 1_709_251_200_000_000  # 2024-03-01 00:00 UTC
PART_EVENTS = 5_000_000
ROW_GROUP = 1_000_000
COUNTRIES = ["US", "FR", "DE", "GB", "BR"]
COUNTRY_SHARES = [0.4, 0.2, 0.15, 0.15, 0.1]
EVENT_NAMES = ["purchase", "session_start", "page_view"]
EVENT_SHARES = [0.15, 0.35, 0.5]
SOURCE_CONFIG = {
    "exposures": {"table": "exposures", "experiment": "experiment_key", "unit": "unit_id", "variant": "variant",
                  "timestamp": "first_exposed_at", "segments": ["country"], "multiple_variants": "multiple_variants",
                  "one_row_per_unit": True},
    "events": {"table": "events", "unit": "unit_id", "name": "name", "value": "value", "timestamp": "timestamp"},
}  # fmt: skip
# Parquet bytes per event measured on this generator (about 13); the margin covers Spark's spill and checkpoints.
DISK_BYTES_PER_EVENT = 40
REL = 1e-9


def _unit_ids(indices: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise("u", pc.cast(pa.array(indices), pa.string()), "")


def _timestamps(micros: np.ndarray) -> pa.Array:
    return pa.array(micros, type=pa.timestamp("us", tz="UTC"))


def generate(folder: Path, events: int, seed: int) -> None:
    """Write ``exposures.parquet`` and ``events/part-*.parquet`` for ``events`` events (see the module docstring)."""
    rng = np.random.default_rng(seed)
    units = events // 10
    treatment = rng.random(units) < 0.5
    exposed_at = BASE_US + rng.integers(0, 14 * DAY_US, units)
    exposures = pa.table({
        "experiment_key": pa.array(np.full(units, "checkout")),
        "unit_id": _unit_ids(np.arange(units)),
        "variant": pc.take(pa.array(["control", "treatment"]), pa.array(treatment.astype(np.int8))),
        "first_exposed_at": _timestamps(exposed_at),
        "country": pc.take(pa.array(COUNTRIES), pa.array(rng.choice(len(COUNTRIES), units, p=COUNTRY_SHARES))),
        "multiple_variants": pa.array(rng.random(units) < 0.005),
    })  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(exposures, folder / "exposures.parquet", row_group_size=ROW_GROUP)
    del exposures

    # Activity is skewed (lognormal weights per unit) and 5 % of the owners were never exposed.
    owners = int(units * 1.05)
    weights = np.cumsum(rng.lognormal(0.0, 1.0, owners))
    (folder / "events").mkdir()
    for part, start in enumerate(range(0, events, PART_EVENTS)):
        size = min(PART_EVENTS, events - start)
        owner = np.searchsorted(weights, rng.random(size) * weights[-1])
        exposed = owner < units
        anchor = np.where(exposed, exposed_at[np.minimum(owner, units - 1)], BASE_US + 7 * DAY_US)
        name = rng.choice(len(EVENT_NAMES), size, p=EVENT_SHARES)
        # The effect to find: 2 % of treatment units' page views become purchases.
        lift = exposed & treatment[np.minimum(owner, units - 1)] & (name == 2) & (rng.random(size) < 0.02)
        name[lift] = 0
        value = np.round(rng.lognormal(3.0, 1.0, size), 2)
        table = pa.table({
            "unit_id": _unit_ids(owner),
            "name": pc.take(pa.array(EVENT_NAMES), pa.array(name)),
            "value": pa.array(value, mask=name != 0),
            "timestamp": _timestamps(anchor + rng.integers(-14 * DAY_US, 21 * DAY_US, size)),
        })  # fmt: skip
        pq.write_table(table, folder / "events" / f"part-{part:05d}.parquet", row_group_size=ROW_GROUP)


def dataset(data_dir: Path, events: int, seed: int) -> Path:
    """The folder of the data set for ``events`` and ``seed``, generated unless a complete one is there."""
    folder = data_dir / f"events-{events}-seed-{seed}"
    done = folder / ".complete"
    if done.exists():
        print(f"  data: {folder} (kept from an earlier run)")
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    generate(folder, events, seed)
    done.touch()
    size = sum(path.stat().st_size for path in folder.rglob("*.parquet"))
    print(f"  data: generated in {time.perf_counter() - start:.1f} s, {size / 1e6:,.0f} MB of Parquet in {folder}")
    return folder


def metrics() -> list[Any]:
    """The metric set ``splitlab analyze`` would run for a checkout experiment, one of each kind that costs work."""
    from splitlab.specs.model import MetricDefinition

    return [
        MetricDefinition.model_validate(definition)
        for definition in (
            {"name": "conversion", "kind": "binary", "event": "purchase", "window_days": 7,
             "covariate": {"pre_window_days": 14}},
            {"name": "revenue", "kind": "sum", "event": "purchase", "window_days": 7,
             "capping": {"type": "percentile", "upper": 0.99}, "covariate": {"pre_window_days": 14}},
            {"name": "sessions", "kind": "count", "event": "session_start", "window_days": 7},
            {"name": "orders_per_session", "kind": "ratio", "window_days": 7,
             "numerator": {"event": "purchase", "aggregation": "count"},
             "denominator": {"event": "session_start", "aggregation": "count"}},
            {"name": "revenue_p90", "kind": "quantile", "event": "purchase", "quantile": 0.9, "window_days": 7},
        )
    ]  # fmt: skip


def _numbers(statistic: Any) -> Iterator[float]:
    if dataclasses.is_dataclass(statistic):
        for field in dataclasses.fields(statistic):
            yield from _numbers(getattr(statistic, field.name))
    elif isinstance(statistic, tuple):
        for item in statistic:
            yield from _numbers(item)
    else:
        yield float(statistic)


def check_agreement(duck: Any, spark: Any, events: int) -> int:
    """Stop the script unless both engines' aggregates agree on every cell; returns the numbers compared.

    Quantile statistics are compared field by field as well: n, level, first rank and every order
    statistic in the band (values read from the same rows, so equal up to float formatting).
    """
    for name in ("variant_units", "multiple_exposure_units", "days", "segments", "cell_units"):
        if getattr(duck, name) != getattr(spark, name):
            msg = f"{events:,} events: {name} differ: DuckDB {getattr(duck, name)!r}, Spark {getattr(spark, name)!r}"
            raise SystemExit(msg)
    if duck.cells.keys() != spark.cells.keys():
        raise SystemExit(f"{events:,} events: the cells differ: {set(duck.cells) ^ set(spark.cells)}")
    compared = 0
    for key, by_metric in duck.cells.items():
        if by_metric.keys() != spark.cells[key].keys():
            raise SystemExit(
                f"{events:,} events, cell {key}: metrics {sorted(by_metric)} vs {sorted(spark.cells[key])}"
            )
        for metric, statistic in by_metric.items():
            ours, theirs = list(_numbers(statistic)), list(_numbers(spark.cells[key][metric]))
            same = len(ours) == len(theirs) and all(
                math.isclose(a, b, rel_tol=REL, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b))
                for a, b in zip(ours, theirs, strict=False)
            )
            if not same:
                msg = f"{events:,} events, cell {key}, {metric}: DuckDB {statistic} != Spark {spark.cells[key][metric]}"
                raise SystemExit(msg)
            compared += len(ours)
    return compared


def start_spark(driver_memory: str) -> tuple[Any, float]:
    """splitlab's own Spark session (``spark_session``) on ``local[*]``, with ``driver_memory`` for the JVM.

    In local mode the driver is the only executor, so its heap holds every task. The heap size must
    reach the JVM's command line: pyspark takes it from ``PYSPARK_SUBMIT_ARGS`` when it starts the
    JVM, so it is set before splitlab first touches Spark.
    """
    os.environ["PYSPARK_SUBMIT_ARGS"] = f"--driver-memory {driver_memory} pyspark-shell"
    from splitlab.analysis.spark import LOCAL_MASTER, spark_session

    start = time.perf_counter()
    session = spark_session(LOCAL_MASTER, app_name="splitlab-scale-bench")
    session.sql("SELECT 1").collect()
    elapsed = time.perf_counter() - start
    heap = session.sparkContext.getConf().get("spark.driver.memory")
    if heap != driver_memory:
        raise SystemExit(f"spark.driver.memory == {heap!r}, wanted {driver_memory!r}: a session was already running")
    return session, elapsed


def _free_memory_bytes() -> int:
    with Path("/proc/meminfo").open(encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def check_room(sizes: list[int], data_dir: Path, driver_memory: str) -> None:
    """Say how much disk and memory there is, and stop before a size that cannot fit."""
    data_dir.mkdir(parents=True, exist_ok=True)
    disk = shutil.disk_usage(data_dir).free
    memory = _free_memory_bytes()
    heap = int(driver_memory.rstrip("gG")) * 2**30 if driver_memory[-1] in "gG" else 0
    need = sum(size * DISK_BYTES_PER_EVENT for size in sizes)
    print(
        f"room: {disk / 2**30:.0f} GiB free on {data_dir} (these sizes need at most ~{need / 2**30:.1f} GiB); "
        f"{memory / 2**30:.1f} GiB of memory available (Spark's heap: {driver_memory}; DuckDB spills past 80 %)"
    )
    if need > disk:
        raise SystemExit(f"--sizes need ~{need / 2**30:.1f} GiB of disk, {data_dir} has {disk / 2**30:.1f} GiB free")
    if heap and heap > memory:
        raise SystemExit(f"--driver-memory {driver_memory} is more than the {memory / 2**30:.1f} GiB available")


def _load() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7], help="events per data set")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per engine and size (median)")
    parser.add_argument("--quick", action="store_true", help="smoke run: sizes 1e5 and 1e6, 1 repeat")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/splitlab-scale-bench"))
    parser.add_argument("--driver-memory", default="8g", help="Spark driver heap (local mode: all of Spark)")
    args = parser.parse_args()
    sizes = sorted({int(size) for size in ([1e5, 1e6] if args.quick else args.sizes)})
    repeats = 1 if args.quick else args.repeats
    if sizes[0] < 1000 or repeats < 1:
        raise SystemExit(f"--sizes min == {sizes[0]}, must be >= 1000; --repeats == {repeats}, must be >= 1")

    import duckdb

    from splitlab.analysis.sql import Source, aggregate_experiment
    from splitlab.analysis.warehouse import register_parquet

    cores = os.cpu_count() or 1
    print(f"{cores} cores, load average {_load()} (1/5/15 min) at the start; sizes {sizes}, repeats {repeats}")
    check_room(sizes, args.data_dir, args.driver_memory)
    folders = {}
    for size in sizes:
        print(f"{size:,} events:")
        folders[size] = dataset(args.data_dir, size, args.seed)

    spark, spark_start = start_spark(args.driver_memory)
    print(f"Spark session started in {spark_start:.1f} s (local[*], driver memory {args.driver_memory}; not timed)")
    source, metric_list = Source.from_config(SOURCE_CONFIG), metrics()

    def run(connection: Any) -> Any:
        return aggregate_experiment(
            connection, experiment_key="checkout", metrics=metric_list, source=source, segments=["country"], by_day=True
        )

    def timed(runner: Callable[[], Any]) -> tuple[float, Any]:
        start = time.perf_counter()
        result = runner()
        return time.perf_counter() - start, result

    rows = []
    for index, size in enumerate(sizes):
        tables = {"exposures": folders[size] / "exposures.parquet", "events": folders[size] / "events"}
        duck = duckdb.connect(config={"threads": cores})
        register_parquet(duck, tables)
        register_parquet(spark, tables)
        engines: dict[str, Callable[[], Any]] = {"duckdb": partial(run, duck), "spark": partial(run, spark)}
        if index == 0:
            warm = {name: timed(runner)[0] for name, runner in engines.items()}
            print(
                f"warm-up at {size:,} events (not counted): DuckDB {warm['duckdb']:.2f} s, Spark {warm['spark']:.2f} s"
            )
        times: dict[str, list[float]] = {name: [] for name in engines}
        compared = 0
        for repeat in range(repeats):
            # Alternate which engine goes first, so neither always finds the page cache warmed by the other.
            order = list(engines) if repeat % 2 == 0 else list(reversed(engines))
            results = {}
            for name in order:
                seconds, results[name] = timed(engines[name])
                times[name].append(seconds)
            compared = check_agreement(results["duckdb"], results["spark"], size)
        duck.close()
        duck_s, spark_s = statistics.median(times["duckdb"]), statistics.median(times["spark"])
        print(
            f"  {size:,} events: DuckDB {duck_s:.2f} s, Spark {spark_s:.2f} s (runs: "
            f"{', '.join(f'{t:.2f}' for t in times['duckdb'])} / {', '.join(f'{t:.2f}' for t in times['spark'])}); "
            f"agree ({compared:,} numbers, rel {REL:g}); load {_load()}"
        )
        rows.append((size, duck_s, spark_s))

    spark.stop()
    print()
    print(
        "metrics: binary + CUPED, sum capped at p99 + CUPED, count, ratio, p90; segment: country; by_day; "
        f"{cores} cores"
    )
    print("| events | DuckDB s | Spark s | DuckDB ns/event | Spark ns/event | Spark / DuckDB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size, duck_s, spark_s in rows:
        print(
            f"| {size:,} | {duck_s:.2f} | {spark_s:.2f} | {duck_s / size * 1e9:,.0f} | {spark_s / size * 1e9:,.0f} "
            f"| {spark_s / duck_s:.2f} |"
        )
    (small, duck_small, spark_small), (large, duck_large, spark_large) = rows[0], rows[-1]
    growth_duck = (duck_large / large) / (duck_small / small)
    growth_spark = (spark_large / large) / (spark_small / small)
    print(
        f"growth of the time per event from {small:,} to {large:,} events (linear cost: ~1.0): "
        f"DuckDB {growth_duck:.2f}, Spark {growth_spark:.2f}"
    )
    print(f"both engines agree at every size (rel {REL:g}); load average at the end {_load()}")


if __name__ == "__main__":
    main()
