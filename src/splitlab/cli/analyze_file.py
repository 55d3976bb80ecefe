"""``splitlab analyze-file``: analyse a CSV or Parquet file of unit-level rows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from splitlab.cli._common import show, split_pair, user_errors


def read_table(path: Path) -> object:
    """Read a CSV or Parquet file into a pandas frame."""
    import pandas as pd

    if not path.exists():
        msg = f"PATH {str(path)!r} does not exist"
        raise FileNotFoundError(msg)
    suffixes = "".join(path.suffixes).lower()
    if ".parquet" in suffixes or suffixes.endswith(".pq"):
        return pd.read_parquet(path)
    if ".csv" in suffixes or ".tsv" in suffixes or suffixes.endswith(".txt"):
        return pd.read_csv(path, sep="\t" if ".tsv" in suffixes else ",")
    msg = f"PATH {str(path)!r}: unknown file type; use .csv, .csv.gz, .tsv or .parquet"
    raise ValueError(msg)


def _metric_definition(value: str) -> str:
    body, _, kind = value.rpartition(":")
    if not body or kind not in ("proportion", "mean", "ratio", "auto"):
        msg = f"--metric value {value!r} must be COLUMN:proportion, COLUMN:mean or NUM/DEN:ratio"
        raise ValueError(msg)
    if kind == "ratio" and "/" not in body:
        msg = f"--metric value {value!r}: a ratio needs NUM/DEN"
        raise ValueError(msg)
    if kind == "auto":
        return body
    return value


def _covariate(value: str) -> str | tuple[str, str]:
    if "/" in value:
        numerator, _, denominator = value.partition("/")
        return numerator, denominator
    return value


def analyze_file(
    path: Annotated[Path, typer.Argument(help="CSV (.csv, .csv.gz, .tsv) or Parquet file, one row per unit.")],
    metric: Annotated[
        list[str],
        typer.Option(
            "--metric",
            "-m",
            help="NAME=COLUMN:proportion, NAME=COLUMN:mean or NAME=NUM/DEN:ratio (repeat for several).",
        ),
    ],
    variant: Annotated[str, typer.Option(help="Column with each unit's variant.")] = "variant",
    control: Annotated[str | None, typer.Option(help="Control's label (default: first in sorted order).")] = None,
    covariate: Annotated[
        list[str] | None,
        typer.Option(help="NAME=COLUMN (or NAME=NUM/DEN for a ratio): pre-exposure covariate for CUPED."),
    ] = None,
    test: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=TEST: the metric's test instead of its kind's default, e.g. mann-whitney or bootstrap "
            "(on the unit-level values), welch-t, fisher-exact."
        ),
    ] = None,
    alpha: Annotated[float, typer.Option(help="Significance level.")] = 0.05,
    alternative: Annotated[str, typer.Option(help="two-sided, greater or less.")] = "two-sided",
    relative_ci: Annotated[str, typer.Option(help="Relative CI method: delta or log.")] = "delta",
    weight: Annotated[
        list[str] | None, typer.Option(help="LABEL=SHARE configured traffic share for the SRM check (repeat).")
    ] = None,
    correction: Annotated[
        str,
        typer.Option(
            help="Correction across treatments with 3+ variants: holm, bonferroni, hochberg, "
            "benjamini-hochberg, benjamini-yekutieli, none."
        ),
    ] = "holm",
    sequential: Annotated[
        str | None,
        typer.Option(help="Also monitor sequentially: msprt (always-valid p-value and CI), gst-obf or gst-pocock."),
    ] = None,
    planned_n: Annotated[
        float | None, typer.Option(help="Units planned in all variants together (required with --sequential).")
    ] = None,
    time_column: Annotated[
        str | None, typer.Option(help="Column ordering units in time (e.g. exposure day): one look per value.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Analyse an A/B test from a file of unit-level rows: SRM check, tests, CUPED, chance to win."""
    from splitlab.analysis import analyze

    with user_errors():
        metrics = {}
        for item in metric:
            name, definition = split_pair("--metric", item)
            metrics[name] = _metric_definition(definition)
        covariates = {}
        for item in covariate or []:
            name, column = split_pair("--covariate", item)
            covariates[name] = _covariate(column)
        tests = dict(split_pair("--test", item) for item in test or [])
        weights = {}
        for item in weight or []:
            label, share = split_pair("--weight", item)
            try:
                weights[label] = float(share)
            except ValueError:
                msg = f"--weight {item!r}: SHARE must be a number"
                raise ValueError(msg) from None
        data = read_table(path)
        result = analyze(
            data, metrics=metrics, variant=variant, control=control, covariates=covariates or None, alpha=alpha,
            alternative=alternative, relative_ci=relative_ci, weights=weights or None, correction=correction,
            sequential=sequential, planned_n=planned_n, time_column=time_column, tests=tests,
        )  # fmt: skip
    if as_json:
        typer.echo(result.to_json())
    else:
        show(result, lambda: str(result))
