"""``splitlab validate``: the quick suite as CI runs it, --from-store, --json, exit codes and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from splitlab.cli import app
from splitlab.operations import validation
from splitlab.operations.experiments import apply_spec, change_status, define_metrics
from splitlab.operations.simulation import simulate
from splitlab.specs import ExperimentSpec, MetricDefinition
from splitlab.stats.calibration import CalibrationLine
from splitlab.storage import open_store

runner = CliRunner()
CONVERSION: dict[str, Any] = {"name": "conversion", "kind": "binary", "event": "purchase", "window_days": 7}
SESSIONS: dict[str, Any] = {"name": "sessions", "kind": "count", "event": "session_start"}


def test_quick_suite_passes_every_line_with_figures_in_range() -> None:
    """The CI run: one quick suite, every line PASS, each figure where a calibrated splitlab puts it."""
    result = runner.invoke(app, ["validate", "--quick", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["passed"] is True
    assert report["counts"] == {"PASS": len(report["lines"]), "FAIL": 0, "SKIP": 0}
    lines = {line["check"]: line for line in report["lines"]}
    assert len(lines) == 28
    groups = {line["group"] for line in report["lines"]}
    assert groups == {"A/A false positives", "coverage", "power", "peeking", "SRM", "bandit"}
    for line in report["lines"]:
        assert line["verdict"] == "PASS", line
        low = line["low"] if line["low"] is not None else float("-inf")
        high = line["high"] if line["high"] is not None else float("inf")
        assert low <= line["estimate"] <= high, line
        assert line["standard_error"] >= 0, line
        if line["group"] == "A/A false positives" and line["check"] != "bootstrap":
            assert 0.02 < line["estimate"] < (0.14 if line["target"] > 0.06 else 0.08), line
        if line["group"] == "coverage":
            assert 0.91 < line["estimate"] < 0.99, line
        if line["group"] == "power":
            assert 0.74 < line["estimate"] < 0.86, line
    assert lines["msprt (hybrid, the spec's 'msprt')"]["estimate"] < 0.06
    assert lines["naive z-test at every look (negative control: must inflate)"]["estimate"] > 0.2
    assert next(v for k, v in lines.items() if k.startswith("thompson regret /"))["estimate"] < 0.6


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite store: a running experiment's simulated traffic, and a draft experiment to validate on it."""
    url = f"sqlite:///{tmp_path_factory.mktemp('validate') / 'store.db'}"
    spec = {"variants": [{"key": "a"}, {"key": "b"}], "metrics": {"goal": ["conversion"], "secondary": ["sessions"]}}
    with open_store(url) as store:
        metrics = {m["name"]: MetricDefinition.model_validate(m) for m in (CONVERSION, SESSIONS)}
        define_metrics(store, metrics.values(), actor="test")
        history = ExperimentSpec.model_validate({"key": "history", **spec})
        apply_spec(store, history, actor="test")
        change_status(store, key="history", action="start", actor="test")
        simulate(store, history, metrics, units=1_500, days=10, seed=2)
        apply_spec(store, ExperimentSpec.model_validate({"key": "next", **spec}), actor="test")
    return url


def test_from_store_prints_a_line_per_metric_and_its_window(store_url: str) -> None:
    result = runner.invoke(app, ["validate", "--from-store", "next", "--reps", "100", "--database", store_url])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("window ")
    assert "re-randomised into a 50%, b 50%" in result.output
    assert "pre-period A/A  conversion (binary, pooled-z)" in result.output
    assert "pre-period A/A  sessions (count, welch-t)" in result.output
    assert "2 lines: 2 PASS, 0 FAIL" in result.output


def test_from_store_json_shape(store_url: str) -> None:
    result = runner.invoke(
        app, ["validate", "--from-store", "next", "--reps", "100", "--seed", "4", "--json", "--database", store_url]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert set(report) == {"passed", "counts", "source", "experiment_key", "window", "units", "seed", "reps", "quick",
                           "seconds", "notes", "lines"}  # fmt: skip
    assert (report["source"], report["experiment_key"], report["seed"], report["reps"]) == ("store", "next", 4, 100)
    assert len(report["window"]) == 2
    assert set(report["lines"][0]) == {"check", "group", "estimate", "standard_error", "target", "low", "high",
                                       "rule", "reps", "verdict", "note"}  # fmt: skip
    assert [line["group"] for line in report["lines"]] == ["pre-period A/A"] * 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from-store", "no-such-key"], "no-such-key"),
        (["--from-store", "next", "--reps", "5"], "reps == 5, must be an integer >= 10"),
        (["--from-store", "next", "--reference-date", "yesterday"], "--reference-date 'yesterday'"),
        (["--from-store", "next", "--reference-date", "2001-01-01"], "too few to re-randomise"),
    ],
    ids=["unknown-key", "reps", "date", "thin-data"],
)
def test_mistakes_and_thin_data_are_one_line_errors(store_url: str, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["validate", *args, "--database", store_url])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert result.output.startswith("error: ")
    assert len(result.output.strip().splitlines()) == 1


def test_a_failed_line_exits_1_and_says_why(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The exit status is the CLI's part: a report with a FAIL line (as a broken test gives) exits 1."""
    failed = CalibrationLine(check="welch-t", group="A/A false positives", estimate=0.15, standard_error=0.011,
                             target=0.05, low=0.025, high=0.075, rule="within 3.6 SE of 0.05", reps=1000,
                             verdict="FAIL", note="lognormal values")  # fmt: skip
    report = validation.ValidationReport(lines=(failed,), source="simulation", seed=0, reps=1000, quick=True)
    monkeypatch.setattr(validation, "validate", lambda **_: report)
    result = runner.invoke(app, ["validate", "--quick"])
    assert result.exit_code == 1, result.output
    assert "1 lines: 0 PASS, 1 FAIL" in result.output
    assert "FAIL welch-t: within 3.6 SE of 0.05; lognormal values" in result.output


def test_help_documents_the_exit_status() -> None:
    result = runner.invoke(app, ["validate", "--help"])
    assert result.exit_code == 0
    assert "1 when a line fails" in " ".join(result.output.split())
