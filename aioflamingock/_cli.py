"""The `aioflamingock` command line: a thin layer over the methods of the `Flamingock` the application builds.

```
aioflamingock --app myapp.migrations:build_flamingock plan
```

Needs the `cli` extra (typer and rich); `import aioflamingock` never imports them. Exit codes are the `EXIT_*`
constants below. Machine output (`--json`) goes to stdout; progress, notes and errors go to stderr.
"""

from __future__ import annotations

import asyncio
import enum
import getpass
import importlib
import importlib.util
import inspect
import json
import logging
import os
import re
import shlex
import socket
import sys
import traceback
import warnings
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Annotated, Any

from . import (
    DISABLE_ENV_VAR,
    AuditEntry,
    ChangeIssue,
    ChangeOutcome,
    ConfigurationError,
    DoctorCheck,
    Event,
    EventKind,
    Flamingock,
    FlamingockError,
    Health,
    LockInfo,
    ManualInterventionRequiredError,
    PendingChangesError,
    PlannedAction,
    PlannedChange,
    Remedy,
    RemedyAction,
    RunReport,
    RunStatus,
)
from ._discovery import order_from_module_name
from .backend import redact

try:
    import typer
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table
    from rich.text import Text
except ImportError as exc:  # the `cli` extra is not installed: `main()` says so
    _MISSING_EXTRA: ImportError | None = exc
else:
    _MISSING_EXTRA = None

__all__ = [
    "APP_ENV_VAR",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_MANUAL_INTERVENTION",
    "EXIT_OK",
    "EXIT_PENDING",
    "EXIT_USAGE",
    "build_app",
    "load_app",
    "main",
]

EXIT_OK = 0
"""The command did what it was asked."""
EXIT_FAILURE = 1
"""A change failed, the store failed, the lock was lost or not obtained, `doctor` found a problem, `health` is
not ready."""
EXIT_USAGE = 2
"""Bad arguments, an `--app` that cannot be imported or is not a Flamingock, invalid changes (`ConfigurationError`),
an unknown change id, `unlock` without `--force`."""
EXIT_PENDING = 3
"""`validate`: a run would apply something, or a change needs manual intervention."""
EXIT_MANUAL_INTERVENTION = 4
"""`run` stopped at a change that needs manual intervention (`issues list`, then `fix`)."""
EXIT_INTERRUPTED = 130
"""Interrupted (Ctrl-C); the engine released the lock it held."""

APP_ENV_VAR = "AIOFLAMINGOCK_APP"
INSTALL_HINT = 'the aioflamingock command needs its extra: pip install "aioflamingock[cli]"'
DEFAULT_ORDER = "0001"
PLACEHOLDER_TARGET = "TODO-target-system"

_JSON_HELP = "Print machine-readable JSON on stdout."
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9 _-]{0,99}$")
_TARGET_LINE = re.compile(r"""^\s*target_system\s*=\s*["']([^"'\\]+)["']""", re.MULTILINE)

log = logging.getLogger("aioflamingock")


class CliError(Exception):
    """A problem the command line reports itself, with its exit code (a usage error unless said otherwise)."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


class Resolution(enum.Enum):
    """What `fix --as` records."""

    APPLIED = "applied"
    ROLLED_BACK = "rolled-back"


# -- loading the application ------------------------------------------------------------------------------------


def _cwd_on_path() -> None:
    """Like uvicorn and `python -m`: modules in the current directory import."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _split_ref(ref: str) -> tuple[str, str]:
    module, _, attr = ref.partition(":")
    if not module or not attr:
        raise CliError(f"--app {ref!r} must be MODULE:ATTR, e.g. myapp.migrations:build_flamingock")
    return module, attr


def _import_module(ref: str, name: str) -> ModuleType:
    _cwd_on_path()
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(f"{exc.name}.")):
            raise CliError(
                f"--app {ref!r}: no module named {exc.name!r} in the current directory or on sys.path"
            ) from None
        raise CliError(f"--app {ref!r}: importing {name!r} failed: ModuleNotFoundError: {exc}") from exc
    except Exception as exc:  # whatever the application's module raises while importing
        raise CliError(f"--app {ref!r}: importing {name!r} failed: {type(exc).__name__}: {exc}") from exc


def _attribute(ref: str, module: ModuleType, attr: str) -> object:
    found: object = module
    for part in attr.split("."):
        if not hasattr(found, part):
            raise CliError(f"--app {ref!r}: module {module.__name__!r} has no attribute {attr!r}")
        found = getattr(found, part)
    return found


def _check_factory(ref: str, factory: Callable[..., object]) -> None:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return
    required = [
        p.name
        for p in signature.parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if required:
        raise CliError(f"--app {ref!r} must take no arguments, but it requires {', '.join(required)}")


async def _call_factory(ref: str, factory: Callable[..., object]) -> object:
    _check_factory(ref, factory)
    try:
        result = factory()
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:  # whatever the application's factory raises
        raise CliError(f"--app {ref!r}: calling it raised {type(exc).__name__}: {exc}") from exc
    return result


async def load_app(ref: str) -> Flamingock:
    """The `Flamingock` named by `module:attr`: the attribute itself, or what calling it returns (awaited if it
    is a coroutine). Raises `CliError` naming what is wrong."""
    module_name, attr = _split_ref(ref)
    found = _attribute(ref, _import_module(ref, module_name), attr)
    if isinstance(found, Flamingock):
        return found
    if not callable(found):
        raise CliError(f"--app {ref!r} is a {type(found).__name__}, not a Flamingock or a function returning one")
    result = await _call_factory(ref, found)
    if not isinstance(result, Flamingock):
        raise CliError(f"--app {ref!r} returned a {type(result).__name__}, not a Flamingock")
    return result


# -- settings, output and errors --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
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


def _settings(ctx: typer.Context) -> _Settings:
    settings = ctx.find_root().obj
    assert isinstance(settings, _Settings)
    return settings


def _write_json(data: object) -> None:
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


def _report_error(settings: _Settings, exc: BaseException) -> int:
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


def _require_app(settings: _Settings) -> str:
    if not settings.app:
        raise CliError(f"no application: pass --app MODULE:ATTR or set {APP_ENV_VAR}")
    return settings.app


Work = Callable[[Flamingock, _Settings], Awaitable[int]]


async def _guarded(settings: _Settings, work: Work) -> int:
    try:
        return await work(await load_app(_require_app(settings)), settings)
    except Exception as exc:  # every error becomes one line on stderr and an exit code
        return _report_error(settings, exc)


def _execute(ctx: typer.Context, work: Work) -> None:
    """Load the application, run `work` on its engine in a fresh event loop, exit with its code."""
    settings = _settings(ctx)
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


def _configure_output(ctx: typer.Context, console: Console, verbose: bool) -> None:
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


# -- formatting -------------------------------------------------------------------------------------------------

_ACTION_STYLES = {
    PlannedAction.APPLY: "cyan",
    PlannedAction.SKIP: "green",
    PlannedAction.RECOVER: "cyan",
    PlannedAction.MANUAL_INTERVENTION: "bold red",
    PlannedAction.BLOCKED: "red",
}
_OK_OUTCOMES = {ChangeOutcome.APPLIED, ChangeOutcome.RECOVERED, ChangeOutcome.ROLLED_BACK}


def _table(*columns: str) -> Table:
    table = Table(*columns, header_style="bold", show_edge=False, pad_edge=False)
    for column in table.columns:
        column.no_wrap = column.header in {"Change", "Created (UTC)", "Action", "State", "Outcome"}  # copied, grepped
    return table


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _millis(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _plan_json(settings: _Settings, plan: Sequence[PlannedChange]) -> list[dict[str, Any]]:
    return [
        {
            "changeId": p.change_id,
            "action": p.action.value,
            "reason": p.reason,
            **({} if p.remedy is None else {"fix": settings.remedy_command(p.remedy), "remedy": p.remedy.to_dict()}),
        }
        for p in plan
    ]


def _issue_json(settings: _Settings, issue: ChangeIssue) -> dict[str, Any]:
    return {**issue.to_dict(), "fix": settings.remedy_command(issue.remedy)}


def _report_json(report: RunReport) -> dict[str, Any]:
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


def _print_report(settings: _Settings, report: RunReport) -> None:
    table = _table("Change", "Outcome", "Duration")
    for result in report.changes:
        style = "green" if result.outcome in _OK_OUTCOMES else "red" if result.error else ""
        outcome = Text(result.outcome.value, style=style)
        if result.rollback_state is not None:
            outcome.append(f", then {result.rollback_state.value}")
        table.add_row(result.change_id, outcome, _millis(result.duration_seconds))
    settings.out.print(table)


def _print_entries(settings: _Settings, entries: Iterable[AuditEntry]) -> None:
    table = _table("Created (UTC)", "Change", "State", "Strategy", "Execution", "Took")
    for e in entries:
        took = f"{e.execution_millis} ms"
        table.add_row(_when(e.created_at), e.change_id, e.state.value, e.tx_strategy.value, e.execution_id[:12], took)
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


def _describe_lock(info: LockInfo) -> str:
    if info.problem is not None:
        return f"corrupt lock of {info.owner} (token {info.token}: {info.problem}): the next run takes it over"
    if info.remaining_seconds <= 0:
        return f"expired lock of {info.owner} (token {info.token}): the next run takes it over"
    left = f"{info.remaining_seconds:.0f} s"
    return f"held by {info.owner} (token {info.token}, since {_when(info.acquired_at)} UTC, {left} left)" + (
        _holder_status(info.owner)
    )


# -- commands over the engine -------------------------------------------------------------------------------------


class _RunProgress:
    """A listener that shows the change being applied and a line per change finished, on stderr."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task("reading the audit, taking the lock", total=None)

    def __enter__(self) -> _RunProgress:
        self.progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    async def __call__(self, event: Event) -> None:
        if event.kind is EventKind.CHANGE_STARTED:
            self.progress.update(self.task, description=f"applying {event.change_id}")
        elif event.kind is EventKind.CHANGE_FINISHED and event.result is not None:
            result = event.result
            ok = result.outcome in _OK_OUTCOMES
            took = _millis(result.duration_seconds)
            line = f"{'✓' if ok else '✗'} {result.change_id} {result.outcome.value} in {took}"
            self.progress.console.print(Text(line, style="green" if ok else "bold red"))
            self.progress.update(self.task, description="continuing")


async def _run(fl: Flamingock, settings: _Settings, as_json: bool) -> int:
    with _RunProgress(settings.err) as progress:
        fl.add_listener(progress)
        try:
            report = await fl.run()
        except Exception as exc:
            failed = getattr(exc, "report", None)
            if isinstance(failed, RunReport):
                _show_report(settings, failed, as_json)
            raise
    _show_report(settings, report, as_json)
    return EXIT_OK


def _show_report(settings: _Settings, report: RunReport, as_json: bool) -> None:
    if as_json:
        _write_json(_report_json(report))
    elif report.status is RunStatus.NO_CHANGES and not report.changes:
        settings.out.print(f"Nothing done: no change is declared, or the engine is disabled ({DISABLE_ENV_VAR}).")
    elif report.status is RunStatus.NO_CHANGES:
        settings.out.print(f"Nothing pending: all {len(report.changes)} change(s) are applied.")
    else:
        _print_report(settings, report)
        applied = len(report.with_outcome(ChangeOutcome.APPLIED))
        settings.out.print(f"{report.status.value}: {applied} applied in {report.duration_seconds:.3f} s")


async def _plan(fl: Flamingock, settings: _Settings, as_json: bool) -> int:
    plan = await fl.plan()
    if as_json:
        _write_json(_plan_json(settings, plan))
        return EXIT_OK
    table = _table("Change", "Action", "Reason")
    for p in plan:
        reason = p.reason if p.remedy is None else f"{p.reason}; {settings.remedy_words(p.remedy)}"
        table.add_row(p.change_id, Text(p.action.value, style=_ACTION_STYLES[p.action]), reason)
    settings.out.print(table)
    pending = sum(1 for p in plan if p.action is not PlannedAction.SKIP)
    settings.out.print(f"{len(plan)} change(s), {pending} not applied")
    return EXIT_OK


async def _validate(fl: Flamingock, settings: _Settings, as_json: bool) -> int:
    """What `Flamingock.validate()` checks, from the plan, so that a remedy reads as a command."""
    pending = [p for p in await fl.plan() if p.action is not PlannedAction.SKIP]
    if pending:
        if as_json:
            _write_json({"upToDate": False, "pending": [p.change_id for p in pending]})
        else:
            settings.out.print(Text(f"{len(pending)} change(s) pending:", style="yellow"))
            for p in pending:
                reason = p.reason if p.remedy is None else f"{p.reason}; {settings.remedy_words(p.remedy)}"
                settings.out.print(Text(f"  - {p.change_id}: {p.action.value} ({reason})", style="yellow"))
        return EXIT_PENDING
    if as_json:
        _write_json({"upToDate": True, "pending": []})
    else:
        settings.out.print(Text("✓ up to date: no change pending", style="green"))
    return EXIT_OK


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CliError(f"--since {value!r} is not an ISO 8601 date or time, e.g. 2026-05-01T12:00:00Z") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def _audit(fl: Flamingock, settings: _Settings, history: bool, since_text: str | None, as_json: bool) -> int:
    since = _since(since_text)
    entries = [entry async for entry in fl.history()]
    if not history:
        current = {e.change_id: e for e in entries}  # the newest entry wins; first appearance keeps its place
        entries = list(current.values())
    if since is not None:
        entries = [e for e in entries if e.created_at >= since]
    if as_json:
        _write_json([e.to_document() for e in entries])
    elif entries:
        _print_entries(settings, entries)
    else:
        settings.out.print("No audit entries.")
    return EXIT_OK


async def _lock_note(fl: Flamingock, settings: _Settings) -> None:
    info = await fl.lock_info()
    if info is not None and info.remaining_seconds > 0:
        settings.note(
            f"note: the lock is {_describe_lock(info)}; a change it is applying right now is not listed "
            f"(see {settings.command('unlock')})"
        )


async def _issues(fl: Flamingock, settings: _Settings, as_json: bool) -> int:
    issues = await fl.issues()
    await _lock_note(fl, settings)
    if as_json:
        _write_json([_issue_json(settings, i) for i in issues])
        return EXIT_OK
    if not issues:
        settings.out.print(Text("✓ no change needs manual intervention", style="green"))
        return EXIT_OK
    table = _table("Change", "State", "Reason")
    for issue in issues:
        table.add_row(issue.change_id, Text(issue.state.value, style="bold red"), issue.reason)
    settings.out.print(table)
    hint = f"{settings.command('issues get ID')} shows what each ran; after checking the target, "
    settings.out.print(hint + settings.command("fix ID --as ..."))
    return EXIT_OK


async def _issue_detail(fl: Flamingock, settings: _Settings, change_id: str) -> tuple[ChangeIssue, list[AuditEntry]]:
    issue = next((i for i in await fl.issues() if i.change_id == change_id), None)
    entries = [e async for e in fl.history() if e.change_id == change_id]
    if issue is not None:
        return issue, entries
    if not entries and change_id not in {s.id for s in fl.changes()}:
        raise CliError(f"change {change_id!r} is neither declared nor in the audit")
    if not entries:
        raise CliError(f"change {change_id!r} needs no manual intervention: it was never applied", EXIT_FAILURE)
    info = await fl.lock_info()
    last = entries[-1]
    if info is not None and info.remaining_seconds > 0 and info.owner.endswith(f"/{last.execution_id}"):
        raise CliError(
            f"change {change_id!r} ({last.state.value}) belongs to the run that holds the lock: "
            f"{_describe_lock(info)}; {settings.remedy_words(Remedy.force_unlock())}",
            EXIT_FAILURE,
        )
    raise CliError(f"change {change_id!r} needs no manual intervention (its state: {last.state.value})", EXIT_FAILURE)


async def _issue(fl: Flamingock, settings: _Settings, change_id: str, as_json: bool) -> int:
    issue, entries = await _issue_detail(fl, settings, change_id)
    if as_json:
        _write_json({**_issue_json(settings, issue), "entries": [e.to_document() for e in entries]})
        return EXIT_OK
    last = entries[-1] if entries else None
    facts = Table.grid(padding=(0, 2))
    facts.add_row("Change", issue.change_id)
    facts.add_row("State", Text(issue.state.value, style="bold red"))
    facts.add_row("Reason", issue.reason)
    if last is not None:
        facts.add_row(
            "Last run", f"{last.execution_id} on {last.execution_hostname or '?'} at {_when(last.created_at)}"
        )
        facts.add_row("Target", f"{last.target_system_id} ({last.tx_strategy.value})")
        facts.add_row("Class", f"{last.invoked_class} in {last.source_file}")
    settings.out.print(facts)
    if last is not None and last.error_trace:
        settings.out.print(Text(last.error_trace.rstrip(), style="red"))
    _print_entries(settings, entries)
    settings.out.print(f"Check the target system, then record what happened: {settings.remedy_command(issue.remedy)}")
    return EXIT_OK


async def _fix(fl: Flamingock, settings: _Settings, change_id: str, resolution: Resolution, as_json: bool) -> int:
    entry = await fl.fix(change_id, resolution=resolution.value)
    if as_json:
        _write_json(entry.to_document())
    else:
        settings.out.print(Text(f"✓ {change_id} recorded as {entry.state.value}", style="green"))
    return EXIT_OK


async def _undo(fl: Flamingock, settings: _Settings, to: str, as_json: bool) -> int:
    try:
        report = await fl.undo(to=to)
    except Exception as exc:
        failed = getattr(exc, "report", None)
        if isinstance(failed, RunReport):
            _show_undo(settings, failed, to, as_json)
        raise
    _show_undo(settings, report, to, as_json)
    return EXIT_OK


def _show_undo(settings: _Settings, report: RunReport, to: str, as_json: bool) -> None:
    if as_json:
        _write_json(_report_json(report))
    elif not report.changes:
        settings.out.print(f"Nothing to undo: no change after {to!r} is applied.")
    else:
        _print_report(settings, report)
        rolled_back = len(report.with_outcome(ChangeOutcome.ROLLED_BACK))
        settings.out.print(f"{rolled_back} rolled back in {report.duration_seconds:.3f} s; the next run applies them")


async def _unlock(fl: Flamingock, settings: _Settings, force: bool) -> int:
    info = await fl.lock_info()
    if info is None:
        settings.out.print(f"The lock of service {fl.service!r} is free.")
        return EXIT_OK
    settings.out.print(f"The lock of service {fl.service!r}: {_describe_lock(info)}")
    if not force:
        raise CliError(
            "refusing to free the lock without --force; free it only if its holder is dead "
            "(a live holder stops at its next renewal, maybe halfway through a non-transactional change)"
        )
    freed = await fl.force_unlock()
    settings.out.print(Text("✓ freed" if freed else "the lock was already free", style="green"))
    return EXIT_OK


def _check_json(settings: _Settings, check: DoctorCheck) -> dict[str, Any]:
    found = check.to_dict()
    return found if check.remedy is None else {**found, "fix": settings.remedy_command(check.remedy)}


def _check_line(check: DoctorCheck) -> Text:
    mark, style = ("✓", "green") if check.ok else ("✗", "bold red")
    line = Text(f"{mark} ", style=style)
    line.append(f"{check.subject} · {check.check}: ", style="bold")
    line.append(check.detail)
    return line


async def _doctor(fl: Flamingock, settings: _Settings, seconds: float, as_json: bool) -> int:
    checks = await fl.doctor(timeout_seconds=seconds)
    failed = [c for c in checks if not c.ok]
    if as_json:
        _write_json({"ok": not failed, "checks": [_check_json(settings, c) for c in checks]})
        return EXIT_FAILURE if failed else EXIT_OK
    for check in checks:
        settings.out.print(_check_line(check))
        if not check.ok and (check.fix or check.remedy):
            fix = settings.remedy_words(check.remedy) if check.remedy is not None else check.fix
            settings.out.print(Text(f"    fix: {fix}", style="yellow"))
    summary = f"{len(failed)} problem(s) found" if failed else "everything a run needs is in place"
    settings.out.print(Text(summary, style="bold red" if failed else "bold green"))
    return EXIT_FAILURE if failed else EXIT_OK


def _print_health(settings: _Settings, health: Health) -> None:
    ready = Text("ready", style="bold green") if health.ready else Text("not ready", style="bold red")
    settings.out.print(ready)
    if health.error:
        settings.out.print(f"audit store unreachable: {health.error}")
    for issue in health.issues:
        settings.out.print(f"needs manual intervention: {issue.change_id} ({issue.state.value})")
    if health.pending:
        settings.out.print(f"pending: {', '.join(health.pending)}")


async def _health(fl: Flamingock, settings: _Settings, seconds: float, as_json: bool) -> int:
    health = await fl.health(timeout_seconds=seconds)
    if as_json:
        _write_json(health.to_dict())
    else:
        _print_health(settings, health)
    return EXIT_OK if health.ready else EXIT_FAILURE


# -- `new`: the next change module --------------------------------------------------------------------------------


def snake_case(name: str) -> str:
    """`"AddUserStatus"`, `"add user status"`, `"add-user-status"` -> `"add_user_status"`."""
    if not _NAME.match(name.strip()):
        raise CliError(
            f"NAME {name!r} must start with a letter and hold only letters, digits, spaces, '-' and '_' (100 at most)"
        )
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name.strip())
    return re.sub(r"[ _-]+", "_", words).strip("_").lower()


def _package_dir(package: str) -> Path:
    """A directory, or the directory of an importable package (the current directory is on sys.path)."""
    if Path(package).is_dir():
        return Path(package)
    _cwd_on_path()
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError) as exc:
        raise CliError(f"--package {package!r}: {type(exc).__name__}: {exc}") from exc
    if spec is None or not spec.submodule_search_locations:
        raise CliError(f"--package {package!r} is neither a directory nor an importable package")
    return Path(next(iter(spec.submodule_search_locations)))


def _existing(directory: Path) -> dict[str, Path]:
    """The change modules in `directory`, by order."""
    found = {}
    for path in directory.glob("_*.py"):
        order = order_from_module_name(path.stem)
        if order is not None:
            found[order] = path
    return found


def next_order(orders: Iterable[str]) -> str:
    """The order after the highest one, as wide: `0009` -> `0010`; `0001` when there is none."""
    highest = max(orders, default=None)
    if highest is None:
        return DEFAULT_ORDER
    if not highest.isdigit():
        raise CliError(f"the highest order {highest!r} is not a number; pass --order")
    following = str(int(highest) + 1).zfill(len(highest))
    if following <= highest:  # 9999 -> 10000 would sort first: orders compare as strings
        raise CliError(f"the order after {highest!r} would be {following!r}, which sorts before it; pass --order")
    return following


def _check_order(order: str, existing: dict[str, Path]) -> str:
    if order_from_module_name(f"_{order}_x") is None:
        raise CliError(f"--order {order!r} must be a digit then letters or digits, at least 4 characters")
    if order in existing:
        raise CliError(f"order {order} is taken by {existing[order]}")
    return order


def _default_target(existing: dict[str, Path]) -> str:
    """The target system of the newest change, as a starting point."""
    if not existing:
        return PLACEHOLDER_TARGET
    match = _TARGET_LINE.search(existing[max(existing)].read_text(encoding="utf-8"))
    return match[1] if match else PLACEHOLDER_TARGET


def skeleton(name: str, *, author: str, target_system: str) -> str:
    """The text of a new change module for the snake_case `name`."""
    class_name = "".join(part.capitalize() for part in name.split("_"))
    return f'''"""{name.replace("_", " ").capitalize()}."""

from __future__ import annotations

from typing import Any

from aioflamingock import Change


class {class_name}(Change):
    id = {json.dumps(name.replace("_", "-"))}
    author = {json.dumps(author)}
    target_system = {json.dumps(target_system)}
    # transactional = False                      # for a target without transactions (a queue, a bucket, an API)
    # recovery = "ALWAYS_RETRY"                  # only if running it twice is harmless

    async def execute(self, ctx: Any) -> None:
        raise NotImplementedError("{class_name}.execute: write the change")

    # async def rollback(self, ctx: Any) -> None:
    #     """Undo execute: for `aioflamingock undo` and after a non-transactional failure."""
'''


def create_change(name: str, package: str, *, author: str, target_system: str | None, order: str | None) -> Path:
    """Write the next `_<ORDER>_<name>.py` of `package`; refuse to overwrite or to reuse a name."""
    snake = snake_case(name)
    directory = _package_dir(package)
    existing = _existing(directory)
    same = [p.name for p in existing.values() if p.stem.split("_", 2)[2] == snake]
    if same:
        raise CliError(f"a change named {snake!r} exists already: {directory / same[0]}")
    order = _check_order(order, existing) if order is not None else next_order(existing)
    path = directory / f"_{order}_{snake}.py"
    text = skeleton(snake, author=author, target_system=target_system or _default_target(existing))
    try:
        with path.open("x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError:
        raise CliError(f"{path} exists already; not overwriting it") from None
    return path


# -- the typer application ----------------------------------------------------------------------------------------


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
    # soft_wrap: a line longer than the terminal is left to the terminal, never cut with newlines (grep finds it)
    err = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)
    source = ctx.get_parameter_source("app")
    given = source is not None and source.name == "COMMANDLINE"
    ctx.obj = _Settings(app, given, verbose, Console(markup=False, highlight=False, soft_wrap=True), err)
    _configure_output(ctx, err, verbose)


def plan(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help=_JSON_HELP)] = False) -> None:
    """Show what `run` would do with each change, and why. Takes no lock, writes nothing."""
    _execute(ctx, lambda fl, s: _plan(fl, s, as_json))


def run(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help=_JSON_HELP)] = False) -> None:
    """Apply every pending change in order, under the lock. Progress goes to stderr."""
    _execute(ctx, lambda fl, s: _run(fl, s, as_json))


def validate(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help=_JSON_HELP)] = False) -> None:
    """Exit 0 if nothing is pending, 3 if a run would apply something or a change needs manual intervention."""
    _execute(ctx, lambda fl, s: _validate(fl, s, as_json))


def audit_list(
    ctx: typer.Context,
    history: Annotated[bool, typer.Option("--history", help="Every entry, oldest first.")] = False,
    since: Annotated[
        str | None, typer.Option(metavar="DATETIME", help="Only entries created at or after (ISO 8601; UTC if naive).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help=_JSON_HELP)] = False,
) -> None:
    """Show the current state of each change in the audit, or with --history every entry."""
    _execute(ctx, lambda fl, s: _audit(fl, s, history, since, as_json))


def issues_list(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help=_JSON_HELP)] = False) -> None:
    """List the changes that need manual intervention: nobody knows whether they ran."""
    _execute(ctx, lambda fl, s: _issues(fl, s, as_json))


def issues_get(
    ctx: typer.Context,
    change_id: Annotated[str, typer.Argument(metavar="ID", help="The change's id.")],
    as_json: Annotated[bool, typer.Option("--json", help=_JSON_HELP)] = False,
) -> None:
    """Show one change that needs manual intervention: its state, its last run, its error, its audit entries."""
    _execute(ctx, lambda fl, s: _issue(fl, s, change_id, as_json))


def fix(
    ctx: typer.Context,
    change_id: Annotated[str, typer.Argument(metavar="ID", help="The change's id.")],
    resolution: Annotated[Resolution, typer.Option("--as", help="What really happened to the change.")],
    as_json: Annotated[bool, typer.Option("--json", help=_JSON_HELP)] = False,
) -> None:
    """Record a human's verdict on a change: applied (the next run skips it) or rolled-back (it applies it)."""
    _execute(ctx, lambda fl, s: _fix(fl, s, change_id, resolution, as_json))


def undo(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", metavar="ID", help="The last change to keep applied.")],
    as_json: Annotated[bool, typer.Option("--json", help=_JSON_HELP)] = False,
) -> None:
    """Roll back, newest first, every applied change ordered after --to (each needs a rollback)."""
    _execute(ctx, lambda fl, s: _undo(fl, s, to, as_json))


def unlock(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Free the lock whoever holds it.")] = False,
) -> None:
    """Show who holds the service's lock; with --force, free it. Only for a holder known to be dead."""
    _execute(ctx, lambda fl, s: _unlock(fl, s, force))


def doctor(
    ctx: typer.Context,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each system.")] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help=_JSON_HELP)] = False,
) -> None:
    """Check everything a run needs and say how to fix each problem. Exit 1 if any check failed. Writes nothing."""
    _execute(ctx, lambda fl, s: _doctor(fl, s, timeout, as_json))


def health(
    ctx: typer.Context,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the audit store.")] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help=_JSON_HELP)] = False,
) -> None:
    """Exit 0 if the audit store answers and no change needs manual intervention, 1 otherwise (a readiness probe)."""
    _execute(ctx, lambda fl, s: _health(fl, s, timeout, as_json))


def new(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="What the change does, e.g. add_user_status or 'add user status'.")],
    package: Annotated[str, typer.Option(help="The changes package (dotted name) or its directory.")],
    author: Annotated[str | None, typer.Option(help="Default: the current user.")] = None,
    target_system: Annotated[str | None, typer.Option(help="Default: that of the newest change.")] = None,
    order: Annotated[str | None, typer.Option(help="Default: the next after the highest, as wide.")] = None,
) -> None:
    """Write the next `_<ORDER>_<name>.py` change module, a skeleton to fill in. Needs no --app."""
    settings = _settings(ctx)
    try:
        path = create_change(
            name, package, author=author or getpass.getuser(), target_system=target_system, order=order
        )
    except CliError as exc:
        raise typer.Exit(_report_error(settings, exc)) from None
    settings.out.print(Text(f"✓ created {path}", style="green"))


_PANELS: dict[str, list[Callable[..., None]]] = {
    "Apply": [plan, run, validate, undo],
    "Inspect": [doctor, health],
    "Repair": [fix, unlock],
    "Write": [new],
}


def build_app() -> typer.Typer:
    """The typer application (needs the `cli` extra)."""
    app = typer.Typer(name="aioflamingock", no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
    app.callback()(_root)
    for panel, commands in _PANELS.items():
        for command in commands:
            app.command(rich_help_panel=panel)(command)
    audit_app = typer.Typer(no_args_is_help=True, help="Read the audit log.")
    audit_app.command("list")(audit_list)
    issues_app = typer.Typer(no_args_is_help=True, help="The changes that need manual intervention.")
    issues_app.command("list")(issues_list)
    issues_app.command("get")(issues_get)
    app.add_typer(audit_app, name="audit", rich_help_panel="Inspect")
    app.add_typer(issues_app, name="issues", rich_help_panel="Inspect")
    return app


def main(args: Sequence[str] | None = None) -> None:
    """The `aioflamingock` console script."""
    if _MISSING_EXTRA is not None:
        sys.stderr.write(f"error: {INSTALL_HINT} ({_MISSING_EXTRA})\n")
        raise SystemExit(EXIT_FAILURE)
    build_app()(args=list(args) if args is not None else None, prog_name="aioflamingock")
