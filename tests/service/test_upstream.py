"""The router's upstream pool against real servers on loopback: model server subprocesses and raw asyncio servers."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from splitlab.service.model_server import RunningModelServer, start_model_server, train_demo_models
from splitlab.service.router.upstream import UpstreamConnectionError, UpstreamPool, UpstreamResponse

SERVERS: dict[str, dict[str, Any]] = {
    "good": {},
    "dropping": {"close_rate": 1.0},
    "hung": {"hang": True},
}


def _stop_if_started(future: Future[RunningModelServer]) -> None:
    if future.exception() is None:
        future.result().stop()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return train_demo_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def servers(demo: dict[str, Path]) -> Iterator[dict[str, RunningModelServer]]:
    with ThreadPoolExecutor(max_workers=len(SERVERS)) as pool:
        futures = [pool.submit(start_model_server, demo["good"], **options) for options in SERVERS.values()]
        try:
            yield {key: future.result() for key, future in zip(SERVERS, futures, strict=True)}
        finally:
            list(pool.map(_stop_if_started, futures))


@pytest.fixture(scope="module")
def row_body(demo: dict[str, Path]) -> bytes:
    return json.dumps({"features": json.loads(demo["holdout"].read_text())["rows"][0]}).encode()


class ThenClose(bytes):
    """An answer after which the raw server closes the connection."""


class ThenHang(bytes):
    """An answer (or part of one) after which the raw server writes nothing more until the client goes."""


Reply = Callable[[int, int, bytes], bytes | Awaitable[bytes] | None]
"""What a raw server answers to (connection number from 1, request number on it from 0, request bytes):
bytes to write (maybe :class:`ThenClose` or :class:`ThenHang`), an awaitable of them, or None: close
without answering."""


class RawServer:
    """An HTTP/1.1 server on loopback that answers what a test says and counts connections and requests."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.connections = 0
        self.open = 0
        self.requests: list[bytes] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._closed = asyncio.Event()  # set each time a connection ends
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/predict"

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()

    async def wait_open(self, count: int) -> None:
        """Wait (at most 2 s) until no more than ``count`` connections are open."""
        async with asyncio.timeout(2):
            while self.open > count:
                self._closed.clear()
                await self._closed.wait()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        number = self.connections
        try:
            for index in itertools.count():
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                match = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
                request = head + await reader.readexactly(int(match[1]) if match else 0)
                self.requests.append(request)
                self._in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self._in_flight)
                answer = self.reply(number, index, request)
                if answer is not None and not isinstance(answer, bytes):
                    answer = await answer
                self._in_flight -= 1
                if answer is None:
                    return
                writer.write(answer)
                await writer.drain()
                if isinstance(answer, ThenHang):
                    await reader.read()  # until the client closes
                if isinstance(answer, ThenClose | ThenHang):
                    return
        finally:
            self.open -= 1
            writer.close()
            self._closed.set()


def ok(body: bytes = b'{"ok": true}') -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)


def always_ok(_connection: int, _index: int, _request: bytes) -> bytes:
    return ok()


def test_answers_equal_httpx_answers_from_the_model_server(
    servers: dict[str, RunningModelServer], row_body: bytes
) -> None:
    good = servers["good"]
    cases = [
        (good.url, row_body),  # 200
        (good.url, b"{not json"),  # 422
        (f"{good.base_url}/health", b"{}"),  # 405 with an Allow header
        (f"{good.base_url}/nowhere?x=1", b"{}"),  # 404
    ]

    async def main() -> list[UpstreamResponse]:
        pool = UpstreamPool(max_connections=4)
        try:
            return [await pool.post(url, body, timeout=5) for url, body in cases]
        finally:
            await pool.close()

    answers = asyncio.run(main())
    with httpx.Client(trust_env=False) as client:
        expected = [client.post(url, content=body, headers={"content-type": "application/json"}) for url, body in cases]
    assert [a.status for a in answers] == [200, 422, 405, 404]
    for answer, response in zip(answers, expected, strict=True):
        assert (answer.status, answer.body, answer.content_type) == (
            response.status_code,
            response.content,
            response.headers["content-type"],
        )
    assert json.loads(answers[0].body)["model"] == "good"


def test_a_500_is_an_answer_not_an_exception() -> None:
    failure = b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\noops"

    async def main() -> None:
        async with RawServer(lambda *_: failure) as server:
            pool = UpstreamPool(max_connections=1)
            for _ in range(2):
                answer = await pool.post(server.url, b"{}", timeout=2)
                assert answer == UpstreamResponse(status=500, body=b"oops", content_type="text/plain")
            await pool.close()
            assert server.connections == 1

    asyncio.run(main())


def test_the_request_is_one_well_formed_post() -> None:
    async def main() -> None:
        async with RawServer(always_ok) as server:
            pool = UpstreamPool(max_connections=1)
            answer = await pool.post(server.url + "?v=2#fragment", b"[1, 2]", timeout=2, content_type="text/csv")
            await pool.close()
            port = server.url.split(":")[2].split("/")[0]
            assert server.requests == [
                b"POST /predict?v=2 HTTP/1.1\r\nHost: 127.0.0.1:%b\r\nUser-Agent: splitlab-router\r\n"
                b"Connection: keep-alive\r\nContent-Type: text/csv\r\nContent-Length: 6\r\n\r\n[1, 2]" % port.encode()
            ]
            assert answer == UpstreamResponse(status=200, body=b'{"ok": true}', content_type="application/json")

    asyncio.run(main())


def test_a_hundred_sequential_posts_use_one_connection_and_close_closes_it() -> None:
    async def main() -> None:
        async with RawServer(always_ok) as server:
            pool = UpstreamPool(max_connections=8)
            for _ in range(100):
                assert (await pool.post(server.url, b"{}", timeout=2)).status == 200
            assert (server.connections, len(server.requests), server.open) == (1, 100, 1)
            await pool.close()
            await server.wait_open(0)
            with pytest.raises(RuntimeError, match="closed"):
                await pool.post(server.url, b"{}", timeout=2)

    asyncio.run(main())


def test_concurrency_is_bounded_by_max_connections() -> None:
    async def slow_ok() -> bytes:
        await asyncio.sleep(0.01)  # long enough for every post to be waiting at once
        return ok()

    async def main() -> None:
        async with RawServer(lambda *_: slow_ok()) as server:
            pool = UpstreamPool(max_connections=3)
            answers = await asyncio.gather(*(pool.post(server.url, b"{}", timeout=5) for _ in range(12)))
            await pool.close()
            assert [a.status for a in answers] == [200] * 12
            assert (server.max_in_flight, server.connections) == (3, 3)

    asyncio.run(main())


def test_a_caller_beyond_max_connections_waits_within_its_timeout() -> None:
    async def main() -> None:
        async with RawServer(lambda *_: ThenHang(b"")) as server:
            pool = UpstreamPool(max_connections=1)
            holder = asyncio.create_task(pool.post(server.url, b"{}", timeout=5))
            async with asyncio.timeout(2):
                while not server.requests:  # until the first post holds the only connection
                    await asyncio.sleep(0)
            start = time.perf_counter()
            with pytest.raises(TimeoutError):
                await pool.post(server.url, b"{}", timeout=0.1)
            assert time.perf_counter() - start < 0.6
            assert (server.connections, len(server.requests)) == (1, 1)
            holder.cancel()
            await asyncio.gather(holder, return_exceptions=True)
            await pool.close()

    asyncio.run(main())


def test_max_connections_counts_idle_connections_of_every_upstream() -> None:
    async def main() -> None:
        async with RawServer(always_ok) as first, RawServer(always_ok) as second:
            pool = UpstreamPool(max_connections=2)
            await asyncio.gather(*(pool.post(first.url, b"{}", timeout=2) for _ in range(2)))
            assert first.open == 2
            await pool.post(second.url, b"{}", timeout=2)  # the pool is full: an idle connection to first is closed
            await first.wait_open(1)
            assert (first.open, second.open) == (1, 1)
            await pool.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("response", "body", "content_type"),
    [
        (
            (
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            ),
            b"hello world",
            "text/plain",
        ),
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + ok(b"[]"),
            b"[]",
            "application/json",
        ),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b"", "application/json"),
    ],
    ids=["chunked", "1xx-skipped", "no-content"],
)
def test_chunked_interim_and_empty_answers_keep_the_connection(response: bytes, body: bytes, content_type: str) -> None:
    async def main() -> None:
        async with RawServer(lambda *_: response) as server:
            pool = UpstreamPool(max_connections=2)
            for _ in range(3):
                answer = await pool.post(server.url, b"{}", timeout=2)
                assert (answer.body, answer.content_type) == (body, content_type)
                assert answer.status == (204 if response.startswith(b"HTTP/1.1 204") else 200)
            await pool.close()
            assert server.connections == 1

    asyncio.run(main())


@pytest.mark.parametrize(
    "response",
    [
        ThenClose(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\nto the end"),
        ThenClose(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nto the end"),
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nto the end",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nConnection: close\r\n\r\nto the end",
    ],
    ids=["close-no-length", "http1.0-no-length", "http1.0-length", "close-length"],
)
def test_an_answer_that_ends_the_connection_is_read_and_the_connection_not_reused(response: bytes) -> None:
    # The last two: the server keeps the connection open, but said it would not; the client believes it.
    async def main() -> None:
        async with RawServer(lambda *_: response) as server:
            pool = UpstreamPool(max_connections=2)
            for _ in range(3):
                answer = await pool.post(server.url, b"{}", timeout=2)
                assert answer == UpstreamResponse(status=200, body=b"to the end", content_type="text/plain")
            await pool.close()
            assert (server.connections, len(server.requests)) == (3, 3)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (b"HTCPCP/1.0 418 I'm a teapot\r\n\r\n", "not valid HTTP/1.1"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "not valid HTTP/1.1"),
        (ThenClose(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), "mid-response"),
    ],
    ids=["bad-status-line", "bad-length", "truncated"],
)
def test_a_malformed_or_truncated_answer_is_a_connection_error_and_not_retried(response: bytes, message: str) -> None:
    async def main() -> None:
        def reply(_connection: int, index: int, _request: bytes) -> bytes:
            return ok() if index == 0 else response

        async with RawServer(reply) as server:
            pool = UpstreamPool(max_connections=2)
            assert (await pool.post(server.url, b"{}", timeout=2)).status == 200
            with pytest.raises(UpstreamConnectionError, match=message):  # reused, bytes of an answer came: no retry
                await pool.post(server.url, b"{}", timeout=2)
            assert (server.connections, len(server.requests)) == (1, 2)
            await server.wait_open(0)  # and the client closed it
            await pool.close()

    asyncio.run(main())


def test_a_reused_connection_closed_by_the_server_is_retried_once_on_a_fresh_one() -> None:
    # The race of a keep-alive timeout, made certain: the server takes the second request on a
    # connection and closes it without answering, as if its keep-alive timeout fired at that moment.
    async def main() -> None:
        def reply(_connection: int, index: int, _request: bytes) -> bytes | None:
            return ok() if index == 0 else None

        async with RawServer(reply) as server:
            pool = UpstreamPool(max_connections=2)
            for _ in range(3):
                assert (await pool.post(server.url, b"{}", timeout=2)).status == 200
            assert (server.connections, len(server.requests)) == (3, 5)  # 1 + (1 + 1 retried) x 2
            await pool.close()

    asyncio.run(main())


def test_after_the_server_closed_an_idle_connection_the_next_post_succeeds() -> None:
    # Either the client has seen the close and skips the connection, or it finds out on writing to
    # it and retries on a fresh one: both end in an answer on a second connection.
    async def main() -> None:
        async with RawServer(lambda *_: ThenClose(ok())) as server:
            pool = UpstreamPool(max_connections=2)
            for _ in range(3):
                assert (await pool.post(server.url, b"{}", timeout=2)).status == 200
                await server.wait_open(0)
            assert (server.connections, len(server.requests)) == (3, 3)
            await pool.close()

    asyncio.run(main())


def test_no_retry_on_a_fresh_connection_and_one_on_a_reused_one() -> None:
    async def main() -> None:
        async with RawServer(lambda *_: None) as dropping:
            pool = UpstreamPool(max_connections=2)
            with pytest.raises(ConnectionError, match="without a response"):
                await pool.post(dropping.url, b"{}", timeout=2)
            assert (dropping.connections, len(dropping.requests)) == (1, 1)

        def reply(connection: int, _index: int, _request: bytes) -> bytes | None:
            return ok() if connection == 1 else None

        async with RawServer(reply) as server:
            assert (await pool.post(server.url, b"{}", timeout=2)).status == 200
            server.reply = lambda *_: None  # from now on every request is dropped
            with pytest.raises(ConnectionError):
                await pool.post(server.url, b"{}", timeout=2)
            assert (server.connections, len(server.requests)) == (2, 3)
            await pool.close()

    asyncio.run(main())


def test_idle_connections_past_max_idle_are_closed_not_reused() -> None:
    async def main() -> None:
        async with RawServer(always_ok) as server:
            pool = UpstreamPool(max_connections=2, max_idle=1e-9)
            for _ in range(3):
                assert (await pool.post(server.url, b"{}", timeout=2)).status == 200
            assert server.connections == 3
            await server.wait_open(1)
            await pool.close()

    asyncio.run(main())


def test_a_hung_model_times_out_within_the_timeout(servers: dict[str, RunningModelServer], row_body: bytes) -> None:
    async def main() -> float:
        pool = UpstreamPool(max_connections=2)
        start = time.perf_counter()
        with pytest.raises(TimeoutError):
            await pool.post(servers["hung"].url, row_body, timeout=0.3)
        elapsed = time.perf_counter() - start
        await pool.close()
        return elapsed

    assert 0.3 <= asyncio.run(main()) < 0.8


def test_a_connection_that_timed_out_mid_answer_is_closed_not_reused() -> None:
    async def main() -> None:
        def reply(connection: int, _index: int, _request: bytes) -> bytes:
            return ok() if connection > 1 else ThenHang(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")

        async with RawServer(reply) as server:
            pool = UpstreamPool(max_connections=1)
            start = time.perf_counter()
            with pytest.raises(TimeoutError):
                await pool.post(server.url, b"{}", timeout=0.1)
            assert time.perf_counter() - start < 0.6
            await server.wait_open(0)  # the client closed it
            assert (await pool.post(server.url, b"{}", timeout=2)).status == 200
            assert server.connections == 2
            await pool.close()

    asyncio.run(main())


def test_a_model_that_drops_connections_is_a_connection_error(
    servers: dict[str, RunningModelServer], row_body: bytes
) -> None:
    async def main() -> None:
        pool = UpstreamPool(max_connections=2)
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await pool.post(servers["dropping"].url, row_body, timeout=2)
        await pool.close()

    asyncio.run(main())


def test_transport_failures_are_connection_errors() -> None:
    async def main() -> None:
        async with RawServer(lambda *_: None) as server:
            url = server.url
        pool = UpstreamPool(max_connections=1)
        with pytest.raises(ConnectionRefusedError):  # nothing listens on the port any more
            await pool.post(url, b"{}", timeout=2)

        async def not_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)
            writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")  # a plain-text answer to a TLS hello
            writer.close()

        plain = await asyncio.start_server(not_tls, "127.0.0.1", 0)
        port = plain.sockets[0].getsockname()[1]
        with pytest.raises(UpstreamConnectionError, match="SSL"):  # the https path, against a server without TLS
            await pool.post(f"https://127.0.0.1:{port}/predict", b"{}", timeout=2)
        plain.close()
        await pool.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_connections": 0}, "max_connections == 0, must be >= 1"),
        ({"max_connections": 1, "max_idle": 0.0}, "max_idle == 0.0, must be > 0"),
    ],
)
def test_options_out_of_range_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        UpstreamPool(**options)


@pytest.mark.parametrize("url", ["ftp://host/x", "http:///x", "predict"])
def test_a_url_that_is_not_http_is_refused(url: str) -> None:
    async def main() -> None:
        pool = UpstreamPool(max_connections=1)
        try:
            await pool.post(url, b"{}", timeout=1)
        finally:
            await pool.close()

    with pytest.raises(ValueError, match=re.escape(f"url == {url!r}, must be an http:// or https:// URL with a host")):
        asyncio.run(main())
