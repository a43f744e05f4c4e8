"""The SQLite shop of examples/cli_app.py as an aiohttp service, for `--app` tests: its engine given to aioflamingock's
cleanup context, the application built at import (`app`) and by a factory (`make_app`), and an application the CLI
cannot find an engine in (`unmigrated`)."""

from __future__ import annotations

from aiohttp import web
from cli_app import build_flamingock

from aioflamingock.aiohttp import cleanup_ctx


def make_app() -> web.Application:
    application = web.Application()
    application.cleanup_ctx.append(cleanup_ctx(build_flamingock()))
    return application


app = make_app()
unmigrated = web.Application()  # an application aioflamingock was not given
