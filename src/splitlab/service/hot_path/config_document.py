"""The config document SDKs evaluate locally: running and rolled-out experiments (and bandit weights), with an ETag.

A rolled-out experiment's entry carries ``rolled_out_variant``, the variant an SDK serves every unit.
Built at most once per ``cache_seconds`` per worker and kept as encoded bytes, so an SDK's poll
costs a comparison of ETags (304) or a copy of those bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from splitlab.service.hot_path.bandit_weights import BanditWeightsCache
from splitlab.service.hot_path.experiment_cache import ExperimentCache
from splitlab.service.schemas import ConfigExperimentPublic, ConfigPublic
from splitlab.storage import Store

__all__ = ["ConfigDocument", "build_config"]

_SERVED_STATUSES = ("running", "rolled_out")
"""The statuses whose experiments an SDK serves: a running one enrols, a rolled-out one serves its variant."""


@dataclass(frozen=True, slots=True)
class ConfigDocument:
    """The encoded document and its ETag (quoted, as in the header)."""

    etag: str
    body: bytes


def build_config(store: Store, experiments_cache: ExperimentCache, weights: BanditWeightsCache) -> ConfigDocument:
    """Read the running and rolled-out experiments (blocking) and encode the document, ordered by key.

    The ETag covers what an SDK evaluates (keys, versions, specs, rolled-out variants, bandit
    weights), not update times.
    """
    records = sorted((r for s in _SERVED_STATUSES for r in store.experiments.list(status=s)), key=lambda r: r.key)
    experiments = []
    for record in records:
        entry = ConfigExperimentPublic.model_validate(
            {
                "key": record.key,
                "status": record.status,
                "version": record.current_version,
                "bucket_version": record.bucket_version,
                "spec": record.spec,
                "created_at": record.created_at,
                "updated_at": record.updated_at,
                "created_by": record.created_by,
                "rolled_out_variant": record.rolled_out_variant,
            }
        )
        try:
            cached = experiments_cache.load(record.key) if record.status == "running" else None
            if cached is not None and cached.bandit is not None:
                entry.weights = list(weights.current(cached).weights)
        except ValueError:  # settings /assign reports; SDKs fall back to the spec's weights
            pass
        experiments.append(entry)
    content = [(e.key, e.version, e.bucket_version, e.spec, e.weights, e.rolled_out_variant) for e in experiments]
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]
    document = ConfigPublic(version=digest, experiments=list(experiments))
    return ConfigDocument(etag=f'"{digest}"', body=document.model_dump_json().encode())
