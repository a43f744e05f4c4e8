"""A change in a module whose name does not follow `_<ORDER>_<name>.py`: it would never be loaded."""

from __future__ import annotations

from aioflamingock import Change
from aioflamingock.sqlite import SQLiteContext


class ArchiveNotes(Change):
    id = "archive-notes"
    order = "0003"
    author = "alice"
    target_system = "app-db"

    async def execute(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("CREATE TABLE archived_notes AS SELECT * FROM notes")
