"""From data to results: metric definitions, aggregation, analysis and reports."""

from splitlab.analysis.frame import analyze
from splitlab.analysis.metrics import MetricSpec, mean, proportion, ratio
from splitlab.analysis.results import AnalysisResult, MetricResult

__all__ = ["AnalysisResult", "MetricResult", "MetricSpec", "analyze", "mean", "proportion", "ratio"]
