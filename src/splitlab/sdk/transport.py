"""HTTP with the standard library: the SDK's side of the service contract (see docs/sdk.md)."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

__all__ = ["ConfigResponse", "PermanentError", "TooLargeError", "TransientError", "Transport"]

_TRANSIENT_4XX = frozenset({408, 425, 429})


class TransientError(Exception):
    """A 5xx, 408/425/429, a timeout or a connection error: worth retrying."""


class PermanentError(Exception):
    """A 4xx: the request is wrong and sending it again will not help."""


class TooLargeError(PermanentError):
    """413: the batch is too large (smaller batches may pass)."""


@dataclass(frozen=True, slots=True)
class ConfigResponse:
    """``document`` is None when the service answered 304 (the cached config is current)."""

    document: Any
    etag: str | None


def _reason(err: urllib.error.HTTPError) -> str:
    try:
        body = err.read().decode("utf-8", "replace")
    except OSError:
        body = ""
    try:
        detail = json.loads(body).get("detail", body)
    except (ValueError, AttributeError):
        detail = body
    return f"HTTP {err.code}: {detail}" if detail else f"HTTP {err.code}"


class Transport:
    """Blocking requests to one service with one API key."""

    def __init__(self, url: str, api_key: str, *, timeout: float) -> None:
        self.base = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def _open(self, request: urllib.request.Request) -> tuple[int, bytes, str | None]:
        request.add_header("Authorization", f"Bearer {self.api_key}")
        request.add_header("Accept", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - the caller's URL
                return response.status, response.read(), response.headers.get("ETag")
        except urllib.error.HTTPError as err:
            if err.code == 304:
                return 304, b"", err.headers.get("ETag")
            reason = _reason(err)
            if err.code >= 500 or err.code in _TRANSIENT_4XX:
                raise TransientError(reason) from err
            if err.code == 413:
                raise TooLargeError(reason) from err
            raise PermanentError(reason) from err
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            # HTTPException: the connection broke mid-answer (IncompleteRead, RemoteDisconnected); the
            # service may or may not have written the batch, and a retry is idempotent either way.
            raise TransientError(f"connection error: {err!r}") from err

    def get_config(self, etag: str | None) -> ConfigResponse:
        """``GET /api/v1/config``, conditional on ``etag`` (``If-None-Match``)."""
        request = urllib.request.Request(f"{self.base}/api/v1/config", method="GET")  # noqa: S310
        if etag is not None:
            request.add_header("If-None-Match", etag)
        status, body, new_etag = self._open(request)
        if status == 304:
            return ConfigResponse(None, new_etag or etag)
        try:
            return ConfigResponse(json.loads(body), new_etag)
        except ValueError as err:
            raise TransientError(f"config is not JSON: {err}") from err

    def post(self, path: str, payload: dict[str, Any]) -> Any:
        """POST ``payload`` as JSON to ``/api/v1/<path>``; the decoded answer (None when not JSON)."""
        data = json.dumps(payload, separators=(",", ":")).encode()
        request = urllib.request.Request(f"{self.base}/api/v1/{path}", data=data, method="POST")  # noqa: S310
        request.add_header("Content-Type", "application/json")
        _, body, _ = self._open(request)
        try:
            return json.loads(body) if body else None
        except ValueError:
            return None
