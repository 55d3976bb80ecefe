"""Bandit state: running sufficient statistics per arm, updated by atomic increments."""

from __future__ import annotations

from sqlalchemy import select

from splitlab.storage._sql import Transactions, now, upsert
from splitlab.storage.errors import NotFoundError
from splitlab.storage.records import BanditArm, check_finite, check_text
from splitlab.storage.tables import bandit_state, experiments

__all__ = ["BanditStateRepository"]


class BanditStateRepository:
    """Per-arm ``n``, ``sum`` and ``sum_sq`` of rewards, as addable sufficient statistics.

    :meth:`add` is one ``INSERT … ON CONFLICT DO UPDATE SET n = n + excluded.n, …`` statement,
    so the database applies concurrent increments one after the other: two processes adding at
    once lose nothing, and no read-modify-write happens in Python.
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
        insert = upsert(bandit_state, self._tx.dialect).values(
            experiment_key=experiment_key, arm=arm, n=n, sum=total, sum_sq=total_sq, updated_at=now()
        )
        statement = insert.on_conflict_do_update(
            index_elements=[bandit_state.c.experiment_key, bandit_state.c.arm],
            set_={
                "n": bandit_state.c.n + insert.excluded.n,
                "sum": bandit_state.c.sum + insert.excluded.sum,
                "sum_sq": bandit_state.c.sum_sq + insert.excluded.sum_sq,
                "updated_at": insert.excluded.updated_at,
            },
        ).returning(*bandit_state.c)
        with self._tx.write() as conn:
            if conn.execute(select(experiments.c.key).where(experiments.c.key == experiment_key)).first() is None:
                msg = f"experiment {experiment_key!r} does not exist"
                raise NotFoundError(msg)
            row = conn.execute(statement).one()
        return BanditArm(
            experiment_key=row.experiment_key,
            arm=row.arm,
            n=int(row.n),
            sum=float(row.sum),
            sum_sq=float(row.sum_sq),
            updated_at=row.updated_at,
        )

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
