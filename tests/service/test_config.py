"""The SDK config: running experiments only, an ETag, and 304 while nothing an SDK evaluates changed."""

from __future__ import annotations

import copy
from typing import Any

from fastapi.testclient import TestClient

URL = "/api/v1/config"


def test_config_lists_running_experiments_with_an_etag(
    spec: dict[str, Any], client: TestClient, admin: dict[str, str], sdk: dict[str, str]
) -> None:
    client.put("/api/v1/experiments/checkout", json=spec, headers=admin)
    empty = client.get(URL, headers=sdk)
    assert empty.json() == {"version": empty.headers["etag"].strip('"'), "experiments": []}
    client.post("/api/v1/experiments/checkout/start", headers=admin)
    first = client.get(URL, headers=sdk)
    assert [e["key"] for e in first.json()["experiments"]] == ["checkout"]
    assert first.json()["experiments"][0]["spec"]["variants"][1]["payload"] == {"color": "blue"}
    etag = first.headers["etag"]
    assert etag != empty.headers["etag"]
    cached = client.get(URL, headers={**sdk, "If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.content == b""
    assert client.get(URL, headers={**sdk, "If-None-Match": f'"other", W/{etag}'}).status_code == 304
    assert client.get(URL, headers={**sdk, "If-None-Match": '"other"'}).status_code == 200
    changed = copy.deepcopy(spec)
    changed["variants"][0]["weight"], changed["variants"][1]["weight"] = 0.3, 0.7
    client.put("/api/v1/experiments/checkout", json=changed, headers=admin)
    fresh = client.get(URL, headers={**sdk, "If-None-Match": etag})
    assert fresh.status_code == 200
    assert fresh.headers["etag"] != etag
