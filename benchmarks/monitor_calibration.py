"""Calibration of the monitor's automatic actions (issue 16): seeded experiments watched once a day.

Every experiment is watched day by day for ``--days`` days, as the monitor watches it: at the end of
each day its readout is made by splitlab's own analysis
(:func:`splitlab.analysis.experiment.analyze_experiment`, as of that moment) and the spec's policy is
applied to it by the monitor's own :func:`splitlab.operations.monitoring.plan_action`; the first
action ends the experiment (a stopped, rolled-back or rolled-out experiment is no longer watched).
The spec: analysis method ``sequential`` (``msprt``, the always-valid test that may end an
experiment at any look), goal ``conversion`` (binary) planned for a relative MDE from a baseline,
guardrail ``latency`` (mean of one page load per unit, lower is better) with a tolerated degradation,
``min_duration_days`` and ``max_duration_days == --days`` (at which the monitor stops whatever the
policy: listed apart as ``stop at max_duration_days``). Three scenarios:

- ``aa``: A/A under ``auto_stop``, ``auto_promote`` and ``auto_rollback``. A wrong action is a
  promote, a rollback, or a stop by the policy on a launch or rollback decision (a stop on
  NO_LAUNCH, or at the maximum duration, is right); the goal is a rate <= alpha + 3 SE (SE at the
  nominal alpha).
- ``harm``: latency worse by twice its tolerance in treatment, under ``auto_rollback``: the share
  rolled back within the days watched, and the median and 90th percentile of the day it happened.
- ``lift``: conversion better by the MDE in treatment, under ``auto_promote``: the share promoted
  (the power of the whole chain: test, decision rules, policy) and the median day.

Units: ``--daily-units`` a day, each assigned to a variant at random (1/2, 1/2) and exposed at a
uniform time in the first 22 hours of its day; a converting unit's purchase and every unit's page
load come within the hour, so each look (the last second of its day) sees the days so far
complete. Latency is lognormal (median 300 ms, sigma 0.5). The random stream of experiment ``i``
of a scenario is seeded by ``(--seed, scenario, i)``, whatever the number of processes.

Where the rows are (``--via``):

- ``duckdb`` (default): the specs and metric definitions in an in-memory SQLite store, the rows in an
  in-memory DuckDB database mapped as warehouse tables (``analyze_experiment(..., data=(duckdb,
  source))``, what ``splitlab analyze --source`` runs), one of each per process; each day's rows
  are appended before its look. It is the monitor's analysis but for the database the one
  aggregation query runs in.
- ``monitor``: the monitor itself, :func:`splitlab.operations.monitoring.monitor_once` on an
  in-memory SQLite store per experiment (rows through the store's own writers; snapshot,
  notifications and action written as in production).

Measured on the default design (3 A/A experiments, 45 looks up to 30,000 units, a quiet machine):
0.24 s a look through the monitor on SQLite (the aggregation query grows with the rows: 0.06 s on
day 1, 0.3 s on day 15, 0.7 s on day 30) against 0.06 s in DuckDB. The default run (1,000 A/A, 200
of each other scenario, 24,836 looks) took 20 minutes on 2 processes in DuckDB on the shared
2-core machine (0.09 to 0.11 s a look under its load); through the monitor it would take about an
hour. ``tests/operations/test_monitor_calibration.py`` checks that both take the same actions on
the same days.

    .venv/bin/python benchmarks/monitor_calibration.py [--experiments 1000] [--effect-experiments 200]
        [--days 30] [--daily-units 2000] [--seed 0] [--via duckdb|monitor] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import shlex
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pandas as pd

from splitlab.analysis.experiment import analyze_experiment
from splitlab.analysis.sql import Source
from splitlab.operations.experiments import apply_spec, change_status, get_experiment
from splitlab.operations.monitoring import PlannedAction, monitor_once, plan_action
from splitlab.specs import ExperimentSpec
from splitlab.storage import Exposure, Store, open_store

ALPHA = 0.05
START = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday, 00:00 UTC: day d runs from START + (d - 1) days
EXPOSED_WITHIN = timedelta(hours=22)  # of its day: the unit's first exposure
EVENTS_WITHIN = timedelta(hours=1)  # after the exposure: its purchase and its page load
LOOK_BEFORE_MIDNIGHT = timedelta(seconds=1)  # each look: the last second of its day
LATENCY_MEDIAN_MS = 300.0
LATENCY_SIGMA = 0.5
CONVERSION = {"name": "conversion", "kind": "binary", "event": "purchase", "window_days": 7}
LATENCY = {"name": "latency", "kind": "mean", "event": "page_load", "direction": "lower"}
SOURCE = Source.from_config(
    {
        "exposures": {
            "table": "exposures",
            "unit": "unit_id",
            "variant": "variant",
            "timestamp": "exposed_at",
            "one_row_per_unit": True,
        },
        "events": {"table": "events", "unit": "unit_id", "name": "name", "timestamp": "happened_at", "value": "value"},
    }
)
WRONG_IN_AA = ("STRONG_LAUNCH", "LAUNCH", "ROLLBACK")  # the decisions an A/A must not act on
SCHEDULED_STOP = "schedule.max_duration_days"  # how plan_action words its stop at the maximum duration


@dataclass(frozen=True, slots=True)
class Design:
    """The planted truth and the sizes, shared by every scenario."""

    daily_units: int = 2_000
    days: int = 30
    min_days: int = 7
    baseline: float = 0.10  # conversion in control
    mde: float = 0.10  # relative: the hypothesis's MDE, and the true lift of scenario ``lift``
    tolerance: float = 0.05  # latency's tolerated relative degradation; scenario ``harm`` plants twice it


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One scenario: the experiment key, what is planted in treatment, and the policy the spec sets."""

    key: str
    title: str
    lift: float  # relative effect on conversion, in units of the MDE
    harm: float  # relative effect on latency, in units of the tolerance (positive: slower)
    policy: tuple[str, ...]


SCENARIOS = {
    "aa": Scenario(key="aa", title="A/A", lift=0.0, harm=0.0, policy=("auto_stop", "auto_promote", "auto_rollback")),
    "harm": Scenario(
        key="harm", title="latency worse by 2x its tolerance", lift=0.0, harm=2.0, policy=("auto_rollback",)
    ),
    "lift": Scenario(key="lift", title="conversion better by the MDE", lift=1.0, harm=0.0, policy=("auto_promote",)),
}


def spec_of(scenario: Scenario, design: Design) -> ExperimentSpec:
    """The experiment the monitor watches in ``scenario``."""
    return ExperimentSpec.model_validate(
        {
            "key": scenario.key,
            "variants": [{"key": "control"}, {"key": "treatment"}],
            "hypothesis": {
                "primary_metric": "conversion",
                "direction": "increase",
                "mde": design.mde,
                "baseline": design.baseline,
                "alpha": ALPHA,
            },
            "metrics": {
                "goal": ["conversion"],
                "guardrails": [{"metric": "latency", "max_degradation": design.tolerance}],
            },
            "analysis": {"method": "sequential", "sequential": "msprt"},
            "schedule": {"min_duration_days": design.min_days, "max_duration_days": design.days},
            "monitoring": {"interval_minutes": 1440, **dict.fromkeys(scenario.policy, True)},
        }
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DayRows:
    """One day's new units: their variant, exposure, purchase and page load."""

    unit: npt.NDArray[np.int64]
    treatment: npt.NDArray[np.bool_]
    exposed_at: npt.NDArray[np.datetime64]
    converted: npt.NDArray[np.bool_]
    purchase_at: npt.NDArray[np.datetime64]
    latency: npt.NDArray[np.float64]
    page_load_at: npt.NDArray[np.datetime64]

    @property
    def variant(self) -> npt.NDArray[np.str_]:
        return np.where(self.treatment, "treatment", "control")


def day_rows(rng: np.random.Generator, scenario: Scenario, design: Design, day: int) -> DayRows:
    """The units first exposed on ``day`` (1, 2, ...), numbered on from the days before."""
    n = design.daily_units
    unit = np.arange((day - 1) * n, day * n, dtype=np.int64)
    treatment = rng.random(n) < 0.5
    origin = np.datetime64((START + timedelta(days=day - 1)).replace(tzinfo=None), "us")
    exposed_at = origin + _micros(rng.uniform(0.0, 1.0, n) * EXPOSED_WITHIN.total_seconds())
    chance = np.where(treatment, design.baseline * (1.0 + scenario.lift * design.mde), design.baseline)
    converted = rng.random(n) < chance
    purchase_at = exposed_at + _micros(rng.uniform(0.0, EVENTS_WITHIN.total_seconds(), n))
    scale = np.where(treatment, 1.0 + scenario.harm * design.tolerance, 1.0)
    latency = LATENCY_MEDIAN_MS * scale * rng.lognormal(0.0, LATENCY_SIGMA, n)
    page_load_at = exposed_at + _micros(rng.uniform(0.0, EVENTS_WITHIN.total_seconds(), n))
    return DayRows(
        unit=unit,
        treatment=treatment,
        exposed_at=exposed_at,
        converted=converted,
        purchase_at=purchase_at,
        latency=latency,
        page_load_at=page_load_at,
    )


def _micros(seconds: npt.NDArray[np.float64]) -> npt.NDArray[np.timedelta64]:
    return (seconds * 1e6).astype("timedelta64[us]")


def look_time(day: int) -> datetime:
    """When the monitor looks at the end of ``day``: its readout says ``day`` days running."""
    return START + timedelta(days=day) - LOOK_BEFORE_MIDNIGHT


@dataclass(frozen=True, slots=True, kw_only=True)
class Watch:
    """One watched experiment: its first action (None: none in the days watched), the day and the decision it came on.

    ``scheduled`` marks the stop at ``max_duration_days``, which the monitor makes whatever the policy.
    """

    scenario: str
    index: int
    action: str | None = None
    day: int | None = None
    decision: str | None = None
    scheduled: bool = False
    looks: int
    seconds: float

    @property
    def wrong_in_aa(self) -> bool:
        """An action an A/A must not take: promote, roll back, or stop by the policy on a launch or rollback."""
        if self.action in ("promote", "rollback"):
            return True
        return self.action == "stop" and not self.scheduled and self.decision in WRONG_IN_AA

    @property
    def outcome(self) -> str:
        if self.action is None:
            return "no action"
        if self.scheduled:
            return f"stop at max_duration_days ({self.decision})"
        return f"{self.action} ({self.decision})"


def _acted(
    scenario: Scenario, index: int, planned: PlannedAction, decision: str | None, *, day: int, began: float
) -> Watch:
    return Watch(
        scenario=scenario.key,
        index=index,
        action=planned.action,
        day=day,
        decision=decision,
        scheduled=planned.reasons[0].startswith(SCHEDULED_STOP),
        looks=day,
        seconds=time.perf_counter() - began,
    )


def _unacted(scenario: Scenario, index: int, *, days: int, began: float) -> Watch:
    return Watch(scenario=scenario.key, index=index, looks=days, seconds=time.perf_counter() - began)


def _seeded(seed: int, scenario: Scenario, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, list(SCENARIOS).index(scenario.key), index])


class DuckLab:
    """One process's databases for ``--via duckdb``: specs in a SQLite store, rows in DuckDB."""

    def __init__(self, design: Design) -> None:
        self.design = design
        self.store = open_store("sqlite://")
        self.store.metrics.put_many(definitions=[CONVERSION, LATENCY], actor="benchmark")
        self.specs = {key: spec_of(scenario, design) for key, scenario in SCENARIOS.items()}
        for spec in self.specs.values():
            apply_spec(self.store, spec, actor="benchmark")
            change_status(self.store, key=spec.key, action="start", actor="benchmark")
        self.rows = duckdb.connect(config={"threads": 1})  # one core per process: the processes share the machine
        self.rows.execute("CREATE TABLE exposures (unit_id BIGINT, variant VARCHAR, exposed_at TIMESTAMP)")
        self.rows.execute("CREATE TABLE events (unit_id BIGINT, name VARCHAR, happened_at TIMESTAMP, value DOUBLE)")

    def watch(self, scenario: Scenario, index: int, seed: int) -> Watch:
        began = time.perf_counter()
        rng = _seeded(seed, scenario, index)
        spec = self.specs[scenario.key]
        self.rows.execute("DELETE FROM exposures")
        self.rows.execute("DELETE FROM events")
        for day in range(1, self.design.days + 1):
            self._append(day_rows(rng, scenario, self.design, day))
            readout = analyze_experiment(
                self.store, scenario.key, as_of=look_time(day), save=False, data=(self.rows, SOURCE)
            )
            planned = plan_action(readout, spec)
            if planned is not None:
                decision = None if readout.decision is None else str(readout.decision.category)
                return _acted(scenario, index, planned, decision, day=day, began=began)
        return _unacted(scenario, index, days=self.design.days, began=began)

    def _append(self, rows: DayRows) -> None:
        exposures = pd.DataFrame({"unit_id": rows.unit, "variant": rows.variant, "exposed_at": rows.exposed_at})
        bought = rows.converted
        events = pd.DataFrame(
            {
                "unit_id": np.concatenate([rows.unit[bought], rows.unit]),
                "name": ["purchase"] * int(bought.sum()) + ["page_load"] * rows.unit.size,
                "happened_at": np.concatenate([rows.purchase_at[bought], rows.page_load_at]),
                "value": np.concatenate([np.ones(int(bought.sum())), rows.latency]),
            }
        )
        self.rows.append("exposures", exposures)
        self.rows.append("events", events)

    def close(self) -> None:
        self.rows.close()
        self.store.close()


class MonitorLab:
    """``--via monitor``: the monitor itself on an in-memory SQLite store, a fresh one per experiment."""

    def __init__(self, design: Design) -> None:
        self.design = design

    def watch(self, scenario: Scenario, index: int, seed: int) -> Watch:
        began = time.perf_counter()
        rng = _seeded(seed, scenario, index)
        with open_store("sqlite://") as store:
            store.metrics.put_many(definitions=[CONVERSION, LATENCY], actor="benchmark")
            apply_spec(store, spec_of(scenario, self.design), actor="benchmark")
            change_status(store, key=scenario.key, action="start", actor="benchmark")
            for day in range(1, self.design.days + 1):
                write_rows(store, scenario.key, day_rows(rng, scenario, self.design, day))
                [run] = monitor_once(store, now=look_time(day), experiment=scenario.key, due_only=False).runs
                if run.error is not None:
                    raise RuntimeError(f"{scenario.key} #{index}, day {day}: {run.error}")
                if run.action is not None:
                    if get_experiment(store, scenario.key).status == "running":
                        raise RuntimeError(f"{scenario.key} #{index}, day {day}: {run.action.action} was not applied")
                    return _acted(scenario, index, run.action, run.decision, day=day, began=began)
        return _unacted(scenario, index, days=self.design.days, began=began)

    def close(self) -> None:
        """Nothing stays open between experiments."""


def write_rows(store: Store, key: str, rows: DayRows) -> None:
    """One day's rows through the store's writers (exposures as a backfill: they predate the start)."""
    units = [f"u{unit}" for unit in rows.unit.tolist()]
    variants = rows.variant.tolist()
    times = rows.exposed_at.astype(datetime).tolist()
    store.exposures.log_many(
        (
            Exposure(experiment_key=key, unit_id=unit, variant=variant, timestamp=at.replace(tzinfo=UTC))
            for unit, variant, at in zip(units, variants, times, strict=True)
        ),
        backfill=True,
    )
    bought = np.flatnonzero(rows.converted).tolist()
    store.events.log_columns(
        event_id=[f"p-{units[i]}" for i in bought],
        unit_id=[units[i] for i in bought],
        name=["purchase"] * len(bought),
        timestamp=rows.purchase_at[bought],
        value=np.ones(len(bought)),
    )
    store.events.log_columns(
        event_id=[f"l-{unit}" for unit in units],
        unit_id=units,
        name=["page_load"] * len(units),
        timestamp=rows.page_load_at,
        value=rows.latency,
    )


LABS = {"duckdb": DuckLab, "monitor": MonitorLab}
_LAB: DuckLab | MonitorLab | None = None  # the worker process's own databases


def _start_worker(via: str, design: Design) -> None:
    global _LAB  # noqa: PLW0603 - one lab per worker process, made by the pool's initializer
    _LAB = LABS[via](design)


def _watch(task: tuple[str, int, int]) -> Watch:
    assert _LAB is not None  # set by the initializer
    key, index, seed = task
    return _LAB.watch(SCENARIOS[key], index, seed)


def run(counts: dict[str, int], *, design: Design, seed: int = 0, workers: int = 1, via: str = "duckdb") -> list[Watch]:
    """Watch ``counts[scenario]`` experiments of each scenario; the watches in scenario and index order."""
    tasks = [(key, index, seed) for key, count in counts.items() for index in range(count)]
    if workers <= 1:
        lab = LABS[via](design)
        try:
            watches = [lab.watch(SCENARIOS[key], index, s) for key, index, s in tasks]
        finally:
            lab.close()
    else:
        context = multiprocessing.get_context("spawn")  # fresh interpreters: no database handle crosses a fork
        with context.Pool(workers, initializer=_start_worker, initargs=(via, design)) as pool:
            watches = list(pool.imap_unordered(_watch, tasks, chunksize=4))
    order = list(SCENARIOS)
    return sorted(watches, key=lambda w: (order.index(w.scenario), w.index))


def _se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n) if n else math.nan


def _day_quantile(days: Sequence[int], q: float) -> float | None:
    """A day that was observed: the inverted-CDF quantile (the median of 2, 3, 4, 5 is 3)."""
    return float(np.quantile(days, q, method="inverted_cdf")) if days else None


def summarize(watches: Iterable[Watch]) -> dict[str, Any]:
    """Per scenario: the outcomes counted, and the figures the issue asks for."""
    by: dict[str, list[Watch]] = {}
    for w in watches:
        by.setdefault(w.scenario, []).append(w)
    out: dict[str, Any] = {}
    for key, group in by.items():
        n = len(group)
        figures: dict[str, Any] = {
            "experiments": n,
            "policy": list(SCENARIOS[key].policy),
            "outcomes": dict(Counter(w.outcome for w in group).most_common()),
            "looks": sum(w.looks for w in group),
            "seconds": sum(w.seconds for w in group),
        }
        if key == "aa":
            wrong = sum(w.wrong_in_aa for w in group)
            rate = wrong / n
            limit = ALPHA + 3 * _se(ALPHA, n)
            figures |= {"wrong": wrong, "rate": rate, "se": _se(rate, n), "limit": limit, "met": rate <= limit}
        else:
            action = "rollback" if key == "harm" else "promote"
            days = sorted(w.day for w in group if w.action == action and w.day is not None)
            share = len(days) / n
            figures |= {
                "action": action,
                "acted": len(days),
                "share": share,
                "se": _se(share, n),
                "median_day": _day_quantile(days, 0.5),
                "p90_day": _day_quantile(days, 0.9),
            }
        out[key] = figures
    return out


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(rows[0], widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows[1:]]
    return "\n".join(lines)


def report(summary: dict[str, Any], design: Design) -> str:
    """The results table, then every scenario's outcomes."""
    rows = [["scenario", "policy", "experiments", "result", "goal"]]
    for key, f in summary.items():
        scenario = SCENARIOS[key]
        title = scenario.title
        if key == "harm":
            title += f" (+{scenario.harm * design.tolerance:.0%} latency, tolerance {design.tolerance:.0%})"
        elif key == "lift":
            title += f" (+{design.mde:.0%} relative on {design.baseline:.0%})"
        if key == "aa":
            result = f"wrong actions {f['wrong']} = {f['rate']:.4f} ± {f['se']:.4f}"
            goal = f"<= alpha + 3 SE = {f['limit']:.4f}: {'met' if f['met'] else 'NOT MET'}"
        else:
            verb = "rolled back" if key == "harm" else "promoted"
            result = f"{verb} {f['acted']} = {f['share']:.3f} ± {f['se']:.3f}"
            if f["acted"]:
                result += f"; day median {f['median_day']:g}"
                if key == "harm":
                    result += f", p90 {f['p90_day']:g}"
            goal = ""
        rows.append([title, " + ".join(scenario.policy), str(f["experiments"]), result, goal])
    lines = [_table(rows), "", "Outcomes (the first action, and the decision it was taken on):"]
    for key, f in summary.items():
        listed = ", ".join(f"{outcome} {count}" for outcome, count in f["outcomes"].items())
        per_look = f["seconds"] / f["looks"] if f["looks"] else math.nan
        lines.append(f"- {key}: {listed}; {f['looks']} looks, {per_look:.3f} s a look")
    return "\n".join(lines)


def planned_per_variant(design: Design) -> int:
    """The planned units per variant the analysis derives from the hypothesis (as the readout reports it)."""
    from splitlab.stats.power import plan_sample_size

    return plan_sample_size("proportion", design.mde, baseline=design.baseline, alpha=ALPHA, relative=True).per_variant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = Design()
    parser.add_argument("--experiments", type=int, default=1_000, help="A/A experiments (default 1000)")
    parser.add_argument(
        "--effect-experiments", type=int, default=200, help="experiments of scenarios harm and lift (default 200)"
    )
    parser.add_argument("--days", type=int, default=30, help="days watched, the spec's max_duration_days (30)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random streams (default 0)")
    parser.add_argument("--daily-units", type=int, default=defaults.daily_units, help="new units a day (2000)")
    parser.add_argument("--min-days", type=int, default=defaults.min_days, help="min_duration_days (default 7)")
    parser.add_argument("--baseline", type=float, default=defaults.baseline, help="conversion in control (0.10)")
    parser.add_argument("--mde", type=float, default=defaults.mde, help="relative MDE, the planted lift (0.10)")
    parser.add_argument("--tolerance", type=float, default=defaults.tolerance, help="latency tolerance (0.05)")
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes (default 2)")
    parser.add_argument("--via", choices=list(LABS), default="duckdb", help="where the rows are (default duckdb)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the tables")
    args = parser.parse_args()
    for name in ("experiments", "effect_experiments", "days", "daily_units", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} == {getattr(args, name)}, must be >= 1")
    if not 0 <= args.min_days <= args.days:
        parser.error(f"--min-days == {args.min_days}, must be in [0, --days]")
    design = Design(args.daily_units, args.days, args.min_days, args.baseline, args.mde, args.tolerance)
    counts = {key: args.experiments if key == "aa" else args.effect_experiments for key in args.scenarios}
    began = time.perf_counter()
    watches = run(counts, design=design, seed=args.seed, workers=args.workers, via=args.via)
    wall = time.perf_counter() - began
    summary = summarize(watches)
    command = " ".join(["python", *(shlex.quote(a) for a in sys.argv)])
    if args.json:
        payload = {
            "command": command,
            "design": asdict(design),
            "seed": args.seed,
            "via": args.via,
            "workers": args.workers,
            "wall_seconds": wall,
            "scenarios": summary,
        }
        print(json.dumps(payload, indent=2))
        return
    plan = planned_per_variant(design)
    print("$ " + command)
    print(
        f"Each experiment watched daily for {design.days} days (max_duration_days), {design.daily_units:,} new units "
        f"a day, min_duration_days {design.min_days}; msprt (hybrid), alpha {ALPHA:g}, planned "
        f"{plan:,} units per variant (conversion {design.baseline:.0%}, MDE {design.mde:.0%} relative); "
        f"seed {args.seed}, rows in {args.via}, {args.workers} processes, {wall:.0f} s wall."
    )
    print()
    print(report(summary, design))


if __name__ == "__main__":
    main()
