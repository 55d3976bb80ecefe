"""Operational failures print one line ``error: <what> (<hint>)`` and exit 2, never a traceback.

Each case goes through the real command on a real database (or a real dead port). The store's
failures name its URL without the password; a failure of ``analyze --source``'s database is told
apart from the store's.
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy.engine import URL, make_url
from typer.testing import CliRunner

from splitlab.cli import app
from splitlab.cli._common import user_errors

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXPERIMENT = "free-shipping-threshold"
OPTION = "--database / SPLITLAB_DATABASE_URL"
WHERE = f"check {OPTION}"
SOURCE_HINT = r"\(check the database, tables and columns the --source file names\)"
runner = CliRunner()


def fails(*args: str) -> str:
    """Run the command, assert it failed with exit status 2 and one error line; that line."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A SQLite store holding the examples (drafts)."""
    path = tmp_path / "store.db"
    result = runner.invoke(app, ["apply", str(EXAMPLES), "--database", f"sqlite:///{path}"])
    assert result.exit_code == 0, result.output
    return path


def test_a_dead_postgres_port_is_one_line_in_a_real_process() -> None:
    url = "postgresql+psycopg://postgres:secret@127.0.0.1:1/test"
    done = subprocess.run(  # noqa: S603 - our own interpreter and entry point
        [sys.executable, "-c", "from splitlab.cli import main; main()", "list", "--database", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "error: cannot open the store at postgresql+psycopg://postgres:***@127.0.0.1:1/test: Connection refused"
        f" (is PostgreSQL running at 127.0.0.1:1? {WHERE})\n"
    )


def test_serve_on_a_dead_postgres_port_fails_before_starting_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPLITLAB_DATABASE_URL", raising=False)  # serve sets it for its workers: undone after
    line = fails("serve", "--port", "1", "--database", "postgresql+psycopg://postgres@127.0.0.1:1/test")
    assert line == (
        "error: cannot open the store at postgresql+psycopg://postgres@127.0.0.1:1/test: Connection refused"
        f" (is PostgreSQL running at 127.0.0.1:1? {WHERE})"
    )


def test_an_unknown_postgres_host() -> None:
    line = fails("list", "--database", "postgresql+psycopg://postgres@nosuchhost.invalid/test")
    expected = (
        r"error: cannot open the store at postgresql\+psycopg://postgres@nosuchhost\.invalid/test: "
        r"failed to resolve host 'nosuchhost\.invalid': [^()]+ "
        rf"\(is the host name 'nosuchhost\.invalid' right\? {WHERE}\)"
    )
    assert re.fullmatch(expected, line), line


@pytest.fixture
def postgres_server(postgres_schemas: Any) -> URL:
    """The test PostgreSQL server's URL (skipped without one, failed under CI=true)."""
    base: URL = postgres_schemas.base
    return base


def test_a_postgres_database_that_does_not_exist(postgres_server: URL) -> None:
    url = postgres_server.set(database="splitlab_no_such_database")
    line = fails("list", "--database", url.render_as_string(hide_password=False))
    assert line == (
        f"error: cannot open the store at {url.render_as_string(hide_password=True)}: "
        'database "splitlab_no_such_database" does not exist '
        f"(create it with `createdb splitlab_no_such_database`, or {WHERE})"
    )


def test_a_postgres_user_the_server_refuses(postgres_server: URL) -> None:
    url = postgres_server.set(username="splitlab_nobody", password="hunter2")  # noqa: S106 - a wrong one
    line = fails("list", "--database", url.render_as_string(hide_password=False))
    shown = re.escape(url.render_as_string(hide_password=True))
    reason = '(role "splitlab_nobody" does not exist|password authentication failed for user "splitlab_nobody")'
    expected = rf"error: cannot open the store at {shown}: {reason} \(check the user and password in {OPTION}\)"
    assert re.fullmatch(expected, line), line
    assert "hunter2" not in line


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not a database\n")
    line = fails("list", "--database", f"sqlite:///{path}")
    assert line == (
        f"error: cannot open the store at sqlite:///{path}: the file is not a SQLite database"
        f" (name a splitlab store or a new file in {OPTION})"
    )


def test_start_on_a_read_only_store(store: Path) -> None:
    # mode=ro, not chmod: the tests may run as root, whom file permissions do not stop.
    read_only = f"sqlite:///file:{store}?mode=ro&uri=true"
    line = fails("start", EXPERIMENT, "--database", read_only)
    shown = make_url(read_only).render_as_string(hide_password=True)
    assert line == (
        f"error: cannot write to the store at {shown}: attempt to write a readonly database"
        f" (writes need a writable store: {WHERE} and the file's permissions)"
    )
    # Reading a read-only store still works.
    listed = runner.invoke(app, ["list", "--status", "draft", "--database", read_only])
    assert listed.exit_code == 0, listed.output
    assert EXPERIMENT in listed.stdout


def test_start_on_a_read_only_postgres_session(postgres_url: str) -> None:
    assert runner.invoke(app, ["apply", str(EXAMPLES), "--database", postgres_url]).exit_code == 0
    options = make_url(postgres_url).query["options"]
    read_only = make_url(postgres_url).update_query_dict({"options": f"{options} -cdefault_transaction_read_only=on"})
    line = fails("start", EXPERIMENT, "--database", read_only.render_as_string(hide_password=False))
    expected = (
        rf"error: cannot write to the store at {re.escape(read_only.render_as_string(hide_password=True))}: "
        r"cannot execute [A-Z ]+ in a read-only transaction"
        rf" \(writes need the primary server, not a standby or a read-only session: {WHERE}\)"
    )
    assert re.fullmatch(expected, line), line


def test_a_missing_sqlite_file_opened_read_only(tmp_path: Path) -> None:
    url = f"sqlite:///file:{tmp_path / 'absent.db'}?mode=ro&uri=true"
    line = fails("list", "--database", url)
    shown = make_url(url).render_as_string(hide_password=True)
    assert line == (
        f"error: cannot open the store at {shown}: unable to open database file"
        f" (check the file's path and permissions in {OPTION})"
    )


def _source(tmp_path: Path, database: str, *, exposures: str = "exposures", unit: str = "user_id") -> Path:
    path = tmp_path / "warehouse.yaml"
    path.write_text(
        f"database: {database}\n"
        f"exposures: {{table: {exposures}, unit: {unit}, variant: arm, timestamp: exposed_at,"
        " experiment: experiment_id, segments: [device, country]}\n"
        "events: {table: events, unit: user_id, name: event_name, timestamp: ts, value: amount}\n"
    )
    return path


def _duckdb_warehouse(tmp_path: Path) -> str:
    import duckdb

    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE exposures (experiment_id VARCHAR, user_id VARCHAR, arm VARCHAR, exposed_at TIMESTAMP,"
            " device VARCHAR, country VARCHAR)"
        )
    return f"duckdb:///{path}"


def test_analyze_source_naming_a_missing_duckdb_table(store: Path, tmp_path: Path) -> None:
    source = _source(tmp_path, _duckdb_warehouse(tmp_path))  # it has exposures, not events
    line = fails("analyze", EXPERIMENT, "--source", str(source), "--database", f"sqlite:///{store}")
    expected = r"error: cannot read the --source data: Catalog Error: Table with name events does not exist! "
    assert re.fullmatch(expected + SOURCE_HINT, line), line


def test_analyze_source_naming_a_missing_duckdb_column(store: Path, tmp_path: Path) -> None:
    source = _source(tmp_path, _duckdb_warehouse(tmp_path), unit="uid")
    line = fails("analyze", EXPERIMENT, "--source", str(source), "--database", f"sqlite:///{store}")
    assert re.fullmatch(r'error: cannot read the --source data: Binder Error: .*"uid".* ' + SOURCE_HINT, line), line


def test_analyze_source_naming_a_missing_sqlite_table_is_not_blamed_on_the_store(store: Path, tmp_path: Path) -> None:
    # The warehouse is a SQLite file too, read inside the store's block: the error must name the
    # source, not the store (the store's own failures are StoreUnavailableError).
    warehouse = tmp_path / "warehouse.db"
    pd.DataFrame({"user_id": ["u1"]}).to_sql("users", f"sqlite:///{warehouse}", index=False)
    source = _source(tmp_path, f"sqlite:///{warehouse}")
    line = fails("analyze", EXPERIMENT, "--source", str(source), "--database", f"sqlite:///{store}")
    assert re.fullmatch(r"error: cannot read the --source data: no such table: \w+ " + SOURCE_HINT, line), line


def test_analyze_source_naming_a_missing_duckdb_file(store: Path, tmp_path: Path) -> None:
    source = _source(tmp_path, f"duckdb:///{tmp_path / 'absent.duckdb'}")
    line = fails("analyze", EXPERIMENT, "--source", str(source), "--database", f"sqlite:///{store}")
    expected = r'error: cannot read the --source data: IO Error: Cannot open database ".*absent\.duckdb".* '
    assert re.fullmatch(expected + SOURCE_HINT, line), line


def test_events_import_with_rejected_rows_exits_1_with_its_report(store: Path, tmp_path: Path) -> None:
    path = tmp_path / "exposures.csv"
    assert runner.invoke(app, ["start", EXPERIMENT, "--database", f"sqlite:///{store}"]).exit_code == 0
    pd.DataFrame({
        "experiment": [EXPERIMENT] * 3, "unit_id": ["u1", "u2", "u3"], "variant": ["control", "threshold_35", "nope"],
        "timestamp": [datetime.now(UTC).isoformat()] * 3,
    }).to_csv(path, index=False)  # fmt: skip
    result = runner.invoke(app, ["events", "import", str(path), "--database", f"sqlite:///{store}"])
    assert result.exit_code == 1, (result.output, result.exception)
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "exposures: 3 rows, 2 inserted, 0 already stored, 0 conflicts, 1 rejected"
    assert lines[1].startswith("  row 4: ")
    assert len(lines) == 2
    accepted = tmp_path / "accepted.csv"
    pd.read_csv(path).iloc[:2].to_csv(accepted, index=False)
    again = runner.invoke(app, ["events", "import", str(accepted), "--json", "--database", f"sqlite:///{store}"])
    assert again.exit_code == 0, again.output


def test_a_bug_keeps_its_traceback() -> None:
    # Only caller mistakes and operational failures become one line; anything else is a bug to see.
    with pytest.raises(ZeroDivisionError), user_errors():
        _ = 1 / 0


def test_analyze_on_a_read_only_store_shows_the_readout_and_says_it_was_not_saved(store: Path) -> None:
    url = f"sqlite:///{store}"
    for args in (["start", EXPERIMENT], ["simulate", EXPERIMENT, "--units", "3000", "--seed", "1"]):
        assert runner.invoke(app, [*args, "--database", url]).exit_code == 0
    read_only = f"sqlite:///file:{store}?mode=ro&uri=true"
    result = runner.invoke(app, ["analyze", EXPERIMENT, "--json", "--database", read_only])
    assert result.exit_code == 0, result.output
    assert '"decision"' in result.stdout  # the whole readout is printed
    shown = make_url(read_only).render_as_string(hide_password=True)
    assert result.stderr == (
        f"warning: snapshot not saved (cannot write to the store at {shown}: attempt to write a readonly database"
        f" (writes need a writable store: {WHERE} and the file's permissions))\n"
    )
    listed = runner.invoke(app, ["analyze", EXPERIMENT, "--no-save", "--database", read_only])
    assert listed.exit_code == 0, listed.output
    assert "warning" not in listed.stderr
