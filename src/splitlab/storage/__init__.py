"""The store: experiments and their audit log, assignments, exposures, events, analysis results, bandit state.

SQLAlchemy 2 Core over SQLite (default, WAL mode) or PostgreSQL (psycopg 3), with Alembic
migrations run to head by :func:`open_store`. Repositories take keyword-only arguments and
return frozen records; batches are atomic and idempotent.

>>> from datetime import UTC, datetime
>>> with open_store("sqlite://") as store:
...     _ = store.experiments.create(key="checkout", spec={"variants": [{"key": "a"}, {"key": "b"}]}, actor="ana")
...     t = datetime(2024, 5, 1, tzinfo=UTC)
...     store.events.log_many([Event(event_id="e1", unit_id="u1", name="purchase", value=9.5, timestamp=t)])
...     store.events.log_many([Event(event_id="e1", unit_id="u1", name="purchase", value=9.5, timestamp=t)])
WriteResult(received=1, inserted=1)
WriteResult(received=1, inserted=0)
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from splitlab.storage.assignments import AssignmentRepository
from splitlab.storage.bandits import BanditStateRepository
from splitlab.storage.database import (
    DEFAULT_URL,
    URL_ENV_VAR,
    Store,
    StoreTimeouts,
    alembic_config,
    create_store_engine,
    head_revision,
    open_store,
    resolve_url,
    store_failure,
    upgrade,
)
from splitlab.storage.errors import (
    AlreadyExistsError,
    NotFoundError,
    RefusedRowsError,
    StorageError,
    StoreUnavailableError,
    VersionConflictError,
)
from splitlab.storage.events import EventRepository
from splitlab.storage.experiments import ExperimentRepository
from splitlab.storage.exposures import ExposureRepository
from splitlab.storage.keys import API_KEY_ROLES, ApiKey, ApiKeyRepository
from splitlab.storage.metrics import MetricRepository
from splitlab.storage.monitor import MonitorAction, MonitorRepository, MonitorState
from splitlab.storage.notifications import (
    MAX_ATTEMPTS,
    NewNotification,
    NotificationDelivery,
    NotificationRepository,
    OutboxNotification,
    dedupe_key,
    retry_delay,
)
from splitlab.storage.phases import AllocationPhase
from splitlab.storage.records import (
    BanditArm,
    BanditReward,
    Event,
    ExperimentRecord,
    ExperimentVersion,
    Exposure,
    ExposureConflict,
    Snapshot,
    StoredAssignment,
    StoredEvent,
    StoredExposure,
    WindowCounting,
    WriteResult,
)
from splitlab.storage.snapshots import SnapshotRepository
from splitlab.storage.tables import EXPERIMENT_STATUSES, NOTIFICATION_STATUSES

if TYPE_CHECKING:
    from splitlab.storage.importing import ImportReport, RejectedRow, import_file

__all__ = [
    "API_KEY_ROLES",
    "DEFAULT_URL",
    "EXPERIMENT_STATUSES",
    "MAX_ATTEMPTS",
    "NOTIFICATION_STATUSES",
    "URL_ENV_VAR",
    "AllocationPhase",
    "AlreadyExistsError",
    "ApiKey",
    "ApiKeyRepository",
    "AssignmentRepository",
    "BanditArm",
    "BanditReward",
    "BanditStateRepository",
    "Event",
    "EventRepository",
    "ExperimentRecord",
    "ExperimentRepository",
    "ExperimentVersion",
    "Exposure",
    "ExposureConflict",
    "ExposureRepository",
    "ImportReport",
    "MetricRepository",
    "MonitorAction",
    "MonitorRepository",
    "MonitorState",
    "NewNotification",
    "NotFoundError",
    "NotificationDelivery",
    "NotificationRepository",
    "OutboxNotification",
    "RefusedRowsError",
    "RejectedRow",
    "Snapshot",
    "SnapshotRepository",
    "StorageError",
    "Store",
    "StoreTimeouts",
    "StoreUnavailableError",
    "StoredAssignment",
    "StoredEvent",
    "StoredExposure",
    "VersionConflictError",
    "WindowCounting",
    "WriteResult",
    "alembic_config",
    "create_store_engine",
    "dedupe_key",
    "head_revision",
    "import_file",
    "open_store",
    "resolve_url",
    "retry_delay",
    "store_failure",
    "upgrade",
]

_LAZY = {"ImportReport", "RejectedRow", "import_file"}  # need pandas: loaded on first use


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module("splitlab.storage.importing"), name)
    msg = f"module 'splitlab.storage' has no attribute {name!r}"
    raise AttributeError(msg)
