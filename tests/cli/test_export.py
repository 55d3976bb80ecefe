"""splitlab export and export-catalog through the CLI on a real SQLite store: output, idempotence, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
import yaml
from typer.testing import CliRunner

from splitlab.cli import app

ROOT = Path(__file__).resolve().parents[2]
KEY = "free-shipping-threshold"
runner = CliRunner()


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def fail(*args: str) -> str:
    """The command's output, after checking it failed as a user error: exit 2, one line, no traceback."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A store with the examples applied and one experiment analysed."""
    options = ["--database", f"sqlite:///{tmp_path_factory.mktemp('cli-export') / 's.db'}"]
    run("apply", str(ROOT / "examples"), *options)
    run("start", KEY, *options)
    run("simulate", KEY, "--units", "800", "--seed", "5", *options)
    run("analyze", KEY, "--json", *options)
    return options


def test_export_to_duckdb_twice(db: list[str], tmp_path: Path) -> None:
    target = f"duckdb:///{tmp_path / 'r.duckdb'}"
    summary = json.loads(run("export", KEY, "--to", target, "--schema", "experiments", "--json", *db))
    assert summary["target"] == f"{target}?schema=experiments"
    assert summary["rows"]["splitlab_decisions"] == 1
    assert summary["rows"]["splitlab_results"] >= 4
    line = run("export", KEY, "--to", target, "--schema", "experiments", "--all-snapshots", *db)
    assert line.startswith(f"{KEY}: 1 snapshot exported to {target}?schema=experiments (rows: splitlab_experiments 2")
    with duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True) as conn:
        counts = {
            name: conn.execute(f"SELECT count(*) FROM experiments.{name}").fetchone()[0]  # type: ignore[index]  # noqa: S608
            for name in summary["rows"]
        }
    assert counts == summary["rows"]


def test_export_catalog(db: list[str], tmp_path: Path) -> None:
    line = run("export-catalog", str(tmp_path / "catalog"), "--experiment", KEY, *db)
    assert line.startswith(f"1 experiments, 2 spec versions written to {tmp_path / 'catalog'}")
    spec = yaml.safe_load((tmp_path / "catalog" / KEY / "v1.yaml").read_text())
    assert spec["key"] == KEY
    assert spec["metrics"]["goal"] == ["conversion"]
    index = json.loads((tmp_path / "catalog" / "index.json").read_text())
    assert [v["status"] for v in index["experiments"][0]["versions"]] == ["draft", "running"]
    assert fail("export-catalog", str(tmp_path / "x"), "--experiment", "nope", *db) == (
        "error: experiment 'nope' does not exist"
    )


def test_errors_are_one_line_naming_the_option(db: list[str], tmp_path: Path) -> None:
    assert fail("export", KEY, "--to", "ftp://host/x", *db).startswith(
        "error: --to: 'ftp://host/x' is not an export target (scheme 'ftp'), must be one of: postgresql+psycopg://"
    )
    spark = fail("export", KEY, "--to", "spark://master:7077", *db)
    assert "--to: 'spark://master:7077' is a Spark master URL" in spark
    assert fail("export", KEY, "--to", str(tmp_path), "--schema", "a-b", *db) == (
        "error: --schema: schema == 'a-b', must be a plain identifier (letters, digits, _, not starting with a digit)"
    )
    (tmp_path / "r.duckdb").write_text("")
    message = fail("export", KEY, "--to", str(tmp_path / "r.duckdb"), *db)
    assert message == (
        f"error: --to: {tmp_path / 'r.duckdb'} cannot be written: {tmp_path / 'r.duckdb'} is a file, a Parquet "
        f"target is a directory (for a DuckDB file: duckdb:///{tmp_path / 'r.duckdb'})"
    )
    message = fail("export", KEY, "--to", "postgresql://ana:secret@127.0.0.1:1/dw", *db)
    assert message.startswith("error: --to: postgresql+psycopg://ana:***@127.0.0.1:1/dw cannot be written: ")
    assert "secret" not in message
    assert fail("export", "checkout-one-page", "--to", str(tmp_path / "lake"), *db) == (
        "error: experiment 'checkout-one-page' has no stored readout to export: "
        "run `splitlab analyze checkout-one-page` first"
    )
