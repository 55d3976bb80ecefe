"""A fake splitlab service implementing the SDK contract (docs/sdk.md) on a loopback port, in a thread."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

API_KEY = "sdk-test-key"
WAIT = 5.0  # upper bound on every wait for the client's threads


class FakeService:
    """Config with an ETag, exposures and events ingestion; scripted failures; every request recorded."""

    def __init__(self) -> None:
        self.api_key = API_KEY
        self.experiments: list[dict[str, Any]] = []
        self.version = "v1"
        self.cond = threading.Condition()
        self.config_requests = 0
        self.not_modified = 0
        self.posts: list[tuple[str, int]] = []  # (path, status answered)
        self.batches: dict[str, list[list[dict[str, Any]]]] = {"exposures": [], "events": []}
        self.script: deque[int] = deque()  # statuses answered to the next POSTs before accepting
        self.max_batch: int | None = None  # larger POST batches are answered 413
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def set_experiments(self, experiments: list[dict[str, Any]], version: str) -> None:
        with self.cond:
            self.experiments, self.version = experiments, version

    def received(self, path: str) -> list[dict[str, Any]]:
        with self.cond:
            return [item for batch in self.batches[path] for item in batch]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(WAIT)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any] | None = None, etag: str | None = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                if etag is not None:
                    self.send_header("ETag", etag)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {API_KEY}":
                    return True
                self._answer(401, {"detail": "Authorization: a valid sdk key is required"})
                return False

            def do_GET(self) -> None:
                if self.path != "/api/v1/config":
                    self._answer(404, {"detail": f"path {self.path} not found"})
                    return
                if not self._authorized():
                    return
                with service.cond:
                    service.config_requests += 1
                    etag = f'"{service.version}"'
                    document = {"version": service.version, "experiments": service.experiments}
                    unchanged = self.headers.get("If-None-Match") == etag
                    service.not_modified += unchanged
                    service.cond.notify_all()
                if unchanged:
                    self._answer(304, etag=etag)
                else:
                    self._answer(200, document, etag=etag)

            def do_POST(self) -> None:
                path = self.path.removeprefix("/api/v1/")
                if path not in ("exposures", "events"):
                    self._answer(404, {"detail": f"path {self.path} not found"})
                    return
                if not self._authorized():
                    return
                items = json.loads(self.rfile.read(int(self.headers["Content-Length"])))[path]
                with service.cond:
                    if service.script:
                        status = service.script.popleft()
                    elif service.max_batch is not None and len(items) > service.max_batch:
                        status = 413
                    else:
                        status = 200
                        service.batches[path].append(items)
                    service.posts.append((path, status))
                    service.cond.notify_all()
                if status == 200:
                    self._answer(200, {"received": len(items), "inserted": len(items)})
                else:
                    self._answer(status, {"detail": f"{path}[0].unit_id: scripted failure {status}"})

        return Handler


@pytest.fixture
def service() -> Iterator[FakeService]:
    fake = FakeService()
    yield fake
    fake.stop()
