"""splitlab: an experimentation platform.

The Python entry point for a whole analysis is :func:`analyze`; the statistics engine lives in
:mod:`splitlab.stats`. Names are loaded on first use, so ``import splitlab.stats`` stays light
(no pandas, no CLI).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from splitlab.analysis import AnalysisResult, MetricResult, MetricSpec, analyze, mean, proportion, ratio
    from splitlab.evaluate import assign
    from splitlab.specs import load_catalog, load_spec

_HOMES = {
    "AnalysisResult": "splitlab.analysis",
    "MetricResult": "splitlab.analysis",
    "MetricSpec": "splitlab.analysis",
    "analyze": "splitlab.analysis",
    "mean": "splitlab.analysis",
    "proportion": "splitlab.analysis",
    "ratio": "splitlab.analysis",
    "assign": "splitlab.evaluate",
    "load_catalog": "splitlab.specs",
    "load_spec": "splitlab.specs",
}
__all__ = [
    "AnalysisResult",
    "MetricResult",
    "MetricSpec",
    "analyze",
    "assign",
    "load_catalog",
    "load_spec",
    "mean",
    "proportion",
    "ratio",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    msg = f"module 'splitlab' has no attribute {name!r}"
    raise AttributeError(msg)
