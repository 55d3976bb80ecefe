"""Where the API lives: every route is under :data:`API_PREFIX`."""

from __future__ import annotations

__all__ = ["API_PREFIX"]

API_PREFIX = "/api/v1"
