"""The commands that repair: fix, unlock."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from .. import (
    Flamingock,
)
from ._base import EXIT_OK, CliError, Resolution
from ._output import AsJson, Settings, command, describe_lock, execute, write_json

__all__ = ["baseline", "fix", "unlock"]


async def _fix(fl: Flamingock, settings: Settings, change_id: str, resolution: Resolution, as_json: bool) -> int:
    entry = await fl.fix(change_id, resolution=resolution.value)
    if as_json:
        write_json(entry.to_document())
    else:
        settings.out.print(Text(f"✓ {change_id} recorded as {entry.state.value}", style="green"))
    return EXIT_OK


async def _baseline(fl: Flamingock, settings: Settings, to: str, force: bool, as_json: bool) -> int:
    written = await fl.baseline(to, force=force)
    if as_json:
        write_json([entry.to_document() for entry in written])
        return EXIT_OK
    for entry in written:
        settings.out.print(Text(f"✓ {entry.change_id} recorded as {entry.state.value}", style="green"))
    settings.out.print(f"{len(written)} change(s) adopted as applied, none run; the next run starts after {to!r}")
    return EXIT_OK


async def _unlock(fl: Flamingock, settings: Settings, force: bool) -> int:
    info = await fl.lock_info()
    if info is None:
        settings.out.print(f"The lock of service {fl.service!r} is free.")
        return EXIT_OK
    settings.out.print(f"The lock of service {fl.service!r}: {describe_lock(info)}")
    if not force:
        raise CliError(
            "refusing to free the lock without --force; free it only if its holder is dead "
            "(a live holder stops at its next renewal, maybe halfway through a non-transactional change)"
        )
    freed = await fl.force_unlock()
    settings.out.print(Text("✓ freed" if freed else "the lock was already free", style="green"))
    return EXIT_OK


@command("Repair")
def fix(
    ctx: typer.Context,
    change_id: Annotated[str, typer.Argument(metavar="ID", help="The change's id.")],
    resolution: Annotated[Resolution, typer.Option("--as", help="What really happened to the change.")],
    as_json: AsJson = False,
) -> None:
    """Record a human's verdict on a change: applied (the next run skips it) or rolled-back (it applies it)."""
    execute(ctx, lambda fl, s: _fix(fl, s, change_id, resolution, as_json))


@command("Repair")
def baseline(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", metavar="ID", help="The last change the database already has.")],
    force: Annotated[
        bool, typer.Option("--force", help="Also mark changes that have a history (applied ones are left alone).")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Adopt a database already in shape: record every change up to --to as applied, without running it."""
    execute(ctx, lambda fl, s: _baseline(fl, s, to, force, as_json))


@command("Repair")
def unlock(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Free the lock whoever holds it.")] = False,
) -> None:
    """Show who holds the service's lock; with --force, free it. Only for a holder known to be dead."""
    execute(ctx, lambda fl, s: _unlock(fl, s, force))
