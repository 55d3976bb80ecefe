"""`serve` runs the app under uvicorn: a real server process with two workers on a loopback port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from splitlab.assignment import assign
from splitlab.specs import ExperimentSpec, to_plan
from splitlab.storage import open_store

SPEC = {"key": "checkout", "variants": [{"key": "control"}, {"key": "treatment"}]}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server(database_url: str) -> Iterator[str]:
    with open_store(database_url):  # migrate once, before the workers start
        pass
    port = _free_port()
    code = f"from splitlab.cli.serve import serve; serve(port={port}, workers=2, database={database_url!r})"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                if httpx.get(f"{base}/api/v1/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                _, err = process.communicate(timeout=5)
                pytest.fail(f"server did not become ready: {err.decode(errors='replace')[-2000:]}")
            time.sleep(0.1)  # polling for start-up, not timing anything
        yield base
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_two_workers_serve_the_same_assignments(server: str, database_url: str) -> None:
    with open_store(database_url) as store:
        _, key = store.keys.create(role="admin", name="ops", actor="test")
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server, headers=headers, timeout=30) as client:
        assert client.put("/api/v1/experiments/checkout", json=SPEC).status_code == 200
        assert client.post("/api/v1/experiments/checkout/start").status_code == 200
        plan = to_plan(ExperimentSpec.model_validate(SPEC))
        for round_ in range(2):
            for i in range(20):
                answer = client.post("/api/v1/assign", json={"experiment": "checkout", "unit_id": f"u{i}"}).json()
                assert answer["variant"] == assign(plan, f"u{i}").variant, round_
