"""POST /api/v1/assign inside the app, without a server: splitlab's ASGI app against the bare FastAPI floor.

``service_bench.py`` measures the whole request (uvicorn, httptools, the access log, the socket),
whose shared cost hides what the app itself spends and whose figures drift with the machine. This
calls each app's ASGI callable directly, one request after another on one event loop (uvloop),
and times the serving thread's CPU (``time.thread_time``): the background recorder's writes and
other processes do not count, so the figures move little from run to run. Short runs of both apps
are interleaved; the minimum over runs is the app's cost with the least interference (noise only
ever adds), the median shows the spread.

The splitlab app is ``create_app`` on a SQLite file with one running 2-variant experiment; the bare
app is ``service_bench.bare_app`` (an ``async def`` endpoint returning a constant dict).
"Returning" units were assigned before timing; "new" units are never-seen ids (each one queued for
recording).

    .venv/bin/python benchmarks/service_app_bench.py [--requests 3000] [--runs 25] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from fastapi import FastAPI

from service_bench import EXPERIMENT, bare_app
from splitlab.service.app import create_app
from splitlab.service.settings import Settings
from splitlab.storage import open_store

PATH = "/api/v1/assign"


async def call(app: FastAPI, method: str, path: str, body: bytes, key: str, state: dict[str, Any]) -> list[Any]:
    """One request through ``app``'s ASGI interface; the messages it sent."""
    headers = [
        (b"host", b"bench"),
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {key}".encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": dict(state),
    }
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:  # nothing more to read: a client that waits for the answer
            await asyncio.Event().wait()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def check(sent: list[Any], what: str) -> dict[str, Any]:
    if not sent or sent[0].get("status") != 200:
        raise RuntimeError(f"{what}: {sent}")
    answer: dict[str, Any] = json.loads(sent[-1]["body"])
    return answer


async def bench(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    url = f"sqlite:///{folder / 'bench.db'}"
    with open_store(url) as store:
        _, admin = store.keys.create(role="admin", name="bench-admin", actor="bench")
        _, sdk = store.keys.create(role="sdk", name="bench-sdk", actor="bench")
    app = create_app(Settings(database_url=url))
    state: dict[str, Any] = {}
    pool = args.requests
    async with app.router.lifespan_context(app):
        check(
            await call(app, "PUT", "/api/v1/experiments/checkout", json.dumps(EXPERIMENT).encode(), admin, state), "PUT"
        )
        check(await call(app, "POST", "/api/v1/experiments/checkout/start", b"", admin, state), "start")
        for i in range(pool):  # the returning units, assigned once
            check(await call(app, "POST", PATH, b'{"experiment":"checkout","unit_id":"r-%d"}' % i, sdk, state), "warm")
        bare_key = "none"  # the bare endpoint reads no header
        times: dict[str, list[float]] = {"bare": [], "returning": [], "new": []}
        for run in range(args.runs):
            for name, spent in times.items():
                target, key = (bare_app, bare_key) if name == "bare" else (app, sdk)
                prefix = b"n-%d-" % run if name == "new" else b"r-"
                bodies = [b'{"experiment":"checkout","unit_id":"%s%d"}' % (prefix, i) for i in range(pool)]
                gc.collect()
                started = time.thread_time()
                for body in bodies:
                    sent = await call(target, "POST", PATH, body, key, state)
                spent.append((time.thread_time() - started) / pool * 1e6)
                answer = check(sent, name)
                if name != "bare" and not answer.get("enrolled"):
                    raise RuntimeError(f"{name}: {answer}")
                await asyncio.sleep(0.01)  # let the recorder's thread run between runs
    out: dict[str, Any] = {}
    for name, values in times.items():
        out[f"{name}_min_us"] = min(values)
        out[f"{name}_median_us"] = statistics.median(values)
    for name in ("returning", "new"):
        out[f"{name}_over_bare_min"] = out[f"{name}_min_us"] / out["bare_min_us"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per run")
    parser.add_argument("--runs", type=int, default=25, help="interleaved runs of each app")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="service-app-bench-") as tmp:
        result = uvloop.run(bench(args, Path(tmp)))
    if not args.json:
        print(
            f"POST {PATH} inside the app (ASGI calls, no server), serving thread's CPU per request, "
            f"{args.runs} interleaved runs of {args.requests:,} requests"
        )
        print(f"  {'':<24} {'min us':>8} {'median us':>10} {'min / bare':>11}")
        for label, name in (
            ("bare FastAPI (floor)", "bare"),
            ("splitlab, returning", "returning"),
            ("splitlab, new", "new"),
        ):
            ratio = 1.0 if name == "bare" else result[f"{name}_over_bare_min"]
            print(f"  {label:<24} {result[f'{name}_min_us']:>8.1f} {result[f'{name}_median_us']:>10.1f} {ratio:>11.2f}")
    print(json.dumps({k: round(v, 3) for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
