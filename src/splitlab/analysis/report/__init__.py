"""The readout in every form: JSON, Markdown, one self-contained HTML page, and the terminal."""

from splitlab.analysis.report.data import readout_to_dict, to_json
from splitlab.analysis.report.html import to_html
from splitlab.analysis.report.markdown import to_markdown
from splitlab.analysis.report.terminal import rich_readout, to_text

__all__ = ["readout_to_dict", "rich_readout", "to_html", "to_json", "to_markdown", "to_text"]
