"""The ``splitlab`` command line: thin Typer commands over the Python API."""

from __future__ import annotations

import typer

from splitlab.cli import bandit, events
from splitlab.cli.analyze import analyze, status
from splitlab.cli.analyze_file import analyze_file
from splitlab.cli.assign import assign
from splitlab.cli.demo import demo
from splitlab.cli.demo_router import demo_router
from splitlab.cli.experiments import apply, archive, list_experiments, pause, roll_out, show_experiment, start, stop
from splitlab.cli.export import export, export_catalog
from splitlab.cli.monitor import monitor
from splitlab.cli.notify import notifications_app, notify_app
from splitlab.cli.plan import plan
from splitlab.cli.sample_size import sample_size
from splitlab.cli.serve import app as keys_app
from splitlab.cli.serve import serve
from splitlab.cli.serve_model import serve_model
from splitlab.cli.simulate import simulate
from splitlab.cli.sql import sql
from splitlab.cli.validate import validate

app = typer.Typer(
    name="splitlab",
    help="splitlab: experiments as code, assignment, and a statistics engine you can trust.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("analyze-file")(analyze_file)
app.command("sample-size")(sample_size)
app.command("plan")(plan)
app.command("apply")(apply)
app.command("list")(list_experiments)
app.command("show")(show_experiment)
app.command("start")(start)
app.command("pause")(pause)
app.command("stop")(stop)
app.command("archive")(archive)
app.command("roll-out")(roll_out)
app.command("assign")(assign)
app.command("simulate")(simulate)
app.command("analyze")(analyze)
app.command("status")(status)
app.command("sql")(sql)
app.command("export")(export)
app.command("export-catalog")(export_catalog)
app.command("demo")(demo)
app.command("demo-router")(demo_router)
app.add_typer(events.app, name="events")
app.add_typer(bandit.app, name="bandit")
app.command("serve")(serve)
app.command("serve-model")(serve_model)
app.add_typer(keys_app, name="keys")
app.command("monitor")(monitor)
app.add_typer(notify_app, name="notify")
app.add_typer(notifications_app, name="notifications")
app.command("validate")(validate)


@app.command("version")
def version() -> None:
    """Print the installed splitlab version."""
    from splitlab import __version__

    typer.echo(__version__)


def main() -> None:
    """Entry point of the ``splitlab`` script."""
    app()


__all__ = ["app", "main"]
