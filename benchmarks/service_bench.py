"""The HTTP service on loopback: POST /api/v1/assign against a bare FastAPI floor, and batched event ingestion.

Assign: ``splitlab serve`` (SQLite in a temporary directory, or a database of its own on the
PostgreSQL server of ``--database-url``, created and dropped by the run) and a bare FastAPI app
whose ``async def`` endpoint at the same path returns a constant JSON dict without reading the
body (``bare_app`` below) both run under uvicorn with the same settings: the same
number of workers and uvicorn's defaults for loop, protocol and logging (``auto`` picks uvloop and
httptools; ``splitlab serve`` calls ``uvicorn.run`` with those defaults, the bare app gets the CLI's
same defaults). ``wrk`` drives both with the same Lua script (POST bodies with changing unit ids,
sdk key header), runs interleaved bare, splitlab, bare, splitlab ... so drift on the machine hits
both alike; the figures are medians and the ratio splitlab/bare of requests/s. Three scenarios:
"returning" (a pool of 10,000 ids, all assigned once before timing) and "new" (every request a
never-seen id) of the running 2-variant experiment ``checkout`` (goal >= 0.70), and "new after a
weight change": never-seen ids of ``reweighted``, an experiment whose weights went from 50/50 to
30/70 while it ran (through the admin API's PUT, before timing), so stored assignments may differ
from the hash and ``/assign`` reads them (goal >= 0.50).

Ingest: pre-encoded batches of events (unique ids) posted to /api/v1/events by K keep-alive
clients in threads; every event must be inserted (goal >= 20,000 events/s). For context, the same
rows written in-process by ``store.events.log_many`` with the same batch size (ratio http/in-process).

    .venv/bin/python benchmarks/service_bench.py [--workers 1] [--duration 10] [--repeats 3] [--json]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--skip-ingest]

With ``--database-url`` the run creates the databases ``splitlab_bench_<random>`` (and ``..._direct``
for the in-process writes) on that server and drops them at the end; the database named in the URL
is only used to connect.

Needs ``wrk`` (``apt-get install -y wrk``).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from string import Template
from typing import Any

import httpx
from fastapi import FastAPI

GOAL_RATIO = 0.70
GOAL_RATIO_AFTER_CHANGE = 0.50
GOAL_INGEST = 20_000
POOL = 10_000
HOST = "127.0.0.1"
SPLITLAB = str(Path(sys.executable).parent / "splitlab")
EXPERIMENT = {
    "key": "checkout",
    "variants": [
        {"key": "control", "payload": {"color": "grey"}},
        {"key": "treatment", "payload": {"color": "blue"}},
    ],
}
REWEIGHTED = {"key": "reweighted", "variants": [{"key": "control"}, {"key": "treatment"}]}
REWEIGHTS = ((0.5, 0.5), (0.3, 0.7))
"""The weights of ``reweighted`` when started, then after the change (units with buckets in [0.3, 0.5) move)."""
SCENARIOS = ("returning", "new", "new_after_change")
CONSTANT = {"experiment": "checkout", "unit_id": "u", "variant": "control", "payload": {"color": "grey"}}
CONSTANT |= {"enrolled": True, "bucket": 0.5, "reason": "assigned"}
bare_app = FastAPI()


@bare_app.post("/api/v1/assign")
async def bare_assign() -> dict[str, Any]:
    return CONSTANT


@bare_app.get("/api/v1/ready")
async def bare_ready() -> dict[str, str]:
    return {"status": "ready"}


LUA = Template("""
local pool, prefix, experiment, started, n = $pool, "$prefix", "$experiment", 0, 0
tid = 0
function setup(thread) started = started + 1; thread:set("tid", started) end
wrk.method = "POST"
wrk.path = "/api/v1/assign"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $key"
function request()
  n = n + 1
  local id
  if pool > 0 then id = string.format("u-%05d", (n + tid * 7919) % pool) else id = prefix .. tid .. "-" .. n end
  return wrk.format(nil, nil, nil, '{"experiment":"' .. experiment .. '","unit_id":"' .. id .. '"}')
end
function done(s, latency, requests)
  local e = s.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"non2xx":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d}\\n', s.requests, s.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
""")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Server:
    """A uvicorn process group, stopped (terminate, then kill) on exit whatever happens."""

    def __init__(self, name: str, argv: list[str], workers: int, folder: Path) -> None:
        port = free_port()
        self.name, self.logfile, self.url = name, folder / f"{name}.log", f"http://{HOST}:{port}"
        self.argv = [*argv, "--host", HOST, "--port", str(port), "--workers", str(workers)]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        with self.logfile.open("wb") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self.wait_ready(self.proc)
        except BaseException:
            self.__exit__()
            raise
        return self

    def wait_ready(self, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            require(proc.poll() is None, f"{self.name} exited with {proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/api/v1/ready", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.tail()}")

    def __exit__(self, *_: object) -> None:
        if self.proc is None:
            return
        group, deadline = self.proc.pid, time.monotonic() + 15  # uvicorn's supervisor and its workers
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
            while time.monotonic() < deadline:
                self.proc.poll()  # reap the supervisor: a zombie still belongs to the group
                os.killpg(group, 0)  # ProcessLookupError once every process of the group is gone
                time.sleep(0.1)
            os.killpg(group, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])


def wrk(server: Server, script: Path, args: argparse.Namespace, duration: int) -> dict[str, float]:
    argv = f"wrk -t{args.threads} -c{args.connections} -d{duration}s -T30s --latency -s".split()
    out = subprocess.run(
        [*argv, str(script), server.url], capture_output=True, text=True, timeout=duration + 60, check=True
    )
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRKJSON ")), "")
    require(line, f"no summary from wrk:\n{out.stdout}\n{out.stderr}")
    raw: dict[str, float] = json.loads(line.removeprefix("WRKJSON "))
    raw["rps"] = raw["requests"] / raw["duration_us"] * 1e6
    raw["p50_ms"], raw["p99_ms"] = raw["p50_us"] / 1e3, raw["p99_us"] / 1e3
    bad = f"{server.name} answered {raw['non2xx']:.0f} non-2xx of {raw['requests']:.0f} requests"
    require(raw["requests"] and not raw["non2xx"], f"{bad}; server log:\n{server.tail()}")
    return raw


def require(condition: object, message: str) -> None:
    if not condition:
        raise RuntimeError(message)


def new_key(role: str, database: str) -> str:
    argv = [SPLITLAB, "keys", "create", "--role", role, "--database", database]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()[0]


def set_up_experiment(url: str, admin: str, sdk: str) -> None:
    with httpx.Client(base_url=f"{url}/api/v1", timeout=60) as client:
        auth, sdk_auth = {"Authorization": f"Bearer {admin}"}, {"Authorization": f"Bearer {sdk}"}
        client.put("/experiments/checkout", json=EXPERIMENT, headers=auth).raise_for_status()
        client.post("/experiments/checkout/start", headers=auth).raise_for_status()
        ids = [f"u-{i:05d}" for i in range(POOL)]
        for start in range(0, POOL, 1000):  # the returning pool, assigned once before timing
            units = [{"unit_id": u} for u in ids[start : start + 1000]]
            answer = client.post("/assign/batch", json={"experiment": "checkout", "units": units}, headers=sdk_auth)
            answer.raise_for_status()
            require(all(a["enrolled"] for a in answer.json()["assignments"]), answer.text)
        one = client.post("/assign", json={"experiment": "checkout", "unit_id": "u-00042"}, headers=sdk_auth).json()
        payload = {"control": {"color": "grey"}, "treatment": {"color": "blue"}}.get(one.get("variant"))
        require(one.get("enrolled") and payload is not None and one.get("payload") == payload, f"/assign: {one}")
        reweight(client, auth, sdk_auth)


def reweight(client: httpx.Client, auth: dict[str, str], sdk_auth: dict[str, str]) -> None:
    """Start ``reweighted``, enrol units, change its weights; the units enrolled before keep their variants."""
    spec = json.loads(json.dumps(REWEIGHTED))
    for variant, weight in zip(spec["variants"], REWEIGHTS[0], strict=True):
        variant["weight"] = weight
    client.put("/experiments/reweighted", json=spec, headers=auth).raise_for_status()
    client.post("/experiments/reweighted/start", headers=auth).raise_for_status()
    units = {"experiment": "reweighted", "units": [{"unit_id": f"before-{i}"} for i in range(1000)]}
    before = client.post("/assign/batch", json=units, headers=sdk_auth)
    before.raise_for_status()
    time.sleep(1)  # past the recorder's interval: the enrolments are written
    for variant, weight in zip(spec["variants"], REWEIGHTS[1], strict=True):
        variant["weight"] = weight
    client.put("/experiments/reweighted", json=spec, headers=auth).raise_for_status()
    after = client.post("/assign/batch", json=units, headers=sdk_auth)
    after.raise_for_status()
    kept = [a["variant"] for a in before.json()["assignments"]] == [a["variant"] for a in after.json()["assignments"]]
    require(kept, "units enrolled before the weight change were moved")


def bench_assign(bare: Server, ours: Server, sdk: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    returning = folder / "returning.lua"
    returning.write_text(LUA.substitute(pool=POOL, prefix="", experiment="checkout", key=sdk))
    for server in (bare, ours):  # warm-up, not counted
        wrk(server, returning, args, min(3, args.duration))
    runs: dict[str, list[dict[str, float]]] = {"bare": [], **{f"assign_{s}": [] for s in SCENARIOS}}
    for repeat in range(args.repeats):
        for scenario in SCENARIOS:
            script = returning
            if scenario != "returning":  # ids never seen by any run
                script = folder / f"{scenario}-{repeat}.lua"
                experiment = "checkout" if scenario == "new" else "reweighted"
                prefix = f"n{repeat}-{secrets.token_hex(4)}-"
                script.write_text(LUA.substitute(pool=0, prefix=prefix, experiment=experiment, key=sdk))
            for name, server in (("bare", bare), (f"assign_{scenario}", ours)):
                result = wrk(server, script, args, args.duration)
                rps, p50, p99, errors = (result[k] for k in ("rps", "p50_ms", "p99_ms", "socket_errors"))
                log(
                    f"  run {repeat + 1}/{args.repeats} {name:<24} {rps:>9,.0f} req/s  p50 {p50:.2f} ms  "
                    f"p99 {p99:.2f} ms  socket errors {errors:.0f}"
                )
                runs[name].append(result)
    out: dict[str, Any] = {}
    for name, results in runs.items():
        for field in ("rps", "p50_ms", "p99_ms"):
            out[f"{name}_{field}"] = statistics.median(r[field] for r in results)
        out[f"{name}_socket_errors"] = sum(r["socket_errors"] for r in results)
    return out


def make_events(total: int, seed: str, ids: str) -> list[dict[str, Any]]:
    """Events with the SDK's ids (time-ordered UUIDv7, what ``Client.track`` sends) or random ones."""
    from splitlab.sdk import new_event_id

    start = datetime(2024, 5, 1, tzinfo=UTC)
    return [
        {
            "event_id": new_event_id() if ids == "sdk" else str(uuid.uuid5(uuid.NAMESPACE_URL, f"{seed}/{k}")),
            "unit_id": f"u-{(k * 7919) % 200_000:06d}",
            "name": "purchase",
            "value": float(k % 997) / 10,
            "timestamp": (start + timedelta(milliseconds=37 * k)).isoformat(),
            "properties": {"sku": "A1"},
        }
        for k in range(total)
    ]


def post_events(url: str, sdk: str, bodies: list[bytes], clients: int, expected: int) -> float:
    """Seconds for ``clients`` keep-alive connections to post ``bodies``; every event must be inserted."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {sdk}"}
    inserted, failures = [0] * clients, []
    barrier = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        conn = http.client.HTTPConnection(HOST, int(url.rsplit(":", 1)[1]), timeout=120)
        barrier.wait()
        try:
            for body in bodies[index::clients]:
                conn.request("POST", "/api/v1/events", body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                if answer.status != 200:
                    failures.append(f"HTTP {answer.status}: {data[:500]!r}")
                    return
                inserted[index] += json.loads(data)["inserted"]
        except (OSError, http.client.HTTPException) as exc:
            failures.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    require(not failures and sum(inserted) == expected, f"events: {sum(inserted):,} of {expected:,}; {failures[:3]}")
    return elapsed


def bench_ingest(
    url: str, sdk: str, batches: list[list[dict[str, Any]]], database: str, args: argparse.Namespace
) -> tuple[float, float]:
    """Events/s over HTTP and in-process (a store of its own), alternating in ``repeats`` rounds."""
    from splitlab.storage import Event, open_store

    bodies = [json.dumps({"events": b}).encode() for b in batches]
    rows = [[Event(**{**e, "timestamp": datetime.fromisoformat(e["timestamp"])}) for e in b] for b in batches]
    seconds = {"http": 0.0, "in_process": 0.0}
    with open_store(database) as store:
        for r in range(args.repeats):
            part = slice(r * len(batches) // args.repeats, (r + 1) * len(batches) // args.repeats)
            count = sum(len(b) for b in rows[part])
            for side in ("http", "in_process") if r % 2 == 0 else ("in_process", "http"):
                if side == "http":
                    seconds[side] += post_events(url, sdk, bodies[part], args.clients, count)
                    continue
                start = time.perf_counter()
                inserted = sum(store.events.log_many(batch).inserted for batch in rows[part])
                seconds[side] += time.perf_counter() - start
                require(inserted == count, f"in-process: {inserted:,} of {count:,} inserted")
    total = sum(len(b) for b in batches)
    return total / seconds["http"], total / seconds["in_process"]


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"POST /api/v1/assign on loopback, uvicorn x {args.workers} worker(s), wrk -t{args.threads} "
        f"-c{args.connections} -d{args.duration}s, medians of {args.repeats} interleaved runs"
    )
    print(f"  {'':<36} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6} {'sock.err':>8}")
    rows = {
        "bare FastAPI (floor)": "bare",
        "splitlab, returning": "assign_returning",
        "splitlab, new": "assign_new",
        "splitlab, new after a weight change": "assign_new_after_change",
    }
    for label, n in rows.items():
        print(
            f"  {label:<36} {r[f'{n}_rps']:>9,.0f} {r[f'{n}_p50_ms']:>8.2f} {r[f'{n}_p99_ms']:>8.2f} "
            f"{r[f'{n}_rps'] / r['bare_rps']:>6.2f} {r[f'{n}_socket_errors']:>8.0f}"
        )
    for n, goal in (("returning", GOAL_RATIO), ("new", GOAL_RATIO), ("new_after_change", GOAL_RATIO_AFTER_CHANGE)):
        verdict = "PASS" if r[f"ratio_{n}"] >= goal else "FAIL"
        print(f"  goal splitlab/bare >= {goal:.2f} ({n.replace('_', ' ')} units): {r[f'ratio_{n}']:.2f} {verdict}")
    if "ingest_events_per_s" not in r:
        return
    print(
        f"\nPOST /api/v1/events, {args.events:,} events ({args.event_ids} ids) in batches of {args.batch_size:,}, "
        f"{args.clients} clients, "
        f"alternating with in-process in {args.repeats} rounds"
    )
    verdict = "PASS" if r["ingest_events_per_s"] >= GOAL_INGEST else "FAIL"
    print(f"  over HTTP              {r['ingest_events_per_s']:>9,.0f} events/s  goal >= {GOAL_INGEST:,}: {verdict}")
    print(f"  in-process log_many    {r['in_process_events_per_s']:>9,.0f} events/s")
    print(f"  ratio http/in-process  {r['ingest_ratio_to_in_process']:>9.2f}")


def main() -> int:
    try:
        return run()
    except (RuntimeError, subprocess.CalledProcessError, httpx.HTTPError) as exc:
        detail = "".join(getattr(exc, stream, None) or "" for stream in ("stdout", "stderr"))
        log(f"service_bench FAILED: {exc}\n{detail}")
        return 1


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument("--clients", type=int, default=4, help="concurrent ingestion clients")
    parser.add_argument(
        "--event-ids",
        choices=("sdk", "random"),
        default="sdk",
        help="the SDK's time-ordered ids (what Client.track sends) or random ones",
    )
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server to run on (the run creates and drops databases of its own there), "
        "e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test; default SQLite in a temporary directory",
    )
    parser.add_argument("--skip-ingest", action="store_true", help="time /assign only")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        log("wrk is not installed: `apt-get install -y wrk` (Debian package wrk), then run again.")
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, stopping the servers

    with tempfile.TemporaryDirectory(prefix="service-bench-") as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        database, direct = f"sqlite:///{folder / 'bench.db'}", f"sqlite:///{folder / 'direct.db'}"
        if args.database_url is not None:  # dropped after the servers stop: the stack unwinds in reverse
            name = f"splitlab_bench_{secrets.token_hex(4)}"
            database = stack.enter_context(postgres_database(args.database_url, name))
            if not args.skip_ingest:
                direct = stack.enter_context(postgres_database(args.database_url, f"{name}_direct"))
        admin, sdk = new_key("admin", database), new_key("sdk", database)
        bare_argv = [sys.executable, "-m", "uvicorn", "service_bench:bare_app", "--app-dir", str(Path(__file__).parent)]
        bare = stack.enter_context(Server("bare", bare_argv, args.workers, folder))
        ours = stack.enter_context(
            Server("splitlab", [SPLITLAB, "serve", "--database", database], args.workers, folder)
        )
        log(f"servers up (bare {bare.url}, splitlab {ours.url}); setting up the experiments")
        set_up_experiment(ours.url, admin, sdk)
        result = bench_assign(bare, ours, sdk, folder, args)
        bare.__exit__()  # idle from here on
        if not args.skip_ingest:
            events = make_events(args.events, secrets.token_hex(4), args.event_ids)
            batches = [events[i : i + args.batch_size] for i in range(0, len(events), args.batch_size)]
            log("ingesting events over HTTP and in-process, alternating")
            result["ingest_events_per_s"], result["in_process_events_per_s"] = bench_ingest(
                ours.url, sdk, batches, direct, args
            )

    result.update({f"ratio_{s}": result[f"assign_{s}_rps"] / result["bare_rps"] for s in SCENARIOS})
    result.update(
        database="postgresql" if args.database_url else "sqlite",
        workers=args.workers,
        connections=args.connections,
        duration=args.duration,
        repeats=args.repeats,
    )
    result["assign_goal_met"] = min(result["ratio_returning"], result["ratio_new"]) >= GOAL_RATIO
    result["after_change_goal_met"] = result["ratio_new_after_change"] >= GOAL_RATIO_AFTER_CHANGE
    if not args.skip_ingest:
        result.update(
            ingest_ratio_to_in_process=result["ingest_events_per_s"] / result["in_process_events_per_s"],
            event_ids=args.event_ids,
            ingest_goal_met=result["ingest_events_per_s"] >= GOAL_INGEST,
        )
    if not args.json:
        report(result, args)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))
    return 0


@contextlib.contextmanager
def postgres_database(server_url: str, name: str) -> Iterator[str]:
    """A new database ``name`` on the PostgreSQL server of ``server_url``, dropped on exit: its URL."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    base = make_url(server_url)
    require(base.get_backend_name() == "postgresql", f"--database-url {server_url!r} is not a PostgreSQL URL")
    engine = create_engine(base, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:  # FORCE: connections a killed server left behind do not keep it
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
