"""Synthetic traffic with known true effects, pushed through the real assignment and the store.

``simulate`` draws a population of units (device, country, account tier, employee flag, a latent
engagement that carries over from the pre-period), assigns them with the experiment's own plan
(targeting, coverage and weights apply), logs their exposures, and logs the events that the
experiment's metrics read after exposure, and in the pre-period those that a CUPED covariate reads.

How an effect on a metric is planted (``effects={"conversion": 0.03}`` is +3 % relative), per the
metric's kind, on the event it reads:

* ``binary``: the chance that a unit has the event at all is multiplied by ``1 + effect`` (so the
  true relative effect is exactly ``effect`` while no chance passes 100 %);
* ``count``: each occurrence is kept with chance ``1 + effect`` (a decrease) or joined by
  ``Poisson(effect)`` more (an increase), so the expected count is exactly ``1 + effect`` times;
* ``sum``, ``mean``, ``quantile``: the event's values are multiplied by ``1 + effect``;
* ``ratio``: the numerator's values (a ``sum`` numerator) or occurrences (a ``count`` one).

Simulated attributes: device, country, account tier (3 % VIP), employee flag (1 %), app version
(15 % below 5.0) and user agent (1 % bots), so the bundled examples' targeting rules apply.

Each event name has an :class:`EventModel` (``default_event_model``): how likely a unit is to have
it, how often, its values, and when it comes after the exposure (some events mostly in the same
session, others over the following days). The traffic follows the spec's stated baseline: when the
hypothesis gives one, the base rate of the primary metric's event is set so that the metric's
expected control mean is that baseline (``calibrated_event_model``; binary, count and count-ratio
metrics), for this experiment only, so every metric reading that event moves with it. A planted
binary effect multiplies a unit's chance after its 98 % cap, so it is exact unless that would pass
100 % (a large increase of a metric whose baseline is high).

``segment_effects={"device": {"mobile": 2.0, "desktop": 0.0}}`` scales every planted effect per
segment level (heterogeneous effects); ``split`` drops exposures to force a traffic split (to
plant a sample ratio mismatch). Revenue-like values are lognormal (skewed).

The simulation plays the ``days`` of traffic up to now of an experiment that must be running: its
exposures are a backfill (``log_many(..., backfill=True)``), so they may be dated before the
experiment was started, which the store refuses from live ingestion; the store's other rules
(running, no time past now plus the clock skew) still hold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize, stats

from splitlab.assignment.batch import assign_batch
from splitlab.operations.experiments import get_experiment
from splitlab.specs.model import ExperimentSpec, MetricDefinition
from splitlab.specs.plan import to_plan
from splitlab.storage import Exposure, Store

DEVICES = ("mobile", "desktop", "tablet")
DEVICE_SHARES = (0.55, 0.38, 0.07)
COUNTRIES = ("US", "DE", "FR", "BR", "IN")
COUNTRY_SHARES = (0.4, 0.15, 0.12, 0.13, 0.2)
APP_VERSIONS = ("4.9.2", "5.1.0", "5.2.3")
APP_VERSION_SHARES = (0.15, 0.45, 0.40)
BATCH = 10_000
US_PER_DAY = 86_400_000_000
PRE_PERIOD_DAYS = 14.0
POST_PERIOD_DAYS = 8.0  # events spread past the longest usual window (7 days), to test the cut-off
ENGAGEMENT_SHAPE = 0.8  # gamma shape of the latent engagement (mean 1): many light units, a few heavy ones
MAX_CHANCE = 0.98
_QUADRATURE = 20_000  # engagement quantiles over which expected metric values are averaged


@dataclass(frozen=True, slots=True)
class EventModel:
    """How one event name is generated for a unit of latent engagement ``g`` (mean 1).

    The unit has the event with chance ``min(base_rate * g, 0.98)``, then ``1 + Poisson(extra_per_unit
    * g)`` occurrences, each valued ``value_median * LogNormal(0, value_sigma)`` (1 when the sigma is
    0). An occurrence comes, with probability ``soon_share``, an exponential delay of mean
    ``soon_days`` after the exposure (in the same visit: a purchase, a payment error), otherwise at a
    uniform time over the ``POST_PERIOD_DAYS`` after it.
    """

    base_rate: float
    extra_per_unit: float
    value_median: float
    value_sigma: float
    soon_share: float = 0.0
    soon_days: float = 0.1

    def within(self, days: float | None) -> float:
        """Share of the occurrences at most ``days`` after the exposure (``None``: all of them)."""
        if days is None:
            return 1.0
        soon = 1.0 - math.exp(-days / self.soon_days)
        return self.soon_share * soon + (1.0 - self.soon_share) * min(days / POST_PERIOD_DAYS, 1.0)

    def delays(self, rng: np.random.Generator, size: int) -> npt.NDArray[np.float64]:
        """Days from the exposure to each of ``size`` occurrences."""
        spread = rng.uniform(0.0, POST_PERIOD_DAYS, size)
        if self.soon_share == 0:
            return spread
        soon = rng.random(size) < self.soon_share
        return np.where(soon, rng.exponential(self.soon_days, size), spread)


def default_event_model(name: str) -> EventModel:
    """A plausible model for common event names; anything else is a mid-frequency event with values."""
    models = {
        "purchase": EventModel(0.045, 0.3, 45.0, 0.45, soon_share=0.8),
        "session_start": EventModel(0.95, 2.0, 1.0, 0.0),
        "checkout_started": EventModel(0.12, 0.2, 1.0, 0.0, soon_share=0.9),
        "checkout_finished": EventModel(0.08, 0.0, 180.0, 0.5, soon_share=0.9),
        "payment_error": EventModel(0.04, 0.2, 1.0, 0.0, soon_share=0.9),
        "recommendation_click": EventModel(0.3, 1.5, 1.0, 0.0),
        "recommendation_impression": EventModel(0.95, 8.0, 1.0, 0.0),
        "recommendation_served": EventModel(0.6, 1.0, 120.0, 0.4),
    }
    return models.get(name, EventModel(0.2, 1.0, 10.0, 0.5))


def _engagement_quantiles() -> npt.NDArray[np.float64]:
    levels = (np.arange(_QUADRATURE) + 0.5) / _QUADRATURE
    return np.asarray(stats.gamma.ppf(levels, ENGAGEMENT_SHAPE, scale=1 / ENGAGEMENT_SHAPE), dtype=np.float64)


def _expected(model: EventModel, window: float | None, measure: str, engagement: npt.NDArray[np.float64]) -> float:
    """A control unit's expected ``any`` (has the event in the window) or ``count`` (occurrences in it)."""
    chance = np.minimum(model.base_rate * engagement, MAX_CHANCE)
    inside = model.within(window)
    extra = model.extra_per_unit * engagement
    if measure == "any":  # 1 + Poisson(extra) occurrences, each inside with probability `inside`
        return float(np.mean(chance * (1.0 - (1.0 - inside) * np.exp(-extra * inside))))
    return float(np.mean(chance * (1.0 + extra) * inside))


def calibrated_event_model(
    definition: MetricDefinition, baseline: float, models: Mapping[str, EventModel]
) -> tuple[str, EventModel] | None:
    """The event to recalibrate and its model, base rate set so that the metric's control mean is ``baseline``.

    For a ``binary`` metric the share of units with the event in the window; a ``count`` metric, the
    occurrences per unit; a ``ratio`` of two counts, the numerator's occurrences over the
    denominator's. Other kinds give ``None`` (their event keeps its model).

    Raises:
        ValueError: no base rate reaches ``baseline`` (named, with the largest reachable value).
    """
    engagement = _engagement_quantiles()
    if definition.kind in ("binary", "count") and definition.event:
        event, measure, target = definition.event, ("any" if definition.kind == "binary" else "count"), baseline
    elif (
        definition.kind == "ratio"
        and definition.numerator is not None
        and definition.denominator is not None
        and definition.numerator.aggregation == definition.denominator.aggregation == "count"
        and definition.numerator.event != definition.denominator.event
    ):
        event, measure = definition.numerator.event, "count"
        denominator = models[definition.denominator.event]
        target = baseline * _expected(denominator, definition.window_days, "count", engagement)
    else:
        return None
    model = models[event]

    def gap(rate: float) -> float:
        return _expected(replace(model, base_rate=rate), definition.window_days, measure, engagement) - target

    highest = MAX_CHANCE / float(engagement[0])  # every unit at the cap
    if baseline <= 0 or gap(highest) <= 0:
        reachable = (gap(highest) + target) / target * baseline
        msg = (
            f"hypothesis.baseline == {baseline}, must be > 0 and < {reachable:.4g} for {definition.name!r}: "
            f"the largest the simulation's {event!r} events reach"
        )
        raise ValueError(msg)
    rate = float(optimize.brentq(gap, 0.0, highest, xtol=1e-12, rtol=1e-10))
    return event, replace(model, base_rate=rate)


@dataclass(frozen=True, slots=True)
class SimulationSummary:
    """What was written, and the truth that was planted."""

    experiment_key: str
    units: int
    exposed: dict[str, int]
    events: int
    effects: dict[str, float]
    start: datetime
    days: float
    not_enrolled: int = 0
    dropped_exposures: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)


def _multipliers(
    spec: ExperimentSpec, metrics: Mapping[str, MetricDefinition], effects: Mapping[str, float]
) -> dict[str, dict[str, float]]:
    """Per lever (``chance``, ``occurrences``, ``values``) and event name: its multiplier, from metric effects."""
    levers: dict[str, dict[str, float]] = {"chance": {}, "occurrences": {}, "values": {}}
    for name, effect in effects.items():
        if name not in metrics:
            msg = f"effects[{name!r}]: no metric of that name; experiment {spec.key!r} has {sorted(metrics)}"
            raise ValueError(msg)
        if effect <= -1:
            msg = f"effects[{name!r}] == {effect}, must be > -1 (a relative change)"
            raise ValueError(msg)
        definition = metrics[name]
        event, lever = definition.event, ""
        if definition.kind == "binary":
            lever = "chance"
        elif definition.kind == "count":
            lever = "occurrences"
        elif definition.kind in ("sum", "mean", "quantile"):
            lever = "values"
        elif definition.kind == "ratio" and definition.numerator is not None:
            event = definition.numerator.event
            lever = "values" if definition.numerator.aggregation == "sum" else "occurrences"
        if event and lever:
            levers[lever][event] = levers[lever].get(event, 1.0) * (1.0 + effect)
    return levers


def _events_read(
    spec: ExperimentSpec, metrics: Mapping[str, MetricDefinition], *, covariates: bool = False
) -> list[str]:
    """The events the experiment's metrics read (``covariates``: only those of metrics with a CUPED covariate)."""
    names: list[str] = []
    for metric in [*spec.metrics.goal, *spec.metrics.secondary, *(g.metric for g in spec.metrics.guardrails)]:
        definition = metrics.get(metric)
        if definition is None or (covariates and definition.covariate is None):
            continue
        for event in (definition.event, *(a.event for a in (definition.numerator, definition.denominator) if a)):
            if event and event not in names:
                names.append(event)
    return names


def simulate(
    store: Store,
    spec: ExperimentSpec,
    metrics: Mapping[str, MetricDefinition],
    *,
    units: int,
    effects: Mapping[str, float] | None = None,
    segment_effects: Mapping[str, Mapping[str, float]] | None = None,
    split: Sequence[float] | None = None,
    days: float = 14.0,
    seed: int = 0,
    start: datetime | None = None,
    id_prefix: str | None = None,
) -> SimulationSummary:
    """Simulate ``units`` units of traffic for ``spec`` and write exposures and events to ``store``.

    Args:
        store: the store (the experiment must be in it and running: exposures refer to it).
        spec: the experiment.
        metrics: metric definitions by name (at least those the experiment uses).
        units: units arriving over ``days`` (before targeting and coverage).
        effects: true relative effect per metric, for every treatment (see the module docstring).
        segment_effects: per dimension and level, a factor applied to every planted effect.
        split: target traffic shares of the exposed units per variant (drops exposures to get them).
        days: days over which units arrive (their first exposure).
        seed: random seed; the same seed writes the same data.
        start: time of the first arrival (default: ``days`` before now, so the experiment is current).
        id_prefix: prefix of unit and event ids (default: the experiment key).
    """
    if units < 1:
        msg = f"units == {units}, must be >= 1"
        raise ValueError(msg)
    if days <= 0:
        msg = f"days == {days}, must be > 0"
        raise ValueError(msg)
    effects = dict(effects or {})
    rng = np.random.default_rng(seed)
    prefix = id_prefix or spec.key
    start = start or (datetime.now(UTC) - timedelta(days=days)).replace(microsecond=0)
    if start.utcoffset() is None:
        msg = f"start == {start.isoformat()}, must be timezone-aware (e.g. datetime.now(UTC))"
        raise ValueError(msg)
    # The seed is part of the ids, so another seed is another population (not only other behaviour).
    unit_ids = np.array([f"{prefix}-s{seed}-u{i}" for i in range(units)], dtype=object)
    attributes = _population(rng, units)
    device, country = attributes["device"], attributes["country"]
    assignment = assign_batch(to_plan(spec), list(unit_ids), attributes)
    index = np.asarray(assignment.variation_index)
    enrolled = index >= 0
    variant_keys = [v.key for v in spec.variants]

    dropped = 0
    if split is not None:
        enrolled, dropped = _force_split(rng, index, enrolled, split, len(variant_keys))
    arrival = start + timedelta(0)
    origin = np.datetime64(arrival.astimezone(UTC).replace(tzinfo=None), "us")
    offsets = rng.uniform(0.0, days, units)  # days after start of each unit's first exposure
    engagement = rng.gamma(ENGAGEMENT_SHAPE, 1 / ENGAGEMENT_SHAPE, units)

    levers = _multipliers(spec, metrics, effects)
    models, notes = _event_models(spec, metrics)
    with_history = _events_read(spec, metrics, covariates=True)
    scale = np.ones(units)
    for dimension, levels in (segment_effects or {}).items():
        column = attributes.get(dimension)
        if column is None:
            msg = f"segment_effects[{dimension!r}]: no such attribute; simulated ones are {sorted(attributes)}"
            raise ValueError(msg)
        for level, factor in levels.items():
            scale = np.where(np.asarray(column) == level, scale * factor, scale)

    # The options are checked above; the experiment's state, once they pass.
    record = get_experiment(store, spec.key)
    if record.status != "running":
        msg = f"experiment {spec.key!r} is {record.status}, not running: start it first (splitlab start {spec.key})"
        raise ValueError(msg)
    exposures = [
        Exposure(
            experiment_key=spec.key, unit_id=str(unit_ids[i]), variant=variant_keys[index[i]],
            timestamp=arrival + timedelta(days=float(offsets[i])),
            attributes={"device": str(device[i]), "country": str(country[i])},
        )
        for i in np.flatnonzero(enrolled)
    ]  # fmt: skip
    for chunk in range(0, len(exposures), BATCH):
        store.exposures.log_many(exposures[chunk : chunk + BATCH], backfill=True)

    treated = enrolled & (index > 0)
    written = 0
    for name, model in models.items():
        # Pre-period events only matter to a CUPED covariate; the analysis never reads the others.
        for period in ("pre", "post") if name in with_history else ("post",):
            lifts = {
                lever: np.where(treated & (period == "post"), 1.0 + (factors[name] - 1.0) * scale, 1.0)
                for lever, factors in levers.items()
                if name in factors
            }
            written += _log_events(store, rng, name, model, period, unit_ids, enrolled, engagement, lifts,
                                   origin, offsets)  # fmt: skip
    exposed = {key: int(np.sum(enrolled & (index == i))) for i, key in enumerate(variant_keys)}
    return SimulationSummary(
        experiment_key=spec.key,
        units=units,
        exposed=exposed,
        events=written,
        effects=effects,
        start=start,
        days=days,
        not_enrolled=int(np.sum(index < 0)),
        dropped_exposures=dropped,
        notes=notes,
    )


def enrolled_share(spec: ExperimentSpec, *, sample: int = 50_000, seed: int = 0) -> float:
    """The share of the simulation's arriving units that ``spec`` enrols (targeting, coverage, namespace, holdout).

    Estimated on ``sample`` simulated units (standard error ``sqrt(share (1 - share) / sample)``).
    """
    if sample < 1:
        msg = f"sample == {sample}, must be >= 1"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    unit_ids = [f"{spec.key}-share-s{seed}-u{i}" for i in range(sample)]
    assignment = assign_batch(to_plan(spec), unit_ids, _population(rng, sample))
    return float(np.mean(np.asarray(assignment.variation_index) >= 0))


def _population(rng: np.random.Generator, units: int) -> dict[str, npt.NDArray[Any]]:
    """The simulated units' attributes, the ones the bundled examples target on."""
    return {
        "device": np.asarray(DEVICES, dtype=object)[rng.choice(len(DEVICES), units, p=DEVICE_SHARES)],
        "country": np.asarray(COUNTRIES, dtype=object)[rng.choice(len(COUNTRIES), units, p=COUNTRY_SHARES)],
        "account_tier": np.where(rng.random(units) < 0.03, "vip", "standard").astype(object),
        "is_employee": rng.random(units) < 0.01,
        "app_version": np.asarray(APP_VERSIONS, dtype=object)[
            rng.choice(len(APP_VERSIONS), units, p=APP_VERSION_SHARES)
        ],
        "user_agent": np.where(rng.random(units) < 0.01, "Googlebot/2.1", "Mozilla/5.0").astype(object),
    }


def _event_models(
    spec: ExperimentSpec, metrics: Mapping[str, MetricDefinition]
) -> tuple[dict[str, EventModel], tuple[str, ...]]:
    """The model of every event the experiment reads, the primary metric's calibrated to the stated baseline."""
    models = {name: default_event_model(name) for name in _events_read(spec, metrics)}
    hypothesis = spec.hypothesis
    if hypothesis is None or hypothesis.baseline is None or hypothesis.primary_metric not in metrics:
        return models, ()
    definition = metrics[hypothesis.primary_metric]
    calibrated = calibrated_event_model(definition, hypothesis.baseline, models)
    if calibrated is None:
        note = f"{definition.name!r} ({definition.kind}) is not calibrated to the baseline: its events keep their model"
        return models, (note,)
    event, model = calibrated
    models[event] = model
    note = (
        f"{event!r} base rate {model.base_rate:.4g}, so that {definition.name!r} has the hypothesis baseline "
        f"{hypothesis.baseline:g} in control"
    )
    return models, (note,)


def simulate_experiment(
    store: Store,
    key: str,
    *,
    units: int,
    effects: Mapping[str, float] | None = None,
    segment_effects: Mapping[str, Mapping[str, float]] | None = None,
    split: Sequence[float] | None = None,
    days: float = 14.0,
    seed: int = 0,
) -> SimulationSummary:
    """:func:`simulate` for the stored experiment ``key``, with its stored spec and metric definitions.

    Raises:
        NotFoundError: No experiment ``key``.
        ValueError: An option out of bounds (named), or an effect on a metric the experiment does not use.
    """
    spec = ExperimentSpec.model_validate(get_experiment(store, key).spec)
    metrics = {name: MetricDefinition.model_validate(d) for name, d in store.metrics.list().items()}
    return simulate(
        store,
        spec,
        metrics,
        units=units,
        effects=effects,
        segment_effects=segment_effects,
        split=split,
        days=days,
        seed=seed,
    )


def _force_split(
    rng: np.random.Generator, index: npt.NDArray[np.int64], enrolled: npt.NDArray[np.bool_], split: Sequence[float],
    k: int,
) -> tuple[npt.NDArray[np.bool_], int]:  # fmt: skip
    if len(split) != k or any(s <= 0 for s in split) or abs(sum(split) - 1) > 1e-6:
        msg = f"split == {list(split)}, must be {k} positive shares summing to 1"
        raise ValueError(msg)
    counts = np.array([np.sum(enrolled & (index == i)) for i in range(k)], dtype=float)
    # Keep as many units as possible: the arm that is shortest relative to its target share binds.
    total = float(np.min(counts / np.asarray(split)))
    keep = enrolled.copy()
    dropped = 0
    for i in range(k):
        members = np.flatnonzero(enrolled & (index == i))
        excess = len(members) - round(total * split[i])
        if excess > 0:
            keep[rng.choice(members, excess, replace=False)] = False
            dropped += excess
    return keep, dropped


def _log_events(
    store: Store, rng: np.random.Generator, name: str, model: EventModel, period: str, unit_ids: Any,
    enrolled: npt.NDArray[np.bool_], engagement: npt.NDArray[np.float64], lifts: Mapping[str, npt.NDArray[np.float64]],
    origin: np.datetime64, offsets: npt.NDArray[np.float64],
) -> int:  # fmt: skip
    """Draw and write one event's occurrences; ``lifts`` holds each planted lever's per-unit multiplier."""
    # The lift applies past the cap, so a planted decrease is exact even where the baseline is high.
    chance = np.minimum(np.minimum(model.base_rate * engagement, MAX_CHANCE) * lifts.get("chance", 1.0), 1.0)
    occurs = enrolled & (rng.random(enrolled.size) < chance)
    owners = np.flatnonzero(occurs)
    counts = 1 + rng.poisson(model.extra_per_unit * engagement[owners])
    if "occurrences" in lifts:  # each occurrence kept with chance m (m < 1), or joined by Poisson(m - 1) more
        factor = lifts["occurrences"][owners]
        counts = rng.binomial(counts, np.minimum(factor, 1.0)) + rng.poisson(counts * np.maximum(factor - 1.0, 0.0))
    unit_of_event = np.repeat(owners, counts)
    size = unit_of_event.size
    if period == "pre":
        when = offsets[unit_of_event] - rng.uniform(0.0, PRE_PERIOD_DAYS, size)
    else:
        when = offsets[unit_of_event] + model.delays(rng, size)
    if model.value_sigma > 0:
        values = model.value_median * rng.lognormal(0.0, model.value_sigma, size)
        if "values" in lifts:
            values = values * lifts["values"][unit_of_event]
        values = np.round(values, 2)
    else:
        values = np.ones(size)
    owners_of_events: list[str] = unit_ids[unit_of_event].tolist()
    tail = f":{name}:{period}:"
    store.events.log_columns(
        event_id=[f"{unit}{tail}{j}" for j, unit in enumerate(owners_of_events)],
        unit_id=owners_of_events,
        name=[name] * size,
        timestamp=origin + _days_as_us(when),
        value=values,
    )
    return size


def _days_as_us(days: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Microseconds in ``days``, exactly as ``timedelta(days=d)`` counts them, for a whole vector.

    CPython keeps the whole days exact, multiplies the fraction by the microseconds in a day, keeps
    that product's whole part and rounds what is left half to even on the total. Doing the same
    steps in numpy gives the times an event built one by one would have, to the microsecond.
    """
    fraction, whole_days = np.modf(days)
    leftover, whole_us = np.modf(fraction * float(US_PER_DAY))
    total = whole_days.astype(np.int64) * US_PER_DAY + whole_us.astype(np.int64)
    nearest = np.where(np.abs(leftover) >= 0.5, np.sign(leftover), 0.0).astype(np.int64)
    # Exactly half a microsecond left: round the total to even (no change when it already is).
    tie_on_even = (np.abs(leftover) == 0.5) & (total % 2 == 0)
    return total + np.where(tie_on_even, 0, nearest)
