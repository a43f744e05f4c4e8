"""The commands that apply: plan, run, validate, undo."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from .. import (
    DISABLE_ENV_VAR,
    ChangeOutcome,
    Event,
    EventKind,
    Flamingock,
    PlannedAction,
    PlannedChange,
    RunReport,
    RunStatus,
)
from ._base import EXIT_OK, EXIT_PENDING
from ._output import (
    ACTION_STYLES,
    OK_OUTCOMES,
    AsJson,
    Settings,
    command,
    execute,
    millis,
    new_table,
    print_report,
    report_json,
    write_json,
)

__all__ = ["plan", "run", "undo", "validate"]


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
        if self.progress.console.is_terminal:  # a spinner is for a person; piped, it left a blank line behind
            self.progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.progress.live.is_started:
            self.progress.stop()

    async def __call__(self, event: Event) -> None:
        if event.kind is EventKind.CHANGE_STARTED:
            self.progress.update(self.task, description=f"applying {event.change_id}")
        elif event.kind is EventKind.CHANGE_FINISHED and event.result is not None:
            result = event.result
            ok = result.outcome in OK_OUTCOMES
            took = millis(result.duration_seconds)
            line = f"{'✓' if ok else '✗'} {result.change_id} {result.outcome.value} in {took}"
            self.progress.console.print(Text(line, style="green" if ok else "bold red"))
            self.progress.update(self.task, description="continuing")


async def _run(fl: Flamingock, settings: Settings, as_json: bool) -> int:
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


def _show_report(settings: Settings, report: RunReport, as_json: bool) -> None:
    if as_json:
        write_json(report_json(report))
    elif report.status is RunStatus.NO_CHANGES and not report.changes:
        settings.out.print(f"Nothing done: no change is declared, or the engine is disabled ({DISABLE_ENV_VAR}).")
    elif report.status is RunStatus.NO_CHANGES:
        settings.out.print(f"Nothing pending: all {len(report.changes)} change(s) are applied.")
    else:
        print_report(settings, report)
        applied = len(report.with_outcome(ChangeOutcome.APPLIED))
        settings.out.print(f"{report.status.value}: {applied} applied in {report.duration_seconds:.3f} s")


async def _plan(fl: Flamingock, settings: Settings, as_json: bool) -> int:
    plan = await fl.plan()
    if as_json:
        write_json(_plan_json(settings, plan))
        return EXIT_OK
    table = new_table("Change", "Action", "Reason")
    for p in plan:
        table.add_row(
            p.change_id, Text(p.action.value, style=ACTION_STYLES[p.action]), p.explain(settings.remedy_words)
        )
    settings.out.print(table)
    pending = sum(1 for p in plan if p.action is not PlannedAction.SKIP)
    settings.out.print(f"{len(plan)} change(s), {pending} not applied")
    return EXIT_OK


def _plan_json(settings: Settings, plan: Sequence[PlannedChange]) -> list[dict[str, Any]]:
    return [
        {
            "changeId": p.change_id,
            "action": p.action.value,
            "reason": p.reason,
            **({} if p.remedy is None else {"fix": settings.remedy_command(p.remedy), "remedy": p.remedy.to_dict()}),
        }
        for p in plan
    ]


async def _validate(fl: Flamingock, settings: Settings, as_json: bool) -> int:
    """What `Flamingock.validate()` checks, from the plan, so that a remedy reads as a command."""
    pending = [p for p in await fl.plan() if p.action is not PlannedAction.SKIP]
    if pending:
        if as_json:
            write_json({"upToDate": False, "pending": [p.change_id for p in pending]})
        else:
            settings.out.print(Text(f"{len(pending)} change(s) pending:", style="yellow"))
            for p in pending:
                line = f"  - {p.change_id}: {p.action.value} ({p.explain(settings.remedy_words)})"
                settings.out.print(Text(line, style="yellow"))
        return EXIT_PENDING
    if as_json:
        write_json({"upToDate": True, "pending": []})
    else:
        settings.out.print(Text("✓ up to date: no change pending", style="green"))
    return EXIT_OK


async def _undo(fl: Flamingock, settings: Settings, to: str, as_json: bool) -> int:
    try:
        report = await fl.undo(to=to)
    except Exception as exc:
        failed = getattr(exc, "report", None)
        if isinstance(failed, RunReport):
            _show_undo(settings, failed, to, as_json)
        raise
    _show_undo(settings, report, to, as_json)
    return EXIT_OK


def _show_undo(settings: Settings, report: RunReport, to: str, as_json: bool) -> None:
    if as_json:
        write_json(report_json(report))
    elif not report.changes:
        settings.out.print(f"Nothing to undo: no change after {to!r} is applied.")
    else:
        print_report(settings, report)
        rolled_back = len(report.with_outcome(ChangeOutcome.ROLLED_BACK))
        settings.out.print(f"{rolled_back} rolled back in {report.duration_seconds:.3f} s; the next run applies them")


@command("Apply")
def plan(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Show what `run` would do with each change, and why. Takes no lock, writes nothing."""
    execute(ctx, lambda fl, s: _plan(fl, s, as_json))


@command("Apply")
def run(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Apply every pending change in order, under the lock. Progress goes to stderr."""
    execute(ctx, lambda fl, s: _run(fl, s, as_json))


@command("Apply")
def validate(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Exit 0 if nothing is pending, 3 if a run would apply something or a change needs manual intervention."""
    execute(ctx, lambda fl, s: _validate(fl, s, as_json))


@command("Apply")
def undo(
    ctx: typer.Context,
    to: Annotated[
        str, typer.Option("--to", metavar="ID", help="The last change to keep applied; `base` to undo every change.")
    ],
    as_json: AsJson = False,
) -> None:
    """Roll back, newest first, every applied change ordered after --to, or every one with --to base (each needs a
    rollback)."""
    execute(ctx, lambda fl, s: _undo(fl, s, to, as_json))
