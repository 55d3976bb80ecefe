"""analyze, status and simulate through the CLI on a real SQLite store."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

from typer.testing import CliRunner

from splitlab.cli import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
runner = CliRunner()


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_simulate_analyze_and_status(tmp_path: Path) -> None:
    db = ["--database", f"sqlite:///{tmp_path / 's.db'}"]
    run("apply", str(EXAMPLES), *db)
    run("start", "free-shipping-threshold", *db)
    summary = json.loads(run("simulate", "free-shipping-threshold", "--units", "20000", "--effect", "conversion=+30%",
                             "--seed", "3", "--json", *db))  # fmt: skip
    assert summary["effects"] == {"conversion": 0.3}
    assert sum(summary["exposed"].values()) > 15_000
    html = tmp_path / "report.html"
    readout = json.loads(run("analyze", "free-shipping-threshold", "--json", "--html", str(html), *db))
    assert readout["decision"]["category"] in ("STRONG_LAUNCH", "LAUNCH", "CONSIDER_LAUNCH", "EXTEND_TEST")
    assert {m["metric"] for m in readout["metrics"]} >= {"conversion", "average_order_value"}
    HTMLParser().feed(html.read_text())
    assert "<svg" in html.read_text()
    markdown = run("analyze", "free-shipping-threshold", "--markdown", "--no-save", *db)
    assert "conversion" in markdown
    status = json.loads(run("status", "free-shipping-threshold", "--json", *db))
    assert status["status"] == "running"
    assert set(status["units"]) == {"control", "threshold_35"}
    plain = run("status", "free-shipping-threshold", *db)
    assert "Configured: control=50%, threshold_35=50% / Actual:" in plain
    history = json.loads(run("show", "free-shipping-threshold", "--json", *db))
    assert history["status"] == "running"


def test_simulate_errors_name_the_option(tmp_path: Path) -> None:
    db = ["--database", f"sqlite:///{tmp_path / 's.db'}"]
    run("apply", str(EXAMPLES), *db)
    bad = runner.invoke(app, ["simulate", "free-shipping-threshold", "--effect", "nope=+3%", *db])
    assert bad.exit_code == 2
    assert "effects['nope']" in bad.output
    bad = runner.invoke(app, ["simulate", "free-shipping-threshold", "--effect", "conversion=lots", *db])
    assert bad.exit_code == 2
    assert "--effect" in bad.output
