"""Bandit state: atomic increments that lose nothing under concurrent writers."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable

import pytest

from splitlab.storage import BanditReward, NotFoundError, Store


def test_add_accumulates_sufficient_statistics(store: Store, experiment: str) -> None:
    first = store.bandits.add(experiment_key=experiment, arm="control", n=3, sum=2.0, sum_sq=2.0)
    assert (first.n, first.sum, first.sum_sq) == (3, 2.0, 2.0)
    second = store.bandits.add(experiment_key=experiment, arm="control", n=2, sum=1.5, sum_sq=1.25)
    assert (second.n, second.sum, second.sum_sq) == (5, 3.5, 3.25)
    assert second.updated_at >= first.updated_at
    store.bandits.add(experiment_key=experiment, arm="treatment", n=1, sum=-1.0, sum_sq=1.0)
    state = store.bandits.get(experiment_key=experiment)
    assert list(state) == ["control", "treatment"]
    assert state["control"] == second
    assert (state["treatment"].n, state["treatment"].sum) == (1, -1.0)
    assert store.bandits.get(experiment_key="nope") == {}


def test_rewards_are_recorded_once_per_unit(store: Store, experiment: str) -> None:
    batch = [
        BanditReward("u1", "control", "control@0", 1.0),
        BanditReward("u2", "treatment", "treatment@0", 0.0),
        BanditReward("u1", "control", "control@0", 1.0),  # repeated within the batch: counted once
    ]
    new = store.bandits.add_rewards(experiment_key=experiment, bucket_version=1, rewards=batch)
    assert [r.unit_id for r in new] == ["u1", "u2"]
    again = [BanditReward("u1", "control", "control@0", 0.0), BanditReward("u3", "control", "control@0", 1.0)]
    assert [
        r.unit_id for r in store.bandits.add_rewards(experiment_key=experiment, bucket_version=1, rewards=again)
    ] == ["u3"]
    state = store.bandits.get(experiment_key=experiment)
    assert (state["control@0"].n, state["control@0"].sum) == (2, 2.0)  # u1's first reward kept
    assert (state["treatment@0"].n, state["treatment@0"].sum) == (1, 0.0)
    rerandomized = store.bandits.add_rewards(experiment_key=experiment, bucket_version=2, rewards=again[:1])
    assert len(rerandomized) == 1  # a new bucket version is a new assignment: its reward counts
    with pytest.raises(NotFoundError):
        store.bandits.add_rewards(experiment_key="nope", bucket_version=1, rewards=batch)
    with pytest.raises(ValueError, match="reward of unit 'u9'"):
        store.bandits.add_rewards(
            experiment_key=experiment, bucket_version=1, rewards=[BanditReward("u9", "a", "a@0", float("nan"))]
        )
    assert store.bandits.get(experiment_key=experiment)["control@0"].n == 3  # the refused batches added nothing


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n": -1}, ValueError, "n == -1, must be an integer >= 0"),
        ({"n": 1.5}, ValueError, "n == 1.5"),
        ({"sum": float("inf")}, ValueError, "sum == inf, must be finite"),
        ({"sum_sq": -0.5}, ValueError, "sum_sq == -0.5, must be >= 0"),
        ({"sum": "3"}, TypeError, "sum == '3', must be a real number"),
        ({"arm": ""}, ValueError, "arm"),
        ({"experiment_key": "nope"}, NotFoundError, "'nope' does not exist"),
    ],
)
def test_bad_updates_are_refused(
    store: Store, experiment: str, kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    arguments: dict[str, object] = {"experiment_key": experiment, "arm": "control", "n": 1, "sum": 1.0, "sum_sq": 1.0}
    with pytest.raises(error, match=match):
        store.bandits.add(**(arguments | kwargs))  # type: ignore[arg-type]
    assert store.bandits.get(experiment_key=experiment) == {}


def test_concurrent_threads_lose_no_update(store: Store, experiment: str) -> None:
    threads_count, adds = 4, 40
    barrier = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def work(reward: float) -> None:
        barrier.wait()
        try:
            for _ in range(adds):
                store.bandits.add(experiment_key=experiment, arm="control", n=1, sum=reward, sum_sq=reward * reward)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(float(t + 1),)) for t in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    arm = store.bandits.get(experiment_key=experiment)["control"]
    assert arm.n == threads_count * adds
    assert arm.sum == adds * (1 + 2 + 3 + 4)
    assert arm.sum_sq == adds * (1 + 4 + 9 + 16)


def test_two_processes_lose_no_update(
    database_url: str,
    store: Store,
    experiment: str,
    run_python: Callable[..., list[subprocess.CompletedProcess[str]]],
    start_together: Callable[[int, int], str],
) -> None:
    adds = 100
    code = (
        "from splitlab.storage import open_store\n"
        f"store = open_store({database_url!r})\n"
        "{barrier}"
        f"for _ in range({adds}):\n"
        f"    store.bandits.add(experiment_key={experiment!r}, arm='control', n=1,"
        " sum={reward}, sum_sq={reward} ** 2)\n"
        "store.close()\n"
    )
    results = run_python(*(code.format(barrier=start_together(2, i), reward=float(i + 2)) for i in range(2)))
    for result in results:
        assert result.returncode == 0, result.stderr
    arm = store.bandits.get(experiment_key=experiment)["control"]
    assert (arm.n, arm.sum, arm.sum_sq) == (2 * adds, adds * (2.0 + 3.0), adds * (4.0 + 9.0))
