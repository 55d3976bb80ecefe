"""The monitor replays looks like the vectorised cores do, and maps crossings to decisions."""

from __future__ import annotations

import numpy as np
import pytest

from splitlab.stats.frequentist import estimate
from splitlab.stats.sequential.always_valid import msprt_path
from splitlab.stats.sequential.group_sequential import DECISIONS as GST_DECISIONS
from splitlab.stats.sequential.group_sequential import sequential_decisions, spending_design
from splitlab.stats.sequential.monitor import monitor
from splitlab.stats.statistics import MeanStatistic, ProportionStatistic


def _daily_means(
    seed: int, shift: float, days: int = 10, per_day: int = 400
) -> list[tuple[MeanStatistic, MeanStatistic]]:
    rng = np.random.default_rng(seed)
    c, t = rng.normal(10.0, 3.0, (days, per_day)), rng.normal(10.0 + shift, 3.0, (days, per_day))
    looks = []
    for day in range(1, days + 1):
        a, b = c[:day].ravel(), t[:day].ravel()
        looks.append((MeanStatistic.from_values(a), MeanStatistic.from_values(b)))
    return looks


def _arrays(looks: list[tuple[MeanStatistic, MeanStatistic]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    est = [(estimate(c), estimate(t)) for c, t in looks]
    effects = np.array([t.mean - c.mean for c, t in est])
    variances = np.array([t.variance + c.variance for c, t in est])
    n = np.array([c.n + t.n for c, t in est], dtype=float)
    return effects, variances, n


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("method", ["gst-obf", "gst-pocock"])
def test_group_sequential_monitor_matches_the_vectorised_core(seed: int, method: str) -> None:
    looks = _daily_means(seed, shift=0.25 if seed % 2 else 0.0)
    planned_n = 8000.0
    result = monitor(looks, method=method, planned_n=planned_n)
    effects, variances, n = _arrays(looks)
    spending = "obrien-fleming" if method == "gst-obf" else "pocock"
    design = spending_design(list(n / planned_n), spending=spending)
    paths = sequential_decisions(effects, variances, design)
    expected = GST_DECISIONS[int(paths.decision)]
    stop = int(paths.stop_look)
    if stop < 0:
        assert result.decision == "continue"
        assert len(result.looks) == len(looks)
    else:
        assert result.stopped_at == stop + 1
        mapped = {"efficacy": "stop_efficacy", "harm": "stop_harm", "futility": "stop_futility"}[expected]
        assert result.decision == mapped


@pytest.mark.parametrize("seed", range(12))
def test_msprt_monitor_matches_the_vectorised_core(seed: int) -> None:
    looks = _daily_means(100 + seed, shift=0.3 if seed % 2 else 0.0)
    planned_n = 8000.0
    result = monitor(looks, method="msprt", planned_n=planned_n)
    effects, variances, n = _arrays(looks)
    path = msprt_path(effects, variances, n, planned_n=planned_n)
    rejected = np.flatnonzero(path.p_value <= 0.05)
    if rejected.size:
        assert result.stopped_at == rejected[0] + 1
        assert result.decision in ("stop_efficacy", "stop_harm")
        assert result.looks[rejected[0]].p_value == pytest.approx(path.p_value[rejected[0]], rel=1e-12)
        # The confidence sequence goes on after the crossing: every look, the crossing standing.
        assert len(result.looks) == len(looks)
        assert {look.decision for look in result.looks[rejected[0] :]} == {result.decision}
        assert result.looks[-1].p_value == pytest.approx(path.p_value[-1], rel=1e-12)
    else:
        assert result.decision in ("continue", "stop_futility")


def test_direction_tells_efficacy_from_harm() -> None:
    looks = [(ProportionStatistic(3000 * d, 300 * d), ProportionStatistic(3000 * d, 380 * d)) for d in range(1, 6)]
    assert monitor(looks, method="gst-obf", planned_n=30000).decision == "stop_efficacy"
    assert monitor(looks, method="gst-obf", planned_n=30000, higher_is_better=False).decision == "stop_harm"
    assert monitor(looks, method="msprt", planned_n=30000).decision == "stop_efficacy"
    assert monitor(looks, method="msprt", planned_n=30000, higher_is_better=False).decision == "stop_harm"


def test_reaching_the_planned_size_without_an_effect_stops_for_futility() -> None:
    looks = [(ProportionStatistic(1000 * d, 100 * d), ProportionStatistic(1000 * d, 101 * d)) for d in range(1, 11)]
    for method in ("msprt", "gst-obf", "gst-pocock"):
        result = monitor(looks, method=method, planned_n=20000)
        assert result.decision == "stop_futility", method
        assert result.stopped_at == 10
    early = monitor(looks[:4], method="msprt", planned_n=20000)
    assert early.decision == "continue"
    assert early.to_dict()["stopped_at"] is None


def test_degenerate_look_continues_with_an_error_code() -> None:
    looks = [(MeanStatistic(0, 0.0, 0.0), MeanStatistic(0, 0.0, 0.0)), *_daily_means(3, 0.0, days=3)]
    result = monitor(looks, method="gst-obf", planned_n=8000)
    assert result.looks[0].error_code is not None
    assert result.looks[0].decision == "continue"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "bayes"}, "method == 'bayes'"),
        ({"planned_n": 0.0}, "planned_n == 0.0"),
        ({"alpha": 1.0}, "alpha == 1.0"),
        ({"futility": True}, "futility"),
    ],
)
def test_invalid_parameters(kwargs: dict[str, object], match: str) -> None:
    options = {"method": "msprt", "planned_n": 1000.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        monitor(_daily_means(1, 0.0, days=2), **options)  # type: ignore[arg-type]
