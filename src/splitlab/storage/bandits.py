"""Bandit state: running sufficient statistics per arm, updated by atomic increments."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import DBAPIError

from splitlab.storage._sql import Transactions, now, upsert
from splitlab.storage.errors import NotFoundError, StorageError
from splitlab.storage.records import BanditArm, BanditReward, WindowCounting, check_finite, check_text
from splitlab.storage.tables import bandit_rewards, bandit_state, experiments

__all__ = ["BanditStateRepository", "NonFiniteTotalsError"]

_OVERFLOW_SQLSTATE = "22003"
"""PostgreSQL's ``numeric_value_out_of_range``: what ``sum + excluded.sum`` raises when it overflows."""


class NonFiniteTotalsError(StorageError, ValueError):
    """An increment refused because it would leave an arm's ``sum`` or ``sum_sq`` infinite (or NaN).

    Statistics on an infinite total are useless for good (every later increment keeps it
    infinite), so the transaction that would write one is rolled back: nothing of it is stored.

    Attributes:
        experiment_key: The experiment.
        arm: The totals row.
    """

    def __init__(self, experiment_key: str, arm: str, detail: str) -> None:
        self.experiment_key = experiment_key
        self.arm = arm
        where = f"arm {arm!r} of experiment {experiment_key!r}"
        super().__init__(f"the totals of {where} would not be finite ({detail}); nothing was written")


class BanditStateRepository:
    """Per-arm ``n``, ``sum`` and ``sum_sq`` of rewards, as addable sufficient statistics.

    :meth:`add` is one ``INSERT … ON CONFLICT DO UPDATE SET n = n + excluded.n, …`` statement,
    so the database applies concurrent increments one after the other: two processes adding at
    once lose nothing, and no read-modify-write happens in Python. :meth:`add_rewards` records
    rewards at most once per unit and adds only the new ones, in one transaction.

    Neither ever commits a ``sum`` or ``sum_sq`` that is not finite: each increment returns the
    arm's new totals, and one that overflowed (to infinity on SQLite, an error on PostgreSQL)
    rolls its transaction back with :class:`NonFiniteTotalsError`, whoever the caller.
    """

    def __init__(self, tx: Transactions) -> None:
        self._tx = tx

    def add(self, *, experiment_key: str, arm: str, n: int, sum: float, sum_sq: float) -> BanditArm:
        """Add observations to an arm (creating it at zero first); returns the arm's new totals.

        Args:
            experiment_key: The experiment.
            arm: The arm (variant) key.
            n: Number of new observations (>= 0).
            sum: Sum of their rewards.
            sum_sq: Sum of their squared rewards (>= 0).

        Raises:
            NotFoundError: No experiment ``experiment_key``.
            NonFiniteTotalsError: The arm's new totals would not be finite; nothing was written.
            ValueError: A negative ``n`` or ``sum_sq``, or a non-finite sum.
        """
        check_text(arm, name="arm")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            msg = f"n == {n!r}, must be an integer >= 0"
            raise ValueError(msg)
        total = check_finite(sum, name="sum")
        total_sq = check_finite(sum_sq, name="sum_sq")
        if total_sq < 0:
            msg = f"sum_sq == {sum_sq!r}, must be >= 0"
            raise ValueError(msg)
        with self._tx.write() as conn:
            _check_experiment(conn, experiment_key)
            row = _add_totals(
                conn,
                self._tx.dialect,
                experiment_key=experiment_key,
                arm=arm,
                n=n,
                sum=total,
                sum_sq=total_sq,
                at=now(),
            )
        return BanditArm(
            experiment_key=row.experiment_key,
            arm=row.arm,
            n=int(row.n),
            sum=float(row.sum),
            sum_sq=float(row.sum_sq),
            updated_at=row.updated_at,
        )

    def add_rewards(
        self,
        *,
        experiment_key: str,
        bucket_version: int,
        rewards: Sequence[BanditReward],
        windows: WindowCounting | None = None,
    ) -> list[BanditReward]:
        """Record each unit's reward once and add the new ones to their arms' totals, all or nothing.

        A unit that already has a reward under ``bucket_version`` (or appears twice in the batch)
        keeps its first one: re-sending a batch adds nothing, so clients may retry freely.

        Args:
            experiment_key: The experiment.
            bucket_version: The bucket version the units' assignments were made under.
            rewards: One reward per unit; ``arm`` is the totals row it adds to.
            windows: Also count the new rewards per window (see :class:`WindowCounting`), in the same
                transaction: a crash cannot leave a reward stored but uncounted.

        Returns:
            The rewards that were new, in the order given.

        Raises:
            NotFoundError: No experiment ``experiment_key``.
            NonFiniteTotalsError: An arm's new totals would not be finite; nothing was written.
            ValueError: An empty unit id or arm, or a reward that is not finite.
        """
        first: dict[str, BanditReward] = {}
        for reward in rewards:
            check_text(reward.unit_id, name="unit_id")
            check_text(reward.arm, name=f"arm of unit {reward.unit_id!r}")
            check_text(reward.variant, name=f"variant of unit {reward.unit_id!r}")
            check_finite(reward.reward, name=f"reward of unit {reward.unit_id!r}")
            first.setdefault(reward.unit_id, reward)
        if not first:
            return []
        stamp = now()
        rows = [
            {
                "experiment_key": experiment_key,
                "bucket_version": bucket_version,
                "unit_id": r.unit_id,
                "arm": r.variant,
                "reward": float(r.reward),
                "recorded_at": stamp,
            }
            for r in sorted(first.values(), key=lambda r: r.unit_id)  # key order: concurrent batches cannot deadlock
        ]
        insert = (
            upsert(bandit_rewards, self._tx.dialect)
            .on_conflict_do_nothing(
                index_elements=[
                    bandit_rewards.c.experiment_key,
                    bandit_rewards.c.bucket_version,
                    bandit_rewards.c.unit_id,
                ]
            )
            .returning(bandit_rewards.c.unit_id)
        )
        with self._tx.write() as conn:
            _check_experiment(conn, experiment_key)
            new_units = set(conn.execute(insert, rows).scalars())
            totals: dict[str, list[float]] = {}
            for unit_id in new_units:
                reward = first[unit_id]
                total = totals.setdefault(reward.arm, [0, 0.0, 0.0])
                total[0] += 1
                total[1] += reward.reward
                total[2] += reward.reward * reward.reward
            for arm, (n, total_sum, total_sq) in sorted(totals.items()):
                _add_totals(
                    conn,
                    self._tx.dialect,
                    experiment_key=experiment_key,
                    arm=arm,
                    n=int(n),
                    sum=total_sum,
                    sum_sq=total_sq,
                    at=stamp,
                )
            if windows is not None:
                _count_windows(conn, self._tx.dialect, experiment_key, windows, new_units, stamp)
        return [r for r in rewards if r.unit_id in new_units and first[r.unit_id] is r]

    def get(self, *, experiment_key: str) -> dict[str, BanditArm]:
        """Every arm's totals, by arm."""
        query = select(bandit_state).where(bandit_state.c.experiment_key == experiment_key).order_by(bandit_state.c.arm)
        with self._tx.read() as conn:
            return {
                r.arm: BanditArm(
                    experiment_key=r.experiment_key,
                    arm=r.arm,
                    n=int(r.n),
                    sum=float(r.sum),
                    sum_sq=float(r.sum_sq),
                    updated_at=r.updated_at,
                )
                for r in conn.execute(query)
            }


def _increment(dialect: str, *, experiment_key: str, arm: str, n: int, sum: float, sum_sq: float, at: datetime) -> Any:
    """The atomic ``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n, ...`` of one arm's totals."""
    insert = upsert(bandit_state, dialect).values(
        experiment_key=experiment_key, arm=arm, n=n, sum=sum, sum_sq=sum_sq, updated_at=at
    )
    return insert.on_conflict_do_update(
        index_elements=[bandit_state.c.experiment_key, bandit_state.c.arm],
        set_={
            "n": bandit_state.c.n + insert.excluded.n,
            "sum": bandit_state.c.sum + insert.excluded.sum,
            "sum_sq": bandit_state.c.sum_sq + insert.excluded.sum_sq,
            "updated_at": insert.excluded.updated_at,
        },
    )


def _add_totals(
    conn: Connection, dialect: str, *, experiment_key: str, arm: str, n: int, sum: float, sum_sq: float, at: datetime
) -> Row[Any]:
    """One arm's atomic increment; NonFiniteTotalsError (the caller's transaction rolls back) if its totals overflow."""
    adding = f"adding sum == {sum!r}, sum_sq == {sum_sq!r}"
    if not (math.isfinite(sum) and math.isfinite(sum_sq)):  # a batch's own totals overflowed
        raise NonFiniteTotalsError(experiment_key, arm, adding)
    statement = _increment(dialect, experiment_key=experiment_key, arm=arm, n=n, sum=sum, sum_sq=sum_sq, at=at)
    try:
        row = conn.execute(statement.returning(*bandit_state.c)).one()
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != _OVERFLOW_SQLSTATE:
            raise
        raise NonFiniteTotalsError(experiment_key, arm, f"{adding} overflows") from None
    if not (math.isfinite(row.sum) and math.isfinite(row.sum_sq)):
        raise NonFiniteTotalsError(experiment_key, arm, f"sum == {row.sum!r}, sum_sq == {row.sum_sq!r}")
    return row


def _count_windows(
    conn: Connection, dialect: str, experiment_key: str, windows: WindowCounting, new_units: set[str], at: datetime
) -> None:
    """Add the new units to their windows' counters; the increment that fills a window starts the next."""
    added = Counter(windows.window_of[unit] for unit in new_units)
    for window, count in sorted(added.items()):
        counter = _increment(
            dialect, experiment_key=experiment_key, arm=windows.count_arm.format(window), n=count, sum=0.0,
            sum_sq=0.0, at=at,
        ).returning(bandit_state.c.n)  # fmt: skip
        after = int(conn.execute(counter).scalar_one())
        if after - count < windows.size <= after:  # one atomic increment: exactly one writer crosses the size
            conn.execute(
                _increment(
                    dialect, experiment_key=experiment_key, arm=windows.start_arm.format(window + 1), n=1,
                    sum=windows.closed_at, sum_sq=0.0, at=at,
                )
            )  # fmt: skip


def _check_experiment(conn: Connection, experiment_key: str) -> None:
    if conn.execute(select(experiments.c.key).where(experiments.c.key == experiment_key)).first() is None:
        msg = f"experiment {experiment_key!r} does not exist"
        raise NotFoundError(msg)
