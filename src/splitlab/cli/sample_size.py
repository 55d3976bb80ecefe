"""``splitlab sample-size``: units needed per variant, and days at a given traffic."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from splitlab.cli._common import show, user_errors


def _plain(lines: list[str], durations: list[tuple[str, str]]) -> str:
    left = max(len("daily traffic"), *(len(a) for a, _ in durations))
    right = max(len("days"), *(len(b) for _, b in durations))
    rows = [("daily traffic", "days"), *durations]
    table = [f"  {a.rjust(left)}  {b.rjust(right)}" for a, b in rows]
    return "\n".join([*lines, "Duration at daily traffic (all variants together):", *table])


def sample_size(
    mde: Annotated[float, typer.Option(help="Minimum detectable effect: relative (0.10 = +10 %) unless --absolute.")],
    baseline_rate: Annotated[
        float | None, typer.Option(help="Control conversion rate, for a proportion metric (e.g. 0.15).")
    ] = None,
    baseline_mean: Annotated[float | None, typer.Option(help="Control mean, for a mean metric.")] = None,
    std: Annotated[float | None, typer.Option(help="Per-unit standard deviation, for a mean metric.")] = None,
    absolute: Annotated[bool, typer.Option("--absolute", help="The MDE is on the metric's scale.")] = False,
    power: Annotated[float, typer.Option(help="Power at the MDE.")] = 0.8,
    alpha: Annotated[float, typer.Option(help="Family-wise significance level.")] = 0.05,
    variants: Annotated[
        int, typer.Option(help="Number of variants, control included (Bonferroni over treatments).")
    ] = 2,
    ratio: Annotated[float, typer.Option(help="Units of each treatment per control unit.")] = 1.0,
    alternative: Annotated[str, typer.Option(help="two-sided, greater or less.")] = "two-sided",
    variance_reduction: Annotated[
        float, typer.Option(help="Expected CUPED variance reduction (rho^2 of the covariate), in [0, 1).")
    ] = 0.0,
    daily_traffic: Annotated[
        list[float] | None, typer.Option(help="Units a day entering the experiment (repeat); default 100 ... 10,000.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (keys per_variant, total, durations ...).")
    ] = False,
) -> None:
    """Sample size per variant and in total, with the days needed at several traffic levels."""
    from splitlab.stats.power import DEFAULT_DAILY_TRAFFIC, plan_sample_size

    with user_errors():
        if (baseline_rate is None) == (std is None):
            msg = "give --baseline-rate (proportion metric) or --std with --baseline-mean (mean metric), not both"
            raise ValueError(msg)
        options = {
            "alpha": alpha, "power": power, "ratio": ratio, "alternative": alternative, "variants": variants,
            "variance_reduction": variance_reduction, "relative": not absolute,
            "daily_traffic": tuple(daily_traffic) if daily_traffic else DEFAULT_DAILY_TRAFFIC,
        }  # fmt: skip
        if baseline_rate is not None:
            plan = plan_sample_size("proportion", mde, baseline=baseline_rate, **options)  # type: ignore[arg-type]
        else:
            plan = plan_sample_size("mean", mde, baseline=baseline_mean, std=std, **options)  # type: ignore[arg-type]
    if as_json:
        typer.echo(json.dumps(plan.to_dict(), indent=2))
        return
    effect = f"{plan.mde:+.2%} relative" if plan.relative else f"{plan.mde:+g} absolute"
    lines = [
        f"Metric: {plan.metric}, baseline {plan.baseline:g}" if plan.baseline is not None else f"Metric: {plan.metric}",
        f"MDE: {effect} (absolute {plan.absolute_mde:g}); power {plan.power:.0%}; "
        f"alpha {plan.alpha:g} {plan.alternative}"
        + (f", {plan.comparison_alpha:.4g} per comparison ({plan.correction})" if plan.variants > 2 else ""),
        f"Per variant: {plan.per_variant:,} (control)"
        + (f", {plan.treatment_per_variant:,} per treatment" if plan.ratio != 1 else ""),
        f"Total ({plan.variants} variants): {plan.total:,}",
    ]
    durations = [(f"{traffic:,.0f}", f"{days:,}") for traffic, days in plan.durations]

    def renderable() -> object:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(title="Duration at daily traffic (all variants together)")
        table.add_column("daily traffic", justify="right")
        table.add_column("days", justify="right")
        for row in durations:
            table.add_row(*row)
        return Group(*(Text(line) for line in lines), table)

    show(renderable(), lambda: _plain(lines, durations))
