"""API keys: hashed at rest, Bearer authentication, roles, revocation; 401/403 with readable reasons."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from splitlab.service import Settings, create_app
from splitlab.storage import open_store
from splitlab.storage.tables import api_keys


def test_missing_and_invalid_keys_are_401_with_a_reason(
    client: TestClient, admin: dict[str, str], sdk: dict[str, str]
) -> None:
    missing = client.get("/api/v1/config")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["detail"][0]["field"] == "Authorization"
    assert "Bearer" in missing.json()["detail"][0]["message"]
    for header in ("Bearer nope", "Bearer slk_0011_secret", "Basic abc", sdk["Authorization"] + "x"):
        answer = client.get("/api/v1/config", headers={"Authorization": header})
        assert answer.status_code == 401, header
        assert answer.json()["detail"][0]["field"] == "Authorization"


def test_malformed_keys_are_refused_without_a_read_and_nothing_is_cached(
    client: TestClient, sdk: dict[str, str]
) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    reads: list[str] = []
    verify = runtime.store.keys.verify
    runtime.store.keys.verify = lambda *, key: reads.append(key) or verify(key=key)
    for junk in ("x" * 20_000, "slk_" + "a" * 40 + "_secret", "slk__secret"):
        answer = client.get("/api/v1/config", headers={"Authorization": f"Bearer {junk}"})
        assert answer.status_code == 401
    assert reads == []
    assert len(runtime._keys._entries) == 0  # a flood of junk keys costs no memory
    assert client.get("/api/v1/config", headers=sdk).status_code == 200
    assert len(reads) == 1


def test_sdk_key_cannot_manage_experiments(client: TestClient, admin: dict[str, str], sdk: dict[str, str]) -> None:
    answer = client.put("/api/v1/experiments/checkout", json={"key": "checkout"}, headers=sdk)
    assert answer.status_code == 403
    assert "needs an admin key" in answer.json()["detail"][0]["message"]
    assert "'web'" in answer.json()["detail"][0]["message"]
    for path in ("/api/v1/experiments", "/api/v1/experiments/checkout"):
        assert client.get(path, headers=sdk).status_code == 403
    for action in ("start", "pause", "stop"):
        assert client.post(f"/api/v1/experiments/checkout/{action}", headers=sdk).status_code == 403
    assert client.get("/api/v1/config", headers=sdk).status_code == 200
    assert client.get("/api/v1/config", headers=admin).status_code == 200


def test_revoked_key_stops_working_and_secrets_are_stored_hashed(
    client: TestClient, admin: dict[str, str], sdk: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.get("/api/v1/experiments", headers=admin).status_code == 200
    secret = admin["Authorization"].removeprefix("Bearer ").split("_", 2)[2]
    with open_store(database_url) as store:
        with store.engine.connect() as conn:
            stored = conn.execute(
                select(api_keys.c.secret_hash).where(api_keys.c.id == admin["Authorization"].split("_")[1])
            ).scalar_one()
        assert stored == hashlib.sha256(secret.encode()).hexdigest()
        revoked = store.keys.revoke(key_id=admin["Authorization"].split("_")[1])
        assert revoked.revoked_at is not None
        assert store.keys.revoke(key_id=admin["Authorization"].split("_")[1]).revoked_at == revoked.revoked_at
        assert [k.active for k in store.keys.list()] == [False, True]
    # The worker trusts its cached verdict for cache_seconds (1 s by default), then asks the store
    # again in the background (the request that found it expired still gets the old verdict).
    assert client.get("/api/v1/experiments", headers=admin).status_code == 200
    later = time.monotonic() + 1.0
    monkeypatch.setattr("splitlab.service.caches.timed._clock", lambda: later)
    answers = []
    deadline = time.perf_counter() + 10
    while 401 not in answers and time.perf_counter() < deadline:  # polling for the refresh, not timing it
        answers.append(client.get("/api/v1/experiments", headers=admin).status_code)
    assert answers[-1] == 401
    assert set(answers[:-1]) <= {200}


def test_a_key_reads_only_its_own_deployment(
    client: TestClient, admin: dict[str, str], sdk: dict[str, str], tmp_path: Path
) -> None:
    with TestClient(create_app(Settings(database_url=f"sqlite:///{tmp_path / 'other.db'}"))) as other:
        for headers in (admin, sdk):
            answer = other.get("/api/v1/config", headers=headers)
            assert answer.status_code == 401
            assert answer.json()["detail"][0]["field"] == "Authorization"
    assert client.get("/api/v1/config", headers=sdk).status_code == 200


def test_verify_refuses_every_text_that_is_not_a_created_key(database_url: str) -> None:
    with open_store(database_url) as store:
        record, key = store.keys.create(role="sdk", name="web", actor="test")
        assert store.keys.verify(key=key) == record
        _, key_id, secret = key.split("_", 2)
        for wrong in (
            key + "x",
            key[:-1],
            f"slk_{key_id}_{secret[:-1]}é",  # non-ASCII: refused by shape, never hashed
            f"sk_{key_id}_{secret}",
            f"slk_{key_id}",
            f"slk__{secret}",
            "",
        ):
            assert store.keys.verify(key=wrong) is None, wrong
