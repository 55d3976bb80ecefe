"""``splitlab analyze`` and ``splitlab status``: read out a stored experiment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from splitlab.cli._common import show, user_errors
from splitlab.cli._store import DatabaseOption

KeyArgument = Annotated[str, typer.Argument(help="The experiment key.")]
SegmentOption = Annotated[
    list[str] | None, typer.Option("--segment", help="Segment dimension (exposure attribute; repeat).")
]


def _analysis(
    key: str, database: str | None, segment: list[str] | None, *, save: bool, source: Path | None = None
) -> Any:
    from splitlab.operations.analysis import analyze as analyze_stored
    from splitlab.storage import open_store

    with open_store(database) as store:
        return analyze_stored(store, key, segments=segment, save=save, source=source)


def analyze(
    key: KeyArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print the readout as JSON.")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the readout as Markdown.")] = False,
    html: Annotated[Path | None, typer.Option(help="Also write a self-contained HTML report to this file.")] = None,
    segment: SegmentOption = None,
    save: Annotated[bool, typer.Option(help="Store the readout as a snapshot.")] = True,
    source: Annotated[
        Path | None,
        typer.Option(help="YAML mapping of your own exposure and event tables (warehouse-native, read-only)."),
    ] = None,
    database: DatabaseOption = None,
) -> None:
    """Analyse an experiment from its exposures and events: health checks, results, decision."""
    from splitlab.analysis.report import rich_readout, to_html, to_json, to_markdown, to_text

    with user_errors():
        outcome = _analysis(key, database, segment, save=save, source=source)
        readout = outcome.readout
        if html is not None:
            html.write_text(to_html(readout), encoding="utf-8")
    if as_json:
        typer.echo(to_json(readout))
    elif markdown:
        typer.echo(to_markdown(readout))
    else:
        from rich.console import Group

        show(Group(*rich_readout(readout)), lambda: to_text(readout))
    if html is not None and not as_json:
        typer.echo(f"HTML report: {html}")
    if save and not outcome.saved:
        typer.echo(f"warning: snapshot not saved ({outcome.not_saved})", err=True)
    for warning in outcome.warnings:  # e.g. the spec's export target failed; the snapshot is kept
        typer.echo(f"warning: {warning}", err=True)


def status(
    key: KeyArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    database: DatabaseOption = None,
) -> None:
    """Status, days running, traffic split configured vs actual (with SRM), sample size vs planned."""
    import json

    with user_errors():
        readout = _analysis(key, database, [], save=False).readout
    configured = ", ".join(f"{k}={w:.0%}" for k, w in readout.configured_weights.items())
    total = sum(readout.units.values())
    actual = ", ".join(f"{k}={(n / total if total else 0):.0%}" for k, n in readout.units.items())
    planned = readout.planned_units_per_variant
    sizes = ", ".join(
        f"{k}={n:,}" + (f"/{planned:,} ({n / planned:.0%})" if planned else "") for k, n in readout.units.items()
    )
    srm = readout.srm
    if as_json:
        typer.echo(json.dumps(readout.status_summary(), indent=2))
        return
    if not total:
        lines = [
            f"{key}: {readout.status}, no units exposed yet",
            f"Configured: {configured}",
            "SRM: not checked (no units)",
            "Units per variant: none yet" + (f" of {planned:,} planned per variant" if planned else ""),
        ]
    else:
        lines = [
            f"{key}: {readout.status}, {readout.days_running:g} days running",
            f"Configured: {configured} / Actual: {actual}",
            f"SRM: p = {srm.p_value:.3g}" + (" -- SAMPLE RATIO MISMATCH" if srm.flag else " (ok)"),
            f"Units per variant: {sizes}" + (" (planned per variant)" if planned else ""),
        ]
    if readout.excluded_units:
        lines.append(f"Excluded: {readout.excluded_units:,} units exposed to more than one variant")
    if len(readout.phases) > 1:
        lines.append(f"Phases: {len(readout.phases)} (SRM and effects phase by phase)")
        for phase in readout.phases:
            weights = ", ".join(f"{k}={w:.0%}" for k, w in phase.weights.items())
            counts = ", ".join(f"{k}={n:,}" for k, n in phase.units.items())
            lines.append(
                f"  {phase.phase}. from {phase.started_at:%Y-%m-%d %H:%M} UTC (v{phase.spec_version}): {weights}; "
                f"units {counts}; SRM p = {phase.srm_p_value:.3g}"
            )
    text = "\n".join(lines)
    show(text, lambda: text)
