"""The one result family: a metric for one treatment against control, and a frame analysis.

:class:`MetricResult` is what :func:`splitlab.analysis.comparison.compare` returns for the frame
path and for a stored experiment alike; the experiment's readout
(:class:`splitlab.analysis.readout.ExperimentReadout`) holds the same records.
:class:`AnalysisResult` is ``splitlab.analyze``'s, with its table, frame and JSON forms.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from splitlab.stats.results import EffectResult
from splitlab.stats.sequential.monitor import MonitorResult
from splitlab.stats.srm import SrmResult

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console, ConsoleOptions, RenderResult

    from splitlab.analysis.report.notebook import ForestPlot

Role = Literal["goal", "secondary", "guardrail"]


def json_number(value: float | None) -> float | None:
    """JSON has no NaN or infinity: a missing or unbounded value becomes null."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricResult:
    """One metric, one treatment against control: overall, or within one segment level.

    Attributes:
        metric: the metric's name.
        role: goal, secondary or guardrail in a stored experiment; None in a frame analysis.
        kind: the metric's kind (``proportion``, ``mean``, ``ratio`` of a frame; ``binary``,
            ``sum``, ``count``, ``mean``, ``ratio``, ``quantile`` of a stored definition).
        variant, control: the treatment's and the control's labels.
        higher_is_better: the metric's direction.
        effect: the frequentist comparison (CUPED-adjusted when ``effect.cuped``).
        chance_to_win: Bayesian P(treatment better than control), direction-aware.
        expected_loss: Bayesian expected loss of shipping the treatment, in metric units.
        sequential: the sequential monitor's looks and decision, when one was asked for.
        max_degradation: for a guardrail, the tolerated relative degradation (e.g. 0.05).
        segment: ``(dimension, level)`` for a segment result, None overall.
        heterogeneous: for a segment family, whether the effects differ across levels (Cochran's Q).
        std_errors: ``(control, treatment)`` standard errors of the two estimates (the per-variant
            error bars of the HTML report); None when not computed.
        absolute_se: standard error of ``effect.absolute_effect``, the one its CI and test use
            (before any multiple-testing correction); None when not computed.
        relative_se: delta-method standard error of ``effect.relative_effect``; None when not computed.
        excluded_units: units left out for a missing value, per group (control, treatment).
        probability_of_superiority: with ``effect.test == "mann-whitney"``, the estimate of
            ``P(T > C) + P(T = C) / 2``; None otherwise.
        probability_of_superiority_ci: its CI (DeLong variance); None without it.
    """

    metric: str
    role: Role | None = None
    kind: str
    variant: str
    control: str
    higher_is_better: bool = True
    effect: EffectResult
    chance_to_win: float
    expected_loss: float
    sequential: MonitorResult | None = None
    max_degradation: float | None = None
    segment: tuple[str, str] | None = None
    heterogeneous: bool | None = None
    std_errors: tuple[float, float] | None = None
    absolute_se: float | None = None
    relative_se: float | None = None
    excluded_units: tuple[int, int] = (0, 0)
    probability_of_superiority: float | None = None
    probability_of_superiority_ci: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The flat JSON record of ``splitlab analyze-file --json``."""
        e = self.effect
        return {
            "metric": self.metric,
            "variant": self.variant,
            "control_mean": json_number(e.control_mean),
            "treatment_mean": json_number(e.treatment_mean),
            "absolute_effect": json_number(e.absolute_effect),
            "absolute_ci": [json_number(v) for v in e.absolute_ci],
            "relative_effect": json_number(e.relative_effect),
            "relative_ci": [json_number(v) for v in e.relative_ci],
            "p_value": json_number(e.p_value),
            "test": e.test,
            "cuped": e.cuped,
            "chance_to_win": json_number(self.chance_to_win),
            "expected_loss": json_number(self.expected_loss),
            "kind": self.kind,
            "control": self.control,
            "control_n": e.control_n,
            "treatment_n": e.treatment_n,
            "significant": e.significant,
            "unadjusted_p_value": json_number(e.unadjusted_p_value),
            "correction": e.correction,
            "excluded_units": list(self.excluded_units),
            "error_code": None if e.error_code is None else str(e.error_code),
            "error_message": e.error_message,
            "absolute_se": json_number(self.absolute_se),
            "relative_se": json_number(self.relative_se),
            **self._superiority_fields(),
            **self._sequential_fields(),
        }

    def _superiority_fields(self) -> dict[str, Any]:
        """``probability_of_superiority`` and its CI, for a Mann-Whitney comparison only."""
        if self.probability_of_superiority is None:
            return {}
        ci = self.probability_of_superiority_ci or (math.nan, math.nan)
        return {
            "probability_of_superiority": json_number(self.probability_of_superiority),
            "probability_of_superiority_ci": [json_number(v) for v in ci],
        }

    def _sequential_fields(self) -> dict[str, Any]:
        """``sequential_*`` keys: the latest look's always-valid (mSPRT) or stage-wise (GST) figures."""
        if self.sequential is None:
            return {}
        last = self.sequential.looks[-1] if self.sequential.looks else None
        return {
            "sequential_method": self.sequential.method,
            "sequential_decision": self.sequential.decision,
            "sequential_p_value": None if last is None else json_number(last.p_value),
            "sequential_ci": [None, None] if last is None else [json_number(v) for v in last.ci],
            "sequential_looks": len(self.sequential.looks),
            "sequential_stopped_at": self.sequential.stopped_at,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalysisResult:
    """Everything ``splitlab.analyze`` found: the SRM check and one record per metric and treatment.

    ``unlabelled_rows`` counts rows without a variant label, left out of the whole analysis.
    """

    control: str
    variants: tuple[str, ...]
    srm: SrmResult
    metrics: tuple[MetricResult, ...]
    alpha: float
    correction: str
    unlabelled_rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary: ``{"srm": {...}, "metrics": [...]}`` plus context."""
        srm = self.srm
        return {
            "srm": {
                "p_value": json_number(srm.p_value),
                "counts": dict(zip(srm.variants, srm.counts, strict=True)),
                "flag": srm.flag,
                "expected_shares": dict(zip(srm.variants, srm.expected_shares, strict=True)),
                "threshold": srm.threshold,
            },
            "metrics": [m.to_dict() for m in self.metrics],
            "control": self.control,
            "variants": list(self.variants),
            "alpha": self.alpha,
            "correction": self.correction,
            "unlabelled_rows": self.unlabelled_rows,
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """The result as strict JSON (no NaN)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_frame(self) -> pd.DataFrame:
        """One row per metric and treatment, CI bounds in their own columns."""
        import pandas as pd

        rows = []
        for m in self.metrics:
            row = m.to_dict()
            row["absolute_ci_lower"], row["absolute_ci_upper"] = m.effect.absolute_ci
            row["relative_ci_lower"], row["relative_ci_upper"] = m.effect.relative_ci
            del row["absolute_ci"], row["relative_ci"], row["excluded_units"]
            rows.append(row)
        return pd.DataFrame(rows)

    def __str__(self) -> str:
        from splitlab.analysis.render import plain_report

        return plain_report(self)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from splitlab.analysis.render import rich_report

        yield from rich_report(self, width=options.max_width)

    def _repr_html_(self) -> str:
        """The table as HTML, for Jupyter (every text escaped)."""
        from splitlab.analysis.report.notebook import result_html

        return result_html(self)

    def plot(self, *, effect: Literal["relative", "absolute"] = "relative") -> ForestPlot:
        """A forest plot of the effects with their CIs, one row per metric and treatment, a line at zero.

        It is splitlab's own SVG chart (the HTML report's), not a matplotlib Figure, so no plotting
        library is needed: Jupyter shows it, ``.save("effects.svg")`` writes it
        (:class:`splitlab.analysis.report.notebook.ForestPlot`). ``to_frame()`` has the same
        figures for another plotting library.

        Args:
            effect: ``relative`` (default; comparable across metrics) or ``absolute`` (each
                metric in its own units).
        """
        from splitlab.analysis.report.notebook import forest_plot

        return forest_plot(self.metrics, variants=self.variants, control=self.control, effect=effect)
