"""The model router on loopback: a model server behind /api/v1/route/{key}/predict against the same server direct.

Two model servers run as ``splitlab serve-model`` does (``start_model_server``: one uvicorn
process each, access log off): the demo's good model (``train_demo_models``: StandardScaler +
LogisticRegression on 30 features) and its weak one, the shadow's challenger. ``splitlab serve``
(one worker, its access log off as the model servers' is, SQLite in a temporary directory, or a
database of its own on the PostgreSQL server of ``--database-url``, created and dropped by the
run) routes two experiments whose control is
the good model at weight 1: ``plain``, and ``shadowed``, which also copies every request
(``routing.shadow``, share 1, ``max_in_flight`` 64) to the weak model after the answer is sent.

The same load, closed loop with a fixed number of keep-alive connections, drives three targets:
``direct`` (``POST /predict`` of the good model server), ``router`` (``plain``) and ``shadow``
(``shadowed``). Each request sends one of the 171 held-out rows ``{"features": [...]}``; router
requests carry ``X-Splitlab-Unit-Id`` (the fastest form: the body is forwarded as it is) from a pool
of 10,000 units assigned (``/assign/batch``) before timing, and an sdk key. Every run is checked: no
non-2xx answer, and at the end /metrics must count every routed request ``ok`` (served by its
variant's model, no fallback). Each repeat runs the three
targets in turn, the order reversed on every other repeat so drift on the machine hits all
alike; the figures are medians over repeats, and the added latencies are medians of the paired
per-repeat differences (router minus direct, shadow minus router).

Goals (issue 17): added p50 <= 1 ms, throughput router/direct >= 0.70, and the shadow adds no client
latency beyond the noise (the spread of router minus direct over repeats).

The load generator is ``wrk`` (one thread, a Lua script for the POST bodies) when installed, else an
asyncio httpx client in a process of its own (much slower per request than wrk: it saturates a core
first, so its ratios understate the router's headroom). The CPU each process used during each run
(``/proc``: the router's process group, each model server; wrk's own through ``getrusage``) is
reported per request, to show how the machine's cores were shared.

    .venv/bin/python benchmarks/router_bench.py [--duration 10] [--repeats 3] [--connections 16] [--json]
        [--load-generator auto|wrk|httpx] [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Needs ``wrk`` for the preferred load generator (``apt-get install -y wrk``, as ``make bench-service`` does).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from service_bench import LUA, SPLITLAB, Server, log, new_key, postgres_database, require, wrk
from splitlab.service.model_server import RunningModelServer, start_model_server, train_demo_models

GOAL_ADDED_P50_MS = 1.0
GOAL_RATIO = 0.70
POOL = 10_000
TARGETS = ("direct", "router", "shadow")
EXPERIMENTS = {"router": "plain", "shadow": "shadowed"}
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

SCRIPT = Template("""
local bodies = {$bodies}
local pool, started, n = $pool, 0, 0
tid = 0
function setup(thread) started = started + 1; thread:set("tid", started) end
wrk.method = "POST"
wrk.path = "$path"
wrk.headers["Content-Type"] = "application/json"
$headers
function request()
  n = n + 1
  local k = n + tid * 7919
  if pool > 0 then wrk.headers["X-Splitlab-Unit-Id"] = string.format("u-%05d", k % pool) end
  return wrk.format(nil, nil, nil, bodies[k % #bodies + 1])
end
""")
DONE = "function done" + LUA.template.split("function done", 1)[1]
"""The summary line ``service_bench.wrk`` parses, as service_bench's own script writes it."""


@dataclass(frozen=True)
class Load:
    """What one target is sent: the base URL, path, headers and bodies, and the unit pool (0: no unit header)."""

    name: str
    url: str
    path: str
    headers: dict[str, str]
    bodies: list[str]
    pool: int

    def lua(self) -> str:
        headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in self.headers.items())
        bodies = ", ".join(f"'{b}'" for b in self.bodies)
        return SCRIPT.substitute(bodies=bodies, pool=self.pool, path=self.path, headers=headers) + DONE


@dataclass(frozen=True)
class _Upstream:
    """A model server seen as ``service_bench.wrk`` sees a server: a name, a base URL and its log's tail."""

    name: str
    server: RunningModelServer

    @property
    def url(self) -> str:
        return self.server.base_url

    def tail(self, lines: int = 40) -> str:
        self.server.log.seek(0)
        return "\n".join(self.server.log.read().decode(errors="replace").splitlines()[-lines:])


def cpu_seconds(*, group: int | None = None, pid: int | None = None) -> float:
    """User + system CPU seconds of a process group's processes (or of one process), all threads, from /proc."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or (pid is not None and int(entry.name) != pid):
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if group is None or int(fields[2]) == group:  # fields after the command: state ppid pgrp ...
                total += int(fields[11]) + int(fields[12])  # utime stime
    return total / _CLOCK_TICKS


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_load(load: Load, target: Any, folder: Path, args: argparse.Namespace, duration: int) -> dict[str, float]:
    """One closed-loop run against ``target``: wrk's summary (requests/s, p50 and p99 in ms), any generator."""
    if args.generator == "wrk":
        script = folder / f"{load.name}.lua"
        script.write_text(load.lua())
        return wrk(target, script, args, duration)
    config = {**load.__dict__, "connections": args.connections, "duration": duration}
    out = subprocess.run(
        [sys.executable, __file__, "--httpx-load", json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    )
    raw: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1].removeprefix("WRKJSON "))
    raw["rps"] = raw["requests"] / raw["duration_us"] * 1e6
    raw["p50_ms"], raw["p99_ms"] = raw["p50_us"] / 1e3, raw["p99_us"] / 1e3
    bad = f"{load.name} answered {raw['non2xx']:.0f} non-2xx of {raw['requests']:.0f} requests"
    require(raw["requests"] and not raw["non2xx"] and not raw["socket_errors"], f"{bad}; log:\n{target.tail()}")
    return raw


def httpx_load(config: dict[str, Any]) -> None:
    """The load generator without wrk: ``connections`` closed loops on one asyncio httpx client; prints wrk's line."""
    latencies: list[float] = []
    failures = {"non2xx": 0, "socket_errors": 0}

    async def loop(client: httpx.AsyncClient, index: int, deadline: float) -> None:
        n = 0
        headers = dict(config["headers"])
        while time.perf_counter() < deadline:
            n += 1
            k = n + index * 7919
            if config["pool"]:
                headers["X-Splitlab-Unit-Id"] = f"u-{k % config['pool']:05d}"
            start = time.perf_counter()
            try:
                body = config["bodies"][k % len(config["bodies"])]
                answer = await client.post(config["path"], content=body, headers=headers)
            except httpx.HTTPError:
                failures["socket_errors"] += 1
                continue
            latencies.append(time.perf_counter() - start)
            failures["non2xx"] += not 200 <= answer.status_code < 300

    async def main() -> float:
        limits = httpx.Limits(max_connections=config["connections"], max_keepalive_connections=config["connections"])
        headers = {"Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=config["url"], limits=limits, headers=headers, timeout=30) as client:
            start = time.perf_counter()
            deadline = start + config["duration"]
            await asyncio.gather(*(loop(client, i, deadline) for i in range(config["connections"])))
            return time.perf_counter() - start

    elapsed = asyncio.run(main())
    latencies.sort()
    p50, p99 = (latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e6 for q in (0.5, 0.99))
    summary = {"requests": len(latencies), "duration_us": int(elapsed * 1e6), **failures, "p50_us": p50, "p99_us": p99}
    print("WRKJSON " + json.dumps(summary))


def routed_spec(key: str, good: str, weak: str, *, shadow: bool) -> dict[str, Any]:
    """The control is the good model at weight 1; the weak challenger gets no traffic, only the shadow's copies."""
    spec: dict[str, Any] = {
        "key": key,
        "variants": [
            {"key": "control", "weight": 1.0, "payload": {"model": {"url": good, "name": "good"}}},
            {"key": "challenger", "weight": 0.0, "payload": {"model": {"url": weak, "name": "weak"}}},
        ],
        "routing": {"timeout_ms": 2000},
    }
    if shadow:
        spec["routing"]["shadow"] = {"variant": "challenger", "share": 1.0, "max_in_flight": 64}
    return spec


def set_up_router(url: str, admin: str, sdk: str, good: str, weak: str, row: str) -> None:
    with httpx.Client(base_url=f"{url}/api/v1", timeout=60, headers={"Authorization": f"Bearer {admin}"}) as client:
        for target, key in EXPERIMENTS.items():
            spec = routed_spec(key, good, weak, shadow=target == "shadow")
            client.put(f"/experiments/{key}", json=spec).raise_for_status()
            client.post(f"/experiments/{key}/start").raise_for_status()
            sdk_auth = {"Authorization": f"Bearer {sdk}"}
            for start in range(0, POOL, 1000):  # the unit pool, assigned before timing as returning units
                units = [{"unit_id": f"u-{i:05d}"} for i in range(start, min(start + 1000, POOL))]
                client.post(
                    "/assign/batch", json={"experiment": key, "units": units}, headers=sdk_auth
                ).raise_for_status()
            headers = {**sdk_auth, "X-Splitlab-Unit-Id": "u-00000"}
            answer = client.post(f"/route/{key}/predict", content=row, headers=headers)
            answer.raise_for_status()
            served = answer.headers.get("x-splitlab-model"), answer.json().get("model")
            require(served == ("good", "good"), f"{key}: served by {served}, not the good model: {answer.text}")


def router_counters(url: str, admin: str) -> dict[str, float]:
    """The router's counters on /metrics: requests by outcome, shadow calls by outcome, records dropped."""
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {admin}"}, timeout=60).text
    found: dict[str, float] = {}
    wanted = {"splitlab_router_requests": "outcome", "splitlab_router_shadow_calls": "outcome"}
    wanted["splitlab_router_records_dropped"] = "reason"
    for family in text_string_to_metric_families(text):
        label = wanted.get(family.name)
        for sample in family.samples if label is not None else ():
            if label is not None and sample.name.endswith("_total"):
                name = f"{family.name.removeprefix('splitlab_router_')}_{sample.labels[label]}"
                found[name] = found.get(name, 0.0) + sample.value
    return found


def bench(
    loads: dict[str, Load], targets: dict[str, Any], cpu: dict[str, Any], folder: Path, args: argparse.Namespace
) -> dict[str, Any]:
    for name in TARGETS:  # warm-up, not counted: assigns the router's unit pool, fills the connection pools
        run_load(loads[name], targets[name], folder, args, min(3, args.duration))
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in TARGETS}
    for repeat in range(args.repeats):
        for name in TARGETS if repeat % 2 == 0 else reversed(TARGETS):
            before = {process: measure() for process, measure in cpu.items()}
            before_children = children_cpu()
            result = run_load(loads[name], targets[name], folder, args, args.duration)
            requests = result["requests"]
            for process, measure in cpu.items():
                result[f"cpu_us_{process}"] = (measure() - before[process]) / requests * 1e6
            result["cpu_us_load"] = (children_cpu() - before_children) / requests * 1e6
            cpu_text = ", ".join(f"{p} {result[f'cpu_us_{p}']:.0f}" for p in (*cpu, "load"))
            log(
                f"  run {repeat + 1}/{args.repeats} {name:<7} {result['rps']:>8,.0f} req/s  "
                f"p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms  CPU us/request: {cpu_text}"
            )
            runs[name].append(result)
    out: dict[str, Any] = {}
    for name, results in runs.items():
        for field in ("rps", "p50_ms", "p99_ms", *(f"cpu_us_{p}" for p in (*cpu, "load"))):
            out[f"{name}_{field}"] = statistics.median(r[field] for r in results)
    for name, base in (("router", "direct"), ("shadow", "router"), ("shadow_vs_direct", "direct")):
        side = runs["shadow" if name == "shadow_vs_direct" else name]
        for q in ("p50", "p99"):
            deltas = [a[f"{q}_ms"] - b[f"{q}_ms"] for a, b in zip(side, runs[base], strict=True)]
            out[f"{name}_added_{q}_ms"] = statistics.median(deltas)
            out[f"{name}_added_{q}_ms_range"] = [min(deltas), max(deltas)]
        out[f"{name}_ratio"] = statistics.median(a["rps"] / b["rps"] for a, b in zip(side, runs[base], strict=True))
    out["cores"] = os.cpu_count()
    return out


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    generator = f"wrk -t{args.threads}" if args.generator == "wrk" else "asyncio httpx (one process)"
    print(
        f"Model router on loopback, {generator}, {args.connections} connections closed loop, {args.duration} s runs, "
        f"medians of {args.repeats} repeats; {r['database']} store; {r['cores']} cores"
    )
    print(f"  {'':<28} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7}  CPU us/request: router  good  weak  load")
    labels = {"direct": "model server, direct", "router": "router -> model server", "shadow": "router + shadow 100 %"}
    for name, label in labels.items():
        cpu = "  ".join(f"{r[f'{name}_cpu_us_{p}']:>5.0f}" for p in ("router", "good", "weak", "load"))
        figures = f"{r[f'{name}_rps']:>8,.0f} {r[f'{name}_p50_ms']:>7.2f} {r[f'{name}_p99_ms']:>7.2f}"
        print(f"  {label:<28} {figures}  {cpu:>37}")
    verdict = "PASS" if r["router_added_p50_ms"] <= GOAL_ADDED_P50_MS else "FAIL"
    print(
        f"  added by the router: p50 {r['router_added_p50_ms']:+.2f} ms (goal <= {GOAL_ADDED_P50_MS:g}: {verdict}), "
        f"p99 {r['router_added_p99_ms']:+.2f} ms"
    )
    verdict = "PASS" if r["router_ratio"] >= GOAL_RATIO else "FAIL"
    print(f"  throughput router/direct: {r['router_ratio']:.2f} (goal >= {GOAL_RATIO:.2f}: {verdict})")
    for name, label in (("router", "router - direct"), ("shadow", "shadow - router")):
        ranges = ", ".join(
            f"{q} {r[f'{name}_added_{q}_ms']:+.2f} ms ({_range(r[f'{name}_added_{q}_ms_range'])})"
            for q in ("p50", "p99")
        )
        print(f"  {label}, median of the paired repeats (their range): {ranges}; throughput {r[f'{name}_ratio']:.2f}")
    shadow = ", ".join(f"{k.removeprefix('shadow_calls_')} {v:,.0f}" for k, v in r["counters"].items() if "shadow" in k)
    dropped = sum(v for k, v in r["counters"].items() if k.startswith("records_dropped"))
    print(f"  shadow calls: {shadow or 'none'}; router records dropped: {dropped:,.0f}")


def _range(bounds: list[float]) -> str:
    return f"{bounds[0]:+.2f} to {bounds[1]:+.2f}"


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--httpx-load":
        httpx_load(json.loads(sys.argv[2]))
        return 0
    try:
        return run()
    except (RuntimeError, subprocess.CalledProcessError, httpx.HTTPError) as exc:
        detail = "".join(getattr(exc, stream, None) or "" for stream in ("stdout", "stderr"))
        log(f"router_bench FAILED: {exc}\n{detail}")
        return 1


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--load-generator", choices=("auto", "wrk", "httpx"), default="auto")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server to run on (the run creates and drops a database of its own there), "
        "e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test; default SQLite in a temporary directory",
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    args.generator = args.load_generator
    if args.generator == "auto":
        args.generator = "wrk" if shutil.which("wrk") else "httpx"
        if args.generator == "httpx":
            log("wrk is not installed (`apt-get install -y wrk`): the load comes from asyncio httpx, slower.")
    elif args.generator == "wrk" and shutil.which("wrk") is None:
        log("wrk is not installed: `apt-get install -y wrk` (Debian package wrk), then run again.")
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, stopping the servers

    with tempfile.TemporaryDirectory(prefix="router-bench-") as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        paths = train_demo_models(folder / "models")
        rows = json.loads(paths["holdout"].read_text())["rows"]
        bodies = [json.dumps({"features": row}, separators=(",", ":")) for row in rows]
        good = _Upstream("good model server", stack.enter_context(start_model_server(paths["good"], name="good")))
        weak = _Upstream("weak model server", stack.enter_context(start_model_server(paths["weak"], name="weak")))
        database = f"sqlite:///{folder / 'bench.db'}"
        if args.database_url is not None:  # dropped after the router stops: the stack unwinds in reverse
            database = stack.enter_context(
                postgres_database(args.database_url, f"splitlab_bench_{secrets.token_hex(4)}")
            )
        admin, sdk = new_key("admin", database), new_key("sdk", database)
        router = stack.enter_context(
            Server("router", [SPLITLAB, "serve", "--no-access-log", "--database", database], 1, folder)
        )
        log(f"model servers {good.url} {weak.url}, router {router.url}; setting up the experiments")
        set_up_router(router.url, admin, sdk, good.server.url, weak.server.url, bodies[0])
        loads = {"direct": Load("direct", good.url, "/predict", {}, bodies, 0)}
        for name, key in EXPERIMENTS.items():
            path = f"/api/v1/route/{key}/predict"
            loads[name] = Load(name, router.url, path, {"Authorization": f"Bearer {sdk}"}, bodies, POOL)
        targets = {"direct": good, "router": router, "shadow": router}
        assert router.proc is not None
        group = router.proc.pid  # its workers, if any, are in its process group
        cpu = {
            "router": lambda: cpu_seconds(group=group),
            "good": lambda: cpu_seconds(pid=good.server.process.pid),
            "weak": lambda: cpu_seconds(pid=weak.server.process.pid),
        }
        result = bench(loads, targets, cpu, folder, args)
        time.sleep(2)  # the shadow calls still in flight and the prediction log's last round
        result["counters"] = router_counters(router.url, admin)
        failed = {k: v for k, v in result["counters"].items() if k.startswith("requests_") and k != "requests_ok"}
        require(not failed, f"routed requests not answered by their model: {failed}\n{router.tail()}")

    result.update(
        database="postgresql" if args.database_url else "sqlite",
        generator=args.generator,
        connections=args.connections,
        duration=args.duration,
        repeats=args.repeats,
        goal_met=result["router_added_p50_ms"] <= GOAL_ADDED_P50_MS and result["router_ratio"] >= GOAL_RATIO,
    )
    if not args.json:
        report(result, args)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
