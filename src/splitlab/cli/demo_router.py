"""``splitlab demo-router``: the model router's tutorial, live, on loopback, in a minute or two.

Two scikit-learn classifiers are trained (:func:`splitlab.service.model_server.train_demo_models`)
and served by model servers in processes of their own; ``splitlab serve`` routes to them. Two
canaries run at once: ``model-upgrade`` ramps the good model against the weak one (the current
model, served cleanly), ``risky-model`` ramps the weak model, served slowly and failing a share of
its requests, against the good one. Simulated users send rows of the held-out data through the
router and report each row's true label a moment later; the monitor
(:func:`splitlab.operations.monitoring.monitor_once`), run every few seconds on the same SQLite
file, moves each canary, and the demo prints its timeline as it happens: every figure comes from the
store or from the router's answers. The steps are held for seconds rather than the hours a real
canary would wait (``min_step_minutes``), so the whole story fits in a terminal session.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from splitlab.cli._common import user_errors

if TYPE_CHECKING:
    import httpx

    from splitlab.operations.monitoring import RunOutcome
    from splitlab.service.model_server import RunningModelServer
    from splitlab.storage import Store

UPGRADE = "model-upgrade"
RISKY = "risky-model"
CONTROL, CHALLENGER = "current", "candidate"
REQUESTS_PER_UNIT = 2
FEEDBACK_SHARE = 0.8  # the share of requests whose true label comes back, a moment later
MODEL_MS = 10.0  # every model server's added latency, a real model's compute (the two models' own differ by 0.2 ms)
SLOW_MS = 150.0  # the risky challenger's, instead
FAILURE_RATE = 0.15  # and the share of its requests answered 500
TIMEOUT_MS = 1000.0  # generous: a loaded laptop, not the model, should never time a call out
CACHE_SECONDS = 0.5  # how long the router trusts what it read of an experiment (SPLITLAB_CACHE_SECONDS)

_METRICS = """\
# The router records these events per routed unit (splitlab.operations.routing).
metrics:
  - name: model-error-rate
    description: Share of a unit's requests its variant's own model failed (5xx, timeout, dropped, breaker open).
    kind: mean
    event: prediction_error
    direction: lower
  - name: model-latency-ms
    description: A unit's mean latency of the answers it was served, in ms (a fallback's included).
    kind: mean
    event: prediction
    direction: lower
  - name: model-accuracy
    description: Share of a unit's predictions that matched the label its feedback gave.
    kind: mean
    event: prediction_correct
"""

_SPEC = """\
key: {key}
description: {description}
unit: user_id
variants:
  - key: {control}
    weight: {control_weight}
    payload: {{model: {{url: "{control_url}", name: {control_model}, timeout_ms: {timeout_ms}}}}}
  - key: {challenger}
    weight: {challenger_weight}
    payload: {{model: {{url: "{challenger_url}", name: {challenger_model}, timeout_ms: {timeout_ms}}}}}
metrics:
  goal: [model-accuracy]
  guardrails:
    - {{metric: model-error-rate, max_degradation: 0.05}}
    - {{metric: model-latency-ms, max_degradation: 1.0}}
    - {{metric: model-accuracy, max_degradation: 0.02}}
analysis: {{method: sequential, sequential: msprt}}
routing:
  fallback: control
  breaker: {{failures: 5, pause_seconds: 5}}
  canary:
    variant: {challenger}
    steps: {steps}
    min_step_minutes: {min_step_minutes}
    min_units_per_step: {min_units_per_step}
"""


@dataclass(frozen=True, slots=True)
class Pace:
    """How long the demo holds each canary step, and how often the monitor looks."""

    steps: tuple[float, ...]
    min_step_minutes: float
    min_units_per_step: int
    monitor_seconds: float
    users: int


FULL = Pace(steps=(0.1, 0.25, 0.5, 1.0), min_step_minutes=0.2, min_units_per_step=20, monitor_seconds=2.0, users=24)
FAST = Pace(steps=(0.1, 0.5, 1.0), min_step_minutes=0.05, min_units_per_step=10, monitor_seconds=1.0, users=12)


@dataclass(slots=True)
class _Traffic:
    """What the simulated users sent and saw, from the router's answers."""

    units: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    fallbacks: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    feedback: Counter[str] = field(default_factory=Counter)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _router(database_url: str, log_path: Path, *, timeout: float = 60.0) -> Iterator[str]:
    """``splitlab serve`` in a subprocess on a free loopback port; yields its base URL; stops it on exit."""
    import httpx

    port = _free_port()
    env = {**os.environ, "SPLITLAB_DATABASE_URL": database_url, "SPLITLAB_CACHE_SECONDS": f"{CACHE_SECONDS:g}"}
    command = [sys.executable, "-c", "from splitlab.cli import main; main()", "serve", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)  # noqa: S603 - our own
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                output = log_path.read_text(errors="replace")
                raise RuntimeError(f"splitlab serve exited with status {process.returncode}:\n{output}")
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"splitlab serve did not answer /api/v1/health within {timeout:g} s")
            time.sleep(0.05)
        yield base
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _write_catalog(directory: Path, urls: dict[str, str], pace: Pace) -> None:
    """The metric definitions and the two routed specs, as YAML files a reader can open."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "metrics.yaml").write_text(_METRICS, encoding="utf-8")
    first = pace.steps[0]
    common = {
        "control": CONTROL,
        "challenger": CHALLENGER,
        "control_weight": f"{1 - first:g}",
        "challenger_weight": f"{first:g}",
        "timeout_ms": f"{TIMEOUT_MS:g}",
        "steps": json.dumps(list(pace.steps)),
        "min_step_minutes": f"{pace.min_step_minutes:g}",
        "min_units_per_step": pace.min_units_per_step,
    }
    upgrade = _SPEC.format(
        key=UPGRADE,
        description="The weak model is live; ramp the better one in while its guardrails hold.",
        control_url=urls["weak"],
        control_model="weak-v1",
        challenger_url=urls["good"],
        challenger_model="good-v2",
        **common,
    )
    risky = _SPEC.format(
        key=RISKY,
        description="The good model is live; a slow, failing build of the weak one asks for traffic.",
        control_url=urls["good"],
        control_model="good-v2",
        challenger_url=urls["faulty"],
        challenger_model="weak-v1-faulty",
        **common,
    )
    (directory / f"{UPGRADE}.yaml").write_text(upgrade, encoding="utf-8")
    (directory / f"{RISKY}.yaml").write_text(risky, encoding="utf-8")


def _weights(store: Store, key: str) -> str:
    from splitlab.operations.experiments import get_experiment

    spec = get_experiment(store, key).spec
    return ", ".join(f"{v['key']} {v['weight']:.0%}" for v in spec["variants"])


def _state(store: Store, key: str) -> str:
    from splitlab.operations.experiments import get_experiment

    record = get_experiment(store, key)
    if record.status == "rolled_out":
        return f"rolled_out ({record.rolled_out_variant} to everyone)"
    return record.status


class _Timeline:
    """Prints the monitor's runs as they happen: every action, and a look whenever the guardrails' states change."""

    def __init__(self, store: Store, started: float, echo: Callable[[str], None]) -> None:
        self._store = store
        self._started = started
        self._echo = echo
        self._seen: dict[str, str] = {}

    def header(self) -> None:
        self._echo(
            "   (a look is a run that changed a guardrail's state: ok; uncertain, its interval reaches past the "
            "tolerance; harmed, significantly worse within it, which holds the step; breached, beyond it: rollback)"
        )
        self._echo(f"{'time':>7}  {'experiment':<14} {'weights':<26} {'event':<9} why")

    def record(self, run: RunOutcome) -> None:
        key = run.experiment
        at = f"+{time.monotonic() - self._started:5.1f}s"
        if run.error is not None:
            self._echo(f"{at:>7}  {key:<14} {'':<26} {'error':<9} {run.error}")
            return
        weights = _weights(self._store, key)
        if run.action is not None:
            self._echo(f"{at:>7}  {key:<14} {weights:<26} {run.action.action:<9} {'; '.join(run.action.reasons)}")
            if run.action.weights is not None:
                self._echo(f"{'':>7}  {'':<14} {'-> ' + _format_weights(run.action.weights):<26}")
            return
        guardrails = (run.summary or {}).get("guardrails", {})
        states = ", ".join(
            f"{name.split('/')[0]} {state}" for name, state in sorted(guardrails.items()) if name.endswith(CHALLENGER)
        )
        units = self._units(run)
        look = f"{units}; guardrails: {states or 'not analysed yet'}"
        if self._seen.get(key) != states:
            self._seen[key] = states
            self._echo(f"{at:>7}  {key:<14} {weights:<26} {'look':<9} {look}")

    def _units(self, run: RunOutcome) -> str:
        snapshot = self._store.snapshots.latest(experiment_key=run.experiment)
        units = {} if snapshot is None else snapshot.payload.get("units", {})
        return "units " + ", ".join(f"{variant} {count}" for variant, count in units.items())


def _format_weights(weights: dict[str, float]) -> str:
    return ", ".join(f"{variant} {weight:.0%}" for variant, weight in weights.items())


async def _drive(
    base: str,
    api_key: str,
    holdout: dict[str, Any],
    *,
    users: int,
    seed: int,
    traffic: _Traffic,
    stop: asyncio.Event,
) -> None:
    """Simulated users until ``stop``: each arrives as a new unit, sends a few rows, reports their labels later."""
    import httpx

    rows, labels = holdout["rows"], holdout["labels"]
    rng = random.Random(seed)  # noqa: S311 - simulated traffic, not secrecy
    pending: set[asyncio.Task[None]] = set()
    counter = iter(range(10**9))

    async def feedback(client: httpx.AsyncClient, key: str, request_id: str, label: int, delay: float) -> None:
        await asyncio.sleep(delay)
        for _ in range(5):  # a prediction is written within a moment of its answer: 404 until then
            try:
                response = await client.post(
                    f"/api/v1/route/{key}/feedback", json={"request_id": request_id, "label": label}
                )
            except httpx.TransportError:  # e.g. an idle pooled connection the router closed as it was reused
                await asyncio.sleep(0.1)
                continue
            if response.status_code != 404:
                traffic.feedback[key] += response.status_code == 200
                return
            await asyncio.sleep(0.5)

    async def user(client: httpx.AsyncClient, number: int) -> None:
        key = (UPGRADE, RISKY)[number % 2]
        await asyncio.sleep(rng.uniform(0, 2))  # users arrive over two seconds, not in one burst
        while not stop.is_set():
            unit = f"user-{next(counter)}"
            traffic.units[key] += 1
            for _ in range(REQUESTS_PER_UNIT):
                row = rng.randrange(len(rows))
                body = {"unit_id": unit, "input": {"features": rows[row]}}
                traffic.requests[key] += 1
                try:
                    response = await client.post(f"/api/v1/route/{key}/predict", json=body)
                except httpx.TransportError:
                    traffic.failed[key] += 1
                    continue
                if response.status_code != 200:
                    traffic.failed[key] += 1
                    continue
                traffic.fallbacks[key] += response.headers.get("x-splitlab-fallback") == "true"
                if rng.random() < FEEDBACK_SHARE:
                    request_id = response.headers["x-splitlab-request-id"]
                    task = asyncio.create_task(feedback(client, key, request_id, labels[row], rng.uniform(0.2, 1.0)))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                await asyncio.sleep(rng.uniform(0.05, 0.2))

    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(max_connections=users * 2)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10, limits=limits) as client:
        await asyncio.gather(*(user(client, number) for number in range(users)))
        for task in list(pending):  # feedback still waiting to be sent, once both canaries are decided, is moot
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _decided(store: Store) -> bool:
    from splitlab.operations.experiments import get_experiment

    return all(get_experiment(store, key).status != "running" for key in (UPGRADE, RISKY))


_monitor_store: Store | None = None  # the monitor process's own store (see _watch)


def _open_monitor_store(url: str) -> None:
    from splitlab.storage import open_store

    global _monitor_store  # noqa: PLW0603 - one store per monitor process, opened once
    _monitor_store = open_store(url)


def _monitor_pass() -> tuple[RunOutcome, ...]:
    """One pass of the monitor over the running experiments, each analysed now (not only when due)."""
    from splitlab.operations.monitoring import monitor_once

    assert _monitor_store is not None  # noqa: S101 - opened by the process's initializer
    return monitor_once(_monitor_store, now=datetime.now(UTC), due_only=False).runs


def _start_monitor(url: str) -> ProcessPoolExecutor:
    """The monitor's process, started and warmed (modules imported, store opened) before any traffic.

    A process, as ``splitlab monitor`` would be: an analysis in a thread here would hold the GIL
    the simulated users need, and its start-up would slow the first requests the canaries judge.
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # a fork would copy this process's threads and connections
    monitor = ProcessPoolExecutor(1, mp_context=context, initializer=_open_monitor_store, initargs=(url,))
    monitor.submit(_monitor_pass).result()  # no experiment runs yet: this imports and opens, nothing more
    return monitor


async def _watch(
    store: Store, monitor: Executor, timeline: _Timeline, *, every: float, first_look_units: int, deadline: float
) -> None:
    """A monitor pass every ``every`` seconds, its runs printed, until both canaries are decided (or ``deadline``).

    The first pass waits until each challenger has ``first_look_units`` units: the monitor rolls a
    canary back on a breached guardrail at any sample, and at two or three units the interval rests
    on a variance estimated from them (two wrong answers make an accuracy of 0 with no spread), so
    a look that early judges noise. A real monitor's interval (an hour) sees far more units.
    """
    loop = asyncio.get_running_loop()
    waiting = True
    while time.monotonic() < deadline:
        await asyncio.sleep(every)
        if waiting:
            counts = store.exposures.variant_counts(experiment_keys=(UPGRADE, RISKY))
            if min(counts.get(key, {}).get(CHALLENGER, 0) for key in (UPGRADE, RISKY)) < first_look_units:
                continue
            waiting = False
        for run in await loop.run_in_executor(monitor, _monitor_pass):
            timeline.record(run)
        if _decided(store):
            return


async def _served_after(base: str, api_key: str, holdout: dict[str, Any], *, count: int) -> dict[str, Counter[str]]:
    """The models that answer ``count`` new units of each experiment now (the ``X-Splitlab-Model`` header)."""
    import httpx

    served: dict[str, Counter[str]] = {UPGRADE: Counter(), RISKY: Counter()}
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {api_key}"}, timeout=10) as client:
        for key, models in served.items():
            for number in range(count):
                body = {"unit_id": f"after-{number}", "input": {"features": holdout["rows"][number]}}
                response = await client.post(f"/api/v1/route/{key}/predict", json=body)
                models[response.headers.get("x-splitlab-model", f"status {response.status_code}")] += 1
    return served


def _metric_means(store: Store, key: str) -> list[str]:
    """The units and each guardrail's means in the latest stored analysis (the monitor's last), as lines."""
    snapshot = store.snapshots.latest(experiment_key=key)
    if snapshot is None:
        return []
    units = ", ".join(f"{variant} {count}" for variant, count in snapshot.payload.get("units", {}).items())
    lines = [f"    at the monitor's last analysis ({units} units):"]
    for metric in snapshot.payload.get("metrics", []):
        if metric.get("role") != "guardrail" or metric.get("segment"):
            continue
        effect = metric["effect"]
        control, challenger = (_figure(effect[name], ".4g") for name in ("control_mean", "treatment_mean"))
        relative = _figure(effect["relative_effect"], "+.1%")  # undefined with an undefined mean or a control's 0
        lines.append(f"    {metric['metric']:<17} {CONTROL} {control}, {CHALLENGER} {challenger} (relative {relative})")
    return lines


def _figure(value: float | None, spec: str) -> str:
    """A stored figure, or ``undefined`` for the null JSON keeps for one that is not (no unit with a value, 0/0)."""
    return "undefined" if value is None else format(value, spec)


def demo_router(
    database: Annotated[Path, typer.Option(help="SQLite file to create (replaced if it exists).")] = Path(
        "splitlab-router-demo.db"
    ),
    workdir: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the models, the specs and the servers' logs (default: a temporary one, removed)."
        ),
    ] = None,
    users: Annotated[
        int | None, typer.Option(min=2, help="Simulated users in flight at once (default 24; 12 with --fast).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the users and of the failing model's faults.")] = 7,
    fast: Annotated[
        bool, typer.Option("--fast", help="Shorter canaries (steps 10/50/100 %, 3 s each) and fewer users.")
    ] = False,
    timeout: Annotated[float, typer.Option(min=10, help="Give up after this many seconds of traffic.")] = 240.0,
) -> None:
    """Route live traffic between two trained models: one canary is promoted, the other rolled back.

    Trains two classifiers, serves them (the weak one also slowed and failing, for the bad canary),
    runs `splitlab serve` as the router, sends simulated users with delayed feedback, and runs the
    monitor every few seconds, printing each canary's steps, rollback or promotion as it happens.
    """
    pace = FAST if fast else FULL
    if users is not None:
        pace = dataclasses.replace(pace, users=users)
    with user_errors(), ExitStack() as stack:
        # Both are development extras: the demo trains scikit-learn models and its users are httpx clients.
        missing = [name for name, module in (("scikit-learn", "sklearn"), ("httpx", "httpx")) if not _has(module)]
        if missing:
            raise ValueError(f"the demo needs {' and '.join(missing)}: pip install {' '.join(missing)} (make does)")
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="splitlab-router-demo-")))
        workdir.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        _run(stack, database=database, workdir=workdir, pace=pace, seed=seed, timeout=timeout)


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _run(stack: ExitStack, *, database: Path, workdir: Path, pace: Pace, seed: int, timeout: float) -> None:
    from splitlab.operations.experiments import apply_catalog, change_status, read_catalog
    from splitlab.service import model_server
    from splitlab.storage import open_store

    echo = typer.echo
    started = time.monotonic()
    paths = model_server.train_demo_models(workdir / "models")
    holdout = json.loads(paths["holdout"].read_text())
    echo(f"1. trained two classifiers on {holdout['dataset']} ({len(holdout['rows'])} held-out rows):")
    for role, what in (("good", "logistic regression"), ("weak", "depth-1 decision tree")):
        accuracy = model_server.holdout_accuracy(paths[role], paths["holdout"])
        echo(f"   {role}: {what}, held-out accuracy {accuracy:.1%}  ({paths[role]})")

    url = f"sqlite:///{database.resolve()}"
    store = stack.enter_context(open_store(url))  # created and migrated before the router and the monitor open it
    running = _start_all(
        stack,
        {
            "good": lambda: model_server.start_model_server(paths["good"], name="good-v2", delay_ms=MODEL_MS),
            "weak": lambda: model_server.start_model_server(paths["weak"], name="weak-v1", delay_ms=MODEL_MS),
            "faulty": lambda: model_server.start_model_server(
                paths["weak"], name="weak-v1-faulty", delay_ms=SLOW_MS, failure_rate=FAILURE_RATE, seed=seed
            ),
            "router": lambda: _router(url, workdir / "router.log"),
            "monitor": lambda: _start_monitor(url),
        },
    )
    servers: dict[str, RunningModelServer] = {role: running[role] for role in ("good", "weak", "faulty")}
    base, monitor = running["router"], running["monitor"]
    echo(f"2. model servers, each a process of its own, answering after {MODEL_MS:g} ms (a real model's compute):")
    echo(f"   good-v2         {servers['good'].url}")
    echo(f"   weak-v1         {servers['weak'].url}")
    echo(f"   weak-v1-faulty  {servers['faulty'].url}  ({SLOW_MS:g} ms, {FAILURE_RATE:.0%} answered 500)")
    _write_catalog(workdir / "experiments", {role: server.url for role, server in servers.items()}, pace)
    apply_catalog(store, read_catalog(store, workdir / "experiments"), actor="demo")
    _, api_key = store.keys.create(role="admin", name="demo-router", actor="demo")
    # No canary is judged on a cold start: the model servers first, then the router while the
    # experiments are drafts (it answers with the control's model and records nothing).
    rows = holdout["rows"][:10]
    _warm_up([(server.url, {"features": row}) for server in (servers["good"], servers["weak"]) for row in rows])
    _warm_up(
        [
            (f"{base}/api/v1/route/{key}/predict", {"unit_id": "warm-up", "input": {"features": row}})
            for key in (UPGRADE, RISKY)
            for row in rows
        ],
        headers={"Authorization": f"Bearer {api_key}"},
    )
    echo(f"3. router: splitlab serve on {base}, store {database} (log {workdir / 'router.log'})")
    for key in (UPGRADE, RISKY):
        change_status(store, key=key, action="start", actor="demo")
    echo(f"4. applied and started {workdir / 'experiments'}/*.yaml:")
    echo(f"   {UPGRADE}: {CONTROL} = weak-v1 (live), {CHALLENGER} = good-v2")
    echo(f"   {RISKY}:   {CONTROL} = good-v2 (live), {CHALLENGER} = weak-v1-faulty")
    steps = ", ".join(f"{step:.0%}" for step in pace.steps)
    echo(
        f"   canary steps {steps}, each held {pace.min_step_minutes * 60:g} s (a real canary holds hours) "
        f"and until the challenger has {pace.min_units_per_step} units;"
    )
    echo(
        "   guardrails (relative, always-valid mSPRT intervals): error rate +5 %, latency +100 %, accuracy -2 %; "
        "a breach rolls back at once"
    )
    echo(
        f"5. {pace.users} simulated users at a time, each a new unit sending {REQUESTS_PER_UNIT} held-out rows; "
        f"the true label comes back 0.2-1 s later for {FEEDBACK_SHARE:.0%} of them"
    )
    echo(
        f"6. the monitor (monitor_once, a process of its own) every {pace.monitor_seconds:g} s, from when each "
        f"challenger has {pace.min_units_per_step} units (a look at 2 or 3 judges noise); the timeline:"
    )
    timeline = _Timeline(store, time.monotonic(), echo)
    timeline.header()
    traffic = _Traffic()

    async def main() -> None:
        stop = asyncio.Event()
        users = asyncio.create_task(
            _drive(base, api_key, holdout, users=pace.users, seed=seed, traffic=traffic, stop=stop)
        )
        try:
            await _watch(
                store,
                monitor,
                timeline,
                every=pace.monitor_seconds,
                first_look_units=pace.min_units_per_step,
                deadline=time.monotonic() + timeout,
            )
        finally:
            stop.set()
            await users

    asyncio.run(main())
    decided = _decided(store)
    echo(f"7. {'both canaries decided' if decided else f'not decided within {timeout:g} s'}; final state:")
    time.sleep(3 * CACHE_SECONDS)  # the router has read the last change by now
    served = asyncio.run(_served_after(base, api_key, holdout, count=20))
    for key in (UPGRADE, RISKY):
        echo(f"   {key}: {_state(store, key)}")
        echo(
            f"    traffic: {traffic.units[key]} units, {traffic.requests[key]} requests "
            f"({traffic.fallbacks[key]} answered by the control after the challenger failed, "
            f"{traffic.failed[key]} failed), {traffic.feedback[key]} labels fed back"
        )
        for line in _metric_means(store, key):
            echo(line)
        models = ", ".join(f"{model} {count}" for model, count in served[key].most_common())
        echo(f"    now, 20 new units are answered by: {models}")
    echo(f"   took {time.monotonic() - started:.0f} s")
    echo("next:")
    for key in (UPGRADE, RISKY):
        echo(f"   splitlab show {key} --database {url}    (its versions: every ramp, the rollback or promotion)")
    echo(f"   splitlab monitor --once --database {url}; the router's /metrics while it runs (`splitlab serve`)")


def _start_all(stack: ExitStack, starters: dict[str, Callable[[], AbstractContextManager[Any]]]) -> dict[str, Any]:
    """Enter each starter's context in a thread of its own, all at once; each is exited with ``stack``.

    Each is a process that takes a second or more to import and bind, so in parallel they start in
    the time of the slowest. Every one that started is handed to ``stack`` before any error (or a
    Ctrl-C while waiting) is raised, so nothing is left running.
    """
    from concurrent.futures import ThreadPoolExecutor, wait

    def enter(start: Callable[[], AbstractContextManager[Any]]) -> tuple[Any, ExitStack]:
        with ExitStack() as inner:
            value = inner.enter_context(start())
            return value, inner.pop_all()

    pool = ThreadPoolExecutor(len(starters))
    futures = {name: pool.submit(enter, start) for name, start in starters.items()}
    try:
        wait(futures.values())
    finally:
        pool.shutdown(wait=True)
        for future in futures.values():
            if future.exception() is None:
                stack.enter_context(future.result()[1])
    return {name: future.result()[0] for name, future in futures.items()}


def _warm_up(posts: list[tuple[str, dict[str, Any]]], *, headers: dict[str, str] | None = None) -> None:
    """POST each body to its URL, one after the other: the first answers of a process load its code."""
    import httpx

    with httpx.Client(timeout=30, headers=headers) as client:
        for url, body in posts:
            client.post(url, json=body).raise_for_status()
