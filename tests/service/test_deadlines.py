"""Every wait has a deadline: a frozen database, slow clients, disconnects, floods of made-up keys.

The partition is real: a TCP proxy between the server and PostgreSQL stops moving bytes in both
directions (no RST, connections stay open, the kernel keeps acknowledging), which is what a
dropped network path looks like to the driver. The clients are real sockets against
``splitlab serve``.
"""

from __future__ import annotations

import contextlib
import select
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.engine import make_url

from splitlab.operations.experiments import apply_spec, change_status
from splitlab.service import Settings, create_app
from splitlab.specs import ExperimentSpec
from splitlab.storage import Store, create_store_engine, open_store

REQUEST_TIMEOUT = 1.5
"""The servers' ``request_timeout_seconds`` here: short, so the tests are."""
SLACK = 1.5
"""What an answer at the deadline may take beyond it on a busy 2-core machine."""


class FreezableProxy:
    """A TCP proxy to ``target`` whose traffic can be frozen: nothing forwarded, nothing closed, no RST."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.frozen = threading.Event()
        self.closed = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.listener.settimeout(0.1)
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        while not self.closed.is_set():
            if self.frozen.is_set():  # bytes wait in the kernel's buffers, as on a dead path
                time.sleep(0.05)
                continue
            readable, _, _ = select.select(list(peers), [], [], 0.05)
            for source in readable:
                try:
                    data = source.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    for end in peers:
                        with contextlib.suppress(OSError):
                            end.close()
                    return
                peers[source].sendall(data)

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
        for end in self.sockets:
            with contextlib.suppress(OSError):
                end.close()


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[FreezableProxy]:
    url = make_url(postgres_url)
    frozen = FreezableProxy((url.host or "127.0.0.1", url.port or 5432))
    yield frozen
    frozen.close()


SPEC = {
    "key": "checkout",
    "variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}],
    "hypothesis": {"primary_metric": "conversion", "direction": "increase", "mde": 0.1, "baseline": 0.1},
    "metrics": {"goal": ["conversion"]},
}
CONVERSION = {"name": "conversion", "kind": "binary", "event": "purchase", "window_days": 7}


def _prepare(database_url: str) -> dict[str, dict[str, str]]:
    """Keys and a running experiment in the store; the headers of an admin and an sdk request."""
    with open_store(database_url) as store:
        _, admin = store.keys.create(role="admin", name="ops", actor="test")
        _, sdk = store.keys.create(role="sdk", name="web", actor="test")
        store.metrics.put_many(definitions=[CONVERSION], actor="test")
        apply_spec(store, ExperimentSpec.model_validate(SPEC), actor="test")
        change_status(store, key="checkout", action="start", actor="test")
    return {"admin": {"Authorization": f"Bearer {admin}"}, "sdk": {"Authorization": f"Bearer {sdk}"}}


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _requests(headers: dict[str, dict[str, str]], n: int) -> list[tuple[str, str, dict[str, Any] | None, str]]:
    """(method, path, JSON body, role) of every route that reads or writes the store."""
    exposure = {"experiment": "checkout", "unit_id": f"x{n}", "variant": "control", "timestamp": _now()}
    event_ = {"event_id": f"e{n}", "unit_id": f"x{n}", "name": "purchase", "timestamp": _now()}
    return [
        ("POST", "/api/v1/assign", {"experiment": "checkout", "unit_id": f"new-{n}"}, "sdk"),
        ("POST", "/api/v1/assign/batch", {"experiment": "checkout", "units": [{"unit_id": f"b-{n}"}]}, "sdk"),
        ("GET", "/api/v1/config", None, "sdk"),
        ("POST", "/api/v1/exposures", {"exposures": [exposure]}, "sdk"),
        ("POST", "/api/v1/events", {"events": [event_]}, "sdk"),
        ("GET", "/api/v1/experiments", None, "admin"),
        ("GET", "/api/v1/experiments/checkout/status", None, "admin"),
        ("GET", "/api/v1/ready", None, "admin"),
    ]


def test_a_frozen_database_gets_503_within_the_deadline_health_answers_throughout_and_it_recovers(
    postgres_url: str, proxy: FreezableProxy, servers: Callable[..., Any]
) -> None:
    headers = _prepare(postgres_url)
    proxied = make_url(postgres_url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    server = servers(
        proxied,
        SPLITLAB_CACHE_SECONDS="0.2",
        SPLITLAB_REQUEST_TIMEOUT_SECONDS=str(REQUEST_TIMEOUT),
        SPLITLAB_ANALYSIS_TIMEOUT_SECONDS="3",
    )
    with httpx.Client(base_url=server.base, timeout=30) as http:
        for method, path, body, role in _requests(headers, 0):  # all served while the path is up
            assert http.request(method, path, json=body, headers=headers[role]).status_code == 200, path

        proxy.frozen.set()
        time.sleep(0.5)  # every cached entry is older than 2 x cache_seconds now: the store must be asked

        # One client for all (thread-safe; making one costs tens of ms of CPU, which would spread the starts).
        shared = httpx.Client(base_url=server.base, timeout=30, limits=httpx.Limits(max_connections=100))

        def timed(request: tuple[str, str, dict[str, Any] | None, str]) -> tuple[str, int, float, httpx.Headers]:
            method, path, body, role = request
            started = time.monotonic()
            answer = shared.request(method, path, json=body, headers=headers[role])
            return path, answer.status_code, time.monotonic() - started, answer.headers

        with ThreadPoolExecutor(max_workers=70) as pool:
            # 60 stuck /assign requests and one of every route at once: the worker's thread pool fills up.
            stuck = [pool.submit(timed, _requests(headers, n)[0]) for n in range(1, 61)]
            each = [pool.submit(timed, request) for request in _requests(headers, 100)]
            time.sleep(0.3)
            health_started = time.monotonic()
            health = http.get("/api/v1/health", timeout=5)
            health_took = time.monotonic() - health_started
            answers = [future.result() for future in stuck + each]
        shared.close()
        assert health.status_code == 200
        assert health_took < 1.0, f"/health took {health_took:.2f} s while the store was frozen"
        bounds = {"/api/v1/experiments/checkout/status": 3.0}
        for path, status, took, answer_headers in answers:
            assert status == 503, (path, status)
            assert answer_headers["retry-after"], path
            assert took < bounds.get(path, REQUEST_TIMEOUT) + SLACK, f"{path} answered after {took:.2f} s"
        ready = http.get("/api/v1/ready", headers=headers["admin"])
        assert ready.json()["detail"] == [{"field": "database", "message": "database unreachable"}]

        proxy.frozen.clear()  # the path comes back: the service recovers by itself
        deadline = time.monotonic() + 30
        while True:
            answers_after = [
                http.request(method, path, json=body, headers=headers[role]).status_code
                for method, path, body, role in _requests(headers, 200)
            ]
            if set(answers_after) == {200}:
                break
            assert time.monotonic() < deadline, f"not recovered: {answers_after}"
            time.sleep(0.2)  # polling for recovery, not timing anything
    assert "Traceback" not in server.log.read_text(errors="replace")


def test_a_locked_sqlite_store_gets_503_within_the_deadline(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    headers = _prepare(url)
    settings = Settings(database_url=url, request_timeout_seconds=REQUEST_TIMEOUT)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        holder = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        started = time.monotonic()
        exposure = {"experiment": "checkout", "unit_id": "u1", "variant": "control", "timestamp": _now()}
        answer = client.post("/api/v1/exposures", json={"exposures": [exposure]}, headers=headers["sdk"])
        took = time.monotonic() - started
        holder.execute("ROLLBACK")
        holder.close()
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "1"
    assert took < REQUEST_TIMEOUT + SLACK


def _read_all(sock: socket.socket, within: float) -> tuple[bytes, float]:
    """What the server sends until it closes the connection, and when it closed it (seconds from now)."""
    started = time.monotonic()
    sock.settimeout(within)
    received = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received, time.monotonic() - started


def test_slow_clients_are_answered_408_and_dropped(database_url: str, servers: Callable[..., Any]) -> None:
    headers = _prepare(database_url)
    server = servers(
        database_url, SPLITLAB_HEADER_TIMEOUT_SECONDS="1", SPLITLAB_REQUEST_TIMEOUT_SECONDS=str(REQUEST_TIMEOUT)
    )
    port = int(server.base.rsplit(":", 1)[1])
    key = headers["sdk"]["Authorization"].encode()
    partial_headers = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
    for sock in partial_headers:
        sock.sendall(b"POST /api/v1/assign HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]  # connect, send nothing
    body = b'{"experiment": "checkout", "unit_id": "u1"}'
    partial_body = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
    for sock in partial_body:
        sock.sendall(
            b"POST /api/v1/assign HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: " + key + b"\r\nContent-Length: " + str(len(body) + 10).encode() + b"\r\n\r\n" + body
        )
    # Meanwhile a well-behaved client is served.
    assert httpx.post(f"{server.base}/api/v1/assign", json={"experiment": "checkout", "unit_id": "u2"},
                      headers=headers["sdk"]).status_code == 200  # fmt: skip
    for sock in partial_headers + silent:
        received, took = _read_all(sock, 5)
        assert received.startswith(b"HTTP/1.1 408 "), received[:100]
        assert took < 1 + SLACK
    for sock in partial_body:
        received, took = _read_all(sock, 5)
        assert received.startswith(b"HTTP/1.1 408 "), received[:100]
        assert b'"field":"body"' in received.replace(b" ", b"")
        assert took < REQUEST_TIMEOUT + SLACK
    for sock in partial_headers + silent + partial_body:
        sock.close()
    # Clients that go away mid-body are counted, quietly.
    for _ in range(30):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(
                b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: " + key + b'\r\nContent-Length: 1000\r\n\r\n{"events": ['
            )
            time.sleep(0.01)  # the request reaches the app before the close
    time.sleep(0.5)  # the server notices the closes
    metrics = httpx.get(f"{server.base}/metrics", headers=headers["admin"]).text
    disconnects = next(line for line in metrics.splitlines() if line.startswith("splitlab_client_disconnects_total"))
    assert float(disconnects.split()[-1]) >= 30
    timed_out = [line for line in metrics.splitlines() if line.startswith("splitlab_requests_timed_out_total")]
    assert any('reason="body"' in line and float(line.split()[-1]) >= 50 for line in timed_out), timed_out
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log
    assert "ERROR" not in log


def test_unknown_keys_cost_no_store_read_and_a_flooding_client_is_throttled(database_url: str) -> None:
    headers = _prepare(database_url)
    settings = Settings(database_url=database_url, auth_failures_per_minute=20, cache_seconds=60)
    app = create_app(settings)
    with TestClient(app, client=("10.0.0.9", 5000)) as flood, TestClient(app, client=("10.0.0.1", 5000)) as legit:
        body = {"experiment": "checkout", "unit_id": "u1"}
        assert legit.post("/api/v1/assign", json=body, headers=headers["sdk"]).status_code == 200  # ids loaded
        statements: list[str] = []
        engine = app.state.runtime.store.engine
        event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        answers = [
            flood.post("/api/v1/assign", json=body, headers={"Authorization": f"Bearer slk_made{n}up_secret{n}"})
            for n in range(20)
        ]
        assert [a.status_code for a in answers] == [401] * 20
        assert [sql for sql in statements if "api_keys" in sql] == []  # 20 distinct unknown ids, not one read
        throttled = flood.post("/api/v1/assign", json=body, headers=headers["sdk"])  # even with a good key now
        assert throttled.status_code == 429
        assert 1 <= int(throttled.headers["retry-after"]) <= 60
        assert throttled.json()["detail"][0]["field"] == "Authorization"
        assert legit.post("/api/v1/assign", json=body, headers=headers["sdk"]).status_code == 200  # others are not
        metrics = legit.get("/metrics", headers=headers["admin"]).text
    assert 'splitlab_auth_failures_total{reason="invalid"} 20.0' in metrics
    assert 'splitlab_auth_failures_total{reason="throttled"} 1.0' in metrics


def test_a_key_created_while_serving_works_within_twice_cache_seconds(database_url: str) -> None:
    _prepare(database_url)
    settings = Settings(database_url=database_url, cache_seconds=0.2)
    with TestClient(create_app(settings)) as client, open_store(database_url) as store:
        assert client.get("/api/v1/config", headers={"Authorization": "Bearer slk_abc_def"}).status_code == 401
        _, key = store.keys.create(role="sdk", name="late", actor="test")
        deadline = time.monotonic() + 0.4 + SLACK
        while client.get("/api/v1/config", headers={"Authorization": f"Bearer {key}"}).status_code != 200:
            assert time.monotonic() < deadline, "a new key was still refused after 2 x cache_seconds"
            time.sleep(0.05)  # polling for the refresh, not timing anything


def test_ready_says_only_database_unreachable(database_url: str) -> None:
    _prepare(database_url)
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        healthy = runtime.store
        broken = Store(create_store_engine(make_url("postgresql+psycopg://nobody@127.0.0.1:1/secretdb")))
        runtime.store = broken
        try:
            answer = client.get("/api/v1/ready")
        finally:
            runtime.store = healthy
            broken.close()
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert answer.json() == {
        "status": "unavailable",
        "detail": [{"field": "database", "message": "database unreachable"}],
    }
