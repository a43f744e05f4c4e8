"""The commands that repair or move the audit: fix, baseline, unlock, audit export, audit import."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.text import Text

from .. import (
    AuditEntry,
    ConfigurationError,
    Flamingock,
)
from ._base import EXIT_OK, CliError, Resolution
from ._output import GROUPS, AsJson, Settings, command, describe_lock, execute, write_json

__all__ = [
    "audit_export",
    "audit_import",
    "baseline",
    "fix",
    "import_alembic",
    "import_beanie",
    "import_mongodb_migrations",
    "import_pymongo_migrate",
    "import_yoyo",
    "unlock",
]


async def _fix(fl: Flamingock, settings: Settings, change_id: str, resolution: Resolution, as_json: bool) -> int:
    entry = await fl.fix(change_id, resolution=resolution.value)
    if as_json:
        write_json(entry.to_document())
    else:
        _recorded(settings, entry)
    return EXIT_OK


def _recorded(settings: Settings, entry: AuditEntry) -> None:
    settings.out.print(Text(f"✓ {entry.change_id} recorded as {entry.state.value}", style="green"))


async def _baseline(fl: Flamingock, settings: Settings, to: str, force: bool, as_json: bool) -> int:
    written = await fl.baseline(to, force=force)
    if as_json:
        write_json([entry.to_document() for entry in written])
        return EXIT_OK
    for entry in written:
        _recorded(settings, entry)
    settings.out.print(f"{len(written)} change(s) adopted as applied, none run; the next run starts after {to!r}")
    return EXIT_OK


async def _export(fl: Flamingock, settings: Settings, output: Path | None) -> int:
    """Every entry, oldest first, one JSON document a line (Flamingock's field names). A file is written beside
    `output` and put in its place once every entry is in it: an export that fails (an application that does not
    load, a store that does not answer) leaves a backup already there as it was."""
    if output is None:
        await _write_history(fl, sys.stdout)
        return EXIT_OK
    partial = output.with_name(f"{output.name}.partial")
    try:
        with _create(partial) as out:
            count = await _write_history(fl, out)
        os.replace(partial, output)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    settings.err.print(f"{count} entries written to {output}")
    return EXIT_OK


def _create(path: Path) -> TextIO:
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None


async def _write_history(fl: Flamingock, out: TextIO) -> int:
    count = 0
    async for entry in fl.history():
        out.write(json.dumps(entry.to_document(), ensure_ascii=False) + "\n")
        count += 1
    out.flush()
    return count


def _read_entries(source: Path) -> list[AuditEntry]:
    """The entries of an export, every line checked before anything is written."""
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CliError(f"cannot read {str(source)!r}: {exc.strerror or exc}") from None
    entries, problems = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
            entries.append(AuditEntry.from_document(document))
        except ValueError as exc:  # JSON or validation (pydantic's ValidationError is a ValueError)
            problems.append(f"{source}:{number}: not an audit entry: {str(exc).splitlines()[0]}")
    if problems:
        raise ConfigurationError(problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else []))
    return entries


async def _import(fl: Flamingock, settings: Settings, source: Path, as_json: bool) -> int:
    entries = _read_entries(source)
    count = await fl.import_audit(entries)
    if as_json:
        write_json({"imported": count})
    else:
        settings.out.print(Text(f"✓ {count} entries imported and read back, field by field, as given", style="green"))
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


@command("Inspect", group="audit", name="export")
def audit_export(
    ctx: typer.Context,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write to FILE instead of stdout.")
    ] = None,
) -> None:
    """Every audit entry, oldest first, as JSON Lines (Flamingock's field names): a backup, or the way to another
    store."""
    execute(ctx, lambda fl, s: _export(fl, s, output))


@command("Inspect", group="audit", name="import")
def audit_import(
    ctx: typer.Context,
    source: Annotated[Path, typer.Argument(metavar="FILE", help="An export (JSON Lines).")],
    as_json: AsJson = False,
) -> None:
    """Write an export into this application's audit store, which must hold no entry yet, under the lock; then read
    it back and compare, field by field."""
    execute(ctx, lambda fl, s: _import(fl, s, source, as_json))


# -- importing another tool's history ---------------------------------------------------------------------------

GROUPS.update({"import": "Adopt what another migration tool applied: each of its migrations recorded as applied."})

MapFile = Annotated[
    Path | None,
    typer.Option(
        "--map", metavar="FILE", help="A JSON object: the tool's migration name -> the change id (default: the same)."
    ),
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Say what would be recorded; write nothing.")]
Force = Annotated[bool, typer.Option("--force", help="Also mark changes that have a history (applied ones are left).")]


def _mapping(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CliError(f"--map {str(path)!r}: {exc}") from None
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise CliError(f"--map {str(path)!r} must be one JSON object of strings: the migration name -> the change id")
    return mapping


async def _adopt(
    fl: Flamingock, settings: Settings, tool: str, names: list[str], mapping: dict[str, str], dry_run: bool,
    force: bool, as_json: bool,
) -> int:  # fmt: skip
    origin = {mapping.get(name, name): name for name in names}
    marked = await fl.adopt(list(origin), force=force, dry_run=dry_run)
    if as_json:
        write_json({"dryRun": dry_run, "changes": [{"changeId": i, "from": origin[i]} for i in marked]})
        return EXIT_OK
    verb = "would be recorded" if dry_run else "recorded"
    for change_id in marked:
        settings.out.print(Text(f"✓ {change_id} {verb} as applied ({tool}: {origin[change_id]})", style="green"))
    if not names:
        settings.out.print(f"{tool} recorded no migration in this database: nothing to adopt")
    elif dry_run:
        settings.out.print(f"{len(marked)} change(s) would be recorded; nothing written (--dry-run)")
    else:
        settings.out.print(f"{len(marked)} change(s) adopted from {tool}, none run")
    return EXIT_OK


def _readers(needs: str, extra: str) -> Any:
    """`aioflamingock.importers`, once `needs` (the driver the tool's database needs) imports."""
    try:
        importlib.import_module(needs)
        from .. import importers
    except ImportError as exc:
        raise CliError(
            f'reading that tool\'s records needs {needs}: pip install "aioflamingock[{extra}]" ({exc})'
        ) from None
    return importers


async def _call(name: str, *args: Any, importers: Any, **kwargs: Any) -> list[str]:
    """`importers.<name>(*args, **kwargs)`: a reader, named before `aioflamingock.importers` is imported."""
    names: list[str] = await getattr(importers, name)(*args, **kwargs)
    return names


def _run_import(
    ctx: typer.Context, tool: str, driver: tuple[str, str], read: Callable[..., Awaitable[list[str]]],
    options: tuple[Path | None, bool, bool, bool],
) -> None:  # fmt: skip
    """An `import` command: what `read(importers)` returns, mapped and adopted (`options`: the map file, dry run,
    force, JSON)."""
    mapping, dry_run, force, as_json = options

    async def run(fl: Flamingock, s: Settings) -> int:
        names = await read(importers=_readers(*driver))
        return await _adopt(fl, s, tool, names, _mapping(mapping), dry_run, force, as_json)

    execute(ctx, run)


@command("Repair", group="import", name="alembic")
def import_alembic(
    ctx: typer.Context,
    config: Annotated[Path, typer.Option("--config", metavar="FILE", help="alembic.ini.")] = Path("alembic.ini"),
    url: Annotated[str | None, typer.Option("--url", help="The database, if not alembic.ini's sqlalchemy.url.")] = None,
    mapping: MapFile = None,
    dry_run: DryRun = False,
    force: Force = False,
    as_json: AsJson = False,
) -> None:
    """Record as applied the changes for the revisions alembic applied (alembic_version and every revision before)."""
    read = partial(_call, "alembic_applied", config, url=url)
    _run_import(ctx, "alembic", ("sqlalchemy", "sql"), read, (mapping, dry_run, force, as_json))


@command("Repair", group="import", name="yoyo")
def import_yoyo(
    ctx: typer.Context,
    database: Annotated[str, typer.Option("--database", metavar="URL", help="yoyo's database URL.")],
    mapping: MapFile = None,
    dry_run: DryRun = False,
    force: Force = False,
    as_json: AsJson = False,
) -> None:
    """Record as applied the changes for the migrations yoyo applied (its _yoyo_migration table)."""
    read = partial(_call, "yoyo_applied", database)
    _run_import(ctx, "yoyo", ("sqlalchemy", "sql"), read, (mapping, dry_run, force, as_json))


MongoUrl = Annotated[str, typer.Option("--url", metavar="URL", help="The MongoDB the tool ran on (mongodb://...).")]
MongoDatabase = Annotated[str, typer.Option("--database", metavar="NAME", help="Its database.")]


@command("Repair", group="import", name="pymongo-migrate")
def import_pymongo_migrate(
    ctx: typer.Context,
    url: MongoUrl,
    database: MongoDatabase,
    collection: Annotated[str, typer.Option(help="Its collection.")] = "pymongo_migrate",
    mapping: MapFile = None,
    dry_run: DryRun = False,
    force: Force = False,
    as_json: AsJson = False,
) -> None:
    """Record as applied the changes for the migrations pymongo-migrate applied (its collection)."""
    read = partial(_call, "pymongo_migrate_applied", url, database, collection=collection)
    _run_import(ctx, "pymongo-migrate", ("pymongo", "mongodb"), read, (mapping, dry_run, force, as_json))


@command("Repair", group="import", name="mongodb-migrations")
def import_mongodb_migrations(
    ctx: typer.Context,
    url: MongoUrl,
    database: MongoDatabase,
    metastore: Annotated[str, typer.Option(help="Its collection (mongodb-migrations' --metastore).")] = (
        "database_migrations"
    ),
    mapping: MapFile = None,
    dry_run: DryRun = False,
    force: Force = False,
    as_json: AsJson = False,
) -> None:
    """Record as applied the changes for the migrations mongodb-migrations applied (its metastore collection)."""
    read = partial(_call, "mongodb_migrations_applied", url, database, collection=metastore)
    _run_import(ctx, "mongodb-migrations", ("pymongo", "mongodb"), read, (mapping, dry_run, force, as_json))


@command("Repair", group="import", name="beanie")
def import_beanie(
    ctx: typer.Context,
    url: MongoUrl,
    database: MongoDatabase,
    collection: Annotated[str, typer.Option(help="Its collection.")] = "migrations_log",
    mapping: MapFile = None,
    dry_run: DryRun = False,
    force: Force = False,
    as_json: AsJson = False,
) -> None:
    """Record as applied the changes for the migrations beanie applied (its migrations_log collection)."""
    read = partial(_call, "beanie_applied", url, database, collection=collection)
    _run_import(ctx, "beanie", ("pymongo", "mongodb"), read, (mapping, dry_run, force, as_json))
