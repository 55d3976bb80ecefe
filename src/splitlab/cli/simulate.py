"""``splitlab simulate``: synthetic traffic with known true effects, through the real assignment and store."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from splitlab.cli._common import split_pair, user_errors
from splitlab.cli._store import DatabaseOption


def _share(option: str, text: str) -> float:
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        msg = f"{option} value {text!r} must be a number or a percentage such as +3% or -0.05"
        raise ValueError(msg) from None
    return value


def parse_effects(items: list[str] | None) -> dict[str, float]:
    """``metric=+3%`` (or ``metric=0.03``) pairs as relative effects."""
    return {name: _share("--effect", value) for name, value in (split_pair("--effect", item) for item in items or [])}


def parse_segment_effects(items: list[str] | None) -> dict[str, dict[str, float]]:
    """``dimension:level=factor`` items, e.g. ``device:mobile=2``."""
    out: dict[str, dict[str, float]] = {}
    for item in items or []:
        target, factor = split_pair("--segment-effect", item)
        dimension, sep, level = target.partition(":")
        if not sep or not dimension or not level:
            msg = f"--segment-effect {item!r} must look like DIMENSION:LEVEL=FACTOR (e.g. device:mobile=2)"
            raise ValueError(msg)
        out.setdefault(dimension, {})[level] = _share("--segment-effect", factor)
    return out


def simulate(
    key: Annotated[str, typer.Argument(help="The experiment key (in the store).")],
    units: Annotated[int, typer.Option(help="Units arriving (before targeting and coverage).")] = 20_000,
    effect: Annotated[
        list[str] | None, typer.Option(help="METRIC=+3% true relative effect for every treatment (repeat).")
    ] = None,
    segment_effect: Annotated[
        list[str] | None, typer.Option(help="DIMENSION:LEVEL=FACTOR scales every effect in a segment (repeat).")
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="Force the exposed traffic split, e.g. 0.52,0.48 (plants an SRM).")
    ] = None,
    days: Annotated[float, typer.Option(help="Days over which units arrive.")] = 14.0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    database: DatabaseOption = None,
) -> None:
    """Write synthetic exposures and events with known true effects for a stored experiment."""
    from splitlab.operations.simulation import simulate_experiment
    from splitlab.storage import open_store

    with user_errors(), open_store(database) as store:
        shares = None if split is None else [_share("--split", s) for s in split.split(",")]
        summary = simulate_experiment(
            store,
            key,
            units=units,
            effects=parse_effects(effect),
            segment_effects=parse_segment_effects(segment_effect),
            split=shares,
            days=days,
            seed=seed,
        )
    data = {
        "experiment": summary.experiment_key, "units": summary.units, "exposed": summary.exposed,
        "not_enrolled": summary.not_enrolled, "dropped_exposures": summary.dropped_exposures,
        "events": summary.events, "effects": summary.effects, "start": summary.start.isoformat(), "days": summary.days,
    }  # fmt: skip
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    exposed = ", ".join(f"{k}={v:,}" for k, v in summary.exposed.items())
    planted = ", ".join(f"{k} {v:+.1%}" for k, v in summary.effects.items()) or "none (A/A)"
    typer.echo(f"{key}: {summary.units:,} units, exposed {exposed}; {summary.events:,} events; true effects: {planted}")
