"""``splitlab plan``: sample size, duration, MDE and feasibility of an experiment from its spec and history."""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from splitlab.cli._common import show, user_errors
from splitlab.cli._store import DatabaseOption

if TYPE_CHECKING:
    from splitlab.operations.planning import ExperimentPlan


def _reference_date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        msg = f"--reference-date == {value!r}, must be a date YYYY-MM-DD"
        raise ValueError(msg) from None


def _effect(value: float | None, relative: bool) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.2%}" if relative else f"{value:g}"


def _when(value: datetime) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC"


def _lines(plan: ExperimentPlan) -> list[str]:
    traffic = plan.traffic
    effect = f"{plan.mde:.2%} relative" if plan.relative else f"{plan.mde:g} absolute"
    variants = ", ".join(f"{key}={weight:.0%}" for key, weight in plan.variants)
    method = plan.analysis_method + (f" ({plan.sequential_method})" if plan.sequential_method else "")
    targeting = "" if traffic.targeting_applied else ", targeting not applied"
    lines = [
        (
            f"Experiment {plan.experiment_key} ({plan.status}); primary metric {plan.primary_metric}, MDE {effect} "
            f"({plan.direction}), alpha {plan.alpha:g}, power {plan.power:.0%}"
        ),
        f"Variants: {variants}; analysis {method}",
        (
            f"History: {traffic.days:g} days from {_when(traffic.window_start)} to {_when(traffic.window_end)} "
            f"(reference: {plan.reference_source})"
        ),
        (
            f"Traffic: {traffic.units:,} units with events; {traffic.daily_units:,.1f} a day entering "
            f"(eligible share {traffic.eligible_share:g}{targeting})"
        ),
    ]
    for metric in plan.metrics:
        if metric.error_code is not None and metric.units == 0:
            lines.append(f"  {metric.metric} ({metric.kind}, {metric.role}): {metric.error_message}")
            continue
        cuped = (
            f", CUPED rho^2 {metric.rho_squared:.3f} ({metric.covariate} covariate, {metric.pre_window_days:g} days)"
            if metric.rho_squared is not None
            else ""
        )
        lines.append(
            f"  {metric.metric} ({metric.kind}, {metric.role}): baseline {metric.baseline:.6g}, per-unit variance "
            f"{metric.variance:.6g} over {metric.units:,} units{cuped}"
        )
    if plan.error_code is not None:
        lines.append(f"Cannot plan: {plan.error_message}")
        return lines
    size = plan.sample_size
    assert size is not None  # noqa: S101 - set whenever there is no error
    planned = f"{plan.planned_days:g} days ({plan.planned_days_source})"
    lines += [
        f"Sample size: {size.per_variant:,} per variant, {plan.units_needed:,} in all; {plan.days_needed:,} days",
        (
            f"At {planned}: MDE {_effect(plan.mde_at_planned, plan.relative)}, power {plan.power_at_planned:.1%} "
            "at the hypothesis's MDE"
        ),
    ]
    cuped_size = plan.sample_size_cuped
    if cuped_size is not None:
        lines.append(
            f"With CUPED (variance x {1 - cuped_size.variance_reduction:.3f}): {cuped_size.per_variant:,} per variant, "
            f"{plan.units_needed_cuped:,} in all; {plan.days_needed_cuped:,} days; at {plan.planned_days:g} days MDE "
            f"{_effect(plan.mde_at_planned_cuped, plan.relative)}, power {plan.power_at_planned_cuped:.1%}"
        )
    seq = plan.sequential
    if seq is not None:
        how = (
            f"simulated, {seq.simulations:,} paths, seed {seq.seed}, power SE {seq.power_se:.3f}"
            if seq.computation == "simulation"
            else "exact"
        )
        lines.append(
            f"Sequential {seq.method} ({how}): {seq.looks} daily looks to {seq.planned_n:,.0f} units"
            + ("" if seq.reaches_planned_n else " (truncated: the planned size is not reached)")
            + f"; power {seq.power:.1%}, type I error {seq.type_i_error:.2%}; expected units at stop "
            f"{seq.expected_units_alternative:,.0f} at the MDE, {seq.expected_units_null:,.0f} with no effect"
        )
    lines.append(f"Verdict: {plan.verdict}")
    lines += [f"  - {reason}" for reason in plan.reasons]
    return lines


def plan(
    key: Annotated[str, typer.Argument(help="The experiment key.")],
    reference_date: Annotated[
        str | None,
        typer.Option(
            help="End of the history window, YYYY-MM-DD (midnight UTC); default the experiment's start, else now."
        ),
    ] = None,
    days: Annotated[
        float | None,
        typer.Option(help="Length of the history window in days; default the spec's max_duration_days, else 14."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    database: DatabaseOption = None,
) -> None:
    """Sample size, days needed, MDE and power at the planned duration, CUPED and a verdict, from history."""
    from splitlab.operations.planning import plan_experiment
    from splitlab.storage import open_store

    with user_errors():
        reference = _reference_date(reference_date)
        with open_store(database) as store:
            result = plan_experiment(store, key, reference=reference, days=days)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        text = "\n".join(_lines(result))
        show(text, lambda: text)
    if result.error_code is not None:
        raise typer.Exit(code=1)
