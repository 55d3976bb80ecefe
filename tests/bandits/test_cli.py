"""``splitlab bandit simulate`` through a Typer app that mounts the sub-app, as the main CLI does."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from splitlab.bandits import simulate
from splitlab.cli.bandit import app as bandit_app

app = typer.Typer()
app.add_typer(bandit_app, name="bandit")
runner = CliRunner()
SMALL = ["--arms", "0.70,0.85,0.75", "--rounds", "800", "--seeds", "40"]


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["bandit", "simulate", *args])
    return result.exit_code, result.output


def test_json_has_exactly_the_documented_keys_and_the_library_figures() -> None:
    code, output = invoke(*SMALL, "--policy", "thompson", "--seed", "3", "--json")
    assert code == 0, output
    data = json.loads(output)
    assert list(data) == ["mean_regret", "regret_ci", "median_regret", "p90_regret", "p_best_found"]
    expected = simulate("thompson", [0.70, 0.85, 0.75], rounds=800, replications=40, seed=3).summary()
    assert data == expected  # JSON keeps every float exactly
    assert data["regret_ci"][0] < data["mean_regret"] < data["regret_ci"][1]


def test_text_output_names_every_figure() -> None:
    code, output = invoke(*SMALL, "--policy", "ucb1-tuned")
    assert code == 0, output
    for label in ("mean cumulative regret", "95% CI", "median regret", "p90 regret", "P(best arm found)"):
        assert label in output
    assert output.startswith("ucb1-tuned (online) on arms 0.7, 0.85, 0.75: 800 rounds x 40 seeds")


def test_production_mode_options() -> None:
    code, output = invoke(*SMALL, "--batch", "40", "--floor", "0.02", "--stop-loss", "0.0005", "--json")
    assert code == 0, output
    settings_free = json.loads(invoke(*SMALL, "--json")[1])
    assert json.loads(output) != settings_free


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arms", "0.7,high"], "--arms '0.7,high' must be comma-separated numbers"),
        (["--arms", "0.7"], "must name at least 2 arms"),
        (["--arms", "0.7,1.2"], "must be in [0, 1] for Bernoulli rewards"),
        ([*SMALL, "--policy", "softmax"], "policy == 'softmax', must be one of"),
        ([*SMALL, "--seeds", "1"], "replications == 1"),
        ([*SMALL, "--stop-p-best", "0.95"], "give --batch too"),
        ([*SMALL, "--batch", "10", "--floor", "0.5"], "floor == 0.5"),
    ],
)
def test_caller_mistakes_exit_with_status_2(args: list[str], message: str) -> None:
    code, output = invoke(*args)
    assert code == 2
    assert message in output
