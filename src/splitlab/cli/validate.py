"""``splitlab validate``: the calibration suite, or A/A re-randomisations on an experiment's pre-period data."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from splitlab.cli._common import show_rows, user_errors
from splitlab.cli._store import DatabaseOption


def _number(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def _reference(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        msg = f"--reference-date {value!r} must be an ISO date or time, e.g. 2024-03-01 or 2024-03-01T12:00"
        raise ValueError(msg) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def validate(
    quick: Annotated[
        bool, typer.Option("--quick", help="CI sizes: ~10-20 s, still fails a test with FPR 0.10.")
    ] = False,
    from_store: Annotated[
        str | None,
        typer.Option("--from-store", metavar="KEY", help="A/A re-randomisations on experiment KEY's pre-period data."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of every random draw.")] = 0,
    reps: Annotated[
        int | None,
        typer.Option(help="Replications per A/A line (default 1,000 quick, 5,000 full, 500 with --from-store)."),
    ] = None,
    days: Annotated[float, typer.Option(help="--from-store: days of the pre-period window.")] = 14.0,
    reference_date: Annotated[
        str | None,
        typer.Option(
            "--reference-date",
            help="--from-store: end of the window (ISO, UTC unless given); default the experiment's first start, "
            "else now.",
        ),
    ] = None,
    database: DatabaseOption = None,
) -> None:
    """Run splitlab's calibration suite and print one line per check with its error bar and a verdict.

    Each line gives the simulated rate (A/A false positives per test, per sequential method under
    peeking, CI coverage, power at the planned sample, SRM false alarms) or mean (bandit regret),
    its Monte Carlo standard error, and the acceptance band derived from that error: within z SE
    of the nominal rate, or at most nominal + z SE for tests allowed to be conservative, with z
    set so that a calibrated suite fails any line with a chance of at most 1 %.

    With --from-store KEY, the experiment's metrics are tested on A/A re-randomisations of the
    units active in the --days before it started (or before now if it never did).

    Exit status: 0 when every line passes (or is skipped for thin data), 1 when a line fails,
    2 on a usage or store error.
    """
    import json

    with user_errors():
        if from_store is None:
            from splitlab.operations.validation import validate as run_suite

            report = run_suite(quick=quick, reps=reps, seed=seed)
        else:
            from splitlab.operations.validation import validate_store
            from splitlab.storage import open_store

            when = _reference(reference_date)
            with open_store(database) as store:
                report = validate_store(store, from_store, reps=reps, seed=seed, days=days, reference_date=when)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print(report)
    if not report.passed:
        raise typer.Exit(code=1)


def _print(report: Any) -> None:
    headers = ["verdict", "group", "check", "estimate", "MC SE", "target", "band", "reps"]
    body = [
        [
            line.verdict,
            line.group,
            line.check,
            _number(line.estimate),
            _number(line.standard_error),
            _number(line.target),
            f"[{_number(line.low)}, {_number(line.high)}]",
            f"{line.reps:,}",
        ]
        for line in report.lines
    ]
    for note in report.notes:
        typer.echo(note)
    show_rows(headers, body, empty="no checks")
    counts = {v: sum(line.verdict == v for line in report.lines) for v in ("PASS", "FAIL", "SKIP")}
    summary = f"{len(report.lines)} lines: {counts['PASS']} PASS, {counts['FAIL']} FAIL"
    summary += f", {counts['SKIP']} SKIP" if counts["SKIP"] else ""
    typer.echo(f"{summary} (seed {report.seed}, {report.seconds:.1f} s)")
    for line in report.lines:
        if line.verdict != "PASS" and line.note:
            typer.echo(f"{line.verdict} {line.check}: {line.rule}; {line.note}")
