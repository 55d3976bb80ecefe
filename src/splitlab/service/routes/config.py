"""The config document SDKs evaluate locally: running experiments' specs, with an ETag."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response, status

from splitlab.service.deps import AnyKey, RuntimeDep
from splitlab.service.errors import ERRORS
from splitlab.service.routes import API_PREFIX
from splitlab.service.schemas import ConfigPublic

router = APIRouter(prefix=f"{API_PREFIX}/config", tags=["config"], responses=ERRORS)


def _matches(if_none_match: str, etag: str) -> bool:
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag in tags


@router.get(
    "",
    summary="Running experiments for local evaluation",
    response_model=ConfigPublic,
    responses={304: {"description": "Unchanged since the ETag in If-None-Match"}},
)
async def get_config(
    runtime: RuntimeDep, _key: AnyKey, if_none_match: Annotated[str | None, Header(max_length=4096)] = None
) -> Response:
    """Every running experiment with its spec, versions and (bandits) current weights; 304 when
    ``If-None-Match`` holds the current ETag. ``version`` in the body is the ETag without quotes.
    """  # noqa: D205
    document = await runtime.config()
    headers = {"ETag": document.etag, "Cache-Control": "no-cache"}
    if if_none_match is not None and _matches(if_none_match, document.etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(document.body, media_type="application/json", headers=headers)
