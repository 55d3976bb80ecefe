"""A fuzz run of the OpenAPI schema (schemathesis): no input gives a 5xx, and every answer is documented.

Every operation of ``/openapi.json`` is called with generated inputs, valid and invalid (schemathesis'
examples, coverage and fuzzing phases), with an admin key so the inputs reach the handlers. Each
answer goes through schemathesis' default checks: not a server error, a documented status code,
the documented content type and headers, a body that conforms to the documented schema, invalid
data refused, valid data accepted, the right ``Allow`` on a 405, and authentication enforced (the
same request without the key, or with a made-up one, is refused).

The store has something to hit: a running hash experiment (``checkout``), a running bandit
(``cta``), a running experiment with targeting and metrics (``checkout-one-page``) with the metric
definitions it refers to, exposures, events, rewards and a stored readout. A generated key is
almost never stored, so experiment keys, metric names, variants and unit ids are drawn from those
records half of the time (schemathesis' fuzz dictionaries): generated bodies and queries then meet
real experiments.

One test per operation, with an app and store on each backend (SQLite and PostgreSQL), reached
in-process over ASGI (schemathesis' ASGI transport runs the app's lifespan). Every generated request
goes to both apps, so both backends answer the same requests and the generation, which costs more
than the answers, is paid once. Without PostgreSQL the test skips, outside CI (tests/conftest.py).
Bounded and deterministic: 30 fuzzed examples per operation (the coverage phase adds its fixed set
of boundary values), a fixed seed, derandomized, no example database.

Documented exclusions, each where it is made: 422 is an accepted answer to schema-valid bodies of
the operations in ``BEYOND_JSON_SCHEMA``, and query parameters the operation does not declare are
not sent (the service ignores them).

Keys no generator makes: a JSON body may escape a lone surrogate (``"\\ud800"``), which the
parsers read into a key no UTF-8 encoder takes. One JSON object body in four gets such a key at its
top level, and one in four in its free-form objects (attributes, properties, payloads): the answer
must be a 4xx that names the key, escaped (see :func:`_add_lone_surrogate_keys`).
"""

from __future__ import annotations

import copy
import json
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import hypothesis
import pytest
import requests
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck
from schemathesis.python import asgi

from splitlab.service import Settings, create_app
from splitlab.specs import load_catalog
from splitlab.storage import open_store

from .conftest import service_settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
T = "2024-05-01T12:00:00Z"
CHECKOUT = {
    "key": "checkout",
    "variants": [{"key": "control", "payload": {"color": "grey"}}, {"key": "treatment", "payload": {"color": "blue"}}],
}
BANDIT = {
    "key": "cta",
    "variants": [{"key": "a"}, {"key": "b"}],
    "allocation": {"method": "bandit", "bandit": {"policy": "thompson"}},
}
EXPERIMENTS = ["checkout", "cta", "checkout-one-page"]
UNITS = [f"u{i}" for i in range(20)]
ALLOWED_FROM = {"start": "paused", "pause": "running", "stop": "running"}
"""A status each lifecycle move is allowed from."""
HOSTILE_TEXT = [
    "\x00", "a\x00b", " ", "\r\n\t", "\u200b", "\ufeff", "x" * 1000, "\u00e9" * 1000, "\U0001f600" * 300,
    "' OR '1'='1", "%00", "null", "NaN", "1e999", "..", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00",
]  # fmt: skip
"""Text that databases, parsers and time zones choke on (as in test_robustness), mixed into generated values."""
HOSTILE_NUMBERS = [0, -1, 2**53 + 1, 1e308, -1e308, 5e-324]
LONE_SURROGATE = "\ud800"
"""A key no generator makes (Hypothesis leaves surrogates out of text); sent as the JSON escape ``\\ud800``."""
FREE_FORM = ("attributes", "properties", "payload")
"""The bodies' objects whose keys the client chooses."""

BEYOND_JSON_SCHEMA = [
    "POST /api/v1/assign",
    "POST /api/v1/assign/batch",
    "POST /api/v1/exposures",
    "POST /api/v1/events",
    "POST /api/v1/experiments/{key}/rewards",
    "POST /api/v1/experiments/{key}/roll-out",
    "GET /api/v1/experiments/{key}/results",
    "PUT /api/v1/experiments/{key}",
    "PUT /api/v1/metrics/{name}",
    "POST /api/v1/route/{experiment}/predict",
]
"""Operations whose bodies have rules JSON Schema cannot state, each refused with a 422 naming the field.

Free-form JSON (attributes, properties; a routed prediction's attributes too) without NUL, lone
surrogates or deep nesting, which the databases refuse; exposures of experiments and variants that
exist; rewards in [0, 1] under a policy that needs them there; a rolled-out variant the spec
declares; segments some exposure of the experiment carries; a spec or metric that names the key of
its URL, and the rules of `splitlab apply` (slugs, two variants or more, weights summing to 1,
defined metrics, disjoint namespace ranges ...). There, schema-valid data may be refused with a 422
(schemathesis' positive_data_acceptance check); everywhere else it must not be.
"""


def _draw(dictionary: str, probability: float = 0.5) -> dict[str, object]:
    return {"dictionary": dictionary, "probability": probability}


CONFIG = schemathesis.Config.from_dict(
    {
        # Fixed, so that every run sends the same requests (schemathesis seeds more than Hypothesis' draws).
        "seed": 20261202,
        "dictionaries": {
            "experiments": {"values": EXPERIMENTS},
            "variants": {"values": ["control", "treatment", "a", "b", "three_steps", "one_page"]},
            "units": {"values": [*UNITS[:4], *HOSTILE_TEXT]},
            # Query and header values travel as text: a number there is no invalid input once sent.
            "hostile-text": {"values": HOSTILE_TEXT},
            "hostile-numbers": {"values": HOSTILE_NUMBERS},
            "hostile": {"values": [*HOSTILE_TEXT, *HOSTILE_NUMBERS]},
            "metrics": {"values": ["conversion", "revenue_per_user"]},
            # A spec or metric is taken only under the key of its URL: both drawn from two values, one
            # stored (an update) and one not (a creation), so that some bodies get past that rule.
            "spec-keys": {"values": ["checkout", "fuzzed"]},
            "metric-names": {"values": ["conversion", "fuzzed"]},
        },
        "parameters": {
            "path.key": _draw("experiments"),
            "path.name": _draw("metrics"),
            "body.experiment": _draw("experiments"),
            "body.units[*].unit_id": _draw("units"),
            "body.exposures[*].experiment": _draw("experiments"),
            "body.exposures[*].variant": _draw("variants"),
            "body.exposures[*].unit_id": _draw("units"),
            "body.events[*].unit_id": _draw("units"),
            "body.rewards[*].unit_id": _draw("units"),
            "body.unit_id": _draw("units"),
            # Optional parameters are `anyOf: [string, null]`, which the type-wide dictionaries below skip.
            "query.reason": _draw("hostile-text", 0.2),
            "header.If-None-Match": _draw("hostile-text", 0.2),
            "body.attributes.country": _draw("hostile", 0.2),
            "body.units[*].attributes.country": _draw("hostile", 0.2),
            "body.exposures[*].timestamp": _draw("hostile", 0.2),
            "body.events[*].event_id": _draw("hostile", 0.2),
            "body.events[*].name": _draw("hostile", 0.2),
            "body.events[*].timestamp": _draw("hostile", 0.2),
            "body.events[*].value": _draw("hostile", 0.2),
            "body.rewards[*].reward": _draw("hostile", 0.2),
            "body.description": _draw("hostile", 0.2),
            "body.window_days": _draw("hostile", 0.2),
        },
        # The admin key is sent with every request (call_and_validate(headers=...)), so a generated
        # Authorization header would never reach the app; the ignored_auth check sends requests without
        # the key and with a made-up one instead.
        "generation": {
            "with-security-parameters": False,
            # Query, path and header values (bodies: the bindings above).
            "dictionaries": {
                "string": _draw("hostile-text", 0.2),
                "integer": _draw("hostile-numbers", 0.2),
                "number": _draw("hostile-numbers", 0.2),
            },
        },
        "operations": [
            {
                "include-name": BEYOND_JSON_SCHEMA,
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "409", "422"]}
                },
            },
            {
                # `segment` is a query array: `?segment=x` is a one-item array to the app and to HTTP,
                # while schemathesis' negative generation sends it as a bare string that "violates" the
                # array schema and expects a 4xx (seen once in a full run, ST201). Every other check stays.
                "include-name": "GET /api/v1/experiments/{key}/results",
                "checks": {"negative_data_rejection": {"enabled": False}},
            },
            {
                "include-name": "PUT /api/v1/experiments/{key}",
                "parameters": {"path.key": _draw("spec-keys", 0.7), "body.key": _draw("spec-keys", 0.7)},
            },
            {
                "include-name": "PUT /api/v1/metrics/{name}",
                "parameters": {"path.name": _draw("metric-names", 0.7), "body.name": _draw("metric-names", 0.7)},
            },
        ],
    }
)
# Built at import from the app (the schema does not depend on the store), so that pytest collects one
# test per operation and backend. `schemathesis.pytest.from_fixture` would load it from the app of a
# fixture instead, but breaks on pytest 9.2 (it reads `Node._nodeid`, which pytest no longer has).
schema = schemathesis.openapi.from_dict(create_app(Settings(database_url="sqlite://")).openapi(), config=CONFIG)


def test_every_reference_of_the_schema_resolves() -> None:
    # Bodies declared by hand (openapi_extra) once referred to `#/$defs/...`, which is nowhere in the
    # document: a client or schemathesis could not resolve them (and sent no body at all).
    document = create_app(Settings(database_url="sqlite://")).openapi()
    references = set(re.findall(r'"\$ref": "([^"]*)"', json.dumps(document)))
    components = {f"#/components/schemas/{name}" for name in document["components"]["schemas"]}
    assert "#/components/schemas/ExposureCreate" in references
    assert references <= components, references - components


def _ok(answer: requests.Response) -> None:
    assert answer.status_code == 200, answer.text


def _seed(client: requests.Session, admin: dict[str, str], database_url: str) -> None:
    """Records for the fuzzer to hit, written through the API (metric definitions straight into the store)."""
    with open_store(database_url) as store:
        metrics = load_catalog(EXAMPLES).metrics.values()
        store.metrics.put_many(definitions=[m.model_dump(mode="json") for m in metrics], actor="test")
    one_page = (EXAMPLES / "checkout_simplification.yaml").read_bytes()
    _ok(client.put("/api/v1/experiments/checkout", json=CHECKOUT, headers=admin))
    _ok(client.put("/api/v1/experiments/cta", json=BANDIT, headers=admin))
    yaml = {**admin, "Content-Type": "application/yaml"}
    _ok(client.put("/api/v1/experiments/checkout-one-page", data=one_page, headers=yaml))
    for key in EXPERIMENTS:
        _ok(client.post(f"/api/v1/experiments/{key}/start", headers=admin))
    now = datetime.now(UTC).isoformat()  # exposures are taken from the experiment's start to now
    exposures = [
        {"experiment": key, "unit_id": u, "variant": variants[i % 2], "timestamp": now, "attributes": {"country": "US"}}
        for key, variants in (
            ("checkout", ("control", "treatment")),
            ("checkout-one-page", ("three_steps", "one_page")),
        )
        for i, u in enumerate(UNITS)
    ]
    events = [
        {"event_id": f"e{i}", "unit_id": u, "name": "purchase", "value": 10.0 + i, "timestamp": T}
        for i, u in enumerate(UNITS[::2])
    ]
    rewards = [{"unit_id": u, "reward": i % 2} for i, u in enumerate(UNITS[:10])]
    batch = {"experiment": "cta", "units": [{"unit_id": u} for u in UNITS]}
    _ok(client.post("/api/v1/assign/batch", json=batch, headers=admin))
    _ok(client.post("/api/v1/exposures", json={"exposures": exposures}, headers=admin))
    _ok(client.post("/api/v1/events", json={"events": events}, headers=admin))
    _ok(client.post("/api/v1/experiments/cta/rewards", json={"rewards": rewards}, headers=admin))
    _ok(client.get("/api/v1/experiments/checkout-one-page/results?fresh=true", headers=admin))


@dataclass(frozen=True)
class _Target:
    """One backend's app, started over a store that holds data, and the headers of its admin key."""

    backend: str
    app: FastAPI
    admin: dict[str, str]


BACKENDS = ("sqlite", "postgresql")


# One parameter, which also names the test: without one, schemathesis' test ids leave out the operation.
@pytest.fixture(params=[BACKENDS], ids=["+".join(BACKENDS)])
def fuzz_targets(request: pytest.FixtureRequest, tmp_path: Path) -> list[_Target]:
    """The app on SQLite and on PostgreSQL, each started (its lifespan runs on) over its seeded store."""
    targets = []
    for backend in request.param:
        url = f"sqlite:///{tmp_path / 'store.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
        with open_store(url) as store:
            _, key = store.keys.create(role="admin", name="ops", actor="test")
        admin = {"Authorization": f"Bearer {key}"}
        app = create_app(service_settings(url))
        with asgi.get_client(app) as client:
            _seed(client, admin, url)
        targets.append(_Target(backend=backend, app=app, admin=admin))
    return targets


@schema.parametrize()
@hypothesis.settings(
    max_examples=30,
    derandomize=True,
    database=None,
    deadline=None,
    # The app and its store live as long as the test, on purpose: examples build on what earlier ones wrote.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
def test_no_input_gives_a_5xx_or_an_undocumented_answer(case: schemathesis.Case, fuzz_targets: list[_Target]) -> None:
    _drop_unknown_query_parameters(case)
    added = _add_lone_surrogate_keys(case)
    for target in fuzz_targets:
        try:
            _call_and_check(case, target, added)
        except Exception as exc:
            exc.add_note(f"on {target.backend}")
            raise


def _call_and_check(case: schemathesis.Case, target: _Target, added: list[str]) -> None:
    # The schema was built at import: its operation, and the schema its probes go through, call this app.
    case.operation.app = case.operation.schema.app = target.app
    _allow_the_move(target.app, case)
    answer = case.call_and_validate(headers=target.admin)
    if added:
        assert 400 <= answer.status_code < 500, answer.text
        fields = [problem["field"] for problem in answer.json()["detail"]]
        # The key is named, escaped; or another problem of the object that holds it is (an object's
        # first problem is its answer), or the method, a path or query parameter or the Content-Type refused it unread.
        refused = [*added, "method", "path", "query", "Content-Type"]
        assert "\\ud800" in answer.text or any(f == r or f.startswith(f"{r}.") for f in fields for r in refused), (
            answer.text
        )


def _add_lone_surrogate_keys(case: schemathesis.Case) -> list[str]:
    """Give one JSON object body in four a lone surrogate key at its top level, one in four in its free-form objects.

    Chosen by a checksum of the body, so every run sends the same requests. Returns the fields of
    the objects that got the key (``body`` for the top level).
    """
    if not isinstance(case.body, dict) or "json" not in (case.media_type or ""):
        return []
    draw = zlib.crc32(repr(case.body).encode("utf-8", "backslashreplace")) % 4
    # A copy (generated values may be shared with other examples), sent as bytes: schemathesis would
    # check the body against the schema again, in Rust, where the key is no valid string.
    body = copy.deepcopy(case.body)
    added = ["body"] if draw == 0 else _add_to_free_form(body, "") if draw == 1 else []
    if draw == 0:
        body[LONE_SURROGATE] = 1
    if added:
        case.body = json.dumps(body).encode()  # ASCII: the key travels as the escape \ud800
    return added


def _add_to_free_form(value: object, path: str) -> list[str]:
    """Add the lone surrogate key to every free-form object in ``value`` (found at ``path``); their fields."""
    added: list[str] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        field = f"{path}.{key}" if path else str(key)
        if key in FREE_FORM and isinstance(item, dict):
            item[LONE_SURROGATE] = 1
            added.append(field)
        else:
            added.extend(_add_to_free_form(item, field))
    return added


def _drop_unknown_query_parameters(case: schemathesis.Case) -> None:
    """Leave out query parameters the operation does not declare: a documented exclusion.

    The service ignores them, as HTTP APIs commonly do (a cache-busting ``?_=1`` works), while
    schemathesis counts them as invalid input that must be refused. Bodies are another matter:
    they refuse unknown fields, and the fuzzer still sends some.
    """
    declared = {parameter.name for parameter in case.operation.query}
    if isinstance(case.query, dict):
        for name in [name for name in case.query if name not in declared]:
            del case.query[name]


def _allow_the_move(app: FastAPI, case: schemathesis.Case) -> None:
    """Put a stored experiment back in a status the move is allowed from, so each example's reason is written.

    A move succeeds once (a stopped experiment stays stopped); the others would all be 409s.
    """
    move = case.operation.path.rsplit("/", 1)[-1]
    key = (case.path_parameters or {}).get("key")
    if case.method == "POST" and move in ALLOWED_FROM and key in EXPERIMENTS:
        runtime = app.state.runtime
        with runtime.changing(key):
            runtime.store.experiments.set_status(key=key, status=ALLOWED_FROM[move], actor="test")
