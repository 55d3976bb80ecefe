"""The model router's rules: what a prediction and its feedback record, and when a canary moves.

The router (:mod:`splitlab.service.router`) forwards requests; what it records and how feedback
is joined to a prediction are decided here, once, so every front end (the HTTP route, the Python
API, the demo) records the same events:

==========================  =========================================================  ==================
event                        value                                                      event id
==========================  =========================================================  ==================
``prediction``               the served model's latency in ms (fallback included)       the request id
``prediction_error``         1 when the variant's own model failed (timeout, 5xx,        ``<id>/error``
                             dropped connection, open breaker), else 0
``feedback_reward``          the reward given as feedback                               ``<id>/reward``
``feedback_conversion``      1 or 0                                                     ``<id>/conversion``
``prediction_correct``       1 when the label given equals the prediction, else 0       ``<id>/correct``
``prediction_log_loss``      ``-log p(label)`` from the prediction's probabilities       ``<id>/log_loss``
``shadow_prediction``        the shadow model's latency in ms                           ``<id>/shadow``
``shadow_agreement``         1 when the shadow's prediction equals the served one       ``<id>/agreement``
==========================  =========================================================  ==================

Every event is the routed unit's, so metric definitions over them (``kind: mean`` of
``prediction_error`` is the error rate, of ``prediction`` the mean latency, of
``prediction_correct`` the accuracy) are analysed as any other metric. Event ids make feedback
idempotent: the same feedback sent twice is stored once.

A canary (``routing.canary``) is moved by :func:`plan_canary` at each monitor run: harm rolls it
back at once, a step held long enough without harm moves to the next, the end of the ramp promotes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from splitlab.operations.errors import InvalidInputError
from splitlab.specs import ExperimentSpec
from splitlab.storage import Event, NotFoundError, StoredEvent

if TYPE_CHECKING:
    from splitlab.analysis.readout import ExperimentReadout, MetricResult

__all__ = [
    "FEEDBACK_EVENTS",
    "PREDICTION",
    "PREDICTION_ERROR",
    "Feedback",
    "Prediction",
    "canary_weights",
    "feedback_events",
    "gate_state",
    "plan_canary",
    "prediction_events",
    "shadow_events",
]

PREDICTION = "prediction"
PREDICTION_ERROR = "prediction_error"
SHADOW_PREDICTION = "shadow_prediction"
SHADOW_AGREEMENT = "shadow_agreement"
FEEDBACK_EVENTS = ("feedback_reward", "feedback_conversion", "prediction_correct", "prediction_log_loss")

MAX_REWARD = 1e12
"""The largest magnitude of a reward given as feedback (as for bandit rewards)."""

_MAX_CLASSES = 100
"""Class probabilities beyond this many are not kept with a prediction (log loss is then not computed)."""

_EPSILON = 1e-15
"""Log loss clips probabilities to [eps, 1 - eps], as scikit-learn's ``log_loss`` does."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Prediction:
    """One routed request, as the router saw it.

    Attributes:
        request_id: The request's id (the ``prediction`` event's id).
        experiment: The experiment.
        unit_id: The routed unit.
        variant: The unit's variant.
        model: The name of the model that answered (the control's on a fallback).
        latency_ms: Time to the model's answer, fallback included.
        status: ``ok``, ``fallback`` (the variant's model failed, the control's answered) or
            ``error`` (no model answered).
        error: Whether the variant's own model failed.
        answer: The answer's JSON body (None: not JSON); its ``prediction``, ``confidence`` and
            ``probabilities`` fields are kept when present.
        timestamp: When the request came.
    """

    request_id: str
    experiment: str
    unit_id: str
    variant: str
    model: str
    latency_ms: float
    status: str
    error: bool
    answer: Any
    timestamp: datetime

    @property
    def label(self) -> Any:
        """The predicted label: the answer's ``prediction`` field (None when it has none)."""
        return _field(self.answer, "prediction")


def _field(answer: Any, name: str) -> Any:
    return answer.get(name) if isinstance(answer, dict) else None


def _scalar(value: Any) -> Any:
    """``value`` when it is a JSON scalar (a label), else None: a prediction that is an object is not compared."""
    return value if isinstance(value, str | int | float | bool) and not _non_finite(value) else None


def _non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _probabilities(answer: Any) -> dict[str, float] | None:
    probabilities = _field(answer, "probabilities")
    if not isinstance(probabilities, dict) or not 0 < len(probabilities) <= _MAX_CLASSES:
        return None
    kept = {str(k): float(p) for k, p in probabilities.items() if isinstance(p, int | float) and not _non_finite(p)}
    return kept if len(kept) == len(probabilities) else None


def prediction_events(prediction: Prediction) -> list[Event]:
    """The events that record ``prediction``: ``prediction`` and ``prediction_error`` (see the module docstring)."""
    answer = prediction.answer
    confidence = _field(answer, "confidence")
    properties: dict[str, Any] = {
        "experiment": prediction.experiment,
        "variant": prediction.variant,
        "model": prediction.model,
        "status": prediction.status,
        "prediction": _scalar(prediction.label),
        "confidence": confidence if isinstance(confidence, int | float) and not _non_finite(confidence) else None,
    }
    if (probabilities := _probabilities(answer)) is not None:
        properties["probabilities"] = probabilities
    unit, at, request = prediction.unit_id, prediction.timestamp, prediction.request_id
    return [
        Event(
            event_id=request,
            unit_id=unit,
            name=PREDICTION,
            value=prediction.latency_ms,
            timestamp=at,
            properties=properties,
        ),
        Event(
            event_id=f"{request}/error",
            unit_id=unit,
            name=PREDICTION_ERROR,
            value=1.0 if prediction.error else 0.0,
            timestamp=at,
        ),
    ]


def shadow_events(
    served: Prediction, *, shadow_variant: str, shadow_model: str, latency_ms: float, answer: Any, failed: bool
) -> list[Event]:
    """What a shadow call records: its latency and, when both answered with a label, whether they agree."""
    label = _scalar(_field(answer, "prediction"))
    properties = {
        "experiment": served.experiment,
        "variant": shadow_variant,
        "model": shadow_model,
        "served_variant": served.variant,
        "status": "error" if failed else "ok",
        "prediction": label,
    }
    events = [
        Event(
            event_id=f"{served.request_id}/shadow",
            unit_id=served.unit_id,
            name=SHADOW_PREDICTION,
            value=latency_ms,
            timestamp=served.timestamp,
            properties=properties,
        )
    ]
    served_label = _scalar(served.label)
    if not failed and label is not None and served_label is not None:
        events.append(
            Event(
                event_id=f"{served.request_id}/agreement",
                unit_id=served.unit_id,
                name=SHADOW_AGREEMENT,
                value=1.0 if _same_label(label, served_label) else 0.0,
                timestamp=served.timestamp,
            )
        )
    return events


def _same_label(a: Any, b: Any) -> bool:
    # JSON gives 1 where a client's label may be "1": labels are compared as text (True is "True", not "1").
    return str(a) == str(b)


@dataclass(frozen=True, slots=True, kw_only=True)
class Feedback:
    """What is learned later about a request: its true label, a reward, a conversion (at least one)."""

    request_id: str
    timestamp: datetime
    label: str | int | bool | None = None
    reward: float | None = None
    conversion: bool | None = None

    def problems(self) -> list[tuple[str, str]]:
        """What is wrong with this feedback, each problem with its field."""
        found = []
        if self.label is None and self.reward is None and self.conversion is None:
            found.append(("body", "give at least one of label, reward and conversion"))
        if self.reward is not None and not (math.isfinite(self.reward) and abs(self.reward) <= MAX_REWARD):
            found.append(("reward", f"reward == {self.reward!r}, must be finite and within +-{MAX_REWARD:g}"))
        return found


def feedback_events(prediction: StoredEvent | None, feedback: Feedback, *, experiment: str) -> list[Event]:
    """The events that record ``feedback`` on the stored ``prediction`` event (see the module docstring).

    Args:
        prediction: The stored event whose id is the feedback's request id, or None when there is none.
        feedback: The feedback.
        experiment: The experiment the feedback was sent to: the prediction must be one of its own.

    Raises:
        NotFoundError: ``prediction`` is missing, not a ``prediction`` event, or of another experiment.
        InvalidInputError: The feedback is empty or its reward is out of bounds.
    """
    of = (prediction.properties or {}).get("experiment") if prediction is not None else None
    if prediction is None or prediction.name != PREDICTION or of != experiment:
        request = feedback.request_id
        raise NotFoundError(
            f"no prediction of experiment {experiment!r} has request id {request!r} (not yet recorded?)"
        )
    if problems := feedback.problems():
        raise InvalidInputError(problems)
    request, unit, at = feedback.request_id, prediction.unit_id, max(feedback.timestamp, prediction.timestamp)
    properties = prediction.properties or {}
    context = {"experiment": properties.get("experiment"), "variant": properties.get("variant")}
    events = []

    def add(name: str, suffix: str, value: float) -> None:
        events.append(
            Event(
                event_id=f"{request}/{suffix}", unit_id=unit, name=name, value=value, timestamp=at, properties=context
            )
        )

    if feedback.reward is not None:
        add("feedback_reward", "reward", float(feedback.reward))
    if feedback.conversion is not None:
        add("feedback_conversion", "conversion", 1.0 if feedback.conversion else 0.0)
    predicted = properties.get("prediction")
    if feedback.label is not None and predicted is not None:
        add("prediction_correct", "correct", 1.0 if _same_label(predicted, feedback.label) else 0.0)
        probabilities = properties.get("probabilities")
        if isinstance(probabilities, Mapping):
            p = float(probabilities.get(str(feedback.label), 0.0))
            add("prediction_log_loss", "log_loss", -math.log(min(max(p, _EPSILON), 1 - _EPSILON)))
    return events


@dataclass(frozen=True, slots=True)
class CanaryMove:
    """What the canary's gate decides: ``ramp`` (to ``weights``), ``rollback``, ``promote``, or ``hold``; and why."""

    action: str
    reasons: tuple[str, ...]
    weights: dict[str, float] | None = None


def canary_weights(spec: ExperimentSpec, share: float) -> dict[str, float]:
    """The weights with the canary's challenger at ``share`` and the control at the rest."""
    canary = spec.routing.canary if spec.routing is not None else None
    if canary is None:
        msg = f"experiment {spec.key!r} has no routing.canary"
        raise ValueError(msg)
    return {v.key: (share if v.key == canary.variant else 1 - share) for v in spec.variants}


def gate_state(metric: MetricResult) -> str:
    """A canary guardrail's state: the decision engine's (:func:`~splitlab.analysis.decision.guardrail_status`).

    Except for a zero baseline (an error rate of 0 in the control, the usual case): no relative
    interval exists there, and a tolerated relative degradation of zero is zero in absolute terms,
    so the guardrail is ``breached`` when its always-valid absolute interval lies wholly on the bad
    side of 0. The interval is absolute only when the sequential test is (``hypothesis.mde_type:
    absolute``); under a relative one a zero-baseline guardrail is at most ``harmed`` and never
    rolls the canary back.
    """
    from splitlab.analysis.decision import guardrail_status, quote

    state = guardrail_status(metric)
    if state not in ("harmed", "uncertain") or metric.effect.control_mean != 0:
        return state
    low, high = quote(metric).absolute_ci
    harm = -high if metric.higher_is_better else low  # the interval's end nearest to no harm, signed as harm
    return "breached" if math.isfinite(harm) and harm > 0 else state


def plan_canary(
    readout: ExperimentReadout, spec: ExperimentSpec, *, step_started_at: datetime, now: datetime
) -> CanaryMove:
    """The canary's next move on ``readout`` (pure).

    - fewer than ``min_units_per_step`` units in the challenger or the control: ``hold`` (the
      intervals plug in each group's variance, which a handful of units cannot estimate: two
      identical wrong answers make a variance of 0 and an interval far too narrow);
    - any guardrail ``breached`` (its always-valid CI wholly beyond the tolerated degradation) or a
      ROLLBACK decision: ``rollback``, at the first look that shows it;
    - an invalid readout (SRM) or a step held for less than ``min_step_minutes``: ``hold``;
    - else the next step (``ramp``), or ``promote`` after the last step of the ramp. A guardrail
      significantly worse but shown within its tolerance (``harmed``) does not hold the canary:
      the tolerance is the degradation the spec accepts, and with enough traffic any real
      difference becomes significant.
    """
    canary = spec.routing.canary if spec.routing is not None else None
    assert canary is not None  # noqa: S101 - the caller checks
    challenger = canary.variant
    guardrails = [m for m in readout.metrics if m.role == "guardrail" and m.variant == challenger]
    states = {m.metric: gate_state(m) for m in guardrails}
    decision = readout.decision
    category = None if decision is None else str(decision.category)
    weight = readout.configured_weights.get(challenger, 0.0)
    step = min(range(len(canary.ramp)), key=lambda i: abs(canary.ramp[i] - weight))
    at = f"step {step + 1} of {len(canary.ramp)} ({canary.ramp[step]:.0%})"
    fewest = min((readout.units.get(v, 0) for v in readout.variants), default=0)
    if fewest < canary.min_units_per_step:
        needed = canary.min_units_per_step
        return CanaryMove("hold", (f"canary: {at} held: {fewest} units in a variant, min_units_per_step {needed}",))
    breached = sorted(name for name, state in states.items() if state == "breached")
    if breached or category == "ROLLBACK":
        why = tuple(f"canary: guardrail {name} breached its tolerance (always-valid CI)" for name in breached)
        if not breached and decision is not None:
            why = ("canary: decision ROLLBACK", *decision.reasons)
        return CanaryMove("rollback", why)
    if category == "INVALID":
        reasons = decision.reasons if decision is not None else ()
        return CanaryMove("hold", (f"canary: {at} held: the readout is invalid", *reasons))
    held = now - step_started_at
    minimum = timedelta(minutes=canary.min_step_minutes)
    if held < minimum:
        minutes = (minimum - held).total_seconds() / 60
        return CanaryMove("hold", (f"canary: {at} held {minutes:.1f} more minutes (min_step_minutes)",))
    summary = "; ".join(f"{name}: {state}" for name, state in sorted(states.items()))
    if step + 1 < len(canary.ramp):
        share = canary.ramp[step + 1]
        why = (f"canary: {at} passed ({summary}); {challenger!r} to {share:.0%}",)
        return CanaryMove("ramp", why, canary_weights(spec, share))
    return CanaryMove("promote", (f"canary: {at}, the last, passed ({summary}); {challenger!r} rolled out",))
