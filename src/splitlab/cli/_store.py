"""Options shared by the commands that use the store."""

from __future__ import annotations

import getpass
import os
from typing import Annotated

import typer

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database",
        help="Store URL (default: $SPLITLAB_DATABASE_URL, else sqlite:///splitlab.db).",
        show_default=False,
    ),
]
ActorOption = Annotated[
    str | None, typer.Option("--actor", help="Who makes the change, for the audit log (default: $USER).")
]


def actor_name(actor: str | None) -> str:
    """The actor recorded in the audit log: the option, else the login name."""
    if actor:
        return actor
    try:
        return os.environ.get("SPLITLAB_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return "cli"
