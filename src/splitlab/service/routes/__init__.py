"""The API's routes, one module per resource; every one under :data:`API_PREFIX` but Prometheus' ``/metrics``."""

from __future__ import annotations

__all__ = ["API_PREFIX"]

API_PREFIX = "/api/v1"
"""Where the API lives."""
