"""``splitlab demo-router`` runs for real: the better model is promoted, the faulty one rolled back, as it prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
from typer.testing import CliRunner

from splitlab.cli import app
from splitlab.cli.demo_router import FAILURE_RATE, MODEL_MS, SLOW_MS
from splitlab.storage import open_store


def test_the_router_demo_promotes_the_better_model_and_rolls_back_the_faulty_one(tmp_path: Path) -> None:
    database = tmp_path / "router-demo.db"
    arguments = ["--fast", "--database", str(database), "--workdir", str(tmp_path / "work"), "--seed", "7"]
    done = subprocess.run(  # noqa: S603 - our own interpreter and entry point
        [sys.executable, "-c", "from splitlab.cli import main; main()", "demo-router", *arguments, "--timeout", "60"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    output = done.stdout
    lines = output.splitlines()

    with open_store(f"sqlite:///{database}") as store:
        # model-upgrade: ramped from 10 % to 50 % and then rolled out to everyone by the monitor.
        upgrade = store.experiments.get(key="model-upgrade")
        assert upgrade is not None
        assert (upgrade.status, upgrade.rolled_out_variant) == ("rolled_out", "candidate")
        upgraded = store.monitor.actions(key="model-upgrade")[::-1]
        assert [(a.action, a.actor) for a in upgraded] == [("ramp", "monitor"), ("promote", "monitor")]
        weights = [v["weight"] for v in store.experiments.history(key="model-upgrade")[-2].spec["variants"]]
        assert weights == [0.5, 0.5]  # the ramp's version, before the promotion
        # risky-model: rolled back (paused) on its challenger's harm, before its last step.
        risky = store.experiments.get(key="risky-model")
        assert risky is not None
        assert risky.status == "paused"
        rollback, *earlier = store.monitor.actions(key="risky-model")
        assert rollback.action == "rollback"
        assert all(a.action == "ramp" for a in earlier)
        assert any("breached its tolerance" in r or r == "canary: decision ROLLBACK" for r in rollback.reasons)

    # The timeline printed each action as the monitor took it, with the stored reasons.
    timeline = re.compile(r"^\+\s*\d+\.\ds  (model-upgrade|risky-model) +current \d+%, candidate \d+% +(\w+) +(.*)$")
    printed = [(m[1], m[2], m[3]) for m in map(timeline.match, lines) if m and m[2] != "look"]
    stored = [("model-upgrade", a.action, "; ".join(a.reasons)) for a in upgraded]
    stored.append(("risky-model", "rollback", "; ".join(rollback.reasons)))
    assert sorted(printed) == sorted(stored)
    # The final state, and the model the router now answers new units with: the good one in both.
    assert "   model-upgrade: rolled_out (candidate to everyone)" in lines
    assert "   risky-model: paused" in lines
    assert lines.count("    now, 20 new units are answered by: good-v2 20") == 2
    # Every process it started is stopped: the router and the three model servers refuse connections.
    urls = re.findall(r"(http://127\.0\.0\.1:\d+)(?:/predict)?\b", output)
    assert len(set(urls)) == 4
    for url in set(urls):
        try:
            httpx.get(url, timeout=2)
        except httpx.ConnectError:
            continue
        raise AssertionError(f"{url} still answers after the demo ended")


def test_the_readme_shows_the_router_demo_as_it_is() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    [usage] = [line for line in readme.splitlines() if line.startswith("make demo-router")]
    documented = set(re.findall(r"--[a-z][a-z-]+", usage))
    result = CliRunner().invoke(app, ["demo-router", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert documented
    assert documented <= set(re.findall(r"--[a-z][a-z-]+", result.output))
    # The faults it states are the demo's.
    words = " ".join(readme.split())
    assert f"own answering after {MODEL_MS:g} ms" in words
    assert f"after {SLOW_MS:g} ms and answering {FAILURE_RATE * 100:g} % of its requests with a 500" in words
