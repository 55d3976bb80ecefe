"""Apache Spark for data past one machine: the session, and running the aggregation query on it.

The aggregation runs on Spark as on the embedded engines: :func:`splitlab.analysis.sql.aggregate_experiment`
takes a ``SparkSession`` as its connection and runs the same query, translated to Spark SQL
(:mod:`splitlab.analysis.sql.transpile`); only the aggregated rows reach the driver. pyspark is an
optional dependency (``pip install 'splitlab[spark]'``, Java 17).
"""

from __future__ import annotations

import os
import sys
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["LOCAL_MASTER", "run_query", "spark_session"]

LOCAL_MASTER = "local[*]"
"""Spark in this process's JVM on every core: what ``database: spark`` means in a source file."""


def spark_session(master: str | None = None, *, app_name: str = "splitlab") -> SparkSession:
    """The running Spark session, or a new one on ``master``.

    Spark keeps one session per process: a second call returns the first session (whatever its
    master), so tests and a notebook share one JVM.

    Args:
        master: ``local[*]``, ``local[N]`` or a cluster URL (``spark://host:7077``, ``yarn``);
            default ``SPLITLAB_SPARK_MASTER`` or ``local[*]``.
        app_name: the application's name in Spark's UI and logs.

    Raises:
        ImportError: pyspark is not installed (the message says how to install it).
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as error:
        msg = "the Spark engine needs pyspark: pip install 'splitlab[spark]' (and Java 17)"
        raise ImportError(msg) from error
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    master = master or os.environ.get("SPLITLAB_SPARK_MASTER", LOCAL_MASTER)
    if master.startswith("local"):
        # In-process Spark talks to itself only: bind to loopback instead of guessing a public address.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Spark's Python workers (for rows sent from Python) default to the `python3` on PATH, which may be
        # another interpreter than this one, without this environment's packages.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master(master)
    session = (
        builder.appName(app_name)
        # Times are compared as UTC microseconds; a UTC session also shows them as the store does.
        .config("spark.sql.session.timeZone", "UTC")
        # One experiment's cells are a few thousand rows: Spark's default of 200 shuffle partitions
        # would spend more time scheduling empty tasks than aggregating on a small cluster.
        .config("spark.sql.shuffle.partitions", os.environ.get("SPLITLAB_SPARK_SHUFFLE_PARTITIONS", "8"))
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def run_query(session: SparkSession, sql: str) -> list[dict[str, Any]]:
    """Run an aggregation statement on Spark, computing each CTE that is read twice only once.

    Spark inlines a CTE at every reference: the aggregation's ``units`` and per-unit CTEs, read by
    the capping thresholds, the cells and the quantile bands, would be recomputed from the raw tables
    for each (the events joined again per reader; benchmarks/scale_bench.py). So the statement is
    split at its CTEs: each one becomes a temporary view, and one read more than once is
    materialised first (``localCheckpoint``: computed once, lineage cut); the final ``SELECT`` reads
    the views. Views and cached blocks are dropped afterwards. Only the result rows reach the driver.
    """
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(sql, read="spark")
    ctes = list(tree.ctes) if isinstance(tree, exp.Query) else []
    if not ctes:
        return [row.asDict() for row in session.sql(sql).collect()]
    for cte in ctes:
        cte.pop()  # the CTE leaves the statement: it becomes a view (an emptied WITH is not written)
    suffix = uuid.uuid4().hex[:12]
    renamed: dict[str, str] = {}

    def rename(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Table) and not node.args.get("db") and node.name in renamed:
            return exp.to_table(renamed[node.name]).as_(node.alias_or_name)
        return node

    reads = {cte.alias: 0 for cte in ctes}
    for node in [*(cte.this for cte in ctes), tree]:
        for table in node.find_all(exp.Table):
            if not table.args.get("db") and table.name in reads:
                reads[table.name] += 1
    frames = []
    try:
        for cte in ctes:
            body = cte.this.transform(rename)
            frame = session.sql(body.sql(dialect="spark"))
            if reads[cte.alias] > 1:
                frame = frame.localCheckpoint(eager=True)
                frames.append(frame)
            view = f"splitlab_{cte.alias}_{suffix}"
            frame.createOrReplaceTempView(view)
            renamed[cte.alias] = view
        final = tree.transform(rename)
        return [row.asDict() for row in session.sql(final.sql(dialect="spark")).collect()]
    finally:
        for view in renamed.values():
            session.catalog.dropTempView(view)
        for frame in frames:
            frame.unpersist()
