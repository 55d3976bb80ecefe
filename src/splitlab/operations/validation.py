"""``splitlab validate``: the calibration suite on demand, and A/A re-randomisations on a store's own data.

:func:`validate` runs splitlab's calibration suite (:mod:`splitlab.stats.calibration`) and two
bandit checks, each line a simulated rate or mean with its Monte Carlo error, an acceptance band
derived from that error, and a verdict. :func:`validate_store` does the same on an experiment's
own pre-period data: the units active before it started, re-randomised into its variants with its
weights many times, each metric analysed by the spec's own test.

**The pre-period A/A.** The window is the ``days`` before the reference time: the experiment's
first start (from its audit log), or now when it never started, or the ``reference_date`` given.
Its units are those with at least one event of any name in the window, each "exposed" at its
first event there, as a live experiment exposes a unit at its first visit; the metrics then read
their own windows from that time, cut at the reference time. The experiment's targeting is not
applied (the pre-period has no assignments to read it from). The per-unit values are computed
inside the database by the aggregation query itself (:func:`splitlab.analysis.sql.aggregate_experiment`
over a temporary view of those units, one "variant" per unit), so each unit's sufficient
statistics come back and a re-randomisation is a sum of them per random group, in numpy.

A metric's false-positive rate is the share of re-randomisations in which the readout would call
some treatment different from control: the spec's test (CUPED with a covariate, Mann-Whitney,
bootstrap or a quantile test where the metric names one) at the spec's alpha, after its
multiple-testing correction across treatments, or, with ``significance: chance_to_win``, a chance
to win beyond the threshold either way. A sequential spec is judged by its fixed-horizon test at
the window's end; peeking is the simulation suite's ``peeking`` lines.

References:
    Kohavi, R., Tang, D., Xu, Y. (2020). Trustworthy Online Controlled Experiments, ch. 19
    (A/A tests, and re-randomising stored data as a cheap way to run many of them).
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from splitlab.bandits.simulation import simulate as simulate_bandit
from splitlab.operations.errors import ConflictError, InvalidInputError
from splitlab.operations.experiments import get_experiment, history
from splitlab.specs import ExperimentSpec, MetricDefinition
from splitlab.stats.calibration import (
    CalibrationLine,
    Check,
    Outcome,
    Side,
    calibration_checks,
    rate_outcome,
    run_checks,
)
from splitlab.storage import Store

__all__ = [
    "FULL_REPS",
    "MIN_UNITS_PER_VARIANT",
    "QUICK_REPS",
    "STORE_REPS",
    "CalibrationLine",
    "ValidationReport",
    "validate",
    "validate_store",
]

QUICK_REPS = 1_000
"""A/A replications per line of ``--quick``: an FPR of 0.10 at alpha 0.05 fails with a chance above 99 %."""
FULL_REPS = 5_000
STORE_REPS = 500
MIN_UNITS_PER_VARIANT = 20
"""Fewer expected units than this in the smallest variant: the pre-period is too thin to re-randomise."""
BANDIT_ARMS = (0.10, 0.12, 0.15)


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationReport:
    """The lines of one validation run and how it was made.

    Attributes:
        lines: one :class:`~splitlab.stats.calibration.CalibrationLine` per check.
        source: ``"simulation"``, or ``"store"`` for a pre-period A/A.
        seed: the seed of every random draw.
        reps: A/A replications per line (the other lines scale from it, each line says its own).
        quick: whether the quick sizes were used.
        seconds: wall time of the run.
        experiment_key: the experiment of a pre-period A/A.
        window: ``(start, end)`` of the pre-period window, aware UTC.
        units: units in the pre-period window.
    """

    lines: tuple[CalibrationLine, ...]
    source: str
    seed: int
    reps: int
    quick: bool = False
    seconds: float = 0.0
    experiment_key: str | None = None
    window: tuple[datetime, datetime] | None = None
    units: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        """Whether no line failed (skipped lines do not fail)."""
        return all(line.passed for line in self.lines)

    @property
    def failures(self) -> tuple[CalibrationLine, ...]:
        """The lines that failed."""
        return tuple(line for line in self.lines if line.verdict == "FAIL")

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary, JSON-ready (times as ISO 8601)."""
        counts = {verdict: sum(line.verdict == verdict for line in self.lines) for verdict in ("PASS", "FAIL", "SKIP")}
        return {
            "passed": self.passed,
            "counts": counts,
            "source": self.source,
            "experiment_key": self.experiment_key,
            "window": None if self.window is None else [t.isoformat() for t in self.window],
            "units": self.units,
            "seed": self.seed,
            "reps": self.reps,
            "quick": self.quick,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
            "lines": [line.to_dict() for line in self.lines],
        }


def _check_common(seed: object, reps: object) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidInputError([("seed", f"seed == {seed!r}, must be an integer >= 0")])
    if reps is not None and (isinstance(reps, bool) or not isinstance(reps, int) or reps < 10):
        raise InvalidInputError([("reps", f"reps == {reps!r}, must be an integer >= 10")])


# --------------------------------------------------------------------------------------------
# The simulation suite


def _bandit_checks(replications: int, rounds: int) -> list[Check]:
    """Thompson sampling against uniform allocation, and its regret's growth from ``rounds`` to 4x as many."""
    arms = list(BANDIT_ARMS)
    mean_gap = float(np.mean(max(arms) - np.asarray(arms)))
    setting = f"Bernoulli arms {', '.join(f'{a:g}' for a in arms)}; {replications} replications"

    def regrets(rng: np.random.Generator, reps: int, horizon: int) -> npt.NDArray[np.float64]:
        return np.asarray(simulate_bandit("thompson", arms, rounds=horizon, replications=reps, seed=rng).regrets)

    def against_uniform(rng: np.random.Generator, reps: int) -> Outcome:
        # Uniform allocation's expected pseudo-regret is exactly rounds x the mean gap: no error of its own.
        values = regrets(rng, reps, 4 * rounds) / (4 * rounds * mean_gap)
        se = float(values.std(ddof=1)) / math.sqrt(reps)
        return Outcome(estimate=float(values.mean()), standard_error=se, band_se=se, reps=reps)

    def growth(rng: np.random.Generator, reps: int) -> Outcome:
        short, long = regrets(rng, reps, rounds), regrets(rng, reps, 4 * rounds)
        m_short, m_long = float(short.mean()), float(long.mean())
        ratio = m_long / m_short
        # Delta method for a ratio of two independent means.
        se = ratio * math.hypot(
            short.std(ddof=1) / math.sqrt(reps) / m_short, long.std(ddof=1) / math.sqrt(reps) / m_long
        )
        return Outcome(estimate=ratio, standard_error=float(se), band_se=float(se), reps=reps)

    return [
        Check(check=f"thompson regret / uniform allocation's, {4 * rounds:,} rounds", group="bandit", target=1.0,
              side="below", reps=replications, run=against_uniform, limits=(0.0, math.inf),
              note=f"{setting}; below 1: Thompson sampling loses less than splitting traffic evenly"),
        Check(check=f"thompson regret growth, {4 * rounds:,} vs {rounds:,} rounds", group="bandit", target=4.0,
              side="below", reps=replications, run=growth, limits=(0.0, math.inf),
              note=f"{setting}; 4 is linear growth (a policy that never learns), below it sub-linear"),
    ]  # fmt: skip


def validate(
    *,
    quick: bool = False,
    reps: int | None = None,
    seed: int = 0,
    tests: Mapping[str, Callable[..., Any]] | None = None,
) -> ValidationReport:
    """Run the calibration suite: A/A false positives, peeking, coverage, power, SRM, bandit regret.

    Args:
        quick: the CI sizes (:data:`QUICK_REPS`, ~10-20 s on two cores) instead of :data:`FULL_REPS`.
        reps: A/A replications per line, overriding the default of the mode (>= 10).
        seed: seed of every draw (>= 0); the same seed gives the same figures.
        tests: replacements of the library's tests by name, see
            :func:`splitlab.stats.calibration.calibration_checks` (how a broken test is shown to fail).

    Raises:
        InvalidInputError: ``reps``, ``seed`` or ``tests`` out of bounds (named).
    """
    _check_common(seed, reps)
    count = reps if reps is not None else QUICK_REPS if quick else FULL_REPS
    started = time.perf_counter()
    try:
        checks = calibration_checks(reps=count, quick=quick, tests=tests)
    except ValueError as exc:
        raise InvalidInputError([("tests", str(exc))]) from None
    checks += _bandit_checks(max(count // 10, 20), 1_000)
    lines = run_checks(checks, seed=seed)
    return ValidationReport(
        lines=lines, source="simulation", seed=seed, reps=count, quick=quick, seconds=time.perf_counter() - started
    )


# --------------------------------------------------------------------------------------------
# A/A re-randomisations on a store's pre-period data


def _flatten(statistic: Any) -> list[float]:
    """The numbers of a sufficient statistic, in field order (every one adds across units)."""
    out: list[float] = []
    for name in statistic.__slots__:
        value = getattr(statistic, name)
        if isinstance(value, tuple):
            out += [float(x) for row in value for x in (row if isinstance(row, tuple) else (row,))]
        elif isinstance(value, int | float):
            out.append(float(value))
        else:
            out += _flatten(value)
    return out


def _rebuild(template: Any, values: Any) -> Any:
    """A statistic of ``template``'s shape from the iterator ``values`` (the inverse of :func:`_flatten`)."""
    parts: dict[str, Any] = {}
    for name in template.__slots__:
        value = getattr(template, name)
        if isinstance(value, tuple):
            parts[name] = tuple(
                tuple(float(next(values)) for _ in row) if isinstance(row, tuple) else float(next(values))
                for row in value
            )
        elif isinstance(value, int):
            parts[name] = round(float(next(values)))
        elif isinstance(value, float):
            parts[name] = float(next(values))
        else:
            parts[name] = _rebuild(value, values)
    return type(template)(**parts)


@dataclass(frozen=True, slots=True)
class _Units:
    """The pre-period units and, per metric, their per-unit statistics (rows) or values."""

    ids: tuple[str, ...]
    statistics: dict[str, tuple[Any, npt.NDArray[np.float64]]]  # metric -> (template, (units, numbers))
    values: dict[str, npt.NDArray[np.float64]]  # metric -> per-unit value (NaN: none)


def _reference_time(store: Store, key: str, reference_date: datetime | None) -> datetime:
    if reference_date is not None:
        return reference_date.astimezone(UTC)
    started = next((v.changed_at for v in history(store, key) if v.status == "running"), None)
    return started if started is not None else datetime.now(UTC)


def _pre_period_units(
    store: Store, key: str, metrics: Sequence[MetricDefinition], start: datetime, end: datetime
) -> _Units:
    """Per-unit statistics of every metric for the units active in ``[start, end)``, by the aggregation query."""
    from splitlab.analysis.sql import ExposureTable, Source, aggregate_experiment, unit_values
    from splitlab.analysis.sql._dialect import dialect_of, quote_identifier

    view = f"splitlab_validate_{secrets.token_hex(6)}"
    events = Source.splitlab_store().events
    source = Source(
        ExposureTable(table=view, unit="unit_id", variant="variant", timestamp="first_seen", one_row_per_unit=True),
        events,
    )
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    start_us, end_us = ((t - epoch) // timedelta(microseconds=1) for t in (start, end))
    additive = [m for m in metrics if m.kind != "quantile"]
    by_value = [m for m in metrics if m.kind == "quantile" or m.test is not None]
    with store.engine.connect() as conn:
        dialect = dialect_of(conn)
        unit, stamp = quote_identifier(events.unit), quote_identifier(events.timestamp)
        micros = dialect.micros(stamp)
        # A temporary view, dropped below (and gone with the session anyway): every unit active in the
        # window is its own "variant", exposed at its first event there, so the query returns per-unit statistics.
        conn.exec_driver_sql(
            f"CREATE TEMPORARY VIEW {quote_identifier(view)} AS "  # noqa: S608 - names quoted, bounds integers
            f"SELECT {unit} AS unit_id, {unit} AS variant, MIN({stamp}) AS first_seen "
            f"FROM {quote_identifier(events.table)} "
            f"WHERE {micros} >= {int(start_us)} AND {micros} < {int(end_us)} GROUP BY {unit}"
        )
        try:
            aggregates = (
                aggregate_experiment(conn, experiment_key=key, metrics=additive, source=source, as_of=end)
                if additive
                else None
            )
            fetched = {
                m.name: unit_values(conn, experiment_key=key, metric=m, source=source, as_of=end) for m in by_value
            }
            if aggregates is not None:
                ids = tuple(sorted(aggregates.variant_units))
            else:
                ids = tuple(sorted({u for per_unit in fetched.values() for u in per_unit}))
        finally:
            conn.rollback()
            conn.exec_driver_sql(f"DROP VIEW IF EXISTS {quote_identifier(view)}")
            conn.commit()
    statistics: dict[str, tuple[Any, npt.NDArray[np.float64]]] = {}
    if aggregates is not None and ids:
        for metric in additive:
            per_unit = [aggregates.statistic(metric.name, u) for u in ids]
            statistics[metric.name] = (per_unit[0], np.array([_flatten(s) for s in per_unit], dtype=np.float64))
    index = {u: i for i, u in enumerate(ids)}
    unit_level: dict[str, npt.NDArray[np.float64]] = {}
    for name, by_unit in fetched.items():
        column = np.full(len(ids), np.nan)
        for u, value in by_unit.items():
            if u in index and value.size:
                column[index[u]] = value[0]
        unit_level[name] = column
    return _Units(ids, statistics, unit_level)


@dataclass(frozen=True, slots=True)
class _Rule:
    """How the spec's readout calls a treatment different from control."""

    alpha: float
    correction: str
    significance: str
    chance_to_win: float

    def target(self, treatments: int) -> tuple[float, Side]:
        """The nominal rate of calling some treatment different, and the band's side."""
        single = 2 * (1 - self.chance_to_win) if self.significance == "chance_to_win" else self.alpha
        if treatments == 1:
            return single, "calibrated"
        if self.significance == "p_value" and self.correction != "none":
            return single, "not-above"  # a family-wise correction bounds the rate, conservatively under correlation
        return 1 - (1 - single) ** treatments, "not-above"


def _spec_rule(spec: ExperimentSpec) -> _Rule:
    alpha = spec.analysis.alpha or (spec.hypothesis.alpha if spec.hypothesis else 0.05)
    decision = spec.analysis.decision
    significance = decision.significance or ("chance_to_win" if spec.analysis.method == "bayesian" else "p_value")
    decision_alpha = alpha if decision.alpha is None else decision.alpha
    return _Rule(decision_alpha, spec.analysis.correction, significance, decision.chance_to_win_threshold)


def _metric_check(
    definition: MetricDefinition,
    units: _Units,
    rule: _Rule,
    weights: Sequence[float],
    variants: Sequence[str],
    reps: int,
) -> Check:
    from splitlab.analysis.comparison import Options, compare, effect_of
    from splitlab.analysis.sql import QuantileStatistic
    from splitlab.analysis.value_tests import compare_values
    from splitlab.stats.multiplicity import adjust_p_values

    name = definition.name
    options = Options(alpha=rule.alpha)
    higher = definition.direction == "higher"
    treatments = len(variants) - 1
    target, side = rule.target(treatments)
    column = units.values.get(name)
    template, rows = units.statistics.get(name, (None, np.empty((0, 0))))
    test_name = definition.test or ("quantile" if definition.kind == "quantile" else None)

    def groups(labels: npt.NDArray[np.int64]) -> list[tuple[Any, Any]]:
        k = len(variants)
        # One pass over the units per number of the statistic: the group sums of a re-randomisation.
        sums = [np.bincount(labels, weights=rows[:, j], minlength=k) for j in range(rows.shape[1])]
        out = []
        for g in range(k):
            statistic = None if template is None else _rebuild(template, (column_sums[g] for column_sums in sums))
            values = None if column is None else column[(labels == g) & np.isfinite(column)]
            out.append((statistic, values))
        return out

    def called(labels: npt.NDArray[np.int64]) -> bool | None:
        parts = groups(labels)
        (control, control_values), results = parts[0], list[Any]()
        for group_statistic, values in parts[1:]:
            statistic = group_statistic
            if definition.kind == "quantile":
                assert control_values is not None  # noqa: S101 - fetched for quantiles
                assert values is not None  # noqa: S101 - fetched for quantiles
                quantile = float(definition.quantile or 0.5)
                control = QuantileStatistic(len(control_values), quantile, 0, tuple(np.sort(control_values).tolist()))
                statistic = QuantileStatistic(len(values), quantile, 0, tuple(np.sort(values).tolist()))
            if definition.test is not None:
                record = compare_values(control_values, values, test=definition.test, statistics=(control, statistic),
                                        options=options, higher_is_better=higher, quantile=definition.quantile,
                                        metric=name, kind=definition.kind, variant="t", control="c")  # fmt: skip
                results.append(record.effect if rule.significance == "p_value" else record)
            elif rule.significance == "p_value":
                results.append(effect_of(control, statistic, options=options))
            else:
                results.append(compare(control, statistic, options=options, higher_is_better=higher, metric=name,
                                       kind=definition.kind, variant="t", control="c"))  # fmt: skip
        if rule.significance == "chance_to_win":
            wins = np.array([r.chance_to_win for r in results], dtype=np.float64)
            if not np.isfinite(wins).all():
                return None
            return bool(((wins >= rule.chance_to_win) | (wins <= 1 - rule.chance_to_win)).any())
        p_values = np.array([r.p_value for r in results], dtype=np.float64)
        if not np.isfinite(p_values).all():
            return None
        return bool((adjust_p_values(p_values, method=rule.correction) < rule.alpha).any())

    def run(rng: np.random.Generator, reps: int) -> Outcome:
        flags = [called(rng.choice(len(variants), size=len(units.ids), p=weights)) for _ in range(reps)]
        kept = [f for f in flags if f is not None]
        dropped = len(flags) - len(kept)
        return rate_outcome(kept, target, note=f"{dropped} degenerate re-randomisations left out" if dropped else "")

    default = "delta-z" if definition.kind == "ratio" else "pooled-z" if definition.kind == "binary" else "welch-t"
    if definition.covariate is not None:
        default = "cuped " + ("delta-z" if definition.kind == "ratio" else "welch-t")
    label = test_name or default
    return Check(check=f"{name} ({definition.kind}, {label})", group="pre-period A/A", target=target, side=side,
                 reps=reps, run=run)  # fmt: skip


def validate_store(
    store: Store,
    key: str,
    *,
    reps: int | None = None,
    seed: int = 0,
    days: float = 14.0,
    reference_date: datetime | None = None,
) -> ValidationReport:
    """A/A re-randomisations of experiment ``key``'s metrics on the store's pre-period data.

    Args:
        store: the store (spec, metric definitions, events).
        key: the experiment.
        reps: re-randomisations (>= 10); default :data:`STORE_REPS`.
        seed: seed of the re-randomisations (>= 0).
        days: length of the pre-period window in days (> 0).
        reference_date: the window's end (aware); default the experiment's first start, or now
            when it never started.

    Raises:
        NotFoundError: No experiment ``key``.
        InvalidInputError: an option out of bounds (named).
        ConflictError: metrics without a stored definition, or a window with too few units.
    """
    _check_common(seed, reps)
    if isinstance(days, bool) or not isinstance(days, int | float) or not 0 < days < math.inf:
        raise InvalidInputError([("days", f"days == {days!r}, must be a number > 0")])
    if reference_date is not None and reference_date.utcoffset() is None:
        message = f"reference_date == {reference_date.isoformat()}, must be timezone-aware"
        raise InvalidInputError([("reference_date", message)])
    count = reps if reps is not None else STORE_REPS
    started = time.perf_counter()
    record = get_experiment(store, key)
    spec = ExperimentSpec.model_validate(record.spec)
    names = list(
        dict.fromkeys([*spec.metrics.goal, *spec.metrics.secondary, *(g.metric for g in spec.metrics.guardrails)])
    )
    stored = store.metrics.get_many(names=names)
    missing = [name for name in names if name not in stored]
    if missing:
        message = (
            f"experiment {key!r} uses metrics with no stored definition: {missing}; `splitlab apply` the metrics file"
        )
        raise ConflictError("spec.metrics", message)
    metrics = [MetricDefinition.model_validate(stored[name]) for name in names]
    end = _reference_time(store, key, reference_date)
    start = end - timedelta(days=days)
    units = _pre_period_units(store, key, metrics, start, end)
    weights = [v.weight for v in spec.variants]
    needed = math.ceil(MIN_UNITS_PER_VARIANT / min(w for w in weights if w > 0))
    if len(units.ids) < needed:
        message = (
            f"experiment {key!r}: only {len(units.ids)} units had events between {start:%Y-%m-%d %H:%M} and "
            f"{end:%Y-%m-%d %H:%M} UTC, too few to re-randomise (at least {needed}: {MIN_UNITS_PER_VARIANT} "
            "expected in the smallest variant); widen --days or pick another --reference-date"
        )
        raise ConflictError("window", message)
    positive = [w / sum(weights) for w in weights]
    variants = [v.key for v in spec.variants]
    rule = _spec_rule(spec)
    checks = [_metric_check(m, units, rule, positive, variants, count) for m in metrics]
    split = ", ".join(f"{v} {w:.0%}" for v, w in zip(variants, positive, strict=True))
    window = f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
    notes = [f"window {window}, {len(units.ids):,} units, re-randomised into {split}"]
    if spec.analysis.method == "sequential":
        notes.append(
            "sequential spec: judged by its fixed-horizon test at the window's end (see `validate` for peeking)"
        )
    lines = run_checks(checks, seed=seed)
    return ValidationReport(
        lines=lines,
        source="store",
        seed=seed,
        reps=count,
        seconds=time.perf_counter() - started,
        experiment_key=key,
        window=(start, end),
        units=len(units.ids),
        notes=tuple(notes),
    )
