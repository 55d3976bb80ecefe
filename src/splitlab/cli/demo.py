"""``splitlab demo``: the whole job on a fresh SQLite file, from YAML specs to decisions and HTML reports."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from splitlab.cli._common import user_errors

# What the demo plants in each bundled example, and how many units arrive: the truth to find.
SCENARIOS: dict[str, dict[str, object]] = {
    "free-shipping-threshold": {
        "units": 100_000,
        "effects": {"conversion": 0.12, "average_order_value": -0.02},
        "segment_effects": {"device": {"mobile": 1.5, "desktop": 0.5}},
    },
    "checkout-one-page": {"units": 40_000, "effects": {}},
    "homepage-recommendations": {"units": 50_000, "effects": {"recommendation_ctr": 0.10}},
}


def examples_path() -> Path:
    """The bundled examples folder (``examples/`` of the repository, shipped as package data)."""
    return Path(str(resources.files("splitlab") / "data" / "examples"))


def demo(
    database: Annotated[Path, typer.Option(help="SQLite file to create (replaced if it exists).")] = Path(
        "splitlab-demo.db"
    ),
    reports: Annotated[Path, typer.Option(help="Folder for the HTML reports.")] = Path("reports"),
    seed: Annotated[int, typer.Option(help="Random seed of the simulated traffic.")] = 7,
) -> None:
    """Apply the bundled examples, simulate their traffic with known effects, analyse, decide, write reports."""
    from rich.console import Console
    from rich.progress import Progress

    from splitlab.analysis.report import to_html
    from splitlab.operations.analysis import analyze
    from splitlab.operations.experiments import apply_catalog, change_status, read_catalog
    from splitlab.operations.simulation import simulate_experiment
    from splitlab.storage import open_store

    console = Console()
    with user_errors():
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        reports.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{database.resolve()}"
        with open_store(url) as store, Progress(console=console, transient=True) as progress:
            applied = apply_catalog(store, read_catalog(store, examples_path()), actor="demo")
            task = progress.add_task("simulating and analysing", total=len(applied.experiments) * 2)
            results = []
            for experiment in applied.experiments:
                key = experiment.key
                change_status(store, key=key, action="start", actor="demo")
                scenario = SCENARIOS.get(key, {"units": 40_000, "effects": {}})
                progress.update(task, description=f"simulating {key}")
                simulate_experiment(
                    store,
                    key,
                    units=int(scenario["units"]),  # type: ignore[call-overload]
                    effects=scenario.get("effects"),  # type: ignore[arg-type]
                    segment_effects=scenario.get("segment_effects"),  # type: ignore[arg-type]
                    seed=seed,
                )
                progress.advance(task)
                progress.update(task, description=f"analysing {key}")
                readout = analyze(store, key).readout
                path = reports / f"{key}.html"
                path.write_text(to_html(readout), encoding="utf-8")
                results.append((key, readout, path))
                progress.advance(task)
    for key, readout, path in results:
        decision = readout.decision
        category = decision.category if decision else "-"
        console.print(f"[bold]{key}[/bold]: {category}")
        for reason in decision.reasons if decision else ():
            console.print(f"  - {reason}")
        console.print(f"  report: {path}")
    console.print(f"store: {database} (try `splitlab list --database sqlite:///{database}`)")
