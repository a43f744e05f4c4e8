"""The typer application, built from the commands that registered themselves."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.console import Console

from ._base import APP_ENV_VAR
from ._output import GROUPS, PANELS, REGISTERED, Settings, configure_output


def _root(
    ctx: typer.Context,
    app: Annotated[
        str | None,
        typer.Option(
            "--app", envvar=APP_ENV_VAR, metavar="MODULE:ATTR", help="A Flamingock, or a function returning one."
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log the library's INFO records and show tracebacks.")
    ] = False,
) -> None:
    """Apply, inspect and repair the changes of an application built with aioflamingock."""
    err = _console(stderr=True)
    source = ctx.get_parameter_source("app")
    given = source is not None and source.name == "COMMANDLINE"
    ctx.obj = Settings(app, given, verbose, _console(), err)
    configure_output(ctx, err, verbose)


_WHOLE_LINES = 1_000_000
"""The width of output that goes to a pipe or a file: wide enough that no table cell or line is ever cut."""


def _console(*, stderr: bool = False) -> Console:
    """soft_wrap: a line longer than the terminal is left to the terminal, never cut with newlines (grep finds it).
    Piped or redirected, without `COLUMNS`, nothing is cut at all (rich would assume 80 columns and shorten table
    cells: `TX_AU…`); tables are as wide as their widest cell, never padded to that width."""
    console = Console(stderr=stderr, markup=False, highlight=False, soft_wrap=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = _WHOLE_LINES
    return console


__all__ = ["build_app"]


def build_app() -> typer.Typer:
    """The typer application (needs the `cli` extra): every command its modules registered."""
    from . import _apply, _inspect, _new, _repair  # noqa: F401  (importing a command module registers its commands)

    app = typer.Typer(name="aioflamingock", no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
    app.callback()(_root)
    groups: dict[str, typer.Typer] = {}
    for registered in sorted(REGISTERED, key=lambda r: PANELS.index(r.panel)):  # stable: in registration order
        if registered.group is None:
            app.command(registered.name, rich_help_panel=registered.panel)(registered.callback)
            continue
        if registered.group not in groups:
            groups[registered.group] = typer.Typer(no_args_is_help=True, help=GROUPS[registered.group])
            app.add_typer(groups[registered.group], name=registered.group, rich_help_panel=registered.panel)
        groups[registered.group].command(registered.name)(registered.callback)
    return app
