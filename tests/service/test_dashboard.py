"""The dashboard through the real app (TestClient) on SQLite and PostgreSQL: sessions, pages, actions, roles.

No browser here (tests/dashboard/ drives Chromium): these check what the server answers.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from splitlab.cli import app as cli
from splitlab.operations import analysis, experiments
from splitlab.operations.simulation import simulate
from splitlab.service import Settings, create_app
from splitlab.service.dashboard import COOKIE
from splitlab.specs import ExperimentSpec, MetricDefinition
from splitlab.storage import open_store

CONVERSION = {"name": "conversion", "kind": "binary", "event": "purchase", "window_days": 7}
SPEC = {
    "key": "checkout",
    "name": "Checkout <b>flow</b>",
    "owner": "ana",
    "variants": [{"key": "control"}, {"key": "treatment"}],
    "hypothesis": {"primary_metric": "conversion", "direction": "increase", "mde": 0.1, "baseline": 0.1},
    "metrics": {"goal": ["conversion"]},
}


def _settings(database_url: str, **overrides: object) -> Settings:
    return Settings(database_url=database_url, cache_seconds=0, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def roles(database_url: str) -> dict[str, str]:
    """Full keys of an admin and a viewer, and the admin key's id."""
    with open_store(database_url) as store:
        record, admin = store.keys.create(role="admin", name="ops", actor="test")
        _, viewer = store.keys.create(role="viewer", name="board", actor="test")
        _, sdk = store.keys.create(role="sdk", name="web", actor="test")
    return {"admin": admin, "viewer": viewer, "sdk": sdk, "admin_id": record.id}


@pytest.fixture
def dash(database_url: str, roles: dict[str, str]) -> Iterator[TestClient]:
    """The app with the keys made, caches off (a revoked key is seen at once)."""
    with TestClient(create_app(_settings(database_url)), raise_server_exceptions=False) as client:
        yield client


def _sign_in(client: TestClient, key: str) -> None:
    answer = client.post("/login", data={"key": key}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/"


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found is not None
    return found.group(1)


def _section(page: str, name: str) -> str:
    found = re.search(rf'<section id="{name}"[^>]*>(.*?)</section>\s*(?:<section|{{|</main>)', page, re.S)
    assert found is not None, name
    return found.group(1)


def _checkout(database_url: str, *, units: int = 0, save: bool = False) -> None:
    """``checkout`` applied and started, with simulated traffic and a stored readout if asked."""
    with open_store(database_url) as store:
        experiments.define_metrics(store, [MetricDefinition.model_validate(CONVERSION)], actor="test")
        experiments.apply_spec(store, ExperimentSpec.model_validate(SPEC), actor="test")
        experiments.change_status(store, key="checkout", action="start", actor="test")
        if units:
            metrics = {"conversion": MetricDefinition.model_validate(CONVERSION)}
            simulate(store, ExperimentSpec.model_validate(SPEC), metrics, units=units, days=10, seed=3)
        if save:
            assert analysis.analyze(store, "checkout").saved


# --- sessions ------------------------------------------------------------------------------------


def test_sign_in_sets_a_signed_http_only_strict_cookie_without_the_key(dash: TestClient, roles: dict[str, str]) -> None:
    answer = dash.post("/login", data={"key": roles["admin"]}, follow_redirects=False)
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path", "samesite", "max-age"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert "secure" not in attributes  # plain http here; https requests get Secure
    value = cookie.split(";")[0].split("=", 1)[1]
    secret = roles["admin"].split("_", 2)[2]
    assert secret not in value
    assert roles["admin"] not in value
    assert value.startswith(roles["admin_id"] + ".")
    page = dash.get("/")
    assert page.status_code == 200
    assert 'id="experiments"' in page.text
    assert 'nav id="top"' in page.text


def test_pages_redirect_to_login_without_a_valid_session(dash: TestClient, roles: dict[str, str]) -> None:
    for path in ("/", "/experiments/checkout", "/planning"):
        answer = dash.get(path, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == "/login"
    forged = f"{roles['admin_id']}.9999999999.{'0' * 64}"
    dash.cookies.set(COOKIE, forged)
    assert dash.get("/", follow_redirects=False).headers["location"] == "/login"
    assert dash.get("/login").status_code == 200


def test_unknown_keys_are_refused_and_limited_like_the_api(database_url: str, roles: dict[str, str]) -> None:
    with TestClient(create_app(_settings(database_url, auth_failures_per_minute=2))) as client:
        for _ in range(2):
            answer = client.post("/login", data={"key": roles["admin"] + "x"})
            assert answer.status_code == 401
            assert 'id="login-error"' in answer.text
            assert 'form id="login"' in answer.text
            assert COOKIE not in answer.headers.get("set-cookie", "")
        throttled = client.post("/login", data={"key": roles["admin"]})
        assert throttled.status_code == 429
        assert int(throttled.headers["retry-after"]) >= 1
        assert (
            client.get("/api/v1/experiments", headers={"Authorization": f"Bearer {roles['admin']}"}).status_code == 429
        )
    with TestClient(create_app(_settings(database_url))) as client:
        answer = client.post("/login", data={"key": roles["sdk"]})
        assert answer.status_code == 403
        assert "admin or viewer" in unescape(answer.text)


def test_a_revoked_key_ends_its_sessions(dash: TestClient, roles: dict[str, str], database_url: str) -> None:
    _sign_in(dash, roles["admin"])
    assert dash.get("/", follow_redirects=False).status_code == 200
    with open_store(database_url) as store:
        store.keys.revoke(key_id=roles["admin_id"])
    answer = dash.get("/", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login"


def test_sessions_survive_a_restart_and_hold_in_every_app_of_one_store(
    database_url: str, roles: dict[str, str]
) -> None:
    with TestClient(create_app(_settings(database_url))) as first:
        _sign_in(first, roles["viewer"])
        token = first.cookies[COOKIE]
    with TestClient(create_app(_settings(database_url))) as second:  # another worker, or after a restart
        second.cookies.set(COOKIE, token)
        assert second.get("/", follow_redirects=False).status_code == 200
    with TestClient(create_app(_settings(database_url, session_secret="s" * 40))) as other_secret:
        other_secret.cookies.set(COOKIE, token)
        assert other_secret.get("/", follow_redirects=False).status_code == 303


def test_posts_without_the_form_token_are_403(dash: TestClient, roles: dict[str, str], database_url: str) -> None:
    _checkout(database_url)
    _sign_in(dash, roles["admin"])
    for data in ({"reason": "why"}, {"reason": "why", "csrf": "0" * 64}):
        answer = dash.post("/experiments/checkout/actions/pause", data=data, follow_redirects=False)
        assert answer.status_code == 403
        assert dash.post("/logout", data=data, follow_redirects=False).status_code == 403
    with open_store(database_url) as store:
        assert experiments.get_experiment(store, "checkout").status == "running"
    token = _csrf(dash.get("/").text)
    answer = dash.post("/logout", data={"csrf": token}, follow_redirects=False)
    assert answer.status_code == 303
    assert f'{COOKIE}=""' in answer.headers["set-cookie"]
    assert dash.get("/", follow_redirects=False).headers["location"] == "/login"


# --- actions and roles ---------------------------------------------------------------------------


def test_admin_pauses_with_a_reason_that_the_audit_log_keeps(
    dash: TestClient, roles: dict[str, str], database_url: str
) -> None:
    _checkout(database_url)
    _sign_in(dash, roles["admin"])
    page = dash.get("/experiments/checkout").text
    actions = _section(page, "actions")
    for action in ("pause", "stop", "roll-out", "rollback"):
        assert f'data-action="{action}"' in actions
        assert f'<dialog id="confirm-{action}"' in actions
    assert 'data-action="start"' not in actions  # running: nothing to start
    token = _csrf(page)

    blank = dash.post("/experiments/checkout/actions/pause", data={"csrf": token, "reason": " "})
    assert blank.status_code == 200
    assert "A reason is required" in unescape(blank.text)

    answer = dash.post(
        "/experiments/checkout/actions/pause",
        data={"csrf": token, "reason": "checkout errors <spike>"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/experiments/checkout"
    shown = dash.get("/experiments/checkout").text
    assert re.search(r'<p id="flash"[^>]*>[^<]*running to paused', shown)
    assert "checkout errors &lt;spike&gt;" in _section(shown, "audit")
    assert 'class="audit-entry' in shown
    with open_store(database_url) as store:
        last = experiments.history(store, "checkout")[-1]
    assert last.status == "paused"
    assert last.reason == "checkout errors <spike>"
    assert last.changed_by == f"dashboard:ops ({roles['admin_id']})"

    # An operation's refusal is a message, never a 500.
    refused = dash.post("/experiments/checkout/actions/pause", data={"csrf": token, "reason": "again"})
    assert refused.status_code == 200
    assert "Refused: cannot pause an experiment that is paused" in unescape(refused.text)
    unknown_variant = dash.post(
        "/experiments/checkout/actions/roll-out", data={"csrf": token, "reason": "ship", "variant": "nope"}
    )
    assert "Refused: variant:" in unescape(unknown_variant.text)
    rolled = dash.post(
        "/experiments/checkout/actions/roll-out", data={"csrf": token, "reason": "ship", "variant": "treatment"}
    )
    assert "paused to rolled_out" in unescape(rolled.text)


def test_a_viewer_reads_everything_and_changes_nothing(
    dash: TestClient, roles: dict[str, str], database_url: str
) -> None:
    _checkout(database_url)
    _sign_in(dash, roles["viewer"])
    page = dash.get("/experiments/checkout")
    assert page.status_code == 200
    assert 'id="actions"' not in page.text
    assert "data-action=" not in page.text
    token = _csrf(page.text)  # the sign-out form's: valid, and still no right to act
    answer = dash.post("/experiments/checkout/actions/pause", data={"csrf": token, "reason": "forged"})
    assert answer.status_code == 403
    with open_store(database_url) as store:
        assert experiments.get_experiment(store, "checkout").status == "running"


def _example_path(path: str) -> str:
    return path.replace("{key}", "checkout").replace("{experiment}", "checkout").replace("{name}", "conversion")


def test_a_viewer_key_may_call_every_get_route_of_the_api_and_nothing_else(
    dash: TestClient, roles: dict[str, str], database_url: str
) -> None:
    _checkout(database_url)
    viewer = {"Authorization": f"Bearer {roles['viewer']}"}
    routes = [
        route
        for route in dash.app.routes  # type: ignore[attr-defined]
        if isinstance(route, APIRoute) and route.include_in_schema
    ]
    assert len(routes) > 15
    writes = reads = 0
    for route in routes:
        for method in route.methods or ():
            path = _example_path(route.path)
            answer = dash.request(method, path, headers=viewer, json={})
            if method == "GET":
                reads += 1
                assert answer.status_code not in (401, 403), (method, path, answer.text)
            else:
                writes += 1
                assert answer.status_code == 403, (method, path, answer.text)
                assert "role 'viewer'" in answer.json()["detail"][0]["message"]
    assert writes > 10
    assert reads > 8
    with open_store(database_url) as store:
        assert experiments.get_experiment(store, "checkout").status == "running"


# --- pages ---------------------------------------------------------------------------------------


def test_the_list_filters_by_status_and_searches_key_and_owner(
    dash: TestClient, roles: dict[str, str], database_url: str
) -> None:
    _checkout(database_url, units=2_000, save=True)
    with open_store(database_url) as store:
        draft = {**SPEC, "key": "search-box", "name": "Search", "owner": "bo"}
        experiments.apply_spec(store, ExperimentSpec.model_validate(draft), actor="test")
    _sign_in(dash, roles["viewer"])
    every = dash.get("/").text
    assert 'data-experiment="checkout"' in every
    assert 'data-experiment="search-box"' in every
    assert "Checkout &lt;b&gt;flow&lt;/b&gt;" in every  # escaped
    assert re.search(r'<span class="badge[^"]*" data-decision="[A-Z_]+"', every)
    assert 'class="experiment-link" href="/experiments/checkout"' in every
    running = dash.get("/", params={"status": "running"}).text
    assert 'data-experiment="checkout"' in running
    assert 'data-experiment="search-box"' not in running
    by_owner = dash.get("/", params={"q": "BO"}).text
    assert 'data-experiment="search-box"' in by_owner
    assert 'data-experiment="checkout"' not in by_owner
    by_key = dash.get("/", params={"q": "check"}).text
    assert 'data-experiment="checkout"' in by_key
    assert 'data-experiment="search-box"' not in by_key
    bad = dash.get("/", params={"status": "bogus"})
    assert bad.status_code == 200
    assert "bogus" in bad.text


def test_the_experiment_page_shows_the_readout_from_a_snapshot_or_a_new_analysis(
    dash: TestClient, roles: dict[str, str], database_url: str
) -> None:
    _checkout(database_url, units=3_000, save=True)
    _sign_in(dash, roles["viewer"])
    page = dash.get("/experiments/checkout").text
    assert "stored readout #" in page
    for name in ("decision", "traffic", "metrics", "timeline", "segments", "guardrails", "history", "audit"):
        assert f'<section id="{name}"' in page, name
    metrics = _section(page, "metrics")
    assert "<table>" in metrics
    assert '<th scope="col">P(win)</th>' in metrics
    assert "pooled-z" in metrics or "z" in metrics
    assert "<svg" in metrics
    assert "<svg" in _section(page, "timeline")
    assert "<svg" in _section(page, "traffic")
    assert "Decision:" in _section(page, "decision")
    assert 'class="audit-entry' in _section(page, "audit")
    assert "primary_metric: conversion" in page  # the spec as YAML
    fresh = dash.get("/experiments/checkout", params={"fresh": "1"}).text
    assert "analysed now" in fresh
    # The stored readout renders as the analysis it was: the same tables and charts.
    assert _section(fresh, "metrics") == metrics
    assert dash.get("/experiments/nope").status_code == 404


def test_the_planning_page_gives_the_sample_size_commands_numbers(
    dash: TestClient, roles: dict[str, str], database_url: str
) -> None:
    _checkout(database_url)
    _sign_in(dash, roles["viewer"])
    inputs = {"baseline": "0.04", "mde": "0.08", "mde_type": "relative", "alpha": "0.05", "power": "0.9"}
    page = dash.get("/planning", params={**inputs, "daily_units": "2500", "variants": "3"}).text
    result = _section(page, "plan-result")
    shown = {
        k: int(v.replace(",", "")) for k, v in re.findall(r'data-value="(per_variant|total|days)">([\d,]+)<', result)
    }
    printed = CliRunner().invoke(
        cli,
        ["sample-size", "--baseline-rate", "0.04", "--mde", "0.08", "--power", "0.9", "--variants", "3",
         "--daily-traffic", "2500", "--json"],
    )  # fmt: skip
    assert printed.exit_code == 0, printed.output
    plan = json.loads(printed.output)
    assert shown == {"per_variant": plan["per_variant"], "total": plan["total"], "days": plan["durations"][0]["days"]}
    assert 'form id="planning"' in page

    prefilled = dash.get("/planning", params={"experiment": "checkout"}).text
    assert 'name="mde" inputmode="decimal" value="0.1"' in prefilled
    assert 'name="baseline" inputmode="decimal" value="0.1"' in prefilled
    assert 'id="plan-result"' in prefilled
    refused = dash.get("/planning", params={**inputs, "daily_units": "2500", "variants": "3", "alpha": "2"})
    assert refused.status_code == 200
    assert "alpha" in refused.text
    assert 'id="plan-result"' not in refused.text


def test_static_files_are_served_locally(dash: TestClient) -> None:
    css = dash.get("/static/dashboard.css")
    assert css.status_code == 200
    assert "#0072B2" in css.text
    assert dash.get("/static/dashboard.js").status_code == 200
    schema = dash.get("/openapi.json").json()
    assert not [path for path in schema["paths"] if not path.startswith("/api/") and path != "/metrics"]


def test_the_page_of_an_experiment_with_20_metrics_and_30_days_renders_in_under_a_second(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'big.db'}"
    kinds = ("binary", "count", "sum", "mean")
    definitions = [
        MetricDefinition.model_validate(
            {"name": f"m{i:02d}", "kind": kinds[i % 4], "event": ("purchase", "visit", "click")[i % 3]}
        )
        for i in range(20)
    ]
    spec = ExperimentSpec.model_validate(
        {
            "key": "big",
            "variants": [{"key": "control"}, {"key": "treatment"}],
            "hypothesis": {"primary_metric": "m00", "direction": "increase", "mde": 0.1, "baseline": 0.1},
            "metrics": {
                "goal": ["m00", "m01"],
                "secondary": [d.name for d in definitions[2:17]],
                "guardrails": [{"metric": d.name, "max_degradation": 0.05} for d in definitions[17:]],
            },
        }
    )
    with open_store(url) as store:
        _, key = store.keys.create(role="viewer", name="board", actor="test")
        experiments.define_metrics(store, definitions, actor="test")
        experiments.apply_spec(store, spec, actor="test")
        experiments.change_status(store, key="big", action="start", actor="test")
        simulate(store, spec, {d.name: d for d in definitions}, units=20_000, days=30, seed=1)
        assert analysis.analyze(store, "big").saved  # as the monitor or `splitlab analyze` keeps it
    with TestClient(create_app(_settings(url))) as client:
        _sign_in(client, key)
        client.get("/experiments/big")  # the first request of a worker loads its templates
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            page = client.get("/experiments/big")
            timings.append(time.perf_counter() - started)
        assert page.status_code == 200
        assert "stored readout #" in page.text
        assert page.text.count("<svg") >= 20
        assert min(timings) < 0.5, timings  # 1 s is the target: half of it, for a loaded machine
