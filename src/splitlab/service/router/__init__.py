"""The model router of ``splitlab serve``: A/B, canary and shadow traffic for ML models (docs/router.md).

``POST /api/v1/route/{experiment}/predict`` assigns the unit, forwards the model input to its
variant's model (:mod:`~splitlab.service.router.models`), falls back to the control and trips a
circuit breaker (:mod:`~splitlab.service.router.breaker`) when a model fails, records the
prediction off the request's path (:mod:`~splitlab.service.router.prediction_log`) and copies a
share of requests to a shadow model; ``POST .../feedback`` joins outcomes to predictions.
"""

from __future__ import annotations

from splitlab.service.router.breaker import CircuitBreaker
from splitlab.service.router.models import ModelAnswer, ModelCaller
from splitlab.service.router.prediction_log import PredictionLog
from splitlab.service.router.router import ModelRouter, RoutedAnswer

__all__ = ["CircuitBreaker", "ModelAnswer", "ModelCaller", "ModelRouter", "PredictionLog", "RoutedAnswer"]
