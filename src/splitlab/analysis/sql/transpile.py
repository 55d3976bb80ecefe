"""The aggregation query in a warehouse's SQL: DuckDB's statement, translated by sqlglot.

There is one query builder (:func:`splitlab.analysis.sql.build_query`); a warehouse dialect writes
the statement as it would for DuckDB and this module translates the whole tree with sqlglot
(quoting, types, ``FILTER`` clauses, integer division). Two things sqlglot cannot know are done
here, on the tree:

* DuckDB's ``epoch_us(t)`` (a time as integer microseconds since 1970-01-01 UTC, which makes every
  attribution window an integer comparison) becomes each engine's exact equivalent;
* ``AS MATERIALIZED`` on the CTEs (a hint for PostgreSQL and DuckDB) is dropped: the warehouses plan
  CTEs themselves and some (Spark) refuse the keyword.

References:
    sqlglot, https://github.com/tobymao/sqlglot: the SQL parser and transpiler.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from splitlab.analysis.sql._dialect import WAREHOUSE_DIALECTS

if TYPE_CHECKING:
    from sqlglot import exp

__all__ = ["to_dialect"]

# Each warehouse's time -> integer microseconds, with ``__t`` standing for the time expression.
# Trino has no microsecond epoch function: its double seconds times 1e6 are exact to well under half a
# microsecond for any time before the year 2255 (2^53 microseconds), so ROUND gives the integer.
_MICROS = {
    "spark": "UNIX_MICROS(CAST(__t AS TIMESTAMP))",
    "databricks": "UNIX_MICROS(CAST(__t AS TIMESTAMP))",
    "bigquery": "UNIX_MICROS(CAST(__t AS TIMESTAMP))",
    "snowflake": "DATE_PART(EPOCH_MICROSECOND, CAST(__t AS TIMESTAMP_TZ))",
    "trino": "CAST(ROUND(TO_UNIXTIME(__t) * 1000000) AS BIGINT)",
}


@cache
def _micros_template(dialect: str) -> exp.Expr:
    import sqlglot

    return sqlglot.parse_one(_MICROS[dialect], read=dialect)


def to_dialect(sql: str, dialect: str) -> str:
    """Translate an aggregation statement written for DuckDB into ``dialect``'s SQL.

    Args:
        sql: the statement as :func:`~splitlab.analysis.sql.build_query` writes it for DuckDB.
        dialect: one of ``spark``, ``databricks``, ``bigquery``, ``snowflake``, ``trino``.

    Returns:
        The statement in that dialect, pretty-printed (stable, so it can be kept as a snapshot).

    Raises:
        ValueError: an unknown dialect, or a construct sqlglot cannot write in it.
    """
    if dialect not in WAREHOUSE_DIALECTS:
        msg = f"dialect == {dialect!r}, must be one of {', '.join(WAREHOUSE_DIALECTS)}"
        raise ValueError(msg)
    import sqlglot
    from sqlglot import exp

    template = _micros_template(dialect)

    def rewrite(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Anonymous) and node.name.lower() == "epoch_us":
            argument: exp.Expr = node.expressions[0]
            micros: exp.Expr = template.copy().transform(
                lambda inner: argument.copy() if isinstance(inner, exp.Column) and inner.name == "__t" else inner
            )
            return micros
        if isinstance(node, exp.CTE) and node.args.get("materialized") is not None:
            node.set("materialized", None)
        return node

    tree = sqlglot.parse_one(sql, read="duckdb").transform(rewrite)
    try:
        return str(tree.sql(dialect=dialect, pretty=True, unsupported_level=sqlglot.ErrorLevel.RAISE))
    except sqlglot.errors.UnsupportedError as error:
        msg = f"the aggregation query cannot be written in {dialect}'s SQL: {error}"
        raise ValueError(msg) from error
