"""In-database aggregation: metric definitions -> one SQL query per experiment -> sufficient statistics.

Runs on SQLite, PostgreSQL, DuckDB and Spark with the same statistics; raw rows never come to Python.
The warehouses get the same statement in their SQL (``aggregation_sql``). See docs/aggregation.md
and docs/scale.md.
"""

from splitlab.analysis.sql.aggregate import (
    CellKey,
    ExperimentAggregates,
    Statistic,
    aggregate_experiment,
    aggregation_sql,
    unit_values,
)
from splitlab.analysis.sql.quantile import QuantileStatistic
from splitlab.analysis.sql.query import AggregationQuery, build_query
from splitlab.analysis.sql.source import EventTable, ExposureTable, Source

__all__ = [
    "AggregationQuery",
    "CellKey",
    "EventTable",
    "ExperimentAggregates",
    "ExposureTable",
    "QuantileStatistic",
    "Source",
    "Statistic",
    "aggregate_experiment",
    "aggregation_sql",
    "build_query",
    "unit_values",
]
