"""The HTTP service: experiments, assignments, SDK config, exposures and events under ``/api/v1``.

Build the app with :func:`create_app` and run it with ``splitlab serve`` (uvicorn).
"""

from __future__ import annotations

from splitlab.service.app import API_PREFIX, app_from_env, create_app
from splitlab.service.settings import Settings

__all__ = ["API_PREFIX", "Settings", "app_from_env", "create_app"]
