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


@pytest.mark.parametrize("method", ["msprt", "gst-obf", "gst-pocock"])
def test_sequential_json(files: dict[str, Path], tmp_path: Path, method: str) -> None:
    import pandas as pd

    frame = pd.read_csv(files["csv"])
    frame["day"] = (frame["user_id"] - 1) // 400 + 1
    path = tmp_path / "daily.csv"
    frame.to_csv(path, index=False)
    args = ["analyze-file", str(path), "--control", "control", "--metric", "conversion=converted:proportion",
            "--sequential", method, "--planned-n", "20000", "--time-column", "day", "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    metric = json.loads(result.output)["metrics"][0]
    assert metric["sequential_method"] == method
    assert metric["sequential_looks"] >= 1
    assert metric["sequential_decision"] in ("continue", "stop_efficacy", "stop_futility", "stop_harm")
    if method == "msprt":
        assert 0 <= metric["sequential_p_value"] <= 1
        assert metric["sequential_ci"][0] <= metric["absolute_effect"] <= metric["sequential_ci"][1]


def test_sequential_needs_planned_n(files: dict[str, Path]) -> None:
    args = ["analyze-file", str(files["csv"]), "--metric", "c=converted:proportion", "--sequential", "msprt"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "planned_n is required" in result.output
