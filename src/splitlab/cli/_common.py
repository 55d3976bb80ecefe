"""Helpers shared by the commands: output to a TTY or a pipe, and readable errors."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer


def is_terminal() -> bool:
    """Whether standard output is an interactive terminal (rich tables) or a pipe (plain text)."""
    return sys.stdout.isatty()


def show(renderable: Any, plain: Callable[[], str]) -> None:
    """Print a rich renderable on a TTY, the plain-text form otherwise."""
    if is_terminal():
        from rich.console import Console

        Console().print(renderable)
    else:
        typer.echo(plain())


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a caller mistake (ValueError, missing file) into ``error: ...`` and exit status 2."""
    try:
        yield
    except (ValueError, LookupError, FileNotFoundError) as error:  # LookupError: NotFoundError, KeyError
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(code=2) from None


def split_pair(option: str, value: str) -> tuple[str, str]:
    """Split ``NAME=VALUE`` of a repeated option, naming the option when malformed."""
    name, sep, rest = value.partition("=")
    if not sep or not name or not rest:
        msg = f"{option} {value!r} must look like NAME=VALUE"
        raise ValueError(msg)
    return name, rest
