"""Batched event ingestion: splitlab's EventRepository.log_many vs a bare driver executemany.

Goal (issue 4): >= 100,000 events/s on SQLite for batches of 10,000. The comparison is the floor
any Python code pays for the same work: the same Event objects turned into rows (json.dumps of
the properties, the time as text) and written by one bare ``executemany`` of the same
``INSERT ... ON CONFLICT (event_id) DO NOTHING`` into a table of the same shape (copied from the
migrated store: columns, unique key, index), with the same connection settings, one transaction
per batch. Runs alternate between the two, batch by batch, so machine load hits both alike; the
figure is the ratio. PostgreSQL runs the same way (psycopg executemany as the floor) when a
server is reachable.

    .venv/bin/python benchmarks/ingest_bench.py [--batches 10] [--batch-size 10000] [--postgres-url URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from splitlab.storage import Event, Store, StoreUnavailableError, open_store
from splitlab.storage.database import SQLITE_PRAGMAS

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
INSERT_COLUMNS = "event_id, unit_id, name, value, timestamp, properties, ingested_at"
NAMES = ("page_view", "add_to_cart", "checkout_started", "purchase", "refund")


def make_batches(count: int, size: int, seed: str) -> list[list[Event]]:
    start = datetime(2024, 5, 1, tzinfo=UTC)
    batches = []
    for b in range(count):
        batch = []
        for i in range(size):
            k = b * size + i
            batch.append(
                Event(
                    event_id=f"{seed}-{k:012d}",
                    unit_id=f"user-{(k * 7919) % 200_000:06d}",
                    name=NAMES[k % len(NAMES)],
                    value=float(k % 997) / 10,
                    timestamp=start + timedelta(milliseconds=37 * k),
                    properties={"platform": ("ios", "android", "web")[k % 3], "currency": "EUR"},
                )
            )
        batches.append(batch)
    return batches


def floor_rows(batch: list[Event], *, text_times: bool) -> list[tuple[object, ...]]:
    now = datetime.now(UTC)
    stamp = now.replace(tzinfo=None).isoformat(" ", "microseconds") if text_times else now
    rows: list[tuple[object, ...]] = []
    for e in batch:
        when = e.timestamp.replace(tzinfo=None).isoformat(" ", "microseconds") if text_times else e.timestamp
        props = None if e.properties is None else json.dumps(e.properties)
        rows.append((e.event_id, e.unit_id, e.name, e.value, when, props, stamp))
    return rows


def race(
    label: str, batches: list[list[Event]], ours: Callable[[list[Event]], int], floor: Callable[[list[Event]], int]
) -> tuple[float, float]:
    times: dict[str, list[float]] = {"splitlab": [], "floor": []}
    for index, batch in enumerate(batches):
        order = [("splitlab", ours), ("floor", floor)]
        for name, run in order if index % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            inserted = run(batch)
            times[name].append(time.perf_counter() - start)
            assert inserted == len(batch), f"{label} {name}: {inserted} of {len(batch)} inserted"
    size = len(batches[0])
    ours_rate = size / statistics.median(times["splitlab"])
    floor_rate = size / statistics.median(times["floor"])
    return ours_rate, floor_rate


def resend_rate(store: Store, batch: list[Event]) -> float:
    start = time.perf_counter()
    result = store.events.log_many(batch)
    elapsed = time.perf_counter() - start
    assert result.inserted == 0
    return len(batch) / elapsed


def bench_sqlite(batches: list[list[Event]], folder: Path) -> None:
    store = open_store(f"sqlite:///{folder / 'splitlab.db'}")
    with store.engine.connect() as conn:
        ddl = [
            sql
            for (sql,) in conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE tbl_name = 'events' AND sql IS NOT NULL ORDER BY type DESC"
            )
        ]
    bare = sqlite3.connect(folder / "floor.db", isolation_level=None)
    for pragma in SQLITE_PRAGMAS:  # the same connection settings as the store
        bare.execute(pragma)
    for statement in ddl:
        bare.execute(statement)
    sql = f"INSERT INTO events ({INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"

    def floor(batch: list[Event]) -> int:
        rows = floor_rows(batch, text_times=True)
        bare.execute("BEGIN IMMEDIATE")
        cursor = bare.executemany(sql, rows)
        bare.execute("COMMIT")
        return cursor.rowcount

    ours, base = race("sqlite", batches, lambda b: store.events.log_many(b).inserted, floor)
    again = resend_rate(store, batches[0])
    bare.close()
    store.close()
    size = len(batches[0])
    print(f"SQLite, {len(batches)} batches of {size:,} events (median batch):")
    verdict = "met" if ours >= 100_000 else "NOT met"
    print(f"  splitlab log_many      {ours:>12,.0f} events/s   goal >= 100,000/s: {verdict}")
    print(f"  bare sqlite3 (floor)   {base:>12,.0f} events/s")
    print(f"  ratio splitlab/floor   {ours / base:>12.2f}")
    print(f"  re-sending a batch     {again:>12,.0f} events/s (all duplicates, nothing written)")


def bench_postgres(batches: list[list[Event]], url: str) -> None:
    schema = f"ingest_bench_{secrets.token_hex(4)}"
    admin = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        sep = "&" if "?" in url else "?"
        store = open_store(f"{url}{sep}options=-csearch_path%3D{schema}")
        with psycopg.connect(admin, options=f"-csearch_path={schema}") as bare:
            bare.execute("CREATE TABLE floor_events (LIKE events INCLUDING ALL)")
            bare.commit()
            sql = (
                f"INSERT INTO floor_events ({INSERT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (event_id) DO NOTHING"
            )

            def floor(batch: list[Event]) -> int:
                rows = floor_rows(batch, text_times=False)
                with bare.cursor() as cursor:
                    cursor.executemany(sql, rows)
                    count = cursor.rowcount
                bare.commit()
                return count

            ours, base = race("postgresql", batches, lambda b: store.events.log_many(b).inserted, floor)
        store.close()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    print(f"PostgreSQL, {len(batches)} batches of {len(batches[0]):,} events (median batch):")
    print(f"  splitlab log_many      {ours:>12,.0f} events/s")
    print(f"  bare psycopg (floor)   {base:>12,.0f} events/s")
    print(f"  ratio splitlab/floor   {ours / base:>12.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--postgres-url", default=os.environ.get("SPLITLAB_TEST_POSTGRES_URL", DEFAULT_POSTGRES))
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    batches = make_batches(args.batches, args.batch_size, seed=secrets.token_hex(3))
    with tempfile.TemporaryDirectory() as folder:
        bench_sqlite(batches, Path(folder))
    if args.no_postgres:
        return
    try:
        bench_postgres(batches, args.postgres_url)
    except (psycopg.OperationalError, StoreUnavailableError) as exc:
        print(f"PostgreSQL skipped: not reachable at {args.postgres_url} ({exc})")


if __name__ == "__main__":
    main()
