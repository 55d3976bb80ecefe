"""splitlab plan through the CLI on a SQLite store with a seeded history."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from splitlab.cli import app
from splitlab.operations.experiments import apply_spec, define_metrics
from splitlab.operations.planning import VERDICTS
from splitlab.specs.model import ExperimentSpec, MetricDefinition
from splitlab.storage import open_store

runner = CliRunner()


@pytest.fixture
def database(tmp_path: Path) -> list[str]:
    """2,000 units visiting in March 2024, a fifth of them buying within a few days of their visit."""
    url = f"sqlite:///{tmp_path / 'plan.db'}"
    rng = np.random.default_rng(5)
    units = 2_000
    visit = rng.uniform(0, 28, units)
    buyers = np.flatnonzero(rng.random(units) < 0.2)
    times = np.concatenate([visit, visit[buyers] + rng.uniform(0, 3, buyers.size)])
    owners = np.concatenate([np.arange(units), buyers])
    names = ["visit"] * units + ["purchase"] * buyers.size
    with open_store(url) as store:
        define_metrics(store, [MetricDefinition(name="conversion", kind="binary", event="purchase", window_days=7)],
                       actor="test")  # fmt: skip
        spec = ExperimentSpec.model_validate({
            "key": "exp", "variants": [{"key": "a"}, {"key": "b"}],
            "hypothesis": {"primary_metric": "conversion", "direction": "increase", "mde": 0.1},
            "metrics": {"goal": ["conversion"]}, "schedule": {"max_duration_days": 30},
        })  # fmt: skip
        apply_spec(store, spec, actor="test")
        store.events.log_columns(
            event_id=[f"e{i}" for i in range(owners.size)],
            unit_id=[f"u{u}" for u in owners.tolist()],
            name=names,
            timestamp=np.datetime64("2024-03-01T00:00:00", "us") + (times * 86_400e6).astype("timedelta64[us]"),
        )
    return ["--database", url]


def test_plan_json_and_text(database: list[str]) -> None:
    result = runner.invoke(app, ["plan", "exp", "--reference-date", "2024-03-15", "--days", "14", "--json", *database])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    keys = {"experiment_key", "reference", "reference_source", "traffic", "metrics", "sample_size", "sample_size_cuped",
            "units_needed", "days_needed", "days_needed_cuped", "mde_at_planned", "power_at_planned", "sequential",
            "verdict", "reasons", "error_code", "error_message"}  # fmt: skip
    assert keys <= set(data)
    assert data["reference"] == "2024-03-15T00:00:00+00:00"
    assert data["traffic"]["window_start"] == "2024-03-01T00:00:00+00:00"
    assert data["metrics"][0]["metric"] == "conversion"
    assert data["metrics"][0]["covariate"] == "suggested"
    assert 0.1 < data["metrics"][0]["baseline"] < 0.3
    assert data["verdict"] in VERDICTS
    assert data["sample_size"]["per_variant"] > 1_000
    text = runner.invoke(app, ["plan", "exp", "--reference-date", "2024-03-15", "--days", "14", *database])
    assert text.exit_code == 0, text.output
    assert "Sample size:" in text.output
    assert f"Verdict: {data['verdict']}" in text.output


def test_plan_errors(database: list[str]) -> None:
    unknown = runner.invoke(app, ["plan", "nope", *database])
    assert unknown.exit_code == 2
    assert unknown.output.strip() == "error: experiment 'nope' does not exist"
    bad_date = runner.invoke(app, ["plan", "exp", "--reference-date", "15/03/2024", *database])
    assert bad_date.exit_code == 2
    assert "--reference-date == '15/03/2024', must be a date YYYY-MM-DD" in bad_date.output
    empty = runner.invoke(app, ["plan", "exp", "--reference-date", "2023-01-01", *database])
    assert empty.exit_code == 1
    assert "Cannot plan: no units with events in the 30 days from 2022-12-02 00:00 to 2023-01-01 00:00 UTC" in (
        empty.output
    )
    assert "'conversion'" in empty.output


def test_readme_usage_options_exist() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    usage = next(line for line in readme.splitlines() if line.startswith("splitlab plan "))
    documented = set(re.findall(r"--[a-z][a-z-]+", usage))
    result = runner.invoke(app, ["plan", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert documented == {"--reference-date", "--days", "--json"}
    assert documented <= set(re.findall(r"--[a-z][a-z-]+", result.output))
