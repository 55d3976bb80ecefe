"""The model router: assign the unit, call its variant's model, fall back, record, shadow; take feedback.

A request for experiment ``key`` is assigned as ``/assign`` assigns (hash, sticky records, bandit
weights: :class:`~splitlab.service.hot_path.assigner.Assigner`), so a unit keeps its model across
requests and weight changes. A unit that gets no variant (not targeted, not covered, the
experiment paused or stopped) is served the control's model and nothing is recorded; a rolled-out
experiment serves its winner's model to everyone. What is recorded, and how feedback joins a
prediction, is :mod:`splitlab.operations.routing`'s.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi.concurrency import run_in_threadpool

from splitlab.operations.errors import ConflictError
from splitlab.operations.routing import Feedback, Prediction, feedback_events, prediction_events, shadow_events
from splitlab.service.caches.recent import Recent
from splitlab.service.errors import UnavailableError
from splitlab.service.hot_path.assigner import Assigner
from splitlab.service.hot_path.event_writer import EventWriter
from splitlab.service.hot_path.experiment_cache import CachedExperiment, ExperimentCache
from splitlab.service.router.breaker import CircuitBreaker
from splitlab.service.router.models import ModelAnswer, ModelCaller, failed
from splitlab.service.router.prediction_log import PredictionLog
from splitlab.service.telemetry import Telemetry
from splitlab.specs import ModelEndpoint, Routing, model_endpoints
from splitlab.storage import Exposure, Store, StoredEvent, WriteResult

__all__ = ["ModelRouter", "RoutedAnswer"]

_log = logging.getLogger("splitlab.service")

FEEDBACK_TIMEOUT_SECONDS = 60.0
"""How long a feedback request waits for its commit before it is answered 503 (event ids make a retry safe)."""


@dataclass(frozen=True, slots=True)
class RoutedAnswer:
    """What the route answers: the model's status, body and media type, and the routing headers."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]
    shadow: Any = None
    """A coroutine to run once the answer is sent (the shadow call), or None."""


@dataclass(slots=True)
class _Routed:
    """One experiment version's routing: its settings, endpoints and breakers."""

    version: int
    routing: Routing
    control: str
    endpoints: dict[str, ModelEndpoint]
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)


class ModelRouter:
    """Routes model requests of one worker (see the module docstring)."""

    def __init__(
        self,
        *,
        store: Store,
        experiments: ExperimentCache,
        assigner: Assigner,
        events: EventWriter,
        log: PredictionLog,
        telemetry: Telemetry,
        max_connections: int,
        shed_when_full: bool,
    ) -> None:
        self._store = store
        self._experiments = experiments
        self._assigner = assigner
        self._events = events
        self.log = log
        self._telemetry = telemetry
        self._caller = ModelCaller(max_connections=max_connections)
        self._shed = shed_when_full
        self._routed: dict[str, _Routed] = {}
        self._recent: Recent[str, StoredEvent] = Recent(size=100_000)
        self._shadow_in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # Request ids: 16 random hex digits per worker, then a counter (a uuid4 per request costs a
        # system call for its randomness); unique across workers and restarts as the prefix is.
        self._id_prefix = uuid.uuid4().hex[:16]
        self._ids = itertools.count()

    def _new_request_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):016x}"

    async def predict(
        self, key: str, unit_id: str, body: bytes, *, attributes: Mapping[str, Any] | None, request_id: str | None
    ) -> RoutedAnswer:
        """Route one request (see the module docstring).

        Raises:
            NotFoundError: No experiment ``key``.
            ConflictError: The experiment routes no models (its spec has no ``routing``).
            ValueError: The unit's attributes cannot be evaluated by the spec's targeting.
            UnavailableError: ``shed`` is set and the record queue is full.
        """
        experiment = await self._experiments.get(key)
        routed = self._routed_of(experiment)
        if self._shed and experiment.running and not self.log.has_room():
            raise UnavailableError("router", "the prediction log is full (the store is slow); retry")
        request_id = request_id or self._new_request_id()
        now = datetime.now(UTC)
        result = (await self._assigner.assign(key, [(unit_id, attributes)]))[0]
        variant = result.variant if result.variant in routed.endpoints else routed.control
        answer, served = await self._call(key, routed, variant, body)
        status = "ok" if served == variant and answer.ok else ("fallback" if answer.ok else "error")
        self._telemetry.count_routed(key, variant, status, answer.latency_ms / 1000)
        model = self._model_name(routed, served)
        prediction = Prediction(
            request_id=request_id,
            experiment=key,
            unit_id=unit_id,
            variant=variant,
            model=model,
            latency_ms=answer.latency_ms,
            status=status,
            error=status != "ok",
            answer=answer.answer,
            timestamp=now,
        )
        recorded = result.enrolled and experiment.running
        if recorded:
            events = prediction_events(prediction)
            exposure = Exposure(
                experiment_key=key, unit_id=unit_id, variant=variant, timestamp=now, attributes=attributes or None
            )
            if self.log.add(events, exposure):
                self._recent.put(request_id, _as_stored(events[0]))
        headers = {"x-splitlab-request-id": request_id, "x-splitlab-variant": variant, "x-splitlab-model": model}
        if status == "fallback":
            headers["x-splitlab-fallback"] = "true"
        shadow = self._shadow(routed, prediction, body) if recorded and answer.ok else None
        if routed.routing.envelope and answer.ok:
            envelope = {"request_id": request_id, "variant": variant, "model": model, "response": answer.answer}
            return RoutedAnswer(
                status=answer.status,
                body=_json_bytes(envelope),
                content_type="application/json",
                headers=headers,
                shadow=shadow,
            )
        return RoutedAnswer(
            status=answer.status, body=answer.body, content_type=answer.content_type, headers=headers, shadow=shadow
        )

    def _routed_of(self, experiment: CachedExperiment) -> _Routed:
        routing = experiment.spec.routing
        if routing is None:
            message = f"experiment {experiment.key!r} routes no models: its spec has no routing section"
            raise ConflictError("experiment", message)
        routed = self._routed.get(experiment.key)
        version = experiment.record.current_version
        if routed is None or routed.version != version:
            previous = routed.breakers if routed is not None else {}
            routed = _Routed(
                version=version,
                routing=routing,
                control=experiment.spec.variant_keys[0],
                endpoints=model_endpoints(experiment.spec),
            )
            breaker = routing.breaker
            for variant in routed.endpoints:  # a new version keeps what the breakers learned
                old = previous.get(variant)
                if old is not None and (old.failures, old.pause_seconds) == (breaker.failures, breaker.pause_seconds):
                    routed.breakers[variant] = old
                else:
                    routed.breakers[variant] = CircuitBreaker(
                        failures=breaker.failures, pause_seconds=breaker.pause_seconds
                    )
            for variant, kept in routed.breakers.items():  # the gauge shows every variant, closed ones too
                self._telemetry.set_breaker(experiment.key, variant, kept.state)
            self._routed[experiment.key] = routed
        return routed

    async def _call(self, key: str, routed: _Routed, variant: str, body: bytes) -> tuple[ModelAnswer, str]:
        """The answer, and the variant whose model gave it (the control's on a fallback)."""
        answer = await self._call_variant(key, routed, variant, body)
        if answer.ok or routed.routing.fallback != "control" or variant == routed.control:
            return answer, variant
        fallback = await self._call_variant(key, routed, routed.control, body)
        # The client waited for both: the fallback's latency is the failed call's plus its own.
        return _with_latency(fallback, answer.latency_ms + fallback.latency_ms), routed.control

    async def _call_variant(self, key: str, routed: _Routed, variant: str, body: bytes) -> ModelAnswer:
        breaker = routed.breakers[variant]
        before = breaker.state
        if not breaker.allow():
            if breaker.state != before:  # open -> half-open with its trial already out
                self._telemetry.set_breaker(key, variant, breaker.state)
            self._telemetry.count_model_failure(key, variant, "breaker_open")
            return failed("breaker_open", f"the circuit breaker of variant {variant!r} is open")
        endpoint = routed.endpoints[variant]
        try:
            answer = await self._caller.call(
                endpoint, body, timeout_ms=endpoint.timeout_ms or routed.routing.timeout_ms
            )
        except BaseException:  # cancelled (the client left, the deadline): a half-open trial must not stay out
            breaker.record(ok=False)
            raise
        breaker.record(ok=answer.ok)
        if breaker.state != before:  # open -> half-open (in allow) is logged too; the gauge moves with the state
            _log.warning("splitlab router: %s/%s breaker %s -> %s", key, variant, before, breaker.state)
            self._telemetry.set_breaker(key, variant, breaker.state)
        if not answer.ok:
            self._telemetry.count_model_failure(key, variant, answer.failure or "error")
        return answer

    def _model_name(self, routed: _Routed, variant: str) -> str:
        return routed.endpoints[variant].name or variant

    def _shadow(self, routed: _Routed, served: Prediction, body: bytes) -> Any:
        """The shadow call to run after the answer is sent, or None (no shadow, not in its share, or at its bound)."""
        shadow = routed.routing.shadow
        if shadow is None or shadow.variant == served.variant or _share_of(served.request_id) >= shadow.share:
            return None
        if self._shadow_in_flight >= shadow.max_in_flight:
            self._telemetry.count_shadow(served.experiment, shadow.variant, "dropped")
            return None
        self._shadow_in_flight += 1
        return self._call_shadow(routed, served, shadow.variant, body)

    async def _call_shadow(self, routed: _Routed, served: Prediction, variant: str, body: bytes) -> None:
        try:
            endpoint = routed.endpoints[variant]
            answer = await self._caller.call(
                endpoint, body, timeout_ms=endpoint.timeout_ms or routed.routing.timeout_ms
            )
            events = shadow_events(
                served,
                shadow_variant=variant,
                shadow_model=self._model_name(routed, variant),
                latency_ms=answer.latency_ms,
                answer=answer.answer,
                failed=not answer.ok,
            )
            self.log.add(events)
            agree = next((e.value for e in events if e.name == "shadow_agreement"), None)
            outcome = "answered" if agree is None else ("agree" if agree else "disagree")
            if not answer.ok:
                outcome = "error"
            self._telemetry.count_shadow(served.experiment, variant, outcome)
        except Exception:  # a shadow's trouble is logged, never the client's
            _log.exception("splitlab router: the shadow call of %s failed", served.experiment)
        finally:
            self._shadow_in_flight -= 1

    def start_shadow(self, shadow: Any) -> None:
        """Run a shadow call (from :attr:`RoutedAnswer.shadow`) as a task of its own, once the answer is sent."""
        task = asyncio.get_running_loop().create_task(shadow)
        self._tasks.add(task)  # the loop keeps weak references only
        task.add_done_callback(self._tasks.discard)

    async def feedback(self, key: str, feedback: Feedback) -> WriteResult:
        """Record ``feedback`` on the prediction ``feedback.request_id`` of experiment ``key``.

        Raises:
            NotFoundError: No prediction of ``key`` has that request id (yet: it is written within a moment).
            InvalidInputError: The feedback is empty or its reward out of bounds.
            UnavailableError: The commit took too long.
        """
        prediction = self._recent.peek(feedback.request_id)
        if prediction is None:
            prediction = await run_in_threadpool(self._store.events.get, event_id=feedback.request_id)
        events = feedback_events(prediction, feedback, experiment=key)
        rows = await run_in_threadpool(self._store.events.encode, events)
        result = await self._events.commit(rows, timeout=FEEDBACK_TIMEOUT_SECONDS, what="feedback")
        assert prediction is not None  # noqa: S101 - feedback_events refused a missing one
        variant = str((prediction.properties or {}).get("variant"))
        for event in events:
            self._telemetry.count_feedback(key, variant, event.name, event.value)
        return result

    async def close(self) -> None:
        """Wait for the shadow calls in flight (a moment), then close the connection pool."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await self._caller.close()


def _share_of(request_id: str) -> float:
    """The request id's hash in [0, 1): which requests are copied to the shadow (the same ones on every worker)."""
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest) / 2**64


def _with_latency(answer: ModelAnswer, latency_ms: float) -> ModelAnswer:
    return ModelAnswer(
        status=answer.status,
        body=answer.body,
        content_type=answer.content_type,
        latency_ms=latency_ms,
        failure=answer.failure,
        answer=answer.answer,
    )


def _as_stored(event: Any) -> StoredEvent:
    return StoredEvent(
        event_id=event.event_id,
        unit_id=event.unit_id,
        name=event.name,
        value=event.value,
        timestamp=event.timestamp,
        properties=dict(event.properties or {}),
        ingested_at=event.timestamp,
    )


def _json_bytes(value: Any) -> bytes:
    from pydantic_core import to_json

    return to_json(value, inf_nan_mode="null")
