"""The model server: real ``splitlab serve-model`` subprocesses on loopback, an httpx client, the demo's models."""

from __future__ import annotations

import json
import math
import pickle
import random
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from splitlab.cli import app
from splitlab.service.model_server import (
    ModelServer,
    RunningModelServer,
    holdout_accuracy,
    start_model_server,
    train_demo_models,
)

DELAY_MS = 150
SERVERS: dict[str, tuple[str, dict[str, Any]]] = {
    "good": ("good", {}),
    "weak": ("weak", {}),
    "slow": ("weak", {"delay_ms": DELAY_MS}),
    "failing": ("weak", {"failure_rate": 0.5, "seed": 7}),
    "dropping": ("weak", {"close_rate": 1.0}),
    "hung": ("weak", {"hang": True}),
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return train_demo_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def holdout(demo: dict[str, Path]) -> dict[str, Any]:
    return json.loads(demo["holdout"].read_text())


def _stop_if_started(future: Future[RunningModelServer]) -> None:
    if future.exception() is None:
        future.result().stop()


@pytest.fixture(scope="module")
def servers(demo: dict[str, Path]) -> Iterator[dict[str, RunningModelServer]]:
    """The servers of the module, started (each spends a second or so importing scikit-learn) and stopped at once."""
    with ThreadPoolExecutor(max_workers=len(SERVERS)) as pool:
        futures = [pool.submit(start_model_server, demo[model], **options) for model, options in SERVERS.values()]
        try:
            yield {key: future.result() for key, future in zip(SERVERS, futures, strict=True)}
        finally:
            list(pool.map(_stop_if_started, futures))


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as http:
        yield http


def _predict(client: httpx.Client, server: RunningModelServer, row: list[float]) -> dict[str, Any]:
    response = client.post(server.url, json={"features": row})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_good_model_answers_as_it_does_in_process(
    servers: dict[str, RunningModelServer], demo: dict[str, Path], holdout: dict[str, Any], client: httpx.Client
) -> None:
    with demo["good"].open("rb") as file:
        model = pickle.load(file)  # noqa: S301 -- the file this module just wrote
    rows = holdout["rows"]
    answers = [_predict(client, servers["good"], row) for row in rows]
    assert [a["prediction"] for a in answers] == model.predict(rows).tolist()
    expected = model.predict_proba(rows)
    for answer, probabilities in zip(answers, expected, strict=True):
        assert answer["model"] == "good"
        assert answer["probabilities"] == pytest.approx({"0": probabilities[0], "1": probabilities[1]}, rel=1e-12)
        assert answer["confidence"] == max(answer["probabilities"].values())


def test_the_good_model_is_more_accurate_than_the_weak_one(
    servers: dict[str, RunningModelServer], demo: dict[str, Path], holdout: dict[str, Any], client: httpx.Client
) -> None:
    accuracy = {}
    for role in ("good", "weak"):
        answers = [_predict(client, servers[role], row)["prediction"] for row in holdout["rows"]]
        accuracy[role] = sum(a == y for a, y in zip(answers, holdout["labels"], strict=True)) / len(answers)
        assert accuracy[role] == holdout_accuracy(demo[role], demo["holdout"])
    assert accuracy["good"] > 0.94
    assert accuracy["good"] - accuracy["weak"] > 0.05


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "list of numbers"),
        (b'{"rows": [1.0]}', "list of numbers"),
        (b'{"features": "1, 2"}', "list of numbers"),
        (b'{"features": [1.0, "2"]}', "list of numbers"),
        (b'{"features": [1.0, true]}', "list of numbers"),
        (b'{"features": [1.0, NaN]}', "finite"),
        (b'{"features": [1.0, 1e999]}', "finite"),
        (b'{"features": [1.0, 2.0]}', "has 2 values, the model takes 30"),
    ],
)
def test_a_row_that_is_not_30_finite_numbers_is_refused_naming_features(
    servers: dict[str, RunningModelServer], client: httpx.Client, body: bytes, message: str
) -> None:
    response = client.post(servers["good"].url, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    [detail] = response.json()["detail"]
    assert detail["field"] == "features"
    assert message in detail["message"]


def test_health_and_unknown_routes(servers: dict[str, RunningModelServer], client: httpx.Client) -> None:
    base = servers["good"].base_url
    health = client.get(f"{base}/health")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert client.get(f"{base}/predict").status_code == 405
    assert client.get(f"{base}/predict").headers["allow"] == "POST"
    assert client.get(f"{base}/nowhere").status_code == 404


def test_delay_ms_adds_at_least_that_latency(
    servers: dict[str, RunningModelServer], holdout: dict[str, Any], client: httpx.Client
) -> None:
    for row in holdout["rows"][:2]:
        started = time.perf_counter()
        _predict(client, servers["slow"], row)
        assert time.perf_counter() - started >= DELAY_MS / 1000
    started = time.perf_counter()
    _predict(client, servers["weak"], holdout["rows"][0])
    assert time.perf_counter() - started < DELAY_MS / 1000  # the weak model itself is fast


def test_failure_rate_fails_that_share_of_requests_as_its_seed_draws(
    servers: dict[str, RunningModelServer], holdout: dict[str, Any], client: httpx.Client
) -> None:
    n = 200
    rows = holdout["rows"]
    statuses = [
        client.post(servers["failing"].url, json={"features": rows[i % len(rows)]}).status_code for i in range(n)
    ]
    share = statuses.count(500) / n
    assert abs(share - 0.5) < 3 * math.sqrt(0.25 / n)
    assert set(statuses) == {200, 500}
    draws = random.Random(7)  # noqa: S311 -- the server's rule: one draw per request, a failure below failure_rate
    assert statuses == [500 if draws.random() < 0.5 else 200 for _ in range(n)]


def test_close_rate_drops_the_connection_without_an_answer(
    servers: dict[str, RunningModelServer], holdout: dict[str, Any], client: httpx.Client
) -> None:
    for _ in range(3):
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.post(servers["dropping"].url, json={"features": holdout["rows"][0]})
    assert client.get(f"{servers['dropping'].base_url}/health").status_code == 200


def test_hang_never_answers(servers: dict[str, RunningModelServer], holdout: dict[str, Any]) -> None:
    with httpx.Client(timeout=0.5) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            impatient.post(servers["hung"].url, json={"features": holdout["rows"][0]})
        assert impatient.get(f"{servers['hung'].base_url}/health").status_code == 200


def test_a_stopped_server_no_longer_answers(servers: dict[str, RunningModelServer], client: httpx.Client) -> None:
    server = servers["hung"]  # the hardest to stop: it may still hold the request of the test above
    server.stop()
    assert server.process.returncode is not None
    with pytest.raises(httpx.ConnectError):
        client.get(f"{server.base_url}/health")


def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"exited with status 2:\n.*no model file .*missing\.pkl"):
        start_model_server(tmp_path / "missing.pkl")


def test_cli_refuses_a_model_file_that_is_not_a_classifier(tmp_path: Path) -> None:
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    result = CliRunner().invoke(app, ["serve-model", str(path)])
    assert result.exit_code == 2
    assert f"error: the list in {path} has no predict_proba, classes_, n_features_in_" in result.output


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"failure_rate": 1.5}, "failure_rate == 1.5, must be <= 1"),
        ({"close_rate": -0.1}, "close_rate == -0.1, must be >= 0"),
        ({"delay_ms": math.nan}, "delay_ms == nan, must be >= 0"),
        ({"failure_rate": 0.6, "close_rate": 0.6}, "failure_rate + close_rate == 1.2, must be <= 1"),
    ],
)
def test_options_out_of_range_are_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("+", r"\+")):
        ModelServer(lambda _: {0: 1.0}, **options)


def test_cli_trains_the_demo_models_and_says_how_accurate_they_are(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve-model", "--train-demo", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"good: {tmp_path / 'good.pkl'} (held-out accuracy 95.9%)" in result.output
    assert f"weak: {tmp_path / 'weak.pkl'} (held-out accuracy 88.9%)" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.pkl", "holdout.json", "weak.pkl"]


def test_cli_without_a_model_says_what_is_missing() -> None:
    result = CliRunner().invoke(app, ["serve-model"])
    assert result.exit_code == 2
    assert "MODEL is missing" in result.output
