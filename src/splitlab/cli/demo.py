"""``splitlab demo``: the whole job on a fresh SQLite file, from YAML specs to decisions and HTML reports.

Each bundled example gets the traffic its spec plans: enough arriving units for its planned sample
per variant once targeting, coverage and holdout have enrolled their share (plus a margin), over its
minimum duration, with the primary metric's control mean at the hypothesis baseline. The demo
plants known effects (``SCENARIOS``) and prints them beside each verdict, so a reader can check the
verdict against the truth; examples/README.md has them in a table, and tests/cli/test_demo.py holds
the demo to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from splitlab.cli._common import user_errors

if TYPE_CHECKING:
    from rich.console import Console

    from splitlab.analysis.readout import ExperimentReadout
    from splitlab.operations.simulation import SimulationSummary
    from splitlab.specs.model import ExperimentSpec, NotificationTarget
    from splitlab.storage import Store

MARGIN = 0.05  # units beyond the plan, so that chance in the split and in enrolment never leaves a variant short
DEFAULT_DAYS = 14  # for a spec without a minimum duration


@dataclass(frozen=True, slots=True)
class Scenario:
    """What the demo plants in one bundled example (true relative effects, in every treatment), and the verdict due."""

    expected: str
    effects: Mapping[str, float]
    segment_effects: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def planted(self) -> str:
        """The planted effects in words, e.g. ``conversion +20% (device: mobile x1.4, desktop x0.4)``."""
        factors = "; ".join(
            f"{dimension}: " + ", ".join(f"{level} x{factor:g}" for level, factor in levels.items())
            for dimension, levels in self.segment_effects.items()
        )
        parts = [f"{name} {effect:+.0%}" for name, effect in self.effects.items()]
        if parts and factors:
            parts[0] += f" ({factors})"
        return ", ".join(parts) or "nothing (A/A)"


# The truth to find. free-shipping-threshold: conversion well above its 8 % MDE (the device factors
# average about 1 over the device mix), order value unchanged: a strong launch. checkout-one-page:
# payments fail twice as often on the single page, far past their 10 % tolerance, and completion
# falls: a rollback, by the guardrail or the goal. homepage-recommendations: both models lift
# click-through well above the 5 % MDE, but revenue per user cannot be shown within its 2 % tolerance
# at this sample: a launch, not a strong one.
SCENARIOS: dict[str, Scenario] = {
    "free-shipping-threshold": Scenario(
        expected="STRONG_LAUNCH",
        effects={"conversion": 0.25, "average_order_value": 0.0},
        segment_effects={"device": {"mobile": 1.4, "desktop": 0.4}},
    ),
    "checkout-one-page": Scenario(
        expected="ROLLBACK", effects={"checkout_completion": -0.05, "payment_errors_per_user": 1.0}
    ),
    "homepage-recommendations": Scenario(expected="LAUNCH", effects={"recommendation_ctr": 0.12}),
}


@dataclass(frozen=True, slots=True)
class Traffic:
    """The traffic the demo simulates for one spec, from its plan."""

    planned_per_variant: int
    enrolled_share: float
    units: int
    days: int


@dataclass(frozen=True, slots=True)
class Watched:
    """What the monitor did to a monitored example: the day it acted (None: never), the action and why."""

    day: int | None
    action: str | None
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DemoResult:
    """One example's run: what was planted, the traffic, what was written and the readout.

    ``watched``: for an example whose spec has an automation policy, what the monitor did, watching
    it day by day (the readout is then the one it acted on, or the last one).
    """

    key: str
    scenario: Scenario
    traffic: Traffic
    summary: SimulationSummary
    readout: ExperimentReadout
    watched: Watched | None = None


def examples_path() -> Path:
    """The bundled examples folder (``examples/`` of the repository, shipped as package data)."""
    return Path(str(resources.files("splitlab") / "data" / "examples"))


def planned_per_variant(spec: ExperimentSpec) -> int:
    """The planned units per variant, as the readout states them: the schedule's, else the hypothesis's power plan.

    Raises:
        ValueError: neither is given for a binary primary metric with a baseline.
    """
    from splitlab.stats.power import plan_sample_size

    if spec.schedule.min_sample_size:
        return spec.schedule.min_sample_size
    hypothesis = spec.hypothesis
    if hypothesis is None or hypothesis.baseline is None:
        msg = f"experiment {spec.key!r}: the demo needs schedule.min_sample_size or a hypothesis baseline to plan"
        raise ValueError(msg)
    plan = plan_sample_size(
        "proportion",
        hypothesis.mde,
        baseline=hypothesis.baseline,
        alpha=hypothesis.alpha,
        power=hypothesis.power,
        relative=hypothesis.mde_type == "relative",
        variants=len(spec.variants),
    )
    return plan.per_variant


def plan_traffic(spec: ExperimentSpec, *, scale: float = 1.0) -> Traffic:
    """Arriving units and days that give ``spec`` its planned sample (times ``scale``) over its minimum duration.

    The variant with the smallest weight binds: ``planned / (share enrolled x its weight) x (1 + MARGIN)``.
    """
    from splitlab.operations.simulation import enrolled_share

    planned = planned_per_variant(spec)
    share = enrolled_share(spec)
    smallest = min(v.weight for v in spec.variants)
    units = math.ceil(planned * scale / (share * smallest) * (1 + MARGIN))
    days = max(spec.schedule.min_duration_days or DEFAULT_DAYS, 1)
    return Traffic(planned_per_variant=planned, enrolled_share=share, units=units, days=days)


def run_scenarios(
    store: Store,
    *,
    seed: int,
    scale: float = 1.0,
    on_step: Callable[[str], None] | None = None,
    webhook: NotificationTarget | None = None,
) -> list[DemoResult]:
    """Apply the bundled examples to ``store``, start them, simulate each one's planted truth and analyse it.

    An example whose spec has an automation policy (``monitoring``) is watched by the monitor day by
    day over its simulated traffic instead, as ``splitlab monitor`` would watch it live.

    Args:
        store: an empty store.
        seed: random seed of the simulated traffic.
        scale: share of each planned sample to simulate (1: the plan; less only to test the machinery).
        on_step: called with a description before each step (progress).
        webhook: a target the monitored examples notify (added to their specs as ``notifications``).
    """
    from splitlab.operations.analysis import analyze
    from splitlab.operations.experiments import apply_catalog, change_status, read_catalog
    from splitlab.operations.simulation import simulate_experiment

    step = on_step or (lambda _: None)
    catalog = read_catalog(store, examples_path())
    if webhook is not None:
        for key, spec in catalog.experiments.items():
            if _monitored(spec):
                monitoring = spec.monitoring.model_copy(update={"notify": (*spec.monitoring.notify, webhook.name)})
                update = {"notifications": (*spec.notifications, webhook), "monitoring": monitoring}
                catalog.experiments[key] = spec.model_copy(update=update)
    applied = apply_catalog(store, catalog, actor="demo")
    results = []
    for experiment in applied.experiments:
        key = experiment.key
        scenario = SCENARIOS.get(key, Scenario(expected="", effects={}))
        traffic = plan_traffic(catalog.experiments[key], scale=scale)
        change_status(store, key=key, action="start", actor="demo")
        step(f"simulating {key}")
        summary = simulate_experiment(
            store,
            key,
            units=traffic.units,
            effects=scenario.effects,
            segment_effects=scenario.segment_effects,
            days=traffic.days,
            seed=seed,
        )
        step(f"analysing {key}")
        watched = None
        if _monitored(catalog.experiments[key]):
            watched, readout = _watch_daily(store, key, summary)
        else:
            readout = analyze(store, key).readout
        results.append(
            DemoResult(key=key, scenario=scenario, traffic=traffic, summary=summary, readout=readout, watched=watched)
        )
    return results


def _monitored(spec: ExperimentSpec) -> bool:
    policy = spec.monitoring
    return policy.auto_stop or policy.auto_rollback or policy.auto_promote


def _watch_daily(store: Store, key: str, summary: SimulationSummary) -> tuple[Watched, ExperimentReadout]:
    """Run the monitor once a day over the simulated traffic until it acts; the readout it acted on (or the last)."""
    from datetime import timedelta

    from splitlab.operations.analysis import analyze
    from splitlab.operations.monitoring import monitor_once

    day = 0
    for day in range(1, math.ceil(summary.days) + 1):
        now = summary.start + timedelta(days=day)
        [run] = monitor_once(store, experiment=key, now=now, due_only=False).runs
        if run.error is not None:
            raise RuntimeError(f"the monitor failed on {key}: {run.error}")
        if run.action is not None:
            return Watched(day, run.action.action, run.action.reasons), analyze(
                store, key, as_of=now, save=False
            ).readout
    return Watched(None, None), analyze(store, key).readout


class _WebhookReceiver:
    """A webhook receiver on loopback for the demo's notifications: it keeps (kind, text, signature verified)."""

    SECRET_ENV = "SPLITLAB_DEMO_WEBHOOK_SECRET"  # noqa: S105 - the name of a variable, not a secret

    def __init__(self) -> None:
        import os
        import secrets

        self.secret = secrets.token_hex(16)
        os.environ[self.SECRET_ENV] = self.secret  # the deliverer reads the secret from the environment
        self.received: list[tuple[str, str, bool]] = []

    def __enter__(self) -> _WebhookReceiver:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from splitlab.notify import SIGNATURE_HEADER, verify
        from splitlab.specs import NotificationTarget

        received, secret = self.received, self.secret.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                signature = self.headers.get(SIGNATURE_HEADER) or ""
                note = json.loads(body)
                received.append((note["kind"], note["text"], bool(signature) and verify(secret, signature, body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        url = f"http://127.0.0.1:{self._server.server_address[1]}/splitlab"
        self.target = NotificationTarget(name="demo-webhook", url=url, secret_env=self.SECRET_ENV)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def demo(
    database: Annotated[Path, typer.Option(help="SQLite file to create (replaced if it exists).")] = Path(
        "splitlab-demo.db"
    ),
    reports: Annotated[Path, typer.Option(help="Folder for the HTML reports.")] = Path("reports"),
    seed: Annotated[int, typer.Option(help="Random seed of the simulated traffic.")] = 7,
) -> None:
    """Apply the bundled examples, simulate their planned traffic with known effects, analyse, decide, write reports."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import Progress

    from splitlab.analysis.report import to_html
    from splitlab.notify import deliver_due
    from splitlab.storage import open_store

    console = Console()
    with user_errors():
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        reports.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{database.resolve()}"
        with (
            open_store(url) as store,
            _WebhookReceiver() as receiver,
            Progress(console=console, transient=True) as progress,
        ):
            task = progress.add_task("simulating and analysing", total=len(SCENARIOS) * 2)

            def step(description: str) -> None:
                progress.update(task, description=description, advance=0 if description.startswith("sim") else 1)

            results = run_scenarios(store, seed=seed, on_step=step, webhook=receiver.target)
            deliver_due(store)  # what `splitlab monitor` does after each pass
            received = list(receiver.received)
    for result in results:
        decision = result.readout.decision
        category = str(decision.category) if decision else "-"
        path = reports / f"{result.key}.html"
        path.write_text(to_html(result.readout), encoding="utf-8")
        traffic = result.traffic
        console.print(f"[bold]{result.key}[/bold]: {category}    planted: {escape(result.scenario.planted())}")
        if result.scenario.expected and category != result.scenario.expected:
            console.print(f"  (the demo plants this for {result.scenario.expected}; seed {seed} drew otherwise)")
        console.print(
            f"  traffic: {traffic.units:,} arriving units over {traffic.days} days, "
            f"{traffic.enrolled_share:.0%} enrolled; planned {traffic.planned_per_variant:,} per variant"
        )
        for reason in decision.reasons if decision else ():
            console.print(f"  - {escape(reason)}")
        if result.watched is not None:
            _print_watched(console, result)
        console.print(f"  report: {path}")
    if received:
        console.print(f"webhook deliveries to {receiver.target.url} (signed; `splitlab notifications list`):")
        for kind, text, verified in received:
            console.print(escape(f"  - {kind}: {text} [signature {'verified' if verified else 'INVALID'}]"))
    console.print(f"store: {database} (try `splitlab list --database sqlite:///{database}`)")


def _print_watched(console: Console, result: DemoResult) -> None:
    from rich.markup import escape

    watched = result.watched
    assert watched is not None  # noqa: S101 - called for watched results only
    if watched.day is None:
        console.print("  monitor: watched daily, no action")
        return
    done = {
        "rollback": "rolled back (paused: nobody is served the treatment)",
        "stop": "stopped",
        "promote": "promoted",
    }
    console.print(f"  monitor: watched daily; on day {watched.day} it {done.get(str(watched.action), watched.action)}")
    console.print(f"    because {escape(watched.reasons[0])}")
