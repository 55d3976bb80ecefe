"""A real webhook receiver on loopback that checks every signature, and a store on each backend."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from splitlab.notify import DELIVERY_HEADER, SIGNATURE_HEADER, verify
from splitlab.storage import Store, open_store

SECRET = "whsec-test-6f1c"  # noqa: S105 - the receiver's test secret
SECRET_ENV = "SPLITLAB_TEST_WEBHOOK_SECRET"  # noqa: S105 - a variable name


@dataclass
class Received:
    """One request the receiver took: its path, headers, raw body, and whether its signature held."""

    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def delivery(self) -> str:
        return self.headers[DELIVERY_HEADER]


@dataclass
class Receiver:
    """Answers each POST with the next status of ``plan`` (200 once the plan is used up)."""

    url: str
    requests: list[Received] = field(default_factory=list)
    plan: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, received: Received) -> int:
        with self.lock:
            self.requests.append(received)
            return self.plan.pop(0) if self.plan else 200

    def deliveries(self) -> list[str]:
        with self.lock:
            return [r.delivery for r in self.requests]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            header = self.headers.get(SIGNATURE_HEADER)
            verified = header is not None and verify(SECRET.encode(), header, body)
            received = Received(self.path, dict(self.headers.items()), body, verified)
            self.send_response(receiver.answer(received))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1 whose secret is in ``SPLITLAB_TEST_WEBHOOK_SECRET``."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    holder = Receiver(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(holder))
    holder.url = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll: shutdown() waits for the loop to look, 0.5 s by default.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield holder
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with open_store(database_url) as opened:
        yield opened
