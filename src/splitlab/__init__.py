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

__all__ = ["AnalysisResult", "MetricResult", "MetricSpec", "analyze", "mean", "proportion", "ratio"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module("splitlab.analysis"), name)
    msg = f"module 'splitlab' has no attribute {name!r}"
    raise AttributeError(msg)
