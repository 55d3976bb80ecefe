"""The analyze-file command through Typer's runner: JSON, plain text, and readable errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from splitlab.cli import app
from splitlab.datasets import make_checkout_data

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    frame = make_checkout_data(4000, seed=9)
    csv, parquet = root / "exp.csv", root / "exp.parquet"
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet)
    return {"csv": csv, "parquet": parquet}


ARGS = ["--control", "control", "--metric", "conversion=converted:proportion", "--metric", "aov=revenue/orders:ratio",
        "--metric", "revenue=revenue:mean", "--covariate", "revenue=pre_revenue"]  # fmt: skip


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_json_output(files: dict[str, Path], kind: str) -> None:
    result = runner.invoke(app, ["analyze-file", str(files[kind]), *ARGS, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert set(payload["srm"]) >= {"p_value", "counts", "flag"}
    by_metric = {m["metric"]: m for m in payload["metrics"]}
    assert by_metric["revenue"]["cuped"] is True
    assert by_metric["aov"]["test"] == "delta-z"
    assert by_metric["conversion"]["test"] == "pooled-z"


def test_plain_table_when_not_a_tty(files: dict[str, Path]) -> None:
    result = runner.invoke(app, ["analyze-file", str(files["csv"]), *ARGS])
    assert result.exit_code == 0, result.output
    assert "SRM check" in result.output
    assert "conversion" in result.output
    assert "\x1b[" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metric", "conversion=converted"], "must be COLUMN:proportion"),
        (["--metric", "conversion"], "must look like NAME=VALUE"),
        (["--metric", "x=missing:mean"], "column 'missing' is not in the data"),
        (["--metric", "x=revenue:mean", "--alpha", "1.5"], "alpha == 1.5"),
    ],
)
def test_errors_name_the_field(files: dict[str, Path], args: list[str], message: str) -> None:
    result = runner.invoke(app, ["analyze-file", str(files["csv"]), "--control", "control", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["analyze-file", str(tmp_path / "nope.csv"), "--metric", "x=y:mean"])
    assert result.exit_code == 2
    assert "does not exist" in result.output
