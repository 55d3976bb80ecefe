"""Prometheus metrics of one app: assignments, exposures, ingested and rejected events, latency.

One :class:`Telemetry` (and one registry) per app, never a module-level registry, so two apps in a
process (tests, several deployments) count separately. With several uvicorn workers each process
counts its own requests; Prometheus sums the series of all scraped targets.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "Telemetry"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The Prometheus text exposition format's media type."""

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Telemetry:
    """The app's counters and histograms, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
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
        self.latency = Histogram(
            "splitlab_request_duration_seconds",
            "Request latency by method, route template and status code.",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def count_assignments(self, experiment: str, variants: Iterable[str | None]) -> None:
        """Count one assignment per item of ``variants`` (None: not enrolled)."""
        for variant, n in Tally(variants).items():
            self.assignments.labels(experiment, variant or "none").inc(n)

    def count_exposures(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Count exposures given as (experiment, variant) pairs."""
        for (experiment, variant), n in Tally(pairs).items():
            self.exposures.labels(experiment, variant).inc(n)

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
