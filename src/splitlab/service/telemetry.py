"""Prometheus metrics of one app: assignments, exposures, ingested and rejected events, latency,
and gauges read from the store at scrape time (SRM per running experiment, exposed units, bandit weights).

One :class:`Telemetry` (and one registry) per app, never a module-level registry, so two apps in a
process (tests, several deployments) count separately. Under ``splitlab serve --workers N`` the
counters and histograms go through prometheus_client's multiprocess mode, so one scrape, whichever
worker answers it, adds up every worker's; the gauges are read from the store by the worker that
answers (see :meth:`Telemetry.render`).
"""  # noqa: D205

from __future__ import annotations

import logging
import os
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

if TYPE_CHECKING:
    from splitlab.service.runtime import Runtime

__all__ = ["CONTENT_TYPE", "MULTIPROCESS_DIR_VAR", "SRM_THRESHOLD", "Telemetry"]

MULTIPROCESS_DIR_VAR = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's multiprocess mode: set by ``splitlab serve`` for several workers."""

_log = logging.getLogger("splitlab.service")

SRM_THRESHOLD = 0.001
"""``splitlab_srm_flag`` is 1 when the chi-square p-value of a running experiment's split is below this."""

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The Prometheus text exposition format's media type."""

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Telemetry:
    """The app's counters and histograms, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._store_gauges: _StoreGauges | None = None
        self._children: dict[tuple[Any, ...], Any] = {}
        self.assignments = Counter(
            "splitlab_assignments",
            "Units assigned, by experiment and variant (variant 'none' when not enrolled).",
            ["experiment", "variant"],
            registry=self.registry,
        )
        self.exposures = Counter(
            "splitlab_exposures",
            "Exposures received, by experiment and variant.",
            ["experiment", "variant"],
            registry=self.registry,
        )
        self.exposures_refused = Counter(
            "splitlab_exposures_refused",
            "Exposures refused (their batch was answered 422, nothing written), by reason: unknown_experiment, "
            "undeclared_variant, not_running, before_start, too_early, in_future.",
            ["reason"],
            registry=self.registry,
        )
        self.events_ingested = Counter(
            "splitlab_events_ingested", "Events newly stored (duplicates excluded).", registry=self.registry
        )
        self.events_duplicate = Counter(
            "splitlab_events_duplicate", "Events received again (same event id), stored once.", registry=self.registry
        )
        self.event_batches_rejected = Counter(
            "splitlab_event_batches_rejected",
            "Event batches refused whole (nothing written), by reason: invalid or too_large.",
            ["reason"],
            registry=self.registry,
        )
        self.assignments_recorded = Counter(
            "splitlab_assignments_recorded",
            "New sticky assignments written to the store (in batches).",
            registry=self.registry,
        )
        self.assignment_record_failures = Counter(
            "splitlab_assignment_record_failures",
            "Sticky assignments that could not be written and were given up.",
            registry=self.registry,
        )
        self.bandit_rewards = Counter(
            "splitlab_bandit_rewards",
            "Units rewarded in bandit experiments (first reward per unit), by experiment.",
            ["experiment"],
            registry=self.registry,
        )
        self.requests_timed_out = Counter(
            "splitlab_requests_timed_out",
            "Requests answered at their deadline, by reason: store (503, the store did not answer in time) "
            "or body (408, the client did not send its body in time).",
            ["reason"],
            registry=self.registry,
        )
        self.client_disconnects = Counter(
            "splitlab_client_disconnects",
            "Requests whose client closed the connection before its body was read or its answer sent.",
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "splitlab_auth_failures",
            "Requests refused for their API key, by reason: invalid (401) or throttled (429, too many "
            "failures from one client).",
            ["reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "splitlab_request_duration_seconds",
            "Request latency by method, route template and status code.",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

        self.routed = Counter(
            "splitlab_router_requests",
            "Routed model requests, by experiment, the unit's variant and outcome: ok (its model answered), "
            "fallback (its model failed, the control's answered) or error (no model answered).",
            ["experiment", "variant", "outcome"],
            registry=self.registry,
        )
        self.routed_latency = Histogram(
            "splitlab_router_model_duration_seconds",
            "Time to the model's answer (fallback included), by experiment and the unit's variant.",
            ["experiment", "variant"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_failures = Counter(
            "splitlab_router_model_failures",
            "Failed model calls, by experiment, variant and reason: timeout, connection, status_5xx, error, "
            "breaker_open.",
            ["experiment", "variant", "reason"],
            registry=self.registry,
        )
        self.breaker_state = Gauge(
            "splitlab_router_breaker_state",
            "Each routed variant's circuit breaker in this worker: 0 closed, 1 open, 2 half-open.",
            ["experiment", "variant"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.shadow_calls = Counter(
            "splitlab_router_shadow_calls",
            "Shadow calls, by experiment, shadow variant and outcome: agree, disagree, answered (no label to "
            "compare), error, dropped (max_in_flight reached).",
            ["experiment", "variant", "outcome"],
            registry=self.registry,
        )
        self.feedback = Counter(
            "splitlab_router_feedback",
            "Feedback events recorded, by experiment, variant and event (feedback_reward, feedback_conversion, "
            "prediction_correct, prediction_log_loss).",
            ["experiment", "variant", "event"],
            registry=self.registry,
        )
        self.correct = Counter(
            "splitlab_router_correct_predictions",
            "Predictions whose feedback label matched, by experiment and variant (accuracy: this over "
            "splitlab_router_feedback_total{event='prediction_correct'}).",
            ["experiment", "variant"],
            registry=self.registry,
        )
        self.router_records_dropped = Counter(
            "splitlab_router_records_dropped",
            "Router records (exposures, predictions, shadow answers) not written, by reason: queue_full, "
            "refused (the experiment stopped running), store_error.",
            ["reason"],
            registry=self.registry,
        )

    def count_routed(self, experiment: str, variant: str, outcome: str, seconds: float) -> None:
        """One routed request: its outcome and the time to its model's answer."""
        self._child(self.routed, experiment, variant, outcome).inc()
        self._child(self.routed_latency, experiment, variant).observe(seconds)

    def count_model_failure(self, experiment: str, variant: str, reason: str) -> None:
        """One failed model call."""
        self._child(self.model_failures, experiment, variant, reason).inc()

    def set_breaker(self, experiment: str, variant: str, state: str) -> None:
        """A variant's breaker state (``closed``, ``open``, ``half_open``)."""
        from splitlab.service.router.breaker import STATE_VALUES

        self._child(self.breaker_state, experiment, variant).set(STATE_VALUES[state])

    def count_shadow(self, experiment: str, variant: str, outcome: str) -> None:
        """One shadow call's outcome."""
        self._child(self.shadow_calls, experiment, variant, outcome).inc()

    def count_feedback(self, experiment: str, variant: str, event: str, value: float | None) -> None:
        """One feedback event (and a correct prediction)."""
        self._child(self.feedback, experiment, variant, event).inc()
        if event == "prediction_correct" and value == 1.0:
            self._child(self.correct, experiment, variant).inc()

    def count_router_dropped(self, reason: str, records: int) -> None:
        """Router records given up."""
        self.router_records_dropped.labels(reason).inc(records)

    def watch_store(self, runtime: Runtime) -> None:
        """Also export the gauges read from ``runtime``'s store at every scrape."""
        self._store_gauges = _StoreGauges(runtime)
        self.registry.register(self._store_gauges)

    def count_assignments(self, experiment: str, variants: Sequence[str | None]) -> None:
        """Count one assignment per item of ``variants`` (None: not enrolled)."""
        if len(variants) == 1:  # /assign: one counter call, no tally
            self._child(self.assignments, experiment, variants[0] or "none").inc()
            return
        for variant, n in Tally(variants).items():
            self._child(self.assignments, experiment, variant or "none").inc(n)

    def observe_latency(self, method: str, route: str, status: int, seconds: float) -> None:
        """One request's latency."""
        self._child(self.latency, method, route, str(status)).observe(seconds)

    def _child(self, metric: Any, *labels: str) -> Any:
        # labels() takes a lock and builds a tuple per call; the hot routes reuse a handful of series.
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def count_exposures(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Count exposures given as (experiment, variant) pairs."""
        for (experiment, variant), n in Tally(pairs).items():
            self.exposures.labels(experiment, variant).inc(n)

    def count_refused_exposures(self, reasons: Iterable[str]) -> None:
        """Count refused exposures, one reason each."""
        for reason, n in Tally(reasons).items():
            self.exposures_refused.labels(reason).inc(n)

    def render(self) -> bytes:
        """The metrics in the Prometheus text format.

        Under ``splitlab serve --workers N`` (``PROMETHEUS_MULTIPROC_DIR`` set) every worker writes
        its counters to files in that directory, and a scrape, whichever worker answers it, adds
        up all of them: the workers share one port, so Prometheus sees them as one target.
        """
        directory = os.environ.get(MULTIPROCESS_DIR_VAR)
        if not directory:
            return generate_latest(self.registry)
        registry = CollectorRegistry(auto_describe=True)
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        if self._store_gauges is not None:
            registry.register(self._store_gauges)
        return generate_latest(registry)


class _StoreGauges(Collector):
    """Gauges computed when Prometheus scrapes: running experiments' exposure splits (one query), bandit weights."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def describe(self) -> Iterator[Metric]:
        return iter(())  # computed at collect time; nothing to describe ahead

    def collect(self) -> Iterator[Metric]:
        flag = GaugeMetricFamily(
            "splitlab_srm_flag",
            f"1 when a running experiment's exposures show a sample ratio mismatch (chi-square p < {SRM_THRESHOLD}).",
            labels=["experiment"],
        )
        p_value = GaugeMetricFamily(
            "splitlab_srm_p_value", "SRM chi-square p-value of a running experiment's exposures.", labels=["experiment"]
        )
        exposed = GaugeMetricFamily(
            "splitlab_exposed_units",
            "Units exposed per variant of a running experiment (units seen in two variants left out).",
            labels=["experiment", "variant"],
        )
        weight = GaugeMetricFamily(
            "splitlab_bandit_weight",
            "Current allocation weight per variant of a running bandit experiment.",
            labels=["experiment", "variant"],
        )
        monitor = _MonitorGauges()
        try:
            self._fill(flag, p_value, exposed, weight)
            monitor.fill(self._runtime.store)
        except SQLAlchemyError as exc:  # the counters still serve; the gauges come back with the store
            _log.warning("splitlab: store gauges skipped, the store is unavailable: %s", exc)
        yield from (flag, p_value, exposed, weight, *monitor.families())

    def _fill(
        self, flag: GaugeMetricFamily, p_value: GaugeMetricFamily, exposed: GaugeMetricFamily, weight: GaugeMetricFamily
    ) -> None:
        # Imported at the first scrape, not with this module: the SRM tests bring scipy (a second of a
        # worker's start-up that a service nobody scrapes never needs), and `splitlab serve`'s parent
        # process imports this module for one constant.
        from splitlab.operations.bandits import window_srm
        from splitlab.specs import ExperimentSpec, to_plan
        from splitlab.stats.srm import srm_test

        store = self._runtime.store
        running = store.experiments.list(status="running")
        counts = store.exposures.variant_counts(experiment_keys=[r.key for r in running])
        for record in running:
            try:
                spec = ExperimentSpec.model_validate(record.spec)
            except ValidationError:
                continue
            plan = to_plan(spec)
            seen = counts.get(record.key, {})
            for variant in plan.variants:
                exposed.add_metric([record.key, variant.key], seen.get(variant.key, 0))
            if spec.allocation.method == "bandit":
                # The split follows the bandit's weights: checked window by window against them.
                try:
                    experiment = self._runtime.experiments.load(record.key)
                    if experiment is None or experiment.bandit is None:
                        continue
                    current = None if experiment.bandit.context else self._runtime.bandit_weights.current(experiment)
                    result = window_srm(store, record.key, threshold=SRM_THRESHOLD) if sum(seen.values()) else None
                except ValueError:  # invalid bandit settings: /assign reports them
                    continue
                if current is not None:  # a contextual bandit's weights are per unit
                    for name, share in zip(current.variants, current.weights, strict=True):
                        weight.add_metric([record.key, name], share)
                if result is not None and result.error_code is None:
                    flag.add_metric([record.key], float(result.flag))
                    p_value.add_metric([record.key], result.p_value)
                continue
            if not sum(seen.values()):
                continue
            try:
                result = srm_test(
                    {v.key: seen.get(v.key, 0) for v in plan.variants},
                    {v.key: v.weight for v in plan.variants},
                    threshold=SRM_THRESHOLD,
                )
            except ValueError:  # e.g. a variant weighted 0
                continue
            flag.add_metric([record.key], float(result.flag))
            p_value.add_metric([record.key], result.p_value)


class _MonitorGauges:
    """What the monitor found at its last run of each running experiment (its state row: one query).

    The numbers are the decision engine's own (:func:`splitlab.operations.monitoring.summary_of`):
    the goal metrics' quoted p-values (always-valid under a sequential test) and lifts, and each
    guardrail's state against its tolerance.
    """

    def __init__(self) -> None:
        self.decision = GaugeMetricFamily(
            "splitlab_monitor_decision",
            "1 for the decision category of a running experiment's latest monitored readout.",
            labels=["experiment", "category"],
        )
        self.p_value = GaugeMetricFamily(
            "splitlab_monitor_goal_p_value",
            "A goal metric's p-value in the latest monitored readout (always-valid under a sequential test).",
            labels=["experiment", "metric", "variant"],
        )
        self.lift = GaugeMetricFamily(
            "splitlab_monitor_goal_lift",
            "A goal metric's relative effect (treatment vs control) in the latest monitored readout.",
            labels=["experiment", "metric", "variant"],
        )
        self.guardrail = GaugeMetricFamily(
            "splitlab_monitor_guardrail_state",
            "1 for a guardrail's state against its tolerance: breached, harmed, uncertain or ok.",
            labels=["experiment", "metric", "variant", "state"],
        )
        self.condition = GaugeMetricFamily(
            "splitlab_monitor_condition",
            "1 while the monitor finds a condition: srm_detected, guardrail_harm or sample_reached.",
            labels=["experiment", "condition"],
        )
        self.last_run = GaugeMetricFamily(
            "splitlab_monitor_last_run_timestamp_seconds",
            "When the monitor last analysed a running experiment (Unix time).",
            labels=["experiment"],
        )

    def families(self) -> tuple[GaugeMetricFamily, ...]:
        return (self.decision, self.p_value, self.lift, self.guardrail, self.condition, self.last_run)

    def fill(self, store: Any) -> None:
        running = [record.key for record in store.experiments.list(status="running")]
        for key, state in store.monitor.states(keys=running).items():
            if state.last_run_at is None:
                continue
            self.last_run.add_metric([key], state.last_run_at.timestamp())
            for condition in state.conditions:
                self.condition.add_metric([key, condition], 1.0)
            if state.last_decision:
                self.decision.add_metric([key, state.last_decision], 1.0)
            summary = state.summary or {}
            for name, quoted in (summary.get("primary") or {}).items():
                metric, _, variant = name.partition("/")
                if quoted.get("p_value") is not None:
                    self.p_value.add_metric([key, metric, variant], float(quoted["p_value"]))
                if quoted.get("lift") is not None:
                    self.lift.add_metric([key, metric, variant], float(quoted["lift"]))
            for name, status in (summary.get("guardrails") or {}).items():
                metric, _, variant = name.partition("/")
                self.guardrail.add_metric([key, metric, variant, str(status)], 1.0)
