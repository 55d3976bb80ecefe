"""The readout of one experiment: health checks, per-metric results, segments, timeline, decision.

It is the contract between the pipeline that fills it (``splitlab.analysis.experiment``), the
decision engine (``splitlab.analysis.decision``) and the reports (``splitlab.analysis.report``).
All records are frozen; ``to_dict`` forms are JSON-ready (no NaN: ``None`` instead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from splitlab.stats.results import EffectResult, Interval
from splitlab.stats.sequential.monitor import MonitorResult
from splitlab.stats.srm import SrmResult

Role = Literal["goal", "secondary", "guardrail"]
Severity = Literal["error", "warning", "info"]
CATEGORIES = ("STRONG_LAUNCH", "LAUNCH", "CONSIDER_LAUNCH", "EXTEND_TEST", "NO_LAUNCH", "ROLLBACK", "INVALID")


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """One data-health check (SRM, multiple exposures, sample size, covariate balance ...).

    ``passed`` False with severity ``error`` makes the readout INVALID; ``warning`` is reported.
    """

    name: str
    passed: bool
    severity: Severity
    message: str
    value: float | None = None


@dataclass(frozen=True, slots=True)
class MetricReadout:
    """One metric, one treatment against control, overall or within one segment.

    Attributes:
        metric: the metric's name; ``role`` goal, secondary or guardrail.
        kind: binary, sum, count, mean, ratio or quantile (the metric definition's kind).
        variant, control: the treatment's and the control's keys.
        higher_is_better: the metric's direction.
        effect: the frequentist comparison (CUPED-adjusted when ``effect.cuped``).
        chance_to_win, expected_loss: the Bayesian view (expected loss in metric units).
        sequential: the sequential monitor when the spec asks for one.
        max_degradation: for a guardrail, the tolerated relative degradation (e.g. 0.05).
        segment: ``(dimension, level)`` for a segment readout, None overall.
        heterogeneous: for a segment family, whether the effects differ across levels (Cochran's Q).
        std_errors: ``(control, treatment)`` standard errors of the two estimates (the per-variant
            error bars of the HTML report); None when not computed.
    """

    metric: str
    role: Role
    kind: str
    variant: str
    control: str
    higher_is_better: bool
    effect: EffectResult
    chance_to_win: float
    expected_loss: float
    sequential: MonitorResult | None = None
    max_degradation: float | None = None
    segment: tuple[str, str] | None = None
    heterogeneous: bool | None = None
    std_errors: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class TimelinePoint:
    """Cumulative relative lift of a metric for one treatment at the end of one day, with its CI."""

    day: date
    metric: str
    variant: str
    units: int
    relative_effect: float
    relative_ci: Interval


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do, with reasons in plain words.

    ``category`` is one of :data:`CATEGORIES`; ``variant`` is the treatment to launch (or to roll
    back) when there is one.
    """

    category: str
    reasons: tuple[str, ...]
    variant: str | None = None


@dataclass(frozen=True, slots=True)
class ExperimentReadout:
    """Everything one analysis of an experiment found.

    Attributes:
        experiment_key, name, spec_version, status: what was analysed.
        analysed_at: when (UTC).
        days_running: days since the first exposure (fractional).
        control, variants: the control's key and every variant's key, control first.
        configured_weights: the spec's traffic shares, per variant.
        units: analysed units per variant (units exposed to more than one variant excluded).
        excluded_units: units exposed to more than one variant, left out of every metric.
        planned_units_per_variant: from the schedule or the power analysis of the hypothesis.
        daily_units: average units a day over the experiment so far (all variants).
        srm: the sample-ratio check on ``units``; ``health`` every check, SRM included.
        metrics: overall readouts; ``segments`` the per-segment ones.
        timeline: cumulative lift by day for the goal metrics.
        decision: filled by the decision engine.
    """

    experiment_key: str
    name: str
    spec_version: int
    status: str
    analysed_at: datetime
    days_running: float
    control: str
    variants: tuple[str, ...]
    configured_weights: dict[str, float]
    units: dict[str, int]
    excluded_units: int
    planned_units_per_variant: int | None
    daily_units: float
    srm: SrmResult
    health: tuple[HealthCheck, ...]
    metrics: tuple[MetricReadout, ...]
    segments: tuple[MetricReadout, ...] = ()
    timeline: tuple[TimelinePoint, ...] = ()
    decision: Decision | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def status_summary(self) -> dict[str, Any]:
        """Where the experiment stands (``splitlab status --json`` and ``GET .../status``): status, days
        running, configured split vs units per variant with the SRM check, and the planned sample.
        NaN (an SRM p-value without units) is None.
        """  # noqa: D205
        p_value = self.srm.p_value
        return {
            "experiment": self.experiment_key,
            "status": self.status,
            "days_running": self.days_running,
            "configured": dict(self.configured_weights),
            "units": dict(self.units),
            "planned_per_variant": self.planned_units_per_variant,
            "srm_p_value": p_value if math.isfinite(p_value) else None,
            "srm_flag": self.srm.flag,
            "excluded_units": self.excluded_units,
        }
