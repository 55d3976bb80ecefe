"""The main job: a stored experiment's exposures and events -> health checks, results, decision.

``analyze_experiment`` runs the experiment's one aggregation query inside the store's database
(:mod:`splitlab.analysis.sql`), then, on the sufficient statistics only:

1. health checks: SRM against the configured weights (error), the sequential SRM check over the
   days (error), both per allocation phase against that phase's weights when the weights changed,
   the multiple-exposure rate (warning above 1 %, error above 5 %), the sample reached against the
   plan (info), and pre-exposure balance of every CUPED covariate (warning);
2. every goal, secondary and guardrail metric for every treatment: the configured test (CUPED
   where the metric has a covariate; the sequential monitor when the spec asks for it), the
   Bayesian chance to win and expected loss, the multiple-testing correction across treatments;
3. segments: the top levels of each segment dimension (the rest pooled as ``other``), corrected
   across the levels of each family, with Cochran's Q test for heterogeneous effects;
4. the cumulative lift of the goal metrics day by day;
5. the decision (:mod:`splitlab.analysis.decision`), and a snapshot in the store.

**Allocation phases.** When the weights changed while the experiment ran, the store holds its
phases (:meth:`splitlab.storage.ExperimentRepository.phases`); each unit belongs to the phase of
its first exposure (a dimension of the one query). The split is then checked phase by phase
against each phase's weights (:func:`splitlab.stats.srm.phased_srm_test`; the sequential check
multiplies the phases' Bayes factors), and every effect, overall, per segment and per day, is the
period-weighted combination of the per-phase estimates
(:func:`splitlab.analysis.comparison.compare_phases`), so a ramp raises no false SRM and a time
trend no Simpson's-paradox bias. With one phase nothing changes.

**Tests on unit-level values.** A metric whose definition names ``test: mann-whitney`` or
``bootstrap`` is compared by that test (:func:`splitlab.analysis.value_tests.compare_values`) on
its per-unit values, fetched by one more query for that metric alone
(:func:`splitlab.analysis.sql.unit_values`), only when such a metric is analysed. Its segments and
daily lift keep the default test on the cells; with allocation phases the period-weighted
comparison is kept too (the pooled values of a ramp are biased, see above).

**Post-stratification.** With ``analysis.post_stratify`` the aggregation also splits by the
spec's ``stratify_by`` attributes (whatever segments are reported), and every additive metric's
overall effect is the post-stratified one (:mod:`splitlab.analysis.stratification`).

**Bandits.** A bandit experiment's phases are its windows, given by the caller
(:func:`splitlab.operations.bandits.window_phases`: each window's frozen weights): the split is
checked window by window against the weights the bandit drew with, and the effects are the
period-weighted estimator of :func:`splitlab.bandits.estimates.period_weighted_estimates` (unbiased
after adaptive allocation because the weights of a window depend on earlier windows only), not the
pooled means, which adaptive allocation biases.

References:
    Kish, L. (1965). Survey Sampling, sections 3.3 and 11.7 (the combination over phases).
    Nie, X., Tian, X., Taylor, J., Zou, J. (2018). Why adaptively collected data have negative
    bias and how to correct for it. AISTATS, theorem 1 (the bias of pooled means under a bandit).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
from scipy import stats as sps

from splitlab.analysis.comparison import Options, compare, compare_phases, corrected, effect_of
from splitlab.analysis.readout import (
    ExperimentReadout,
    HealthCheck,
    MetricResult,
    PhaseSummary,
    Role,
    Severity,
    TimelinePoint,
)
from splitlab.analysis.sql import CellKey, ExperimentAggregates, Source, aggregate_experiment, unit_values
from splitlab.analysis.stratification import compare_strata, strata
from splitlab.analysis.value_tests import compare_values
from splitlab.specs import ExperimentSpec, MetricDefinition
from splitlab.stats.frequentist import estimate, two_sample_test
from splitlab.stats.power import plan_sample_size
from splitlab.stats.sequential.srm import sequential_srm_log_bayes_factor, sequential_srm_test
from splitlab.stats.srm import SrmResult, phased_srm_test, srm_test
from splitlab.stats.statistics import CovariateStatistic

TOP_SEGMENT_LEVELS = 5
MULTIPLE_EXPOSURE_WARNING = 0.01
MULTIPLE_EXPOSURE_ERROR = 0.05
COVARIATE_IMBALANCE_P = 0.001
HETEROGENEITY_P = 0.05
OTHER = "other"


def _roles(spec: ExperimentSpec) -> list[tuple[str, Role, float | None]]:
    roles: list[tuple[str, Role, float | None]] = [(m, "goal", None) for m in spec.metrics.goal]
    roles += [(m, "secondary", None) for m in spec.metrics.secondary if m not in spec.metrics.goal]
    roles += [(g.metric, "guardrail", g.max_degradation) for g in spec.metrics.guardrails]
    return roles


def _cochran_q(results: Sequence[MetricResult]) -> bool | None:
    """Whether the segment effects differ more than chance allows (Cochran's Q, p < 0.05).

    ``Q = sum w_i (d_i - d_w)^2`` with inverse-variance weights ``w_i = 1 / se_i^2`` and the
    pooled ``d_w``, chi-square with ``k - 1`` df under homogeneity (Cochran 1954).
    """
    points = [
        (r.effect.absolute_effect, 1 / r.absolute_se**2)
        for r in results
        if r.absolute_se is not None and r.absolute_se > 0 and math.isfinite(r.effect.absolute_effect)
    ]
    if len(points) < 2:
        return None
    total = sum(w for _, w in points)
    pooled = sum(d * w for d, w in points) / total
    q = sum(w * (d - pooled) ** 2 for d, w in points)
    return bool(sps.chi2.sf(q, len(points) - 1) < HETEROGENEITY_P)


class _Analysis:
    """One analysis run: the spec, its metrics, the aggregates, and the options."""

    def __init__(
        self,
        spec: ExperimentSpec,
        metrics: dict[str, MetricDefinition],
        aggregates: ExperimentAggregates,
        *,
        alpha: float,
        values: Callable[[MetricDefinition], dict[str, Any]] | None = None,
        segments: Sequence[str] | None = None,
    ) -> None:
        self.spec = spec
        self.values = values
        self.segments = tuple(aggregates.segments if segments is None else segments)
        self.metrics = metrics
        self.aggregates = aggregates
        self.phases = aggregates.phases if len(aggregates.phases) > 1 else ()
        self.alpha = alpha
        self.options = Options(alpha=alpha)
        self.control = spec.variants[0].key
        self.treatments = [v.key for v in spec.variants[1:] if v.key in aggregates.variant_units]

    def readouts(
        self, name: str, role: Role, max_degradation: float | None, *, planned_n: float | None, sequential: str | None
    ) -> list[MetricResult]:
        definition = self.metrics[name]
        agg = self.aggregates
        options = replace(self.options, sequential=sequential, planned_n=planned_n)
        if self.phases and definition.kind != "quantile":
            out = [
                compare_phases(
                    self.phased(name, variant),
                    options=options,
                    higher_is_better=definition.direction == "higher",
                    looks=[self.phased(name, variant, day=day) for day in agg.days],
                    **self._identity(name, role, max_degradation, variant),
                )
                for variant in self.treatments
            ]
            return corrected(out, method=self.spec.analysis.correction, alpha=self.alpha)
        if definition.test is not None and self.values is not None:
            return corrected(
                self.value_readouts(definition, role, max_degradation, options),
                method=self.spec.analysis.correction,
                alpha=self.alpha,
            )
        if self.spec.analysis.post_stratify and definition.kind != "quantile":
            out = [
                compare_strata(
                    strata(agg, name, self.control, variant, self.spec.stratify_by),
                    options=options,
                    higher_is_better=definition.direction == "higher",
                    **self._identity(name, role, max_degradation, variant),
                )
                for variant in self.treatments
            ]
            return corrected(out, method=self.spec.analysis.correction, alpha=self.alpha)
        out = [
            compare(
                agg.statistic(name, self.control),
                agg.statistic(name, variant),
                options=options,
                higher_is_better=definition.direction == "higher",
                looks=self._daily_looks(definition, variant),
                **self._identity(name, role, max_degradation, variant),
            )
            for variant in self.treatments
        ]
        return corrected(out, method=self.spec.analysis.correction, alpha=self.alpha)

    def _daily_looks(self, definition: MetricDefinition, variant: str) -> list[tuple[Any, Any]]:
        """(control, treatment) statistics cumulated to each day, for the sequential monitor (none for a quantile)."""
        if definition.kind == "quantile":
            return []
        agg, name = self.aggregates, definition.name
        return [(agg.statistic(name, self.control, day=day), agg.statistic(name, variant, day=day)) for day in agg.days]

    def value_readouts(
        self, definition: MetricDefinition, role: Role, max_degradation: float | None, options: Options
    ) -> list[MetricResult]:
        """The metric's comparisons by the test its definition names, on its unit-level values."""
        assert self.values is not None  # noqa: S101 - checked by the caller
        assert definition.test is not None  # noqa: S101 - checked by the caller
        agg, name = self.aggregates, definition.name
        values = self.values(definition)
        empty = np.empty(0)
        return [
            compare_values(
                values.get(self.control, empty),
                values.get(variant, empty),
                test=definition.test,
                statistics=(agg.statistic(name, self.control), agg.statistic(name, variant)),
                options=options,
                higher_is_better=definition.direction == "higher",
                quantile=definition.quantile,
                looks=self._daily_looks(definition, variant),
                **self._identity(name, role, max_degradation, variant),
            )
            for variant in self.treatments
        ]

    def segment_readouts(self, name: str, role: Role, max_degradation: float | None) -> list[MetricResult]:
        definition = self.metrics[name]
        if definition.kind == "quantile":
            return []
        agg = self.aggregates
        out = []
        for dimension in self.segments:
            levels = self._top_levels(dimension)
            for variant in self.treatments:
                family = []
                for label, members in levels:
                    control = _sum_levels(agg, name, self.control, dimension, members)
                    treatment = _sum_levels(agg, name, variant, dimension, members)
                    if control is None or treatment is None:
                        continue
                    common = {
                        "options": self.options,
                        "higher_is_better": definition.direction == "higher",
                        "segment": (dimension, label),
                        **self._identity(name, role, max_degradation, variant),
                    }
                    if self.phases:
                        parts = [
                            (c, t, units)
                            for phase in self.phases
                            if (c := _sum_levels(agg, name, self.control, dimension, members, phase=phase)) is not None
                            and (t := _sum_levels(agg, name, variant, dimension, members, phase=phase)) is not None
                            for units in [self.phase_units(phase)]
                        ]
                        family.append(compare_phases(parts, **common))
                    else:
                        family.append(compare(control, treatment, **common))
                family = corrected(family, method=self.spec.analysis.correction, alpha=self.alpha)
                heterogeneous = _cochran_q(family)
                out += [replace(r, heterogeneous=heterogeneous) for r in family]
        return out

    def phase_units(self, phase: int, day: Any = None) -> int:
        """Units of ``phase`` in every variant (first exposed by the end of ``day`` when given)."""
        cells = self.aggregates.cell_units
        return sum(cells.get(CellKey(v, None, day, phase), 0) for v in self.aggregates.variant_units)

    def phased(self, name: str, variant: str, *, day: Any = None) -> list[tuple[Any, Any, int]]:
        """``(control, treatment, units)`` of ``name`` per phase (cumulative to ``day`` when given)."""
        agg = self.aggregates
        out = []
        for phase in self.phases:
            control = agg.cells.get(CellKey(self.control, None, day, phase), {}).get(name)
            treatment = agg.cells.get(CellKey(variant, None, day, phase), {}).get(name)
            if control is not None and treatment is not None:
                out.append((control, treatment, self.phase_units(phase, day)))
        return out

    def _identity(self, name: str, role: Role, max_degradation: float | None, variant: str) -> dict[str, Any]:
        kind = self.metrics[name].kind
        return {
            "metric": name,
            "role": role,
            "kind": kind,
            "variant": variant,
            "control": self.control,
            "max_degradation": max_degradation,
        }

    def _top_levels(self, dimension: str) -> list[tuple[str, list[str | None]]]:
        """The largest levels by units, the rest pooled as ``other`` (statistics add)."""
        agg = self.aggregates
        index = agg.segments.index(dimension)
        sizes: dict[str | None, int] = {}
        for key, units in agg.cell_units.items():
            if key.segment is not None and key.day is None:
                sizes[key.segment[index]] = sizes.get(key.segment[index], 0) + units
        ranked = sorted(sizes, key=lambda level: (-sizes[level], str(level)))
        top = [level for level in ranked[:TOP_SEGMENT_LEVELS] if level is not None]
        rest = [level for level in ranked if level not in top]
        groups: list[tuple[str, list[str | None]]] = [(str(level), [level]) for level in top]
        if rest:
            groups.append((OTHER, rest))
        return groups


def _sum_levels(
    agg: ExperimentAggregates,
    name: str,
    variant: str,
    dimension: str,
    levels: Sequence[str | None],
    *,
    phase: int | None = None,
) -> Any:
    parts: list[Any] = []
    for level in levels:
        try:
            parts.append(agg.marginal(name, variant, dimension, level, phase=phase))
        except KeyError:
            continue
    if not parts:
        return None
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def _health(
    analysis: _Analysis,
    srm: SrmResult,
    units: dict[str, int],
    weights: dict[str, float],
    planned: int | None,
    phase_weights: Sequence[dict[str, float]] = (),
) -> list[HealthCheck]:
    agg = analysis.aggregates
    checks: list[HealthCheck] = []
    shares = ", ".join(f"{k}={s:.1%}" for k, s in zip(srm.variants, srm.observed_shares, strict=True))
    if phase_weights:
        configured = f"per phase ({len(phase_weights)} phases, expected {_shares(srm)})"
        test = f"chi-square over the phases ({srm.df} df)"
    else:
        configured = ", ".join(f"{k}={w:.0%}" for k, w in weights.items())
        test = "chi-square"
    checks.append(
        HealthCheck(
            "srm",
            not srm.flag,
            "error",
            f"traffic split configured {configured} / actual {shares}: {test} p = {srm.p_value:.2g}"
            + (" (sample ratio mismatch)" if srm.flag else ""),
            srm.p_value,
        )
    )
    if agg.days:
        previous = (
            _phased_sequential_srm(agg, list(units), phase_weights)
            if phase_weights
            else _sequential_srm(agg, units, weights)
        )
        if previous is not None:
            checks.append(
                HealthCheck(
                    "sequential_srm",
                    previous >= 0.001,
                    "error",
                    f"sequential SRM check over {len(agg.days)} daily looks: always-valid p = {previous:.2g}",
                    previous,
                )
            )
    rate = agg.multiple_exposure_rate
    if math.isfinite(rate):
        severity: Severity = "error" if rate > MULTIPLE_EXPOSURE_ERROR else "warning"
        checks.append(
            HealthCheck(
                "multiple_exposures",
                rate <= MULTIPLE_EXPOSURE_WARNING,
                severity,
                f"{agg.multiple_exposure_units} units ({rate:.2%}) were exposed to more than one variant and are "
                "excluded",
                rate,
            )
        )
    if planned:
        smallest = min(units.values()) if units else 0
        checks.append(
            HealthCheck(
                "sample_size",
                smallest >= planned,
                "info",
                f"{smallest:,} units in the smallest variant of {planned:,} planned per variant "
                f"({smallest / planned:.0%})",
                smallest / planned,
            )
        )
    for name, definition in analysis.metrics.items():
        if definition.covariate is None:
            continue
        control = agg.cells.get(_day_key(analysis.control, None), {}).get(name)
        for variant in analysis.treatments:
            treatment = agg.cells.get(_day_key(variant, None), {}).get(name)
            if not (isinstance(control, CovariateStatistic) and isinstance(treatment, CovariateStatistic)):
                continue
            balance = two_sample_test(control.covariate, treatment.covariate)
            checks.append(
                HealthCheck(
                    f"covariate_balance:{name}:{variant}",
                    not balance.p_value < COVARIATE_IMBALANCE_P,
                    "warning",
                    f"pre-exposure {name} differs between {analysis.control} and {variant}: p = {balance.p_value:.2g}",
                    balance.p_value,
                )
            )
    return checks


def _shares(srm: SrmResult) -> str:
    return ", ".join(f"{k}={s:.1%}" for k, s in zip(srm.variants, srm.expected_shares, strict=True))


def _sequential_srm(agg: ExperimentAggregates, units: dict[str, int], weights: dict[str, float]) -> float | None:
    cumulative = [[agg.cell_units.get(_day_key(v, day), 0) for v in units] for day in agg.days]
    previous = None
    for counts in cumulative:
        if sum(counts) == 0:
            continue
        sequential = sequential_srm_test(dict(zip(units, counts, strict=True)), weights, previous_p_value=previous)
        previous = sequential.p_value
    return previous


def _phased_sequential_srm(
    agg: ExperimentAggregates, variants: list[str], phase_weights: Sequence[dict[str, float]]
) -> float | None:
    """The sequential SRM check with each phase against its weights: the phases' Bayes factors multiply.

    Each phase's Dirichlet-multinomial Bayes factor against its own weights is a test martingale
    over that phase's units; the phases follow each other in time and hold disjoint units, so the
    product is a test martingale over all units, and ``p_n = min(p_{n-1}, 1 / prod_p BF_p)`` stays
    always valid (Lindon & Malek 2022, section 2; Ville 1939). With one phase this is
    :func:`splitlab.stats.sequential.srm.sequential_srm_test`.
    """
    previous = None
    for day in agg.days:
        log_bf = 0.0
        for phase, weights in enumerate(phase_weights, 1):
            counts = [agg.cell_units.get(CellKey(v, None, day, phase), 0) for v in variants]
            if sum(counts):
                log_bf += float(sequential_srm_log_bayes_factor(counts, [weights[v] for v in variants]))
        if log_bf == 0.0 and previous is None:
            continue
        current = min(1.0, math.exp(-log_bf)) if log_bf > -700 else 1.0
        previous = current if previous is None else min(previous, current)
    return previous


def _day_key(variant: str, day: Any) -> CellKey:
    return CellKey(variant, None, day)


def _planned_per_variant(spec: ExperimentSpec, analysis: _Analysis) -> int | None:
    if spec.schedule.min_sample_size:
        return spec.schedule.min_sample_size
    hypothesis = spec.hypothesis
    if hypothesis is None or hypothesis.primary_metric not in analysis.metrics:
        return None
    definition = analysis.metrics[hypothesis.primary_metric]
    control = analysis.aggregates.cells.get(_day_key(analysis.control, None), {}).get(hypothesis.primary_metric)
    options = {
        "alpha": hypothesis.alpha,
        "power": hypothesis.power,
        "relative": hypothesis.mde_type == "relative",
        "variants": len(spec.variants),
    }
    try:
        if definition.kind == "binary":
            baseline = hypothesis.baseline or _metric_part(control).mean
            plan = plan_sample_size("proportion", hypothesis.mde, baseline=baseline, **options)  # type: ignore[arg-type]
        else:
            part = _metric_part(control)
            est = estimate(part)
            std = math.sqrt(est.variance * est.n)
            plan = plan_sample_size("mean", hypothesis.mde, baseline=est.mean, std=std, **options)  # type: ignore[arg-type]
    except (ValueError, AttributeError, TypeError):
        return None
    return plan.per_variant if plan.error_code is None else None


def _metric_part(statistic: Any) -> Any:
    return statistic.metric if isinstance(statistic, CovariateStatistic) else statistic


def _timeline(analysis: _Analysis) -> list[TimelinePoint]:
    agg = analysis.aggregates
    points = []
    for name in analysis.spec.metrics.goal:
        definition = analysis.metrics.get(name)
        if definition is None or definition.kind == "quantile":
            continue
        for variant in analysis.treatments:
            for day in agg.days:
                if analysis.phases:
                    result = compare_phases(
                        analysis.phased(name, variant, day=day),
                        options=analysis.options,
                        metric=name,
                        kind=definition.kind,
                        variant=variant,
                        control=analysis.control,
                    )
                    effect = result.effect
                else:
                    try:
                        control = agg.statistic(name, analysis.control, day=day)
                        treatment = agg.statistic(name, variant, day=day)
                    except KeyError:
                        continue
                    effect = effect_of(control, treatment, options=analysis.options)
                units = agg.cell_units.get(_day_key(analysis.control, day), 0) + agg.cell_units.get(
                    _day_key(variant, day), 0
                )
                points.append(
                    TimelinePoint(
                        day,
                        name,
                        variant,
                        units,
                        effect.relative_effect,
                        effect.relative_ci,
                        control_mean=effect.control_mean,
                    )
                )
    return points


def _always_valid(points: list[TimelinePoint], readouts: Sequence[MetricResult]) -> list[TimelinePoint]:
    """Each day's interval replaced by the sequential test's at the look with the day's units, where there is one.

    A sequential spec is read at every look, so its timeline's band must be valid at every look: the
    mSPRT's confidence sequence (or a group-sequential design's repeated CI). Looks are the days'
    cumulative data, matched by their units; an absolute monitor's interval is put on the
    timeline's relative scale over the day's control mean, as :func:`splitlab.analysis.decision.quote`
    does for the last look.
    """
    sequences = {
        (m.metric, m.variant): m.sequential
        for m in readouts
        if m.role == "goal" and m.sequential is not None and m.sequential.looks
    }
    if not sequences:
        return points
    out = []
    for point in points:
        sequential = sequences.get((point.metric, point.variant))
        look = None if sequential is None else next((x for x in sequential.looks if x.n == point.units), None)
        if sequential is None or look is None:
            out.append(point)
            continue
        ci = look.ci
        if not sequential.relative:
            scale = abs(point.control_mean)
            ci = (ci[0] / scale, ci[1] / scale) if scale > 0 and math.isfinite(scale) else (math.nan, math.nan)
        name = f"{sequential.method} {'confidence sequence' if sequential.method == 'msprt' else 'repeated CI'}"
        out.append(replace(point, relative_ci=ci, interval=name))
    return out


def analyze_experiment(
    store: Any,
    key: str,
    *,
    segments: Sequence[str] | None = None,
    as_of: datetime | None = None,
    save: bool = True,
    rules: Any = None,
    data: tuple[Any, Source] | None = None,
    phases: Sequence[Any] | None = None,
) -> ExperimentReadout:
    """Analyse a stored experiment from its exposures and events; save a snapshot of the readout.

    Args:
        store: a :class:`splitlab.storage.Store`.
        key: the experiment key.
        segments: segment dimensions (exposure attributes); default the spec's ``stratify_by``.
        as_of: analyse only what happened before this time (aware datetime); default everything.
        save: store the readout as a snapshot (the history of readouts is kept).
        rules: :class:`splitlab.analysis.decision.DecisionRules`; default the spec's rules.
        data: ``(connection, source)`` to read exposures and events from the user's own tables
            (warehouse-native, :mod:`splitlab.analysis.warehouse`); default the store itself.
        phases: the allocation phases (:class:`splitlab.storage.AllocationPhase`, in time order,
            none after ``as_of``) when the weights are not the spec's: a bandit's windows
            (:func:`splitlab.operations.bandits.window_phases`); the split is checked against their
            weights, even with one phase. Default the store's phases of the spec's weights.
    """
    from splitlab.analysis.decision import DecisionRules, decide
    from splitlab.analysis.report import readout_to_dict

    record, spec, metrics, dimensions, strata_dimensions = _inputs(store, key, segments)
    connection, source = data if data is not None else (store.engine, Source.splitlab_store())
    bandit_windows = phases is not None
    phases = list(phases if phases is not None else _store_phases(store, key, as_of))
    aggregates = aggregate_experiment(
        connection,
        experiment_key=key,
        metrics=list(metrics.values()),
        source=source,
        segments=[*dimensions, *strata_dimensions],
        by_day=True,
        as_of=as_of,
        phase_starts=[p.started_at for p in phases[1:]],
    )
    alpha = spec.analysis.alpha or (spec.hypothesis.alpha if spec.hypothesis else 0.05)

    def values(metric: MetricDefinition) -> dict[str, Any]:
        return unit_values(connection, experiment_key=key, metric=metric, source=source, as_of=as_of)

    analysis = _Analysis(spec, metrics, aggregates, alpha=alpha, values=values, segments=dimensions)
    analysed_at = as_of or datetime.now(UTC)
    units = {v.key: aggregates.variant_units.get(v.key, 0) for v in spec.variants}
    weights = {v.key: v.weight for v in spec.variants}
    if bandit_windows and phases:  # a bandit: its latest weights, not the spec's
        weights = {v: phases[-1].weights.get(v, 0.0) for v in units}
    planned = _planned_per_variant(spec, analysis)
    phase_weights = [{v: p.weights.get(v, 0.0) for v in units} for p in phases] if len(phases) > 1 else []
    phase_units = [{v: aggregates.cell_units.get(CellKey(v, None, None, p.phase), 0) for v in units} for p in phases]
    if phase_weights:
        srm, phase_srm = phased_srm_test(list(zip(phase_units, phase_weights, strict=True)))
    else:
        srm = srm_test(units, weights)
        phase_srm = (srm,) * len(phases)
    summaries = tuple(
        PhaseSummary(
            phase=p.phase,
            started_at=p.started_at,
            spec_version=p.spec_version,
            weights=dict(p.weights),
            units=counts,
            srm_p_value=result.p_value,
        )
        for p, counts, result in zip(phases, phase_units, phase_srm, strict=True)
    )
    first_day = aggregates.days[0] if aggregates.days else None
    days_running = (analysed_at.date() - first_day).days + 1.0 if first_day else 0.0
    sequential = spec.analysis.sequential if spec.analysis.method == "sequential" else None
    planned_total = planned * 2 if planned else None
    readouts: list[MetricResult] = []
    segment_readouts: list[MetricResult] = []
    for name, role, max_degradation in _roles(spec):
        readouts += analysis.readouts(name, role, max_degradation, planned_n=planned_total, sequential=sequential)
        if role != "secondary":
            segment_readouts += analysis.segment_readouts(name, role, max_degradation)
    readout = ExperimentReadout(
        experiment_key=key,
        name=spec.name,
        spec_version=record.current_version,
        status=record.status,
        analysed_at=analysed_at,
        days_running=days_running,
        control=analysis.control,
        variants=tuple(units),
        configured_weights=weights,
        units=units,
        excluded_units=aggregates.multiple_exposure_units,
        planned_units_per_variant=planned,
        daily_units=sum(units.values()) / days_running if days_running else 0.0,
        srm=srm,
        health=tuple(_health(analysis, srm, units, weights, planned, phase_weights)),
        metrics=tuple(readouts),
        segments=tuple(segment_readouts),
        timeline=tuple(_always_valid(_timeline(analysis), readouts)),
        phases=summaries,
        min_duration_days=spec.schedule.min_duration_days,
        max_duration_days=spec.schedule.max_duration_days,
    )
    hypothesis = spec.hypothesis
    if rules is None:
        given = spec.analysis.decision  # validated with the spec: the engine's bounds hold
        significance = given.significance or ("chance_to_win" if spec.analysis.method == "bayesian" else "p_value")
        decision_alpha = alpha if given.alpha is None else given.alpha
        rules = DecisionRules(**{**given.model_dump(), "alpha": decision_alpha, "significance": significance})
    decision = decide(
        readout,
        rules=rules,
        hypothesis_mde=hypothesis.mde if hypothesis else None,
        mde_relative=hypothesis.mde_type == "relative" if hypothesis else True,
        primary_metric=hypothesis.primary_metric if hypothesis else None,
    )
    readout = replace(readout, decision=decision)
    if save:
        store.snapshots.add(experiment_key=key, spec_version=record.current_version, payload=readout_to_dict(readout))
    return readout


def _inputs(
    store: Any, key: str, segments: Sequence[str] | None
) -> tuple[Any, ExperimentSpec, dict[str, MetricDefinition], list[str], list[str]]:
    """The stored experiment's record, spec, metric definitions and segment dimensions (as analysed)."""
    record = store.experiments.get(key=key)
    if record is None:
        msg = f"experiment {key!r} is not in the store; `splitlab apply` creates it"
        raise ValueError(msg)
    spec = ExperimentSpec.model_validate(record.spec)
    names = [name for name, _, _ in _roles(spec)]
    stored = store.metrics.get_many(names=names)
    missing = [name for name in names if name not in stored]
    if missing:
        msg = f"experiment {key!r} uses metrics with no stored definition: {missing}; `splitlab apply` the metrics file"
        raise ValueError(msg)
    metrics = {name: MetricDefinition.model_validate(stored[name]) for name in dict.fromkeys(names)}
    dimensions = list(spec.stratify_by if segments is None else segments)
    strata_dimensions = [a for a in spec.stratify_by if a not in dimensions] if spec.analysis.post_stratify else []
    return record, spec, metrics, dimensions, strata_dimensions


def _store_phases(store: Any, key: str, as_of: datetime | None) -> list[Any]:
    return [p for p in store.experiments.phases(key=key) if as_of is None or p.phase == 1 or p.started_at <= as_of]


def experiment_sql(
    store: Any,
    key: str,
    *,
    dialect: str,
    source: Source | None = None,
    segments: Sequence[str] | None = None,
    as_of: datetime | None = None,
) -> str:
    """The aggregation statement :func:`analyze_experiment` runs for ``key``, in ``dialect``'s SQL.

    For running the aggregation inside a warehouse splitlab cannot connect to: the statement reads
    the tables ``source`` maps (default the store's own tables) and returns the sufficient
    statistics per variant, segment, allocation phase and day (docs/scale.md).

    Args:
        store: a :class:`splitlab.storage.Store` (the spec and metric definitions).
        key: the experiment key.
        dialect: ``sqlite``, ``postgresql``, ``duckdb``, ``spark``, ``databricks``, ``bigquery``,
            ``snowflake`` or ``trino``.
        source: the tables to read; default the store's.
        segments: as in :func:`analyze_experiment`.
        as_of: as in :func:`analyze_experiment`.

    Raises:
        ValueError: an unknown dialect (the message lists them) or experiment.
    """
    from splitlab.analysis.sql import aggregation_sql

    _, _, metrics, dimensions, strata_dimensions = _inputs(store, key, segments)
    return aggregation_sql(
        dialect,
        experiment_key=key,
        metrics=list(metrics.values()),
        source=source or Source.splitlab_store(),
        segments=[*dimensions, *strata_dimensions],
        by_day=True,
        as_of=as_of,
        phase_starts=[p.started_at for p in _store_phases(store, key, as_of)[1:]],
    )
