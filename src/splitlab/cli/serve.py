"""``splitlab serve`` (the HTTP service under uvicorn) and ``splitlab keys`` (its API keys)."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import typer

from splitlab.cli._common import user_errors
from splitlab.cli._store import ActorOption, DatabaseOption, actor_name


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes; they share the store and give identical assignments.")
    ] = 1,
    database: DatabaseOption = None,
    monitor: Annotated[
        bool, typer.Option("--monitor", help="Also run the monitor (splitlab monitor) in each worker.")
    ] = False,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log",
            help="Log a line per request (uvicorn's access log); /metrics counts every request either way.",
        ),
    ] = True,
) -> None:
    """Run the HTTP service on the store: API under /api/v1 (OpenAPI at /docs), model router, dashboard at /."""
    import shutil
    import tempfile

    import uvicorn

    from splitlab.service.caches.shared import redis_problem
    from splitlab.service.server import http_protocol
    from splitlab.service.settings import Settings
    from splitlab.service.telemetry import MULTIPROCESS_DIR_VAR
    from splitlab.storage import open_store

    with user_errors():
        if database is not None:  # the workers are separate processes: they read the environment
            os.environ["SPLITLAB_DATABASE_URL"] = database
        if monitor:
            os.environ["SPLITLAB_MONITOR"] = "true"
        settings = Settings.from_env()  # fail here, readably, rather than in every worker
        with open_store(settings.database_url):  # the same for the store, migrated once before the workers start
            pass
    # Redis is an optional cache: the service starts without it (and uses it once it answers).
    if settings.redis_url is not None and (problem := redis_problem(settings.redis_url)) is not None:
        typer.echo(f"warning: {problem} (serving from the store alone; /api/v1/ready says degraded)", err=True)
    metrics_dir = None
    if workers > 1 and MULTIPROCESS_DIR_VAR not in os.environ:
        # The workers share one port, so a scrape reaches any one of them: each writes its counters
        # to this directory and /metrics adds them all up (prometheus_client's multiprocess mode).
        metrics_dir = tempfile.mkdtemp(prefix="splitlab-metrics-")
        os.environ[MULTIPROCESS_DIR_VAR] = metrics_dir
    try:
        uvicorn.run(
            "splitlab.service.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            http=http_protocol(),  # uvicorn's own, with a deadline on request headers
            access_log=access_log,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


app = typer.Typer(help="API keys of the HTTP service.", no_args_is_help=True)


def _open(database: str | None) -> Any:
    from splitlab.storage import open_store

    return open_store(database)


@app.command("create")
def create(
    role: Annotated[
        str,
        typer.Option(help="admin (manage experiments, read everything), sdk, or viewer (read everything only)."),
    ],
    name: Annotated[str | None, typer.Option(help="A label for the key (default: the role).")] = None,
    actor: ActorOption = None,
    database: DatabaseOption = None,
) -> None:
    """Create an API key and print it; it is shown only this once (the store keeps its hash)."""
    with user_errors(), _open(database) as store:
        record, key = store.keys.create(role=role, name=name or role, actor=actor_name(actor))
    typer.echo(key)
    typer.echo(f"created {record.role} key {record.id} ({record.name}); store it now, it is not shown again", err=True)


@app.command("list")
def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    database: DatabaseOption = None,
) -> None:
    """List API keys (ids, names, roles; never secrets)."""
    with user_errors(), _open(database) as store:
        keys = store.keys.list()
    rows = [
        {
            "id": k.id,
            "name": k.name,
            "role": k.role,
            "created_at": k.created_at.isoformat(timespec="seconds"),
            "created_by": k.created_by,
            "revoked_at": None if k.revoked_at is None else k.revoked_at.isoformat(timespec="seconds"),
        }
        for k in keys
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no API keys; `splitlab keys create --role admin` makes one")
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        typer.echo(f"{row['id']}  {row['role']:<5}  {state:<28}  {row['name']}")


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (from `splitlab keys list`).")],
    database: DatabaseOption = None,
) -> None:
    """Revoke an API key: running services stop accepting it within 2 x SPLITLAB_CACHE_SECONDS (2 s by default)."""
    from splitlab.storage import NotFoundError

    with user_errors(), _open(database) as store:
        try:
            record = store.keys.revoke(key_id=key_id)
        except NotFoundError as exc:
            raise ValueError(str(exc)) from None
    typer.echo(f"revoked {record.role} key {record.id} ({record.name})")
