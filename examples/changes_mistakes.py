"""Mistakes made inside changes, and what the engine says about each: run on a SQLite file in a temporary folder.

python examples/changes_mistakes.py
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from aioflamingock import Change, ChangeFailedError, ConfigurationError, Flamingock
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteContext, SQLiteTargetSystem

HERE = Path(__file__).resolve().parent


class CreateNotes(Change):
    id, order, author, target_system = "create-notes", "0001", "alice", "app-db"

    async def execute(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")


# --8<-- [start:commits]
class AddTags(Change):
    id, order, author, target_system = "add-tags", "0002", "alice", "app-db"

    async def execute(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("ALTER TABLE notes ADD COLUMN tags TEXT")
        await ctx.connection.commit()  # wrong: the engine commits, together with the audit entry


# --8<-- [end:commits]


# --8<-- [start:await]
class CreateTags(Change):
    id, order, author, target_system = "create-tags", "0002", "alice", "app-db"

    async def execute(self, ctx: SQLiteContext) -> None:
        ctx.connection.execute("CREATE TABLE tags (name TEXT PRIMARY KEY)")  # wrong: no await


# --8<-- [end:await]


def shown(text: str) -> str:
    """Paths relative to the examples folder, so the output reads the same on every machine."""
    return text.replace(f"{HERE}/", "")


async def run_and_plan(folder: Path, *changes: type[Change]) -> None:
    db = SQLiteTargetSystem("app-db", path=folder / "app.db")
    fl = Flamingock(audit_store=SQLiteAuditStore.from_target(db), target_systems=[db], changes=list(changes))
    try:
        await fl.run()
    except ChangeFailedError as exc:
        print("run:", shown(str(exc)))
    for planned in await fl.plan():
        remedy = "" if planned.remedy is None else f" -> {planned.remedy}"
        print("plan:", planned.change_id, planned.action.value, "-", planned.reason + remedy)


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        print("== a change that commits by itself")
        await run_and_plan(Path(folder), CreateNotes, AddTags)
    with tempfile.TemporaryDirectory() as folder:
        print("== a forgotten await")
        await run_and_plan(Path(folder), CreateNotes, CreateTags)
    print("== an untouched skeleton, and a change module with the wrong name")
    try:
        Flamingock(
            audit_store=SQLiteAuditStore.from_target(db := SQLiteTargetSystem("app-db", path=":memory:")),
            target_systems=[db],
            changes=["mistakes_changes"],
        ).changes()
    except ConfigurationError as exc:
        print(shown(str(exc)))


if __name__ == "__main__":
    asyncio.run(main())
