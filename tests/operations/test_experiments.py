"""Experiment use cases not covered elsewhere: how long an experiment has run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from splitlab.operations.experiments import apply_spec, change_status, days_running, history
from splitlab.specs import load_spec
from splitlab.storage import open_store


def test_days_running_counts_running_spells_only(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        apply_spec(store, load_spec("{key: spells, variants: [{key: a}, {key: b}]}"), actor="ana")
        assert days_running(store, "spells") is None  # a draft never ran
        change_status(store, key="spells", action="start", actor="ana")
        change_status(store, key="spells", action="pause", actor="ana")
        change_status(store, key="spells", action="start", actor="ana")
        versions = history(store, "spells")
        started, paused, resumed = (v.changed_at for v in versions[1:4])
        later = resumed + timedelta(days=2)
        expected = ((paused - started) + (later - resumed)).total_seconds() / 86_400
        assert days_running(store, "spells", now=later) == pytest.approx(expected)
        change_status(store, key="spells", action="stop", actor="ana")
        stopped = history(store, "spells")[-1].changed_at
        ran = ((paused - started) + (stopped - resumed)).total_seconds() / 86_400
        assert days_running(store, "spells", now=datetime.now(UTC) + timedelta(days=30)) == pytest.approx(ran)
