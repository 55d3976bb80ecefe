"""Metric definitions by name, as JSON, so the analysis of a stored experiment needs no files."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select

from splitlab.storage._sql import Transactions, encode_json, now, upsert
from splitlab.storage.tables import metric_definitions

__all__ = ["MetricRepository"]


class MetricRepository:
    """Metric definitions (the JSON form of ``splitlab.specs.MetricDefinition``), replaced whole on update."""

    def __init__(self, tx: Transactions) -> None:
        self._tx = tx

    def put_many(self, *, definitions: Iterable[Mapping[str, Any]], actor: str) -> int:
        """Insert or replace definitions (each must have a ``name``); returns how many were written."""
        rows = []
        stamp = now()
        for definition in definitions:
            body = dict(definition)
            name = body.get("name")
            if not isinstance(name, str) or not name:
                msg = f"every definition needs a non-empty 'name', got {name!r}"
                raise ValueError(msg)
            encode_json(body, name=f"definition {name!r}")
            rows.append({"name": name, "definition": body, "updated_at": stamp, "updated_by": actor})
        if not rows:
            return 0
        statement = upsert(metric_definitions, self._tx.dialect)
        statement = statement.on_conflict_do_update(
            index_elements=[metric_definitions.c.name],
            set_={
                "definition": statement.excluded.definition,
                "updated_at": statement.excluded.updated_at,
                "updated_by": statement.excluded.updated_by,
            },
        )
        with self._tx.write() as conn:
            conn.execute(statement, rows)
        return len(rows)

    def get_many(self, *, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored definitions among ``names`` (missing names are simply absent)."""
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return {}
        with self._tx.read() as conn:
            rows = conn.execute(select(metric_definitions).where(metric_definitions.c.name.in_(wanted))).all()
        return {row.name: dict(row.definition) for row in rows}

    def list(self) -> dict[str, dict[str, Any]]:
        """Every stored definition by name."""
        with self._tx.read() as conn:
            rows = conn.execute(select(metric_definitions).order_by(metric_definitions.c.name)).all()
        return {row.name: dict(row.definition) for row in rows}
