"""Helpers shared by the commands: output to a TTY or a pipe, and readable errors."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

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


def show_rows(headers: Sequence[str], body: Sequence[Sequence[str]], *, empty: str) -> None:
    """Rows of text as a rich table on a TTY, aligned columns otherwise; ``empty`` when there are none."""

    def plain() -> str:
        if not body:
            return empty
        widths = [max(len(row[i]) for row in [headers, *body]) for i in range(len(headers))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [headers, *body]]
        return "\n".join(lines)

    def table() -> Any:
        from rich.table import Table

        rich_table = Table(*headers)
        for row in body:
            rich_table.add_row(*row)
        return rich_table if body else plain()

    show(table(), plain)


SOURCE_HINT = "check the database, tables and columns the --source file names"


@contextmanager
def user_errors() -> Iterator[None]:
    """Print a caller mistake or an operational failure as one line ``error: ...`` and exit with status 2.

    Caller mistakes are ``ValueError``, ``LookupError`` (the store's ``NotFoundError``, ``KeyError``)
    and a missing file. Operational failures are the store's own errors (unreachable, read-only,
    not a database: ``StoreUnavailableError`` carries the URL and a hint) and the failures of a
    database other than the store (``analyze --source``). Anything else is a bug, and keeps its
    traceback.
    """
    try:
        yield
    except (ValueError, LookupError, FileNotFoundError) as error:
        _fail(error.args[0] if isinstance(error, KeyError) and error.args else str(error))
    except Exception as error:
        message = _operational(error)
        if message is None:
            raise
        _fail(message)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2) from None


def _loaded(module: str, name: str) -> Any:
    """The class ``name`` of ``module`` if that module is loaded, else None.

    An error of a module's class can only come from a loaded module, and importing the store,
    SQLAlchemy or DuckDB here would slow the start of every command, ``--help`` included.
    """
    loaded = sys.modules.get(module)
    return None if loaded is None else getattr(loaded, name)


def _operational(error: Exception) -> str | None:
    """The one-line message of an operational failure, or None for anything else."""
    storage_error = _loaded("splitlab.storage.errors", "StorageError")
    if storage_error is not None and isinstance(error, storage_error):
        return str(error)
    # The store's own failures leave its block as StoreUnavailableError (see splitlab.storage.Store):
    # a driver error still raw here came from the data source (a missing table or column, a database
    # that cannot be opened). Other kinds (IntegrityError ...) are bugs.
    for module, names in (("sqlalchemy.exc", ("OperationalError", "ProgrammingError")), ("duckdb", ("Error",))):
        for name in names:
            kind = _loaded(module, name)
            if kind is not None and isinstance(error, kind):
                cause = getattr(error, "orig", None) or error  # SQLAlchemy's wraps the driver's
                return f"cannot read the --source data: {_first_line(cause)} ({SOURCE_HINT})"
    return None


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def split_pair(option: str, value: str) -> tuple[str, str]:
    """Split ``NAME=VALUE`` of a repeated option, naming the option when malformed."""
    name, sep, rest = value.partition("=")
    if not sep or not name or not rest:
        msg = f"{option} {value!r} must look like NAME=VALUE"
        raise ValueError(msg)
    return name, rest
