"""The commands that inspect: audit list, issues list and get, doctor, health."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from .. import (
    ChangeIssue,
    DoctorCheck,
    Flamingock,
    Health,
    Remedy,
)
from ._base import EXIT_FAILURE, EXIT_OK, CliError
from ._output import (
    GROUPS,
    AsJson,
    Settings,
    command,
    describe_lock,
    execute,
    new_table,
    print_entries,
    when,
    write_json,
)

if TYPE_CHECKING:
    from .. import AuditEntry

__all__ = ["audit_list", "doctor", "health", "issues_get", "issues_list"]


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CliError(f"--since {value!r} is not an ISO 8601 date or time, e.g. 2026-05-01T12:00:00Z") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def _audit(fl: Flamingock, settings: Settings, history: bool, since_text: str | None, as_json: bool) -> int:
    since = _since(since_text)
    entries = [entry async for entry in fl.history()]
    if not history:
        current = {e.change_id: e for e in entries}  # the newest entry wins; first appearance keeps its place
        entries = list(current.values())
    if since is not None:
        entries = [e for e in entries if e.created_at >= since]
    if as_json:
        write_json([e.to_document() for e in entries])
    elif entries:
        print_entries(settings, entries)
    else:
        settings.out.print("No audit entries.")
    return EXIT_OK


async def _lock_note(fl: Flamingock, settings: Settings) -> None:
    info = await fl.lock_info()
    if info is not None and info.remaining_seconds > 0:
        settings.note(
            f"note: the lock is {describe_lock(info)}; a change it is applying right now is not listed "
            f"(see {settings.command('unlock')})"
        )


def _issue_json(settings: Settings, issue: ChangeIssue) -> dict[str, Any]:
    return {**issue.to_dict(), "fix": settings.remedy_command(issue.remedy)}


async def _issues(fl: Flamingock, settings: Settings, as_json: bool) -> int:
    issues = await fl.issues()
    await _lock_note(fl, settings)
    if as_json:
        write_json([_issue_json(settings, i) for i in issues])
        return EXIT_OK
    if not issues:
        settings.out.print(Text("✓ no change needs manual intervention", style="green"))
        return EXIT_OK
    table = new_table("Change", "State", "Reason")
    for issue in issues:
        table.add_row(issue.change_id, Text(issue.state.value, style="bold red"), issue.reason)
    settings.out.print(table)
    hint = f"{settings.command('issues get ID')} shows what each ran; after checking the target, "
    settings.out.print(hint + settings.command("fix ID --as ..."))
    return EXIT_OK


async def _issue_detail(fl: Flamingock, settings: Settings, change_id: str) -> tuple[ChangeIssue, list[AuditEntry]]:
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
            f"{describe_lock(info)}; {settings.remedy_words(Remedy.force_unlock())}",
            EXIT_FAILURE,
        )
    raise CliError(f"change {change_id!r} needs no manual intervention (its state: {last.state.value})", EXIT_FAILURE)


async def _issue(fl: Flamingock, settings: Settings, change_id: str, as_json: bool) -> int:
    issue, entries = await _issue_detail(fl, settings, change_id)
    if as_json:
        write_json({**_issue_json(settings, issue), "entries": [e.to_document() for e in entries]})
        return EXIT_OK
    last = entries[-1] if entries else None
    facts = Table.grid(padding=(0, 2))
    facts.add_row("Change", issue.change_id)
    facts.add_row("State", Text(issue.state.value, style="bold red"))
    facts.add_row("Reason", issue.reason)
    if last is not None:
        facts.add_row("Last run", f"{last.execution_id} on {last.execution_hostname or '?'} at {when(last.created_at)}")
        facts.add_row("Target", f"{last.target_system_id} ({last.tx_strategy.value})")
        facts.add_row("Class", f"{last.invoked_class} in {last.source_file}")
    settings.out.print(facts)
    if last is not None and last.error_trace:
        settings.out.print(Text(last.error_trace.rstrip(), style="red"))
    print_entries(settings, entries)
    settings.out.print(f"Check the target system, then record what happened: {settings.remedy_command(issue.remedy)}")
    return EXIT_OK


def _check_json(settings: Settings, check: DoctorCheck) -> dict[str, Any]:
    found = check.to_dict()
    return found if check.remedy is None else {**found, "fix": settings.remedy_command(check.remedy)}


def _check_line(check: DoctorCheck) -> Text:
    mark, style = ("✓", "green") if check.ok else ("✗", "bold red")
    line = Text(f"{mark} ", style=style)
    line.append(f"{check.subject} · {check.check}: ", style="bold")
    line.append(check.detail)
    return line


async def _doctor(fl: Flamingock, settings: Settings, seconds: float, as_json: bool) -> int:
    checks = await fl.doctor(timeout_seconds=seconds)
    failed = [c for c in checks if not c.ok]
    if as_json:
        write_json({"ok": not failed, "checks": [_check_json(settings, c) for c in checks]})
        return EXIT_FAILURE if failed else EXIT_OK
    for check in checks:
        settings.out.print(_check_line(check))
        if not check.ok and (check.fix or check.remedy):
            fix = settings.remedy_words(check.remedy) if check.remedy is not None else check.fix
            settings.out.print(Text(f"    fix: {fix}", style="yellow"))
    summary = f"{len(failed)} problem(s) found" if failed else "everything a run needs is in place"
    settings.out.print(Text(summary, style="bold red" if failed else "bold green"))
    return EXIT_FAILURE if failed else EXIT_OK


def _print_health(settings: Settings, health: Health) -> None:
    ready = Text("ready", style="bold green") if health.ready else Text("not ready", style="bold red")
    settings.out.print(ready)
    if health.error:
        settings.out.print(f"audit store unreachable: {health.error}")
    for issue in health.issues:
        settings.out.print(f"needs manual intervention: {issue.change_id} ({issue.state.value})")
    if health.pending:
        settings.out.print(f"pending: {', '.join(health.pending)}")


async def _health(fl: Flamingock, settings: Settings, seconds: float, as_json: bool) -> int:
    health = await fl.health(timeout_seconds=seconds)
    if as_json:
        write_json(health.to_dict())
    else:
        _print_health(settings, health)
    return EXIT_OK if health.ready else EXIT_FAILURE


@command("Inspect", group="audit", name="list")
def audit_list(
    ctx: typer.Context,
    history: Annotated[bool, typer.Option("--history", help="Every entry, oldest first.")] = False,
    since: Annotated[
        str | None, typer.Option(metavar="DATETIME", help="Only entries created at or after (ISO 8601; UTC if naive).")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Show the current state of each change in the audit, or with --history every entry."""
    execute(ctx, lambda fl, s: _audit(fl, s, history, since, as_json))


@command("Inspect", group="issues", name="list")
def issues_list(ctx: typer.Context, as_json: AsJson = False) -> None:
    """List the changes that need manual intervention: nobody knows whether they ran."""
    execute(ctx, lambda fl, s: _issues(fl, s, as_json))


@command("Inspect", group="issues", name="get")
def issues_get(
    ctx: typer.Context,
    change_id: Annotated[str, typer.Argument(metavar="ID", help="The change's id.")],
    as_json: AsJson = False,
) -> None:
    """Show one change that needs manual intervention: its state, its last run, its error, its audit entries."""
    execute(ctx, lambda fl, s: _issue(fl, s, change_id, as_json))


@command("Inspect")
def doctor(
    ctx: typer.Context,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each system.")] = 10.0,
    as_json: AsJson = False,
) -> None:
    """Check everything a run needs and say how to fix each problem. Exit 1 if any check failed. Writes nothing."""
    execute(ctx, lambda fl, s: _doctor(fl, s, timeout, as_json))


@command("Inspect")
def health(
    ctx: typer.Context,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the audit store.")] = 5.0,
    as_json: AsJson = False,
) -> None:
    """Exit 0 if the audit store answers and no change needs manual intervention, 1 otherwise (a readiness probe)."""
    execute(ctx, lambda fl, s: _health(fl, s, timeout, as_json))


GROUPS.update(audit="Read, export and import the audit log.", issues="The changes that need manual intervention.")
