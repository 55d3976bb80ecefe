"""apply / list / show / start / pause / stop / assign / events import, through the CLI on a real SQLite store."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from splitlab.cli import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> list[str]:
    return ["--database", f"sqlite:///{tmp_path / 'store.db'}"]


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_apply_is_idempotent_and_dry_run_writes_nothing(db: list[str]) -> None:
    dry = run("apply", str(EXAMPLES), "--dry-run", *db)
    assert "+ free-shipping-threshold: create" in dry
    assert json.loads(run("list", "--json", *db)) == []
    run("apply", str(EXAMPLES), *db)
    again = run("apply", str(EXAMPLES), *db)
    assert "= free-shipping-threshold: unchanged (version 1)" in again
    keys = [row["key"] for row in json.loads(run("list", "--json", *db))]
    assert sorted(keys) == ["checkout-one-page", "free-shipping-threshold", "homepage-recommendations"]


def _edited_examples(tmp_path: Path, old: str, new: str) -> Path:
    folder = tmp_path / "specs"
    shutil.copytree(EXAMPLES, folder)
    path = folder / "free_shipping.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return folder


def test_update_prints_the_diff_and_keeps_the_audit_log(db: list[str], tmp_path: Path) -> None:
    run("apply", str(EXAMPLES), *db)
    folder = _edited_examples(tmp_path, "coverage: 1.0", "coverage: 0.5")
    output = run("apply", str(folder), "--actor", "ana", *db)
    assert "~ free-shipping-threshold: update to version 2" in output
    assert "coverage: 1.0 -> 0.5" in output
    shown = json.loads(run("show", "free-shipping-threshold", "--json", *db))
    assert shown["version"] == 2
    assert shown["history"][-1]["changed_by"] == "ana"
    assert shown["history"][-1]["diff"] == [{"path": "coverage", "old": 1.0, "new": 0.5}]


def test_running_experiment_refuses_a_variant_rename_unless_rerandomized(db: list[str], tmp_path: Path) -> None:
    run("apply", str(EXAMPLES), *db)
    run("start", "free-shipping-threshold", *db)
    folder = _edited_examples(tmp_path, "key: threshold_35", "key: threshold_thirty_five")
    refused = runner.invoke(app, ["apply", str(folder), *db])
    assert refused.exit_code == 2
    assert "variants" in refused.output
    assert "--rerandomize" in refused.output
    output = run("apply", str(folder), "--rerandomize", *db)
    assert "(re-randomised)" in output
    shown = json.loads(run("show", "free-shipping-threshold", "--json", *db))
    assert shown["bucket_version"] == 2
    assert shown["spec"]["bucket_version"] == 2


def test_lifecycle_commands_and_refused_transitions(db: list[str]) -> None:
    run("apply", str(EXAMPLES), *db)
    assert "draft -> running" in run("start", "checkout-one-page", *db)
    assert "running -> paused" in run("pause", "checkout-one-page", *db)
    assert "paused -> running" in run("start", "checkout-one-page", *db)
    assert "running -> stopped" in run("stop", "checkout-one-page", *db)
    refused = runner.invoke(app, ["start", "checkout-one-page", *db])
    assert refused.exit_code == 2
    assert "stopped" in refused.output
    assert [r["key"] for r in json.loads(run("list", "--status", "stopped", "--json", *db))] == ["checkout-one-page"]
    missing = runner.invoke(app, ["start", "nope", *db])
    assert missing.exit_code == 2
    assert missing.output == "error: experiment 'nope' does not exist\n"


def test_assign_matches_the_python_api_and_respects_status_and_targeting(db: list[str]) -> None:
    import splitlab

    run("apply", str(EXAMPLES), *db)
    draft = json.loads(run("assign", "free-shipping-threshold", "user-7", "--json", *db))
    assert draft["variant"] is None
    assert draft["reason"] == "inactive"
    run("start", "free-shipping-threshold", *db)
    spec = splitlab.load_catalog(EXAMPLES).experiments["free-shipping-threshold"]
    for unit in ("user-1", "user-2", "user-3"):
        got = json.loads(run("assign", "free-shipping-threshold", unit, "--attr", "device=mobile", "--json", *db))
        expected = splitlab.assign(spec, unit, {"device": "mobile"})
        assert (got["variant"], got["bucket"]) == (expected.variant, expected.bucket)
    vip = json.loads(run("assign", "free-shipping-threshold", "user-1", "--attr", "account_tier=vip", "--json", *db))
    assert vip["reason"] == "not_targeted"
    employee = json.loads(
        run("assign", "free-shipping-threshold", "user-1", "--attr", "is_employee=true", "--json", *db)
    )
    assert employee["variant"] is None


def test_events_import_reports_rejected_rows(db: list[str], tmp_path: Path) -> None:
    run("apply", str(EXAMPLES), *db)
    run("start", "free-shipping-threshold", *db)
    exposures = pd.DataFrame(
        {
            "experiment": ["free-shipping-threshold"] * 3,
            "unit_id": ["u1", "u2", "u3"],
            "variant": ["control", "threshold_35", "nope"],
            "timestamp": [datetime.now(UTC).isoformat()] * 3,
            "device": ["mobile", "desktop", "mobile"],
        }
    )
    path = tmp_path / "exposures.csv"
    exposures.to_csv(path, index=False)
    result = runner.invoke(app, ["events", "import", str(path), "--json", *db])
    assert result.exit_code == 1  # rejected rows: a scheduled import notices
    report = json.loads(result.stdout)
    assert report["kind"] == "exposures"
    assert report["inserted"] == 2
    assert [r["row"] for r in report["rejected"]] == [4]
    events = pd.DataFrame({
        "event_id": ["e1", "e2"], "unit_id": ["u1", "u2"], "event": ["purchase", "purchase"],
        "value": [35.0, 52.5], "timestamp": ["2026-11-02T10:00:00Z", "2026-11-02T11:00:00Z"],
    })  # fmt: skip
    events_path = tmp_path / "events.parquet"
    events.to_parquet(events_path)
    assert "2 inserted" in run("events", "import", str(events_path), *db)
    assert "0 inserted, 2 already stored" in run("events", "import", str(events_path), *db)
    malformed = tmp_path / "bad.csv"
    malformed.write_text("unit_id,value\nu1,3\n")
    result = runner.invoke(app, ["events", "import", str(malformed), *db])
    assert result.exit_code == 2
    assert "error:" in result.output


def test_recorded_assignment_is_sticky_when_weights_change(db: list[str], tmp_path: Path) -> None:
    run("apply", str(EXAMPLES), *db)
    run("start", "free-shipping-threshold", *db)
    units = [f"user-{i}" for i in range(40)]
    before = {u: json.loads(run("assign", "free-shipping-threshold", u, "--record", "--json", *db)) for u in units}
    in_control = [u for u, a in before.items() if a["variant"] == "control"]
    assert in_control
    folder = _edited_examples(tmp_path, "weight: 0.5\n    payload: {free_shipping_threshold_usd: 50}",
                              "weight: 0.05\n    payload: {free_shipping_threshold_usd: 50}")  # fmt: skip
    text = (
        (folder / "free_shipping.yaml")
        .read_text()
        .replace(
            "weight: 0.5\n    payload: {free_shipping_threshold_usd: 35}",
            "weight: 0.95\n    payload: {free_shipping_threshold_usd: 35}",
        )
    )
    (folder / "free_shipping.yaml").write_text(text)
    assert "weight" in run("apply", str(folder), *db)
    after = {u: json.loads(run("assign", "free-shipping-threshold", u, "--json", *db)) for u in in_control}
    assert all(a["variant"] == "control" and a["reason"] == "sticky" for a in after.values())
