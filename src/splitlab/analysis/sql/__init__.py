"""In-database aggregation: metric definitions -> one SQL query per experiment -> sufficient statistics.

Runs on SQLite, PostgreSQL and DuckDB with the same statistics; raw rows never come to Python.
See docs/aggregation.md.
"""

from splitlab.analysis.sql.aggregate import CellKey, ExperimentAggregates, Statistic, aggregate_experiment, unit_values
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
    "build_query",
    "unit_values",
]
