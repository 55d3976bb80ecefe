"""The router's upstream client against httpx.AsyncClient, calling the same model server, in one run.

Why the router does not use httpx (docs/router.md): this prints the client-side CPU and wall time per
call of ``splitlab.service.router.upstream.UpstreamPool`` and of ``httpx.AsyncClient`` posting the same
body to the demo's good model server (``start_model_server``, a process of its own), sequentially and
with ``--concurrency`` calls in flight, alternating the two clients over ``--repeats`` rounds so drift on
the machine hits both, and the ratio httpx / pool of the medians. Answers are checked equal.

    .venv/bin/python benchmarks/upstream_bench.py [--calls 2000] [--repeats 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from splitlab.service.model_server import start_model_server, train_demo_models
from splitlab.service.router.upstream import UpstreamPool

Post = Callable[[], Awaitable[bytes]]


async def _measure(post: Post, calls: int, concurrency: int) -> tuple[float, float]:
    """Client CPU and wall time per call, in µs."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await post()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(calls)))
    return (time.process_time() - cpu) / calls * 1e6, (time.perf_counter() - wall) / calls * 1e6


async def _run(url: str, body: bytes, *, calls: int, repeats: int, concurrency: int) -> dict[str, dict[str, float]]:
    pool = UpstreamPool(max_connections=64)
    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=64), trust_env=False)
    headers = {"content-type": "application/json"}

    async def via_pool() -> bytes:
        return (await pool.post(url, body, timeout=10)).body

    async def via_httpx() -> bytes:
        return (await client.post(url, content=body, headers=headers, timeout=10)).content

    assert await via_pool() == await via_httpx()  # the same answer either way
    results: dict[str, dict[str, list[float]]] = {"pool": {}, "httpx": {}}
    try:
        for repeat in range(repeats):
            order = [("pool", via_pool), ("httpx", via_httpx)]
            for name, post in order if repeat % 2 == 0 else order[::-1]:
                for label, inflight in (("sequential", 1), (f"{concurrency} in flight", concurrency)):
                    await _measure(post, min(200, calls), inflight)  # warm the connections
                    cpu, wall = await _measure(post, calls, inflight)
                    results[name].setdefault(f"{label} cpu", []).append(cpu)
                    results[name].setdefault(f"{label} wall", []).append(wall)
    finally:
        await pool.close()
        await client.aclose()
    return {name: {k: statistics.median(v) for k, v in figures.items()} for name, figures in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        models = train_demo_models(folder)
        row = json.loads(Path(models["holdout"]).read_text())["rows"][0]
        body = json.dumps({"features": row}).encode()
        with start_model_server(models["good"], name="good") as server:
            figures = asyncio.run(
                _run(server.url, body, calls=args.calls, repeats=args.repeats, concurrency=args.concurrency)
            )
    print(f"client cost per call (µs), medians of {args.repeats} repeats of {args.calls:,} calls; model server apart")
    print(f"  {'':28} {'pool':>8} {'httpx':>8} {'httpx/pool':>11}")
    for key in figures["pool"]:
        pool, other = figures["pool"][key], figures["httpx"][key]
        print(f"  {key:28} {pool:8.0f} {other:8.0f} {other / pool:10.1f}x")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
