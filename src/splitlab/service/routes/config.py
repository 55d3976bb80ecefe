"""The config document SDKs evaluate locally: running experiments' specs, with an ETag."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated

from fastapi import APIRouter, Header, Response, status

from splitlab.service.deps import AnyKey, StoreDep
from splitlab.service.schemas import ConfigPublic, ExperimentPublic

router = APIRouter(prefix="/config", tags=["config"])


def _matches(if_none_match: str, etag: str) -> bool:
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag in tags


@router.get(
    "",
    summary="Running experiments for local evaluation",
    response_model=ConfigPublic,
    responses={304: {"description": "Unchanged since the ETag in If-None-Match"}},
)
def get_config(
    store: StoreDep, _key: AnyKey, if_none_match: Annotated[str | None, Header(max_length=4096)] = None
) -> Response:
    """Every running experiment with its spec and versions; 304 when ``If-None-Match`` holds the current ETag."""
    document = ConfigPublic(experiments=[ExperimentPublic.of(r) for r in store.experiments.list(status="running")])
    # The ETag covers what an SDK evaluates (keys, versions, specs), not update times.
    content = [(e.key, e.version, e.bucket_version, e.spec) for e in document.experiments]
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    etag = f'"{digest[:32]}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if if_none_match is not None and _matches(if_none_match, etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(document.model_dump_json(), media_type="application/json", headers=headers)
