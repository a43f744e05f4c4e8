"""Settings, output and errors: what every command prints, and how, and the registry commands join."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import socket
import sys
import traceback
import warnings
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .. import (
    ChangeOutcome,
    ConfigurationError,
    Flamingock,
    FlamingockError,
    LockInfo,
    ManualInterventionRequiredError,
    PendingChangesError,
    PlannedAction,
    Remedy,
    RemedyAction,
    RunReport,
)
from ..backend import redact
from ._base import (
    APP_ENV_VAR,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_MANUAL_INTERVENTION,
    EXIT_PENDING,
    EXIT_USAGE,
    CliError,
)
from ._loading import load_app

if TYPE_CHECKING:
    from .. import AuditEntry

__all__ = [
    "ACTION_STYLES",
    "GROUPS",
    "JSON_HELP",
    "OK_OUTCOMES",
    "PANELS",
    "REGISTERED",
    "AsJson",
    "Registered",
    "Settings",
    "Work",
    "command",
    "configure_output",
    "describe_lock",
    "execute",
    "log",
    "millis",
    "new_table",
    "print_entries",
    "print_report",
    "report_error",
    "report_json",
    "settings_of",
    "when",
    "write_json",
]

F = TypeVar("F", bound=Callable[..., None])

JSON_HELP = "Print machine-readable JSON on stdout."
AsJson = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
"""The `--json` option every command that prints takes."""


log = logging.getLogger("aioflamingock")


@dataclass(frozen=True)
class Settings:
    app: str | None
    app_given: bool
    """`--app` was on the command line (not from the environment): commands we suggest must repeat it."""
    verbose: bool
    out: Console
    err: Console

    def command(self, rest: str) -> str:
        """An aioflamingock command line to suggest: it repeats `--app` when that was given on the command line."""
        app = f"--app {shlex.quote(self.app)} " if self.app_given and self.app is not None else ""
        return f"aioflamingock {app}{rest}"

    def remedy_command(self, remedy: Remedy) -> str:
        """The command that carries a remedy out."""
        if remedy.action is RemedyAction.FIX:
            return self.command(f"fix {remedy.change_id} --as {'|'.join(remedy.resolutions)}")
        return self.command("unlock --force")

    def remedy_words(self, remedy: Remedy) -> str:
        """A remedy, in the command line's words."""
        if remedy.action is RemedyAction.FIX:
            return f"check the data, then run `{self.remedy_command(remedy)}`"
        return f"if its holder is gone, free the lock: `{self.remedy_command(remedy)}`"

    def describe(self, exc: BaseException) -> str:
        """`Type: message`, redacted, its remedy (if any) in the command line's words."""
        if isinstance(exc, FlamingockError) and exc.remedy is not None:
            return redact(f"{type(exc).__name__}: {exc.summary}; {self.remedy_words(exc.remedy)}")
        return _describe(exc)

    def note(self, text: str, style: str = "yellow") -> None:
        self.err.print(Text(text, style=style))


def settings_of(ctx: typer.Context) -> Settings:
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)
    return settings


def write_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _describe(exc: BaseException) -> str:
    return redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, CliError):
        return exc.code
    if isinstance(exc, ConfigurationError):
        return EXIT_USAGE
    if isinstance(exc, PendingChangesError):
        return EXIT_PENDING
    if isinstance(exc, ManualInterventionRequiredError):
        return EXIT_MANUAL_INTERVENTION
    return EXIT_FAILURE


def report_error(settings: Settings, exc: BaseException) -> int:
    """One red line (the message), the cause if it adds anything, a hint; the traceback only with --verbose."""
    if settings.verbose:
        settings.err.print(Text(redact("".join(traceback.format_exception(exc))), style="dim"))
    message = redact(str(exc)) if isinstance(exc, CliError) else settings.describe(exc)
    settings.err.print(Text(f"error: {message}", style="bold red"))
    cause = exc.__cause__
    if cause is not None and redact(getattr(cause, "summary", str(cause))) not in message:
        settings.err.print(Text(f"  caused by: {_describe(cause)}", style="red"))
    if isinstance(exc, ManualInterventionRequiredError):
        settings.note(f"  see what ran: {settings.command(f'issues get {exc.change_id}')}")
    return _exit_code(exc)


def _require_app(settings: Settings) -> str:
    if not settings.app:
        raise CliError(f"no application: pass --app MODULE:ATTR or set {APP_ENV_VAR}")
    return settings.app


Work = Callable[[Flamingock, Settings], Awaitable[int]]


async def _guarded(settings: Settings, work: Work) -> int:
    try:
        return await work(await load_app(_require_app(settings)), settings)
    except Exception as exc:  # every error becomes one line on stderr and an exit code
        return report_error(settings, exc)


def execute(ctx: typer.Context, work: Work) -> None:
    """Load the application, run `work` on its engine in a fresh event loop, exit with its code."""
    settings = settings_of(ctx)
    try:
        code = asyncio.run(_guarded(settings, work))
    except KeyboardInterrupt:
        settings.note("interrupted", style="bold red")
        code = EXIT_INTERRUPTED
    raise typer.Exit(code)


class _ConsoleHandler(logging.Handler):
    """The library's log records as single lines on stderr. Quiet: warnings only, since every error the library
    logs comes with the exception the command reports. Verbose: INFO and up, with tracebacks."""

    def __init__(self, console: Console, verbose: bool) -> None:
        super().__init__(logging.INFO if verbose else logging.WARNING)
        self.console = console
        self.verbose = verbose

    def emit(self, record: logging.LogRecord) -> None:
        if not self.verbose and record.levelno >= logging.ERROR:
            return
        text = f"{record.levelname.lower()}: {redact(record.getMessage())}"
        if self.verbose and record.exc_info:
            text += "\n" + redact("".join(traceback.format_exception(*record.exc_info)))
        style = "dim" if record.levelno < logging.WARNING else "yellow"
        self.console.print(Text(text, style=style))


def configure_output(ctx: typer.Context, console: Console, verbose: bool) -> None:
    """Library log records and warnings as lines on `console`, until the command ends."""
    saved = (log.handlers[:], log.level, log.propagate, warnings.showwarning)
    log.handlers[:] = [_ConsoleHandler(console, verbose)]
    log.setLevel(logging.INFO if verbose else logging.WARNING)
    log.propagate = False

    def show(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
        console.print(Text(f"warning: {category.__name__}: {message}", style="yellow"))

    def restore() -> None:
        log.handlers[:], level, log.propagate, warnings.showwarning = saved
        log.setLevel(level)

    warnings.showwarning = show
    ctx.call_on_close(restore)


ACTION_STYLES = {
    PlannedAction.APPLY: "cyan",
    PlannedAction.SKIP: "green",
    PlannedAction.RECOVER: "cyan",
    PlannedAction.MANUAL_INTERVENTION: "bold red",
    PlannedAction.BLOCKED: "red",
}


OK_OUTCOMES = {ChangeOutcome.APPLIED, ChangeOutcome.RECOVERED, ChangeOutcome.ROLLED_BACK}


def new_table(*columns: str) -> Table:
    table = Table(*columns, header_style="bold", show_edge=False, pad_edge=False)
    for column in table.columns:
        column.no_wrap = column.header in {"Change", "Created (UTC)", "Action", "State", "Outcome"}  # copied, grepped
    return table


def when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def millis(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def report_json(report: RunReport) -> dict[str, Any]:
    return {
        "executionId": report.execution_id,
        "status": report.status.value,
        "durationSeconds": report.duration_seconds,
        "changes": [
            {
                "changeId": c.change_id,
                "outcome": c.outcome.value,
                "durationSeconds": c.duration_seconds,
                "error": None if c.error is None else _describe(c.error),
                "rollbackState": None if c.rollback_state is None else c.rollback_state.value,
            }
            for c in report.changes
        ],
    }


def print_report(settings: Settings, report: RunReport) -> None:
    table = new_table("Change", "Outcome", "Duration")
    for result in report.changes:
        style = "green" if result.outcome in OK_OUTCOMES else "red" if result.error else ""
        outcome = Text(result.outcome.value, style=style)
        if result.rollback_state is not None:
            outcome.append(f", then {result.rollback_state.value}")
        table.add_row(result.change_id, outcome, millis(result.duration_seconds))
    settings.out.print(table)


def print_entries(settings: Settings, entries: Iterable[AuditEntry]) -> None:
    table = new_table("Created (UTC)", "Change", "State", "Strategy", "Execution", "Took")
    for e in entries:
        took = f"{e.execution_millis} ms"
        table.add_row(when(e.created_at), e.change_id, e.state.value, e.tx_strategy.value, e.execution_id[:12], took)
    settings.out.print(table)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    try:  # a killed process nobody has reaped yet is a zombie: dead all the same
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _holder_status(owner: str) -> str:
    """Whether the holder's process still runs, when it ran on this host (owners are `host/pid/executionId`)."""
    host, _, rest = owner.partition("/")
    pid = rest.partition("/")[0]
    if sys.platform == "win32" or host != socket.gethostname() or not pid.isdigit():
        return ""  # on Windows, os.kill would terminate it
    if _process_alive(int(pid)):
        return f"; process {pid} is running on this host"
    return f"; no process {pid} runs on this host: the holder is gone"


def describe_lock(info: LockInfo) -> str:
    if info.problem is not None:
        return f"corrupt lock of {info.owner} (token {info.token}: {info.problem}): the next run takes it over"
    if info.remaining_seconds <= 0:
        return f"expired lock of {info.owner} (token {info.token}): the next run takes it over"
    left = f"{info.remaining_seconds:.0f} s"
    return f"held by {info.owner} (token {info.token}, since {when(info.acquired_at)} UTC, {left} left)" + (
        _holder_status(info.owner)
    )


# -- the registry -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    """A command, as its module declared it: `build_app` adds every one, in the order their modules registered."""

    callback: Callable[..., None]
    panel: str
    group: str | None = None
    name: str | None = None


PANELS = ("Apply", "Inspect", "Repair", "Write")
"""The sections of `--help`, in order."""
REGISTERED: list[Registered] = []
GROUPS: dict[str, str] = {}
"""Command groups (`audit`, `issues`) and their help."""


def command(panel: str, *, group: str | None = None, name: str | None = None) -> Callable[[F], F]:
    """Register the decorated function as a command of the `panel` section of `--help` (of `group`, if given)."""

    def register(callback: F) -> F:
        REGISTERED.append(Registered(callback, panel, group, name))
        return callback

    return register
