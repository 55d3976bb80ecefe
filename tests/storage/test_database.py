"""Opening the store: URLs, SQLite settings, migrations to head, concurrent opens."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from splitlab.storage import (
    DEFAULT_URL,
    URL_ENV_VAR,
    Event,
    Store,
    StoreUnavailableError,
    alembic_config,
    head_revision,
    open_store,
    resolve_url,
)
from splitlab.storage.tables import metadata

TABLES = {
    "allocation_phases",
    "bandit_rewards",
    "deployment",
    "api_keys",
    "experiments",
    "experiment_versions",
    "assignments",
    "exposures",
    "exposure_conflicts",
    "events",
    "analysis_snapshots",
    "bandit_state",
    "metric_definitions",
    "notification_outbox",
    "notification_deliveries",
    "monitor_state",
    "monitor_actions",
}


def test_open_migrates_an_empty_database_to_head(database_url: str) -> None:
    with open_store(database_url) as store:
        assert store.schema_revision() == head_revision()
        assert set(inspect(store.engine).get_table_names()) == TABLES | {"alembic_version"}
        assert set(metadata.tables) == TABLES


def test_reopening_is_idempotent_and_keeps_data(database_url: str, tmp_path: Path) -> None:
    with open_store(database_url) as store:
        store.experiments.create(key="a", spec={}, actor="ana")
        identity = store.deployment_id
    with open_store(f"sqlite:///{tmp_path / 'other.db'}") as other:
        assert len(identity) == 32
        assert other.deployment_id != identity  # each store is its own deployment
    with open_store(database_url) as store:
        assert store.deployment_id == identity
        assert store.schema_revision() == head_revision()
        assert [e.key for e in store.experiments.list()] == ["a"]
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1


def test_the_migrated_schema_is_exactly_the_tables(store: Store) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_downgrade_to_base_and_upgrade_again(store: Store) -> None:
    store.experiments.create(key="a", spec={}, actor="ana")
    with store.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert set(inspect(store.engine).get_table_names()) <= {"alembic_version"}
    with store.engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
    assert store.schema_revision() == head_revision()
    assert store.experiments.list() == []


def test_two_processes_opening_a_fresh_database_at_once(
    database_url: str,
    run_python: Callable[..., list[subprocess.CompletedProcess[str]]],
    start_together: Callable[[int, int], str],
) -> None:
    code = (
        "from splitlab.storage import open_store\n"
        "{barrier}"
        f"store = open_store({database_url!r})\n"
        "store.experiments.list()\n"
        "print(store.schema_revision())\n"
        "store.close()\n"
    )
    results = run_python(*(code.format(barrier=start_together(2, i)) for i in range(2)))
    for result in results:
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == head_revision()
    with open_store(database_url) as store:
        assert store.schema_revision() == head_revision()


def test_times_come_back_aware_utc(store: Store) -> None:
    tokyo = timezone(timedelta(hours=9))
    local = datetime(2024, 5, 1, 9, 30, 15, 123456, tzinfo=tokyo)
    store.events.log(Event(event_id="e", unit_id="u", name="view", timestamp=local))
    stored = store.events.get(event_id="e")
    assert stored is not None
    assert stored.timestamp == local
    assert stored.timestamp.tzinfo == UTC
    assert stored.timestamp.hour == 0


def test_postgres_session_time_zone_does_not_leak(postgres_url: str) -> None:
    url = make_url(postgres_url)
    moved = url.update_query_dict({"options": f"{url.query['options']} -cTimeZone=America/New_York"})
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    with open_store(moved.render_as_string(hide_password=False)) as store:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW TIME ZONE").scalar_one() == "America/New_York"
        store.events.log(Event(event_id="e", unit_id="u", name="view", timestamp=when))
        stored = store.events.get(event_id="e")
    assert stored is not None
    assert stored.timestamp == when
    assert stored.timestamp.tzinfo == UTC


def test_sqlite_runs_in_wal_mode_with_foreign_keys_a_busy_timeout_and_wide_pages(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 1000
        assert conn.exec_driver_sql("PRAGMA page_size").scalar_one() == 16384


def test_in_memory_sqlite_is_one_database() -> None:
    with open_store("sqlite://") as store:
        store.experiments.create(key="a", spec={}, actor="ana")
        assert [e.key for e in store.experiments.list()] == ["a"]


def test_url_comes_from_the_argument_then_the_environment_then_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(URL_ENV_VAR, raising=False)
    assert resolve_url().render_as_string() == DEFAULT_URL == "sqlite:///splitlab.db"
    env_url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv(URL_ENV_VAR, env_url)
    assert resolve_url().render_as_string() == env_url
    with open_store() as store:
        assert store.url == env_url
    assert (tmp_path / "env.db").exists()
    argument = f"sqlite:///{tmp_path / 'arg.db'}"
    assert resolve_url(argument).render_as_string() == argument


def test_postgres_urls_use_psycopg_3() -> None:
    for url in ("postgresql://u@h/db", "postgres://u@h/db", "postgresql+psycopg://u@h/db"):
        assert resolve_url(url).drivername == "postgresql+psycopg"


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("mysql://u@h/db", "not supported"),
        ("postgresql+psycopg2://u@h/db", "not supported"),
        ("not a url", "not a SQLAlchemy URL"),
        ("sqlite:////no/such/directory/x.db", "does not exist"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        open_store(url)


def test_an_unreachable_server_is_a_clear_error_without_the_password() -> None:
    expected = r"cannot open the store at postgresql\+psycopg://u:\*\*\*@"
    with pytest.raises(StoreUnavailableError, match=expected) as info:
        open_store("postgresql://u:secret@127.0.0.1:1/db?connect_timeout=2")
    assert "secret" not in str(info.value)


def test_missing_postgres_skips_on_a_dev_machine_and_fails_in_ci(
    postgres_policy: Callable[[str], object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required under CI=true"):
        postgres_policy("refused")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL not reachable"):
        postgres_policy("refused")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"timestamp": datetime(2024, 1, 1)}, ValueError, "timestamp .* must be timezone-aware"),
        ({"timestamp": "2024-01-01"}, TypeError, "timestamp"),
        ({"event_id": ""}, ValueError, "event_id"),
        ({"unit_id": 5}, TypeError, "unit_id"),
        ({"value": float("nan")}, ValueError, "value"),
        ({"value": True}, TypeError, "value"),
        ({"properties": [1]}, TypeError, "properties"),
    ],
)
def test_events_check_their_fields(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    fields: dict[str, object] = {
        "event_id": "e",
        "unit_id": "u",
        "name": "view",
        "timestamp": datetime(2024, 1, 1, tzinfo=UTC),
    }
    with pytest.raises(error, match=match):
        Event(**(fields | kwargs))  # type: ignore[arg-type]


def test_metric_definitions_are_upserted_and_read_back(store: Store) -> None:
    assert (
        store.metrics.put_many(definitions=[{"name": "conversion", "kind": "binary", "event": "purchase"}], actor="a")
        == 1
    )
    store.metrics.put_many(definitions=[{"name": "conversion", "kind": "binary", "event": "order"}], actor="b")
    assert store.metrics.get_many(names=["conversion", "missing"]) == {
        "conversion": {"name": "conversion", "kind": "binary", "event": "order"}
    }
    assert list(store.metrics.list()) == ["conversion"]
    with pytest.raises(ValueError, match="'name'"):
        store.metrics.put_many(definitions=[{"kind": "binary"}], actor="a")
