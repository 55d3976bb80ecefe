"""The readout in every form: JSON, Markdown, one self-contained HTML page, and the terminal."""

from splitlab.analysis.report.data import readout_from_dict, readout_to_dict, to_json
from splitlab.analysis.report.html import (
    decision_section,
    health_section,
    metrics_section,
    segments_section,
    timeline_section,
    to_html,
    traffic_section,
)
from splitlab.analysis.report.markdown import to_markdown
from splitlab.analysis.report.terminal import rich_readout, to_text

__all__ = [
    "decision_section",
    "health_section",
    "metrics_section",
    "readout_from_dict",
    "readout_to_dict",
    "rich_readout",
    "segments_section",
    "timeline_section",
    "to_html",
    "to_json",
    "to_markdown",
    "to_text",
    "traffic_section",
]
