"""What the store questions, through the real CLI on SQLite and PostgreSQL: exposures out of an
experiment's running time, conflicts, an unknown segment attribute, the status of an empty experiment."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from splitlab.cli import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KEY = "free-shipping-threshold"
runner = CliRunner()


def _run(database_url: str, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, [*args, "--database", database_url])
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


def test_status_of_an_experiment_without_units_says_so(database_url: str) -> None:
    _run(database_url, "apply", str(EXAMPLES))
    lines = _run(database_url, "status", KEY).splitlines()
    assert lines[0] == f"{KEY}: draft, no units exposed yet"
    assert "SRM: not checked (no units)" in lines
    assert "nan" not in "\n".join(lines)


def test_events_import_refuses_rows_out_of_the_running_time_and_reports_conflicts(
    database_url: str, tmp_path: Path
) -> None:
    _run(database_url, "apply", str(EXAMPLES))
    path = tmp_path / "exposures.csv"
    path.write_text(f"experiment,unit_id,variant,timestamp\n{KEY},u1,control,{datetime.now(UTC).isoformat()}\n")
    draft = json.loads(_run(database_url, "events", "import", str(path), "--json", code=1))
    assert [r["reason"] for r in draft["rejected"]] == [f"experiment '{KEY}' is draft, not running"]
    _run(database_url, "start", KEY)
    now = datetime.now(UTC)
    rows = [
        ("u1", "control", now),
        ("u1", "threshold_35", now + timedelta(seconds=1)),  # the same unit in a second variant
        ("u2", "control", now - timedelta(days=1)),  # before the start
        ("u3", "control", now + timedelta(minutes=20)),  # a clock 20 minutes fast
    ]
    path.write_text(
        "experiment,unit_id,variant,timestamp\n" + "".join(f"{KEY},{u},{v},{t.isoformat()}\n" for u, v, t in rows)
    )
    report = _run(database_url, "events", "import", str(path), code=1).splitlines()
    assert report[0] == "exposures: 4 rows, 1 inserted, 0 already stored, 1 conflicts, 2 rejected"
    assert (
        report[1]
        == "  1 exposures name another variant than their unit's first one: those units are left out of analysis"
    )
    assert f"is before experiment '{KEY}' started" in report[2]
    assert "later than now plus the clock-skew allowance of 300 s" in report[3]
    wider = json.loads(_run(database_url, "events", "import", str(path), "--clock-skew", "3600", "--json", code=1))
    assert [r["row"] for r in wider["rejected"]] == [4]
    assert (wider["inserted"], wider["duplicates"], wider["conflicts"]) == (1, 1, 1)


def test_analyze_with_a_segment_no_exposure_carries_is_an_error(database_url: str) -> None:
    _run(database_url, "apply", str(EXAMPLES))
    _run(database_url, "start", KEY)
    _run(database_url, "simulate", KEY, "--units", "2000", "--days", "3")
    result = runner.invoke(app, ["analyze", KEY, "--segment", "devcie", "--database", database_url])
    assert result.exit_code == 2
    assert result.output == f"error: segments: 'devcie': no exposure of experiment '{KEY}' carries that attribute\n"
    assert "device" in _run(database_url, "analyze", KEY, "--segment", "device", "--no-save")
