"""Plan an experiment from its spec and the store's history: sample size, duration, MDE, feasibility.

``splitlab plan KEY`` and :func:`plan_experiment` read the stored spec (hypothesis, metrics,
variants and weights, coverage, analysis method, schedule) and estimate what the plan needs
from the events already in the store, over a history window of ``days`` days ending at the
reference time:

* **Population.** The units with any event in the window; a unit "enters" at its first event in
  the window. The per-unit metric values are those the experiment's own aggregation query would
  give with that moment as the unit's exposure (same windows, capping, covariates), at the end
  of the window: the query of :func:`splitlab.analysis.sql.aggregate_experiment`, run inside the
  database over a temporary table of the window's units (one row per unit, made by one
  ``INSERT ... SELECT``; raw events never come to Python; the table lives in the transaction,
  which is rolled back).
* **Baseline and variance.** Per metric: the rate (binary), mean (sum, count, mean) or ratio,
  and the per-unit variance the plan uses (``p (1 - p)`` for a rate, the ddof=1 variance for a
  mean, the delta-method variance of the linearised values for a ratio).
* **CUPED.** ``rho^2``, the squared correlation of the metric with its covariate (the spec's,
  or for a metric without one a suggested ``covariate: {pre_window_days: DAYS}``), is the
  variance reduction (Deng et al. 2013).
* **Traffic.** The window's units divided by its days, times the share of eligible units the
  spec enrols (``coverage``, ``1 - holdout.share``, the namespace range's width): a D-day window
  counts a returning user once, as a D-day experiment enrols it once. Targeting conditions are
  not applied (events carry no unit attributes), so with targeting the figure is an upper bound.

The reference time is ``reference`` when given, else the experiment's start (its first move to
running in the audit log) when it has started, so the window is its pre-period, else now. The
window's length is ``days`` when given, else the spec's ``schedule.max_duration_days``, else 14.

From those the plan gives the fixed-horizon sample size (:func:`splitlab.stats.power.plan_sample_size`,
the code path of ``splitlab sample-size``) with and without CUPED, the days it takes, the MDE and
the power reachable at the planned duration, the operating characteristics of a sequential
design (group-sequential: exact, by the recursive integration of
:func:`~splitlab.stats.sequential.group_sequential.operating_characteristics`; mSPRT: by a
seeded simulation on sufficient statistics, since the library has no closed form for the
hybrid mSPRT's power), and a verdict: ``FEASIBLE``, ``FEASIBLE_WITH_CUPED`` or ``NOT_FEASIBLE``
against the planned duration.

References:
    Deng, A., Xu, Y., Kohavi, R., Walker, T. (2013). Improving the Sensitivity of Online
    Controlled Experiments by Utilizing Pre-Experiment Data (CUPED). WSDM, section 3.1
    (``Var(Y_cv) = Var(Y) (1 - rho^2)``).
    Deng, A., Knoblich, U., Lu, J. (2018). Applying the Delta Method in Metric Analytics. KDD,
    eq. (2)-(4) (the per-unit variance of a ratio).
    Jennison, C., Turnbull, B. W. (2000). Group Sequential Methods with Applications to Clinical
    Trials, ch. 3 (canonical joint distribution, drift ``eta = delta sqrt(I_max)``) and ch. 7.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Column, MetaData, String, Table, func, insert, literal, select

from splitlab.operations.errors import ConflictError
from splitlab.operations.experiments import get_experiment, history
from splitlab.specs.model import Covariate, ExperimentSpec, MetricDefinition
from splitlab.storage.tables import UtcDateTime, events

if TYPE_CHECKING:
    from splitlab.analysis.sql import ExperimentAggregates
    from splitlab.stats.power import SampleSizePlan
    from splitlab.storage import Store

__all__ = [
    "DEFAULT_WINDOW_DAYS",
    "SEQUENTIAL_SEED",
    "SEQUENTIAL_SIMULATIONS",
    "VERDICTS",
    "ExperimentPlan",
    "MetricEstimate",
    "SequentialPlan",
    "TrafficEstimate",
    "plan_experiment",
]

DEFAULT_WINDOW_DAYS = 14
VERDICTS = ("FEASIBLE", "FEASIBLE_WITH_CUPED", "NOT_FEASIBLE")
SEQUENTIAL_SIMULATIONS = 20_000
"""Paths of the mSPRT simulation: a power near 0.8 has a simulation standard error near 0.003."""
SEQUENTIAL_SEED = 20_240_601
_POPULATION = "splitlab_plan_population"
_HISTORY = "history"
_ONE_US = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricEstimate:
    """A metric's baseline, per-unit variance and CUPED correlation over the history window.

    Attributes:
        metric: the metric's name.
        kind: its kind (``binary``, ``mean``, ``sum``, ``count``, ``ratio``, ``quantile``).
        role: ``primary`` (the hypothesis's metric) or ``goal``.
        units: units with a value (every unit of the window but, for kind ``mean``, those without the event).
        baseline: the rate, mean or ratio over those units (NaN without units).
        variance: per-unit variance: ``p (1 - p)`` for a rate, the ddof=1 sample variance for a
            mean, the delta-method variance of the linearised values for a ratio.
        std: ``sqrt(variance)``.
        covariate: ``spec`` (the metric's own CUPED covariate), ``suggested`` (none in the spec: a
            covariate over ``pre_window_days`` before entry was tried) or None (not possible).
        pre_window_days: the covariate's pre-period, in days.
        rho_squared: squared correlation of the (linearised) metric with its covariate: the
            variance reduction CUPED would give; None without a covariate or when undefined.
        error_code, error_message: why the metric cannot be planned from this history.
    """

    metric: str
    kind: str
    role: str
    units: int
    baseline: float
    variance: float
    std: float
    covariate: str | None
    pre_window_days: float | None
    rho_squared: float | None
    error_code: str | None = None
    error_message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (NaN as None)."""
        return {item.name: _plain(getattr(self, item.name)) for item in fields(self)}


@dataclass(frozen=True, slots=True, kw_only=True)
class TrafficEstimate:
    """Units a day that would enter the experiment, from the history window.

    Attributes:
        window_start, window_end: the window ``[start, end)`` (UTC).
        days: its length in days.
        units: distinct units with at least one event in the window.
        per_day: ``(day, units)``: units whose first event in the window fell on that UTC day.
        eligible_share: ``coverage * (1 - holdout.share) * namespace width``.
        daily_units: ``units / days * eligible_share``: units a day entering the experiment.
        targeting_applied: False when the spec has targeting conditions (not applied: the figure
            is then an upper bound).
    """

    window_start: datetime
    window_end: datetime
    days: float
    units: int
    per_day: tuple[tuple[date, int], ...]
    eligible_share: float
    daily_units: float
    targeting_applied: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary; times and days in ISO format."""
        return {
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "days": self.days,
            "units": self.units,
            "per_day": [{"day": day.isoformat(), "units": units} for day, units in self.per_day],
            "eligible_share": self.eligible_share,
            "daily_units": self.daily_units,
            "targeting_applied": self.targeting_applied,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SequentialPlan:
    """Operating characteristics of the spec's sequential method with daily looks at the estimated traffic.

    The monitor (:func:`splitlab.stats.sequential.monitor`) looks once a day at the cumulative
    statistics of control and the (smallest) treatment, up to the planned size ``planned_n`` of
    both groups together (``2 * schedule.min_sample_size``, else twice the fixed-horizon size
    without CUPED: what the analysis uses) or the planned duration, whichever comes first.

    Attributes:
        method: ``msprt``, ``gst-obf`` or ``gst-pocock``.
        computation: ``exact`` (group-sequential recursion) or ``simulation`` (mSPRT).
        planned_n: units in both compared groups at the planned end.
        looks: daily looks taken (the last one reaches ``planned_n``, or the planned duration).
        reaches_planned_n: whether the last look reaches ``planned_n`` (else the test is truncated).
        power: probability of stopping for efficacy at the hypothesis's MDE.
        type_i_error: probability of rejecting (either direction) with no effect.
        expected_units_alternative: expected units of both groups at stopping, at the MDE.
        expected_units_null: the same with no effect.
        simulations: paths simulated (0 when exact).
        seed: the simulation's seed (None when exact).
        power_se: the simulation standard error of ``power`` (0 when exact).
        cuped: whether the monitored estimates are CUPED-adjusted (the spec's covariate).
    """

    method: str
    computation: str
    planned_n: float
    looks: int
    reaches_planned_n: bool
    power: float
    type_i_error: float
    expected_units_alternative: float
    expected_units_null: float
    simulations: int
    seed: int | None
    power_se: float
    cuped: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (NaN as None)."""
        return {item.name: _plain(getattr(self, item.name)) for item in fields(self)}


@dataclass(frozen=True, slots=True, kw_only=True)
class ExperimentPlan:
    """What an experiment needs, and whether its schedule gives it, from its spec and the store's history.

    Attributes:
        experiment_key, status: the experiment and its lifecycle status.
        started_at: its first start (None: never started).
        reference: end of the history window; ``reference_source`` says where it came from
            (``option``, ``experiment start`` or ``now``).
        primary_metric, mde, relative, alpha, power, direction: the hypothesis.
        spec_baseline: ``hypothesis.baseline`` (the plan uses the history's, shown beside it).
        variants: ``(key, weight)`` in spec order; the first is control.
        ratio: units of the smallest treatment per control unit (the plan's ``ratio``).
        analysis_method, sequential_method: ``analysis.method`` and ``analysis.sequential``.
        planned_days: the duration judged against; ``planned_days_source`` names it
            (``schedule.max_duration_days``, ``analysis.decision.max_duration_days`` or ``window``).
        traffic: :class:`TrafficEstimate`.
        metrics: :class:`MetricEstimate` of the primary metric, then the other goal metrics.
        sample_size: the fixed-horizon plan at the history's estimates, without CUPED.
        sample_size_cuped: the same with the primary metric's ``rho^2`` (None without a covariate).
        units_needed, units_needed_cuped: units to enrol in all variants (control and the smallest
            treatment reach their sizes).
        days_needed, days_needed_cuped: days to enrol them at ``traffic.daily_units``.
        mde_at_planned, mde_at_planned_cuped: the MDE (relative when the hypothesis is) with
            the units of ``planned_days`` days.
        power_at_planned, power_at_planned_cuped: the power at the hypothesis's MDE after ``planned_days`` days.
        sequential: :class:`SequentialPlan` for a sequential design, else None.
        verdict: one of :data:`VERDICTS`; None when the history cannot give a plan.
        reasons: why, in words.
        error_code, error_message: why no plan (``NO_HISTORY``, the primary metric's own code).
    """

    experiment_key: str
    status: str
    started_at: datetime | None
    reference: datetime
    reference_source: str
    primary_metric: str
    mde: float
    relative: bool
    alpha: float
    power: float
    direction: str
    spec_baseline: float | None
    variants: tuple[tuple[str, float], ...]
    ratio: float
    analysis_method: str
    sequential_method: str | None
    planned_days: float
    planned_days_source: str
    traffic: TrafficEstimate
    metrics: tuple[MetricEstimate, ...]
    sample_size: SampleSizePlan | None
    sample_size_cuped: SampleSizePlan | None
    units_needed: int | None
    units_needed_cuped: int | None
    days_needed: int | None
    days_needed_cuped: int | None
    mde_at_planned: float | None
    mde_at_planned_cuped: float | None
    power_at_planned: float | None
    power_at_planned_cuped: float | None
    sequential: SequentialPlan | None
    verdict: str | None
    reasons: tuple[str, ...]
    error_code: str | None = None
    error_message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary, the JSON of ``splitlab plan --json`` (NaN as None, times in ISO format)."""
        out: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "variants":
                out[item.name] = [{"key": key, "weight": weight} for key, weight in value]
            elif item.name == "metrics":
                out[item.name] = [metric.to_dict() for metric in value]
            elif item.name == "reasons":
                out[item.name] = list(value)
            elif hasattr(value, "to_dict"):
                out[item.name] = value.to_dict()
            else:
                out[item.name] = _plain(value)
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


# --------------------------------------------------------------------------------------------
# The history window


def _started_at(store: Store, key: str) -> datetime | None:
    return next((v.changed_at for v in history(store, key) if v.status == "running"), None)


def _reference(reference: date | datetime | None, started_at: datetime | None) -> tuple[datetime, str]:
    if reference is None:
        return (started_at, "experiment start") if started_at is not None else (datetime.now(UTC), "now")
    if isinstance(reference, datetime):
        if reference.utcoffset() is None:
            msg = f"reference == {reference.isoformat()!r}, must be a timezone-aware datetime or a date"
            raise ValueError(msg)
        return reference.astimezone(UTC), "option"
    return datetime.combine(reference, time(), tzinfo=UTC), "option"


def _window_days(days: float | None, spec: ExperimentSpec) -> float:
    if days is None:
        return float(spec.schedule.max_duration_days or DEFAULT_WINDOW_DAYS)
    if isinstance(days, bool) or not isinstance(days, int | float) or not math.isfinite(days) or days <= 0:
        msg = f"days == {days!r}, must be a number > 0"
        raise ValueError(msg)
    return float(days)


def _planned_days(spec: ExperimentSpec, window_days: float) -> tuple[float, str]:
    if spec.schedule.max_duration_days is not None:
        return float(spec.schedule.max_duration_days), "schedule.max_duration_days"
    if spec.analysis.decision.max_duration_days is not None:
        return float(spec.analysis.decision.max_duration_days), "analysis.decision.max_duration_days"
    return window_days, "window"


def _eligible_share(spec: ExperimentSpec) -> float:
    share = spec.coverage
    if spec.holdout is not None:
        share *= 1 - spec.holdout.share
    if spec.namespace is not None:
        start, end = spec.namespace.range
        share *= end - start
    return share


def _with_covariate(metric: MetricDefinition, pre_window_days: float) -> tuple[MetricDefinition, str | None]:
    """The definition the query runs: the spec's covariate, a suggested one, or none where CUPED cannot apply."""
    if metric.covariate is not None:
        return metric, "spec"
    if metric.kind == "quantile" or metric.test is not None:
        return metric, None
    return metric.model_copy(update={"covariate": Covariate(pre_window_days=pre_window_days)}), "suggested"


def _aggregate(
    store: Store, key: str, metrics: list[MetricDefinition], start: datetime, end: datetime
) -> ExperimentAggregates:
    """The window's units entering at their first event, aggregated by the experiment's own query, in the database."""
    from splitlab.analysis.sql import EventTable, ExposureTable, Source, aggregate_experiment

    population = Table(
        _POPULATION,
        MetaData(),
        Column("unit_id", String, primary_key=True),
        Column("variant", String, nullable=False),
        Column("first_seen", UtcDateTime(), nullable=False),
        prefixes=["TEMPORARY"],
    )
    first_events = (
        select(events.c.unit_id, literal(_HISTORY, String), func.min(events.c.timestamp))
        .where(events.c.timestamp >= start, events.c.timestamp < end)
        .group_by(events.c.unit_id)
    )
    source = Source(
        ExposureTable(
            table=_POPULATION, unit="unit_id", variant="variant", timestamp="first_seen", one_row_per_unit=True
        ),
        EventTable(table="events", unit="unit_id", name="name", value="value", timestamp="timestamp"),
    )
    with store.engine.connect() as conn:
        try:
            population.create(conn)
            conn.execute(insert(population).from_select(["unit_id", "variant", "first_seen"], first_events))
            # as_of is inclusive: the last microsecond before the window's end.
            return aggregate_experiment(
                conn, experiment_key=key, metrics=metrics, source=source, by_day=True, as_of=end - _ONE_US
            )
        finally:
            # The temporary table is gone with the transaction, on SQLite and PostgreSQL alike.
            conn.rollback()


# --------------------------------------------------------------------------------------------
# Estimates


def _rho_squared(statistic: Any) -> float | None:
    """Squared correlation of the linearised metric and covariate (None when a variance is 0 or undefined)."""
    metric, covariate = statistic.metric.linearize(), statistic.covariate.linearize()
    var_y, var_x = metric.unit_variance, covariate.unit_variance
    if not (var_y > 0 and var_x > 0):
        return None
    cross = float(metric.gradient @ statistic.cross_covariance() @ covariate.gradient)
    value = cross * cross / (var_y * var_x)
    return min(value, 1.0) if math.isfinite(value) else None


def _estimate(
    metric: MetricDefinition, role: str, statistic: Any, covariate: str | None, pre_window_days: float, window: str
) -> MetricEstimate:
    from splitlab.stats.statistics import CovariateStatistic, ProportionStatistic

    common: dict[str, Any] = {"metric": metric.name, "kind": metric.kind, "role": role}
    part = statistic.metric if isinstance(statistic, CovariateStatistic) else statistic
    rho = _rho_squared(statistic) if isinstance(statistic, CovariateStatistic) else None
    cuped: dict[str, Any] = {"covariate": covariate, "pre_window_days": (
        metric.covariate.pre_window_days if metric.covariate is not None else pre_window_days
    ) if covariate else None, "rho_squared": rho}  # fmt: skip
    if metric.kind == "quantile" or part is None:
        return MetricEstimate(
            **common, units=0, baseline=math.nan, variance=math.nan, std=math.nan, covariate=None,
            pre_window_days=None, rho_squared=None, error_code="UNSUPPORTED_KIND",
            error_message=f"metric {metric.name!r} is a quantile: the plan has no sample-size formula for quantiles",
        )  # fmt: skip
    n = part.n
    baseline = part.mean
    variance = part.variance if isinstance(part, ProportionStatistic) else part.linearize().unit_variance
    code = message = None
    if n < 2:
        code = "NO_HISTORY" if n == 0 else "TOO_FEW_UNITS"
        message = f"metric {metric.name!r} has {n} unit(s) with a value in {window}; the variance needs at least 2"
    elif not (math.isfinite(variance) and variance > 0):
        code = "ZERO_VARIANCE"
        message = (
            f"metric {metric.name!r} has per-unit variance {variance:g} over {n:,} units in {window} "
            f"(baseline {baseline:g}); no sample size follows from it"
        )
    return MetricEstimate(
        **common, units=n, baseline=baseline, variance=variance, std=math.sqrt(variance) if variance >= 0 else math.nan,
        **cuped, error_code=code, error_message=message,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Sequential designs


@dataclass(frozen=True, slots=True)
class _Pair:
    """Control and the smallest treatment: daily units, per-unit variances, the effect planned for."""

    daily_control: float
    daily_treatment: float
    var_control: float
    var_treatment: float
    effect: float


def _sequential(
    method: str, pair: _Pair, *, planned_n: float, days: float, alpha: float, cuped: bool
) -> SequentialPlan:
    daily = pair.daily_control + pair.daily_treatment
    last = max(1, math.floor(days))
    reach = math.ceil(planned_n / daily - 1e-9)
    looks = np.arange(1, min(last, reach) + 1, dtype=np.float64)
    n = looks * daily
    common: dict[str, Any] = {"method": method, "planned_n": planned_n, "looks": int(looks.size),
                              "reaches_planned_n": bool(n[-1] >= planned_n - 1e-9), "cuped": cuped}  # fmt: skip
    if method == "msprt":
        return SequentialPlan(**common, **_msprt_simulation(pair, looks, planned_n=planned_n, alpha=alpha))
    from splitlab.stats.sequential.group_sequential import operating_characteristics, spending_design

    fractions = np.minimum(n / planned_n, 1.0)
    design = spending_design(
        fractions, alpha=alpha, alternative="two-sided",
        spending="obrien-fleming" if method == "gst-obf" else "pocock", final=bool(fractions[-1] >= 1.0),
    )  # fmt: skip
    share = pair.daily_control / daily
    final_variance = pair.var_control / (planned_n * share) + pair.var_treatment / (planned_n * (1 - share))
    alternative = operating_characteristics(design, abs(pair.effect) / math.sqrt(final_variance))
    null = operating_characteristics(design, 0.0)
    return SequentialPlan(
        **common, computation="exact", power=alternative.power, type_i_error=sum(null.efficacy) + sum(null.harm),
        expected_units_alternative=alternative.expected_fraction * planned_n,
        expected_units_null=null.expected_fraction * planned_n, simulations=0, seed=None, power_se=0.0,
    )  # fmt: skip


def _msprt_simulation(pair: _Pair, looks: Any, *, planned_n: float, alpha: float) -> dict[str, Any]:
    """The hybrid mSPRT of the monitor on simulated daily sufficient statistics (normal increments).

    Each group's running sum grows by ``N(dn mu, dn sigma^2)`` a day (the sum of ``dn`` new units'
    values), with and without the effect, from one seeded generator; the looks are evaluated by
    :func:`splitlab.stats.sequential.always_valid.msprt_path`, vectorised over the paths.
    """
    from splitlab.stats.sequential.always_valid import msprt_path

    rng = np.random.default_rng(SEQUENTIAL_SEED)
    paths = SEQUENTIAL_SIMULATIONS
    n_c, n_t = looks * pair.daily_control, looks * pair.daily_treatment
    noise_c = np.cumsum(rng.standard_normal((paths, looks.size)) * math.sqrt(pair.daily_control), axis=1)
    noise_t = np.cumsum(rng.standard_normal((paths, looks.size)) * math.sqrt(pair.daily_treatment), axis=1)
    # Sums of centred values over the units so far, as means: the estimate's error at each look.
    error = noise_t * math.sqrt(pair.var_treatment) / n_t - noise_c * math.sqrt(pair.var_control) / n_c
    variance = np.broadcast_to(pair.var_control / n_c + pair.var_treatment / n_t, error.shape)
    units = n_c + n_t
    results = {}
    for label, shift in (("alternative", pair.effect), ("null", 0.0)):
        effect = error + shift
        path = msprt_path(effect, variance, units, alpha=alpha, alternative="two-sided", planned_n=planned_n)
        rejected = path.rejected
        crossed = rejected.any(axis=1)
        first = np.argmax(rejected, axis=1)
        stop_units = np.where(crossed, units[first], units[-1])
        right_way = np.sign(effect[np.arange(paths), first]) == np.sign(shift)
        results[label] = (crossed, right_way, float(stop_units.mean()))
    crossed, right_way, expected_alternative = results["alternative"]
    power = float(np.mean(crossed & right_way))
    return {
        "computation": "simulation",
        "power": power,
        "type_i_error": float(np.mean(results["null"][0])),
        "expected_units_alternative": expected_alternative,
        "expected_units_null": results["null"][2],
        "simulations": paths,
        "seed": SEQUENTIAL_SEED,
        "power_se": math.sqrt(power * (1 - power) / paths),
    }


# --------------------------------------------------------------------------------------------
# The use case


def _metric_definitions(store: Store, spec: ExperimentSpec, key: str) -> dict[str, MetricDefinition]:
    assert spec.hypothesis is not None  # noqa: S101 - checked by the caller
    names = list(dict.fromkeys([spec.hypothesis.primary_metric, *spec.metrics.goal]))
    stored = store.metrics.get_many(names=names)
    if missing := [name for name in names if name not in stored]:
        msg = f"experiment {key!r} uses metrics with no stored definition: {missing}; `splitlab apply` the metrics file"
        raise ConflictError("spec.metrics", msg)
    return {name: MetricDefinition.model_validate(stored[name]) for name in names}


def _traffic(
    aggregates: ExperimentAggregates, spec: ExperimentSpec, start: datetime, end: datetime, days: float
) -> TrafficEstimate:
    units = aggregates.variant_units.get(_HISTORY, 0)
    counts = [aggregates.cell_units.get(_day_cell(day), 0) for day in aggregates.days]
    per_day = tuple(zip(aggregates.days, np.diff([0, *counts]).tolist(), strict=True))
    share = _eligible_share(spec)
    return TrafficEstimate(
        window_start=start, window_end=end, days=days, units=units, per_day=per_day, eligible_share=share,
        daily_units=units / days * share,
        targeting_applied=not (spec.targeting.include or spec.targeting.exclude),
    )  # fmt: skip


def _day_cell(day: date) -> Any:
    from splitlab.analysis.sql import CellKey

    return CellKey(_HISTORY, None, day)


def _size(estimate: MetricEstimate, statistic: Any, *, relative: bool, options: dict[str, Any]) -> dict[str, Any]:
    """The arguments of the power functions for the primary metric: its kind's inputs and the options."""
    from splitlab.stats.statistics import CovariateStatistic

    part = statistic.metric if isinstance(statistic, CovariateStatistic) else statistic
    base = {"relative": relative, **options}
    if estimate.kind == "binary":
        return {"metric": "proportion", "baseline": estimate.baseline, **base}
    if estimate.kind == "ratio":
        return {"metric": "ratio", "statistic": part, **base}
    return {"metric": "mean", "baseline": estimate.baseline, "std": estimate.std, **base}


def plan_experiment(
    store: Store,
    key: str,
    *,
    reference: date | datetime | None = None,
    days: float | None = None,
) -> ExperimentPlan:
    """Plan experiment ``key`` from its stored spec and the store's history (see the module's docstring).

    Args:
        store: the store (spec, metric definitions, events).
        key: the experiment.
        reference: end of the history window: a date (midnight UTC) or an aware time; default the
            experiment's start if it has started, else now.
        days: length of the history window in days (> 0); default ``schedule.max_duration_days``, else 14.

    Returns:
        The plan; with ``verdict`` None and an ``error_code`` when the history cannot give one
        (no units in the window, a primary metric without variance).

    Raises:
        NotFoundError: no experiment ``key``.
        ConflictError: the spec has no hypothesis, or its metrics have no stored definition.
        ValueError: ``days`` or ``reference`` out of bounds (named).
    """
    from splitlab.stats.power import duration_days, minimum_detectable_effect, plan_sample_size, power_at

    record = get_experiment(store, key)
    spec = ExperimentSpec.model_validate(record.spec)
    hypothesis = spec.hypothesis
    if hypothesis is None:
        msg = (
            f"experiment {key!r} has no hypothesis: planning needs hypothesis.primary_metric and hypothesis.mde "
            "(and alpha, power) in its spec"
        )
        raise ConflictError("spec.hypothesis", msg)
    window_days = _window_days(days, spec)
    started_at = _started_at(store, key)
    end, reference_source = _reference(reference, started_at)
    start = end - timedelta(days=window_days)
    window = f"the {window_days:g} days from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
    definitions = _metric_definitions(store, spec, key)
    queried = {name: _with_covariate(metric, window_days) for name, metric in definitions.items()}
    aggregates = _aggregate(store, key, [definition for definition, _ in queried.values()], start, end)
    traffic = _traffic(aggregates, spec, start, end, window_days)
    primary = hypothesis.primary_metric
    estimates = tuple(
        _estimate(definitions[name], "primary" if name == primary else "goal",
                  aggregates.cells.get(_cell(), {}).get(name), covariate, window_days, window)
        for name, (_, covariate) in queried.items()
    )  # fmt: skip
    weights = tuple((v.key, v.weight) for v in spec.variants)
    control_weight = weights[0][1]
    smallest = min(weight for _, weight in weights[1:])
    planned_days, planned_source = _planned_days(spec, window_days)
    identity: dict[str, Any] = {
        "experiment_key": key, "status": record.status, "started_at": started_at, "reference": end,
        "reference_source": reference_source, "primary_metric": primary, "mde": hypothesis.mde,
        "relative": hypothesis.mde_type == "relative", "alpha": spec.alpha, "power": hypothesis.power,
        "direction": hypothesis.direction, "spec_baseline": hypothesis.baseline, "variants": weights,
        "ratio": smallest / control_weight if control_weight > 0 else math.nan,
        "analysis_method": spec.analysis.method, "sequential_method": spec.analysis.sequential,
        "planned_days": planned_days, "planned_days_source": planned_source, "traffic": traffic, "metrics": estimates,
    }  # fmt: skip
    empty: dict[str, Any] = dict.fromkeys(
        ("sample_size", "sample_size_cuped", "units_needed", "units_needed_cuped", "days_needed", "days_needed_cuped",
         "mde_at_planned", "mde_at_planned_cuped", "power_at_planned", "power_at_planned_cuped", "sequential",
         "verdict"),
    )  # fmt: skip
    if control_weight == 0 or smallest == 0:
        message = "a variant has weight 0: the plan needs every variant to get units"
        return ExperimentPlan(**identity, **empty, reasons=(message,), error_code="ZERO_WEIGHT", error_message=message)
    if traffic.units == 0:
        message = f"no units with events in {window}: cannot estimate metric {primary!r} or the traffic"
        return ExperimentPlan(**identity, **empty, reasons=(message,), error_code="NO_HISTORY", error_message=message)
    estimate = estimates[0]
    if estimate.error_code is not None:
        message = str(estimate.error_message)
        return ExperimentPlan(
            **identity, **empty, reasons=(message,), error_code=estimate.error_code, error_message=message
        )
    if traffic.daily_units <= 0:
        message = f"coverage, holdout and namespace leave no eligible units (share {traffic.eligible_share:g})"
        return ExperimentPlan(**identity, **empty, reasons=(message,), error_code="NO_TRAFFIC", error_message=message)
    statistic = aggregates.cells[_cell()][primary]
    options = {"alpha": hypothesis.alpha, "ratio": identity["ratio"], "variants": len(weights)}
    inputs = _size(estimate, statistic, relative=identity["relative"], options=options)
    rho = estimate.rho_squared
    reductions = {"plain": 0.0} | ({"cuped": rho} if rho is not None else {})
    # A mean metric's sample is the units with a value (a purchase); the others count every unit.
    valued = estimate.units / traffic.units
    share_c, share_t = control_weight * traffic.daily_units * valued, smallest * traffic.daily_units * valued
    n_planned = share_c * planned_days
    sizes: dict[str, dict[str, Any]] = {}
    try:
        for label, reduction in reductions.items():
            plan = plan_sample_size(mde=hypothesis.mde, power=hypothesis.power, variance_reduction=reduction,
                                    daily_traffic=[traffic.daily_units * valued], **inputs)  # fmt: skip
            needed = max(plan.total, plan.per_variant / control_weight, plan.treatment_per_variant / smallest)
            enrol = math.ceil(needed / valued - 1e-9)
            power_inputs = {k: v for k, v in inputs.items() if k != "metric"}
            sizes[label] = {
                "plan": plan,
                "units": enrol,
                "days": duration_days(enrol, traffic.daily_units),
                "mde": minimum_detectable_effect(n_planned, metric=inputs["metric"], power=hypothesis.power,
                                                 variance_reduction=reduction, **power_inputs),
                "power": power_at(n_planned, hypothesis.mde, metric=inputs["metric"], variance_reduction=reduction,
                                  **power_inputs),
            }  # fmt: skip
    except ValueError as error:
        # The history's baseline can put the planned treatment rate outside (0, 1): data, not a caller mistake.
        message = f"metric {primary!r} at the history's baseline {estimate.baseline:g}: {error}"
        return ExperimentPlan(**identity, **empty, reasons=(message,), error_code="NO_PLAN", error_message=message)
    plain, cuped = sizes["plain"], sizes.get("cuped")
    sequential = None
    if spec.analysis.method == "sequential" and spec.analysis.sequential is not None:
        in_spec = estimate.covariate == "spec" and rho is not None
        factor = 1 - rho if in_spec and rho is not None else 1.0
        effect = _signed(plain["plan"].absolute_mde, hypothesis.direction)
        variance_c, variance_t = _pair_variances(estimate, effect)
        planned_per_variant = spec.schedule.min_sample_size or plain["plan"].per_variant
        pair = _Pair(share_c, share_t, variance_c * factor, variance_t * factor, effect)
        sequential = _sequential(spec.analysis.sequential, pair, planned_n=2.0 * planned_per_variant,
                                 days=planned_days, alpha=spec.alpha, cuped=in_spec)  # fmt: skip
    verdict, reasons = _verdict(spec, estimate, traffic, plain, cuped, planned_days, planned_source)
    if valued < 1:
        note = (
            f"{valued:.1%} of the window's units have a value of metric {primary!r} (kind {estimate.kind!r}): "
            "the sample sizes count those, the units to enrol and the days count every unit"
        )
        reasons = (*reasons, note)
    return ExperimentPlan(
        **identity,
        sample_size=plain["plan"],
        sample_size_cuped=cuped["plan"] if cuped else None,
        units_needed=plain["units"],
        units_needed_cuped=cuped["units"] if cuped else None,
        days_needed=plain["days"],
        days_needed_cuped=cuped["days"] if cuped else None,
        mde_at_planned=plain["mde"],
        mde_at_planned_cuped=cuped["mde"] if cuped else None,
        power_at_planned=plain["power"],
        power_at_planned_cuped=cuped["power"] if cuped else None,
        sequential=sequential,
        verdict=verdict,
        reasons=reasons,
    )


def _cell() -> Any:
    from splitlab.analysis.sql import CellKey

    return CellKey(_HISTORY)


def _signed(effect: float, direction: str) -> float:
    return -effect if direction == "decrease" else effect


def _pair_variances(estimate: MetricEstimate, effect: float) -> tuple[float, float]:
    """Per-unit variances of control and treatment; a rate's treatment variance is at the planned rate."""
    if estimate.kind != "binary":
        return estimate.variance, estimate.variance
    p0 = estimate.baseline
    p1 = p0 + effect
    p1 = min(max(p1, 0.0), 1.0)
    return estimate.variance, p1 * (1 - p1)


def _verdict(
    spec: ExperimentSpec,
    estimate: MetricEstimate,
    traffic: TrafficEstimate,
    plain: dict[str, Any],
    cuped: dict[str, Any] | None,
    planned_days: float,
    source: str,
) -> tuple[str, tuple[str, ...]]:
    limit = f"{source} == {planned_days:g}"
    reasons = [
        (
            f"{plain['plan'].per_variant:,} units per variant ({plain['units']:,} in all) without CUPED: "
            f"{plain['days']:,} days at {traffic.daily_units:,.1f} units a day ({limit})"
        )
    ]
    if plain["days"] <= planned_days:
        verdict = "FEASIBLE"
    elif cuped is not None and cuped["days"] <= planned_days:
        verdict = "FEASIBLE_WITH_CUPED"
    else:
        verdict = "NOT_FEASIBLE"
    if cuped is not None:
        how = (
            "the spec's covariate"
            if estimate.covariate == "spec"
            else f"a covariate the spec lacks (add covariate: {{pre_window_days: {estimate.pre_window_days:g}}} "
            f"to metric {estimate.metric!r})"
        )
        reasons.append(
            f"with CUPED ({how}, rho^2 {estimate.rho_squared:.3f}): {cuped['plan'].per_variant:,} per variant, "
            f"{cuped['days']:,} days"
        )
    if verdict == "NOT_FEASIBLE":
        best = cuped if cuped is not None else plain
        reasons.append(
            f"not reachable in {planned_days:g} days: the MDE there is {_effect(best['mde'], plain['plan'].relative)} "
            f"against the hypothesis's {_effect(plain['plan'].mde, plain['plan'].relative)}"
        )
    if source == "window":
        reasons.append("the spec has no max_duration_days: judged against the history window's length")
    minimum = spec.schedule.min_duration_days
    if minimum is not None and plain["days"] < minimum:
        reasons.append(f"schedule.min_duration_days == {minimum} keeps it running longer than the sample needs")
    given = spec.schedule.min_sample_size
    if given is not None and given < plain["plan"].per_variant:
        reasons.append(
            f"schedule.min_sample_size == {given:,} is below the {plain['plan'].per_variant:,} per variant "
            "this history asks for"
        )
    if not traffic.targeting_applied:
        reasons.append(
            "targeting is not applied to the history (events carry no attributes): traffic is an upper bound"
        )
    return verdict, tuple(reasons)


def _effect(value: float, relative: bool) -> str:
    if not math.isfinite(value):
        return "undefined"
    return f"{value:.2%} relative" if relative else f"{value:g} absolute"
