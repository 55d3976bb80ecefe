"""`splitlab keys create | list | revoke` on a real store, and the keys they print work against the app."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from splitlab.cli.serve import app
from splitlab.service import Settings, create_app

runner = CliRunner()


def test_keys_create_list_revoke(database_url: str) -> None:
    db = ["--database", database_url]
    created = runner.invoke(app, ["create", "--role", "admin", "--name", "ops", "--actor", "ana", *db])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[0]
    assert key.startswith("slk_")
    listed = json.loads(runner.invoke(app, ["list", "--json", *db]).stdout)
    assert [(k["name"], k["role"], k["created_by"], k["revoked_at"]) for k in listed] == [("ops", "admin", "ana", None)]
    assert key not in runner.invoke(app, ["list", *db]).stdout
    with TestClient(create_app(Settings(database_url=database_url, cache_seconds=0))) as client:
        headers = {"Authorization": f"Bearer {key}"}
        assert client.get("/api/v1/experiments", headers=headers).status_code == 200
        revoked = runner.invoke(app, ["revoke", listed[0]["id"], *db])
        assert revoked.exit_code == 0, revoked.output
        assert client.get("/api/v1/experiments", headers=headers).status_code == 401


def test_keys_errors_are_readable(database_url: str) -> None:
    db = ["--database", database_url]
    bad_role = runner.invoke(app, ["create", "--role", "root", *db])
    assert bad_role.exit_code == 2
    assert "role == 'root', must be one of admin, sdk" in bad_role.stderr
    missing = runner.invoke(app, ["revoke", "nope", *db])
    assert missing.exit_code == 2
    assert "API key 'nope' does not exist" in missing.stderr


def test_openapi_documents_every_route() -> None:
    with TestClient(create_app(Settings(database_url="sqlite://"))) as client:
        schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {
        "/api/v1/health", "/api/v1/ready", "/api/v1/experiments", "/api/v1/experiments/{key}",
        "/api/v1/experiments/{key}/start", "/api/v1/experiments/{key}/pause", "/api/v1/experiments/{key}/stop",
        "/api/v1/experiments/{key}/results", "/api/v1/experiments/{key}/roll-out", "/api/v1/experiments/{key}/actions",
            "/api/v1/experiments/{key}/rewards",
            "/api/v1/experiments/{key}/status",
            "/api/v1/experiments/{key}/weights", "/api/v1/metrics", "/api/v1/metrics/{name}",
        "/api/v1/assign", "/api/v1/assign/batch", "/api/v1/config", "/api/v1/exposures", "/api/v1/events", "/metrics",
        "/api/v1/route/{experiment}/predict", "/api/v1/route/{experiment}/feedback",
    }  # fmt: skip
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
