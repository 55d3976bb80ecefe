"""``splitlab bandit``: regret simulations of the bandit policies."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from splitlab.cli._common import show, user_errors

app = typer.Typer(
    name="bandit",
    help="Multi-armed bandits: simulate a policy's regret before running it on traffic.",
    no_args_is_help=True,
    add_completion=False,
)


def _arm_means(text: str) -> list[float]:
    try:
        means = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        msg = f"--arms {text!r} must be comma-separated numbers such as 0.70,0.85,0.75"
        raise ValueError(msg) from None
    if len(means) < 2:
        msg = f"--arms {text!r} must name at least 2 arms"
        raise ValueError(msg)
    return means


@app.command("simulate")
def simulate(
    arms: Annotated[str, typer.Option("--arms", help="True conversion rate of each arm, comma-separated.")],
    rounds: Annotated[int, typer.Option("--rounds", help="Decisions per replication.")] = 10_000,
    policy: Annotated[
        str,
        typer.Option(
            "--policy",
            help="thompson, gaussian-thompson, top-two-thompson, ucb1, ucb1-tuned or epsilon-greedy.",
        ),
    ] = "thompson",
    seeds: Annotated[int, typer.Option("--seeds", help="Independent replications.")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Base seed: the same seed gives the same figures.")] = 0,
    batch: Annotated[
        int | None,
        typer.Option("--batch", help="Production mode: recompute the weights every BATCH units (default: online)."),
    ] = None,
    floor: Annotated[float, typer.Option("--floor", help="Production mode: minimum share of every arm.")] = 0.01,
    stop_p_best: Annotated[
        float | None, typer.Option("--stop-p-best", help="Production mode: give the leader 100 % at this P(best).")
    ] = None,
    stop_loss: Annotated[
        float | None,
        typer.Option("--stop-loss", help="Production mode: give the leader 100 % once its expected loss is this low."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Simulate a policy on Bernoulli arms: mean cumulative regret with its 95 % CI, median, p90, P(best arm found)."""
    from splitlab.bandits import ProductionSettings
    from splitlab.bandits import simulate as run_simulation

    with user_errors():
        means = _arm_means(arms)
        settings = None
        if batch is not None:
            settings = ProductionSettings(
                floor=floor, stop_p_best=stop_p_best, stop_expected_loss=stop_loss, draws=1_000
            )
        elif stop_p_best is not None or stop_loss is not None:
            msg = "--stop-p-best and --stop-loss apply to production mode; give --batch too"
            raise ValueError(msg)
        result = run_simulation(
            policy, means, rounds=rounds, replications=seeds, seed=seed, batch_size=batch, settings=settings
        )
    summary = result.summary()
    if as_json:
        typer.echo(json.dumps(summary))
        return
    low, high = result.regret_ci
    mode = "online" if batch is None else f"weights every {batch} units, floor {floor:g}"
    rows = [
        ("mean cumulative regret", f"{result.mean_regret:.2f}"),
        ("95% CI", f"{low:.2f} to {high:.2f}"),
        ("median regret", f"{result.median_regret:.2f}"),
        ("p90 regret", f"{result.p90_regret:.2f}"),
        ("P(best arm found)", f"{result.p_best_found:.3f}"),
    ]
    title = f"{result.policy} ({mode}) on arms {', '.join(f'{m:g}' for m in means)}: {rounds} rounds x {seeds} seeds"

    def plain() -> str:
        width = max(len(name) for name, _ in rows)
        return "\n".join([title, *(f"{name:<{width}}  {value}" for name, value in rows)])

    from rich.table import Table

    table = Table(title=title, show_header=False)
    for name, value in rows:
        table.add_row(name, value)
    show(table, plain)
