"""A small, fast HTTP model server: one classifier behind ``POST /predict``, with faults on demand.

It is the model router's upstream in tests, the demo and the benchmark. The app is a raw ASGI
callable under uvicorn, with no framework between the socket and the model, so the latency a
client measures is the model's plus the injected delay.

Routes:

- ``POST /predict`` with ``{"features": [f1, f2, ...]}`` (one row of numbers) answers 200
  ``{"prediction": label, "confidence": p_max, "probabilities": {"label": p, ...}, "model": name}``;
  a body that is not JSON or lacks a list of finite numbers of the model's length answers 422
  ``{"detail": [{"field": "features", "message": ...}]}``.
- ``GET /health`` answers 200 ``{"status": "ok"}``; faults never touch it, so a frozen model
  still looks alive, as a hung worker behind a live process does.

Faults, for ``/predict`` only: ``delay_ms`` of added latency per request; ``failure_rate``, the
share of requests answered 500; ``close_rate``, the share on which the connection is dropped
with nothing sent; ``hang``, never answer (until the client goes away). One draw of
``random.Random(seed)`` per request, in arrival order, decides: below ``close_rate`` drop, below
``close_rate + failure_rate`` fail, else answer. So a run with the same seed repeats.

Start one with :func:`serve_model` (``splitlab serve-model``), or in a subprocess on a free port
with :func:`start_model_server`; :func:`train_demo_models` makes the demo's two models.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import pickle
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Self, TypeAlias

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "DROP_EXTENSION",
    "DroppingProtocol",
    "ModelServer",
    "RunningModelServer",
    "holdout_accuracy",
    "load_model",
    "serve_model",
    "start_model_server",
    "train_demo_models",
]

Label: TypeAlias = int | str
Predict: TypeAlias = Callable[[list[float]], Mapping[Label, float]]
"""Class probabilities of one row of features, by label."""

_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]

DROP_EXTENSION = "splitlab.drop_connection"
"""The scope extension through which :class:`DroppingProtocol` lets the app drop its connection."""

_JSON = (b"content-type", b"application/json")
_NUMBER_TYPES = (int, float)  # by exact type: JSON true/false arrive as bool, a subclass of int


class DroppingProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that lets the app drop the connection without answering.

    ASGI has no such message: an app that raises or returns before ``http.response.start`` gets a
    500 written by uvicorn. This protocol puts ``{"drop": transport.abort}`` into each request's
    ``scope["extensions"][DROP_EXTENSION]``. ``abort`` (not ``close``) discards whatever the
    server would still write and closes the socket, so the client reads EOF where a status line
    should be (httpx: ``RemoteProtocolError: Server disconnected without sending a response``).
    uvicorn then marks the request disconnected and writes nothing for it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        app = self.app

        async def with_drop(scope: Any, receive: Any, send: Any) -> None:
            # The transport is read per request: it is set by connection_made, after __init__.
            scope["extensions"] = {**scope.get("extensions", {}), DROP_EXTENSION: {"drop": self.transport.abort}}
            await app(scope, receive, send)

        self.app = with_drop


class ModelServer:
    """The ASGI app: ``POST /predict`` on one model and ``GET /health``, with the faults of the module docstring.

    Args:
        predict: class probabilities of one row, by label (:meth:`from_model` wraps a scikit-learn
            classifier's ``predict_proba``); the prediction is the label of the largest.
        n_features: the length a row must have (None: any length the callable accepts).
        name: the model's name, echoed in every prediction as ``model``.
        delay_ms: milliseconds slept before each ``/predict`` answer (or fault).
        failure_rate, close_rate: shares of ``/predict`` requests answered 500 and dropped with no
            answer; each in [0, 1] and together at most 1. Dropping needs the server to run
            :class:`DroppingProtocol` (:func:`serve_model` does).
        hang: never answer ``/predict``; the request ends only when its client disconnects.
        seed: the seed of the ``random.Random`` that picks the failing and dropped requests.

    Example:
        >>> server = ModelServer(lambda row: {"yes": 0.75, "no": 0.25}, n_features=2, name="coin")
        >>> server.answer([0.5, 1.0])
        {'prediction': 'yes', 'confidence': 0.75, 'probabilities': {'yes': 0.75, 'no': 0.25}, 'model': 'coin'}
    """

    def __init__(
        self,
        predict: Predict,
        *,
        n_features: int | None = None,
        name: str = "model",
        delay_ms: float = 0.0,
        failure_rate: float = 0.0,
        close_rate: float = 0.0,
        hang: bool = False,
        seed: int = 0,
    ) -> None:
        for option, value in (("delay_ms", delay_ms), ("failure_rate", failure_rate), ("close_rate", close_rate)):
            if not value >= 0:  # also refuses NaN
                raise ValueError(f"{option} == {value}, must be >= 0")
        for option, value in (("failure_rate", failure_rate), ("close_rate", close_rate)):
            if value > 1:
                raise ValueError(f"{option} == {value}, must be <= 1")
        if failure_rate + close_rate > 1:
            raise ValueError(f"failure_rate + close_rate == {failure_rate + close_rate}, must be <= 1")
        self._predict = predict
        self._n_features = n_features
        self.name = name
        self._delay = delay_ms / 1000
        self._close_below = close_rate
        self._fail_below = close_rate + failure_rate
        self._hang = hang
        self._random = random.Random(seed)  # noqa: S311 -- fault injection that repeats, not secrecy

    @classmethod
    def from_model(cls, model: Any, **options: Any) -> Self:
        """Serve a fitted scikit-learn classifier (``predict_proba``, ``classes_``, ``n_features_in_``).

        Args:
            model: the classifier.
            **options: the keyword options of :class:`ModelServer` (all but ``n_features``).
        """
        _check_classifier(model, where="")
        labels: list[Label] = [label.item() if hasattr(label, "item") else label for label in model.classes_]

        def predict(row: list[float]) -> dict[Label, float]:
            return dict(zip(labels, model.predict_proba([row])[0].tolist(), strict=True))

        return cls(predict, n_features=int(model.n_features_in_), **options)

    @classmethod
    def from_file(cls, path: str | Path, **options: Any) -> Self:
        """Serve the classifier pickled in ``path``, named by the file's stem unless ``name`` is given."""
        options.setdefault("name", Path(path).stem)
        return cls.from_model(load_model(path), **options)

    def answer(self, row: list[float]) -> dict[str, Any]:
        """The body of a 200 answer to ``row``: prediction, confidence, probabilities, model name."""
        probabilities = self._predict(row)
        label = max(probabilities, key=probabilities.__getitem__)
        return {
            "prediction": label,
            "confidence": float(probabilities[label]),
            "probabilities": {str(key): float(p) for key, p in probabilities.items()},
            "model": self.name,
        }

    async def __call__(self, scope: MutableMapping[str, Any], receive: _Receive, send: _Send) -> None:
        """The ASGI entry point: lifespan events, then the two routes."""
        if scope["type"] == "lifespan":  # nothing to start or stop, but a server logs an app that refuses lifespan
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path, method = scope["path"], scope["method"]
        if path == "/predict" and method == "POST":
            await self._predict_route(scope, receive, send)
        elif path == "/health" and method == "GET":
            await _respond(send, 200, {"status": "ok"})
        elif path in ("/predict", "/health"):
            allow = b"POST" if path == "/predict" else b"GET"
            await _respond(send, 405, {"detail": f"{path} takes {allow.decode()}"}, (b"allow", allow))
        else:
            await _respond(send, 404, {"detail": f"no route {path}; POST /predict or GET /health"})

    async def _predict_route(self, scope: MutableMapping[str, Any], receive: _Receive, send: _Send) -> None:
        body = await _read_body(receive)
        if body is None:
            return
        draw = self._random.random()  # before the delay: the order of draws is the order of arrival
        if self._delay:
            await asyncio.sleep(self._delay)
        if draw < self._close_below:
            drop = scope.get("extensions", {}).get(DROP_EXTENSION)
            if drop is None:
                raise RuntimeError("close_rate > 0 needs a server running DroppingProtocol (see serve_model)")
            drop["drop"]()
        if self._hang or draw < self._close_below:
            await _disconnected(receive)
            return
        if draw < self._fail_below:
            await _respond(send, 500, {"detail": f"injected failure of model {self.name}"})
            return
        row = _parse_row(body, self._n_features)
        if isinstance(row, str):
            await _respond(send, 422, {"detail": [{"field": "features", "message": row}]})
            return
        await _respond(send, 200, self.answer(row))


async def _read_body(receive: _Receive) -> bytes | None:
    """The request body, or None when the client went away first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _disconnected(receive: _Receive) -> None:
    """Wait until the client disconnects (the body has been read, so that is all ``receive`` can say)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _respond(send: _Send, status: int, payload: object, *headers: tuple[bytes, bytes]) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON, (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _parse_row(body: bytes, n_features: int | None) -> list[float] | str:
    """The row of features in ``body``, or the message of a 422 saying what is wrong with it."""
    shape = 'a JSON object {"features": [numbers]}'
    try:
        payload = json.loads(body)
    except ValueError:  # UnicodeDecodeError included
        return f"the body is not JSON; send {shape}"
    features = payload.get("features") if isinstance(payload, dict) else None
    if not isinstance(features, list) or not all(type(value) in _NUMBER_TYPES for value in features):
        return f"features must be a list of numbers; send {shape}"
    try:
        row = [float(value) for value in features]
    except OverflowError:  # an integer beyond float's range
        row = [math.inf]
    if not all(math.isfinite(value) for value in row):  # json.loads reads NaN and Infinity
        return "features must be finite numbers"
    if n_features is not None and len(row) != n_features:
        return f"features has {len(row)} values, the model takes {n_features}"
    return row


def load_model(path: str | Path) -> Any:
    """The fitted scikit-learn classifier in a pickle or joblib file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file holds something other than a fitted classifier with ``predict_proba``.
    """
    path = Path(path)
    if not path.is_file():  # before importing joblib, which takes a while, only to say the same
        raise FileNotFoundError(f"no model file {path}")
    import joblib  # a dependency of scikit-learn; it reads plain pickles too

    model = joblib.load(path)  # a model file is the operator's own, as trusted as the code
    _check_classifier(model, where=f" in {path}")
    return model


def _check_classifier(model: Any, *, where: str) -> None:
    missing = [name for name in ("predict_proba", "classes_", "n_features_in_") if not hasattr(model, name)]
    if missing:  # an unfitted estimator lacks the last two
        raise ValueError(
            f"the {type(model).__name__}{where} has no {', '.join(missing)}: "
            "serve a fitted scikit-learn classifier with predict_proba"
        )


def serve_model(
    model_path: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 9001,
    name: str | None = None,
    delay_ms: float = 0.0,
    failure_rate: float = 0.0,
    close_rate: float = 0.0,
    hang: bool = False,
    seed: int = 0,
) -> None:
    """Serve the classifier in ``model_path`` on ``host:port`` until interrupted (``splitlab serve-model``).

    The options are those of :class:`ModelServer`; ``name`` defaults to the file's stem.

    Raises:
        FileNotFoundError: no such model file.
        ValueError: not a classifier, or an option out of its range.
    """
    import uvicorn

    options: dict[str, Any] = {} if name is None else {"name": name}
    app = ModelServer.from_file(
        model_path, delay_ms=delay_ms, failure_rate=failure_rate, close_rate=close_rate, hang=hang, seed=seed, **options
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        http=DroppingProtocol,
        ws="none",
        access_log=False,  # a log line per request costs more than the model
        # A hung request keeps its connection open; without a bound, stopping would wait for it forever.
        timeout_graceful_shutdown=1,
    )


@dataclass(frozen=True)
class RunningModelServer:
    """A model server in a subprocess (see :func:`start_model_server`); stop it with ``stop()`` or ``with``."""

    process: subprocess.Popen[bytes]
    base_url: str
    """``http://127.0.0.1:PORT``."""
    log: IO[bytes]

    @property
    def url(self) -> str:
        """The prediction endpoint, ``{base_url}/predict``."""
        return f"{self.base_url}/predict"

    def stop(self, *, timeout: float = 5.0) -> None:
        """Terminate the server, kill it if it is still running after ``timeout`` seconds, close its log."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_model_server(
    model_path: str | Path,
    *,
    name: str | None = None,
    delay_ms: float = 0.0,
    failure_rate: float = 0.0,
    close_rate: float = 0.0,
    hang: bool = False,
    seed: int = 0,
    timeout: float = 30.0,
) -> RunningModelServer:
    """Start :func:`serve_model` in a subprocess on a free loopback port; return once ``/health`` answers.

    The options are those of :func:`serve_model`; the server's output goes to a temporary file,
    quoted in the error if it exits before answering. The subprocess runs this file as a script
    (``python -P``, so its directory does not shadow other modules): importing it as
    ``splitlab.service.model_server`` would first import the package, the whole HTTP service,
    a second or so of start-up that this module does not need.

    Raises:
        RuntimeError: the server exited before answering (a bad model file or option).
        TimeoutError: ``/health`` did not answer within ``timeout`` seconds.
    """
    options = {
        "model_path": str(model_path),
        "host": "127.0.0.1",
        "name": name,
        "delay_ms": delay_ms,
        "failure_rate": failure_rate,
        "close_rate": close_rate,
        "hang": hang,
        "seed": seed,
    }
    deadline = time.monotonic() + timeout
    while True:  # again when another process took the free port between our probe and the server's bind
        port = _free_port()
        log = tempfile.TemporaryFile()  # noqa: SIM115 -- closed by RunningModelServer.stop
        process = subprocess.Popen(  # noqa: S603 -- our own interpreter and this file
            [sys.executable, "-P", __file__, json.dumps({**options, "port": port})],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = RunningModelServer(process=process, base_url=f"http://127.0.0.1:{port}", log=log)
        while process.poll() is None and not _healthy(port):
            if time.monotonic() > deadline:
                server.stop()
                raise TimeoutError(f"the model server on port {port} did not answer /health within {timeout} s")
            time.sleep(0.02)
        if process.returncode is None:
            return server
        log.seek(0)
        output = log.read().decode(errors="replace")
        server.stop()
        if "address already in use" not in output or time.monotonic() > deadline:
            raise RuntimeError(f"the model server exited with status {process.returncode}:\n{output}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _healthy(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", "/health")
        return connection.getresponse().status == 200
    except OSError:  # not listening yet
        return False
    finally:
        connection.close()


def train_demo_models(directory: str | Path) -> dict[str, Path]:
    """Train the demo's two classifiers on scikit-learn's breast cancer data and save them with the held-out rows.

    The data (569 tumours, 30 numeric features, labels 0 = malignant and 1 = benign) is split
    70/30, stratified, with ``random_state=0``. ``good.pkl`` is StandardScaler +
    LogisticRegression (95.9 % right on the held-out rows), ``weak.pkl`` a depth-1 decision tree
    (88.9 %): a regression a canary should catch. ``holdout.json`` holds the 171 held-out rows
    (``rows``, each a ``features`` list to send) with their true ``labels``, ``feature_names``
    and ``target_names``, for simulated users who send a row and later report its label.

    Returns:
        The paths by role: ``good``, ``weak`` and ``holdout``.
    """
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.3, random_state=0, stratify=data.target
    )
    models = {
        "good": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        "weak": DecisionTreeClassifier(max_depth=1, random_state=0),
    }
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for role, model in models.items():
        paths[role] = directory / f"{role}.pkl"
        with paths[role].open("wb") as file:
            pickle.dump(model.fit(x_train, y_train), file)
    holdout = {
        "dataset": "sklearn.datasets.load_breast_cancer",
        "feature_names": data.feature_names.tolist(),
        "target_names": data.target_names.tolist(),
        "rows": x_test.tolist(),
        "labels": y_test.tolist(),
    }
    paths["holdout"] = directory / "holdout.json"
    paths["holdout"].write_text(json.dumps(holdout))
    return paths


def holdout_accuracy(model_path: str | Path, holdout_path: str | Path) -> float:
    """The share of the held-out rows of ``holdout_path`` (see :func:`train_demo_models`) the model gets right."""
    model = load_model(model_path)
    holdout = json.loads(Path(holdout_path).read_text())
    predictions = model.predict(holdout["rows"]).tolist()
    right = sum(p == y for p, y in zip(predictions, holdout["labels"], strict=True))
    return float(right / len(predictions))


def _main(argv: list[str]) -> int:
    """Run :func:`serve_model` with the keyword arguments JSON-encoded in ``argv[0]`` (see :func:`start_model_server`).

    Returns:
        The exit status: 2 for a bad model file or option, as ``splitlab serve-model`` does.
    """
    try:
        serve_model(**json.loads(argv[0]))
    except (ValueError, FileNotFoundError) as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
