"""Create the notes table."""

from __future__ import annotations

from aioflamingock import Change
from aioflamingock.sqlite import SQLiteContext


class CreateNotes(Change):
    id = "create-notes"
    author = "alice"
    target_system = "app-db"

    async def execute(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
