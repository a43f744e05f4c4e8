from __future__ import annotations

from aioflamingock import Change, Recovery
from aioflamingock.sqlite import SQLiteContext


class AddUserStatus(Change):
    id = "add-user-status"
    author = "alice"
    target_system = "app-db"
    transactional = True  # the default
    recovery = Recovery.MANUAL_INTERVENTION  # the default

    async def execute(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("ALTER TABLE users ADD COLUMN status TEXT NOT NULL DEFAULT 'active'")

    async def rollback(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("ALTER TABLE users DROP COLUMN status")
