"""A lean route runs the API key check it is declared with, whatever its endpoint does."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from fastapi import APIRouter, Depends, Request, Response, Security
from fastapi.testclient import TestClient

from splitlab.service import Settings, create_app
from splitlab.service.deps import ApiKeyAuth
from splitlab.service.hot_path.lean_route import EncodedJSON, LeanRoute

_HEAVY = ("pandas", "scipy", "splitlab.analysis")


@pytest.fixture(scope="module")
def loaded_with_the_app() -> dict[str, bool]:
    """Which heavy modules a fresh interpreter holds after ``import splitlab.service.app`` (one subprocess)."""
    code = f"import json, sys, splitlab.service.app; print(json.dumps({{m: m in sys.modules for m in {_HEAVY!r}}}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)  # noqa: S603
    loaded: dict[str, bool] = json.loads(done.stdout)
    return loaded


def test_importing_the_app_leaves_the_analysis_and_pandas_for_the_routes_that_need_them(
    loaded_with_the_app: dict[str, bool],
) -> None:
    # Every worker imports the app at start-up; the dashboard's readouts and the scrape's SRM tests
    # import the analysis when they first run (tests/service/test_dashboard.py, test_metrics.py).
    assert loaded_with_the_app["pandas"] is False
    assert loaded_with_the_app["splitlab.analysis"] is False


def test_importing_the_app_does_not_import_scipy(loaded_with_the_app: dict[str, bool]) -> None:
    assert loaded_with_the_app["scipy"] is False


def _careless_app(settings: Settings, reached: list[str]) -> Any:
    """The app plus two lean routes whose endpoints check nothing: one declares an admin key, one is
    included with an sdk key required by ``include_router``."""

    async def careless(request: Request) -> Response:
        reached.append(request.url.path)
        return EncodedJSON(b"{}")

    app = create_app(settings)
    app.router.routes.insert(
        0, LeanRoute("/careless", careless, methods=["POST"], dependencies=[Security(ApiKeyAuth(role="admin"))])
    )
    included = APIRouter(route_class=LeanRoute)
    included.add_api_route("/careless", careless, methods=["POST"])
    app.include_router(included, prefix="/included", dependencies=[Security(ApiKeyAuth(role="sdk"))])
    return app


def test_a_lean_route_runs_its_declared_security(
    settings: Settings, admin: dict[str, str], sdk: dict[str, str]
) -> None:
    reached: list[str] = []
    with TestClient(_careless_app(settings, reached)) as client:
        missing = client.post("/careless")
        assert missing.status_code == 401
        assert missing.json()["detail"][0]["field"] == "Authorization"
        assert client.post("/careless", headers={"Authorization": "Bearer slk_0011_secret"}).status_code == 401
        wrong_role = client.post("/careless", headers=sdk)
        assert wrong_role.status_code == 403
        assert "needs an admin key" in wrong_role.json()["detail"][0]["message"]
        assert reached == []
        assert client.post("/careless", headers=admin).status_code == 200
        assert reached == ["/careless"]
        assert client.post("/included/careless").status_code == 401
        assert client.post("/included/careless", headers=admin).status_code == 403
        assert reached == ["/careless"]
        assert client.post("/included/careless", headers=sdk).status_code == 200
        assert reached == ["/careless", "/included/careless"]


def test_a_lean_route_refuses_a_dependency_it_would_not_run() -> None:
    async def endpoint(_request: Request) -> Response:
        return EncodedJSON(b"{}")

    async def other() -> None:
        return None

    with pytest.raises(TypeError, match="runs one ApiKeyAuth dependency and nothing else"):
        LeanRoute("/x", endpoint, methods=["POST"], dependencies=[Depends(other)])
    with pytest.raises(TypeError, match="runs one ApiKeyAuth dependency and nothing else"):
        LeanRoute("/x", endpoint, methods=["POST"], dependencies=[Security(ApiKeyAuth()), Security(ApiKeyAuth())])


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/assign", {"experiment": "checkout", "unit_id": "u1"}),
        ("/api/v1/exposures", {"exposures": []}),
        ("/api/v1/events", {"events": []}),
    ],
)
def test_the_lean_routes_refuse_requests_without_a_valid_key(
    client: TestClient, running: str, sdk: dict[str, str], path: str, body: dict[str, Any]
) -> None:
    assert running == "checkout"
    assert client.post(path, json=body).status_code == 401
    assert client.post(path, json=body, headers={"Authorization": "Bearer slk_0011_secret"}).status_code == 401
    assert client.post(path, json=body, headers={"Authorization": sdk["Authorization"] + "x"}).status_code == 401
    assert client.post(path, json=body, headers=sdk).status_code == 200
