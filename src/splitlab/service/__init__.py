"""The HTTP service: experiments, assignments, SDK config, exposures and events under ``/api/v1``.

Build the app with :func:`create_app` and run it with ``splitlab serve`` (uvicorn).

The app is imported on first use of these names, not with the package: ``splitlab serve``'s
parent process (settings, Redis check, uvicorn options) and ``splitlab serve-model`` import
modules of this package without needing the app, whose import is most of a worker's start-up.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from splitlab.service.app import API_PREFIX, app_from_env, create_app
    from splitlab.service.settings import Settings

__all__ = ["API_PREFIX", "Settings", "app_from_env", "create_app"]

_LAZY = {"API_PREFIX": "app", "app_from_env": "app", "create_app": "app", "Settings": "settings"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"splitlab.service.{_LAZY[name]}"), name)
    msg = f"module 'splitlab.service' has no attribute {name!r}"
    raise AttributeError(msg)
