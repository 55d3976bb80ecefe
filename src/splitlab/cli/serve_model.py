"""``splitlab serve-model``: one scikit-learn classifier over HTTP, the model router's upstream."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from splitlab.cli._common import user_errors


def serve_model(
    model: Annotated[
        Path | None,
        typer.Argument(
            metavar="MODEL",
            help="A pickle or joblib file of a fitted scikit-learn classifier with predict_proba.",
            show_default=False,
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 9001,
    name: Annotated[
        str | None,
        typer.Option(help="The model's name in every answer (default: MODEL's file name without suffix)."),
    ] = None,
    delay_ms: Annotated[float, typer.Option(min=0, help="Milliseconds added to every /predict answer.")] = 0.0,
    failure_rate: Annotated[float, typer.Option(min=0, max=1, help="Share of /predict requests answered 500.")] = 0.0,
    close_rate: Annotated[
        float,
        typer.Option(min=0, max=1, help="Share of /predict requests whose connection is dropped with nothing sent."),
    ] = 0.0,
    hang: Annotated[
        bool, typer.Option("--hang", help="Never answer /predict (a frozen model); /health still answers.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the draw that picks the failed and dropped requests.")] = 0,
    train_demo: Annotated[
        Path | None,
        typer.Option(
            "--train-demo",
            metavar="DIR",
            help="Instead of serving: train the demo's models into DIR (good.pkl, weak.pkl, holdout.json).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve a classifier: POST /predict {"features": [...]} answers its prediction and class probabilities.

    GET /health answers {"status": "ok"}. The fault options make a misbehaving upstream; a seeded draw picks them.
    """
    from splitlab.service import model_server

    with user_errors():
        if train_demo is not None:
            if model is not None:
                raise ValueError("give MODEL to serve it or --train-demo DIR to train the demo's models, not both")
            paths = model_server.train_demo_models(train_demo)
            for role in ("good", "weak"):
                accuracy = model_server.holdout_accuracy(paths[role], paths["holdout"])
                typer.echo(f"{role}: {paths[role]} (held-out accuracy {accuracy:.1%})")
            typer.echo(f"holdout: {paths['holdout']}")
            return
        if model is None:
            raise ValueError("MODEL is missing: give a model file to serve (or --train-demo DIR)")
        model_server.serve_model(
            model,
            host=host,
            port=port,
            name=name,
            delay_ms=delay_ms,
            failure_rate=failure_rate,
            close_rate=close_rate,
            hang=hang,
            seed=seed,
        )
