"""The readout of one experiment: health checks, per-metric results, segments, timeline, decision.

It is the contract between the pipeline that fills it (``splitlab.analysis.experiment``), the
decision engine (``splitlab.analysis.decision``) and the reports (``splitlab.analysis.report``).
All records are frozen; ``to_dict`` forms are JSON-ready (no NaN: ``None`` instead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from splitlab.analysis.results import MetricResult, Role
from splitlab.stats.results import Interval
from splitlab.stats.srm import SrmResult

if TYPE_CHECKING:
    from splitlab.analysis.report.notebook import ForestPlot

__all__ = [
    "Decision",
    "ExperimentReadout",
    "HealthCheck",
    "MetricResult",
    "PhaseSummary",
    "Role",
    "TimelinePoint",
    "Verdict",
]

Severity = Literal["error", "warning", "info"]


class Decision(StrEnum):
    """The seven decision categories (``docs/decisions.md``); each compares and prints as its name."""

    STRONG_LAUNCH = "STRONG_LAUNCH"
    LAUNCH = "LAUNCH"
    CONSIDER_LAUNCH = "CONSIDER_LAUNCH"
    EXTEND_TEST = "EXTEND_TEST"
    NO_LAUNCH = "NO_LAUNCH"
    ROLLBACK = "ROLLBACK"
    INVALID = "INVALID"


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
class TimelinePoint:
    """Cumulative relative lift of a metric for one treatment at the end of one day, with its interval.

    ``interval`` names that interval: ``ci`` (the day's fixed-horizon CI, not corrected for looking
    every day), or the sequential test's (``msprt confidence sequence``: valid at every look).
    ``control_mean`` is the control's mean on the data up to that day.
    """

    day: date
    metric: str
    variant: str
    units: int
    relative_effect: float
    relative_ci: Interval
    interval: str = "ci"
    control_mean: float = math.nan


@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseSummary:
    """One allocation phase of the experiment: when it started, its weights, its units and their split.

    Attributes:
        phase: 1, 2, ... in time order.
        started_at: when its weights took effect.
        spec_version: the experiment version that set them.
        weights: the configured share per variant during the phase.
        units: analysed units first exposed during the phase, per variant.
        srm_p_value: the chi-square SRM p-value of those units against the phase's weights (NaN
            without units).
    """

    phase: int
    started_at: datetime
    spec_version: int
    weights: dict[str, float]
    units: dict[str, int]
    srm_p_value: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the start as ISO 8601, a NaN p-value as None."""
        return {
            "phase": self.phase,
            "started_at": self.started_at.isoformat(),
            "spec_version": self.spec_version,
            "weights": dict(self.weights),
            "units": dict(self.units),
            "srm_p_value": self.srm_p_value if math.isfinite(self.srm_p_value) else None,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What to do, with reasons in plain words.

    ``variant`` is the treatment to launch (or to roll back) when there is one.
    """

    category: Decision
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
        notes: free-text remarks of the analysis.
        min_duration_days, max_duration_days: the schedule's bounds on the running time (None:
            no bound); before the minimum no launch or no-launch decision is made.
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
    metrics: tuple[MetricResult, ...]
    segments: tuple[MetricResult, ...] = ()
    timeline: tuple[TimelinePoint, ...] = ()
    decision: Verdict | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    phases: tuple[PhaseSummary, ...] = ()
    min_duration_days: float | None = None
    max_duration_days: float | None = None

    def status_summary(self) -> dict[str, Any]:
        """Where the experiment stands (``splitlab status --json`` and ``GET .../status``): status, days
        running, configured split vs units per variant with the SRM check, the planned sample, and
        the allocation phases. NaN (an SRM p-value without units) is None.
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
            "phases": [phase.to_dict() for phase in self.phases],
        }

    def _repr_html_(self) -> str:
        """Decision, metric tables and charts, health checks and traffic as HTML, for Jupyter (every text escaped)."""
        from splitlab.analysis.report.notebook import readout_html

        return readout_html(self)

    def plot(self, *, effect: Literal["relative", "absolute"] = "relative") -> ForestPlot:
        """A forest plot of every metric's effect per treatment with its CI, and a line at zero.

        splitlab's own SVG chart, as :meth:`splitlab.AnalysisResult.plot` (no plotting library needed).

        Args:
            effect: ``relative`` (default; comparable across metrics) or ``absolute``.
        """
        from splitlab.analysis.report.notebook import forest_plot

        return forest_plot(self.metrics, variants=self.variants, control=self.control, effect=effect)
