from __future__ import annotations

from aioflamingock import Change
from aioflamingock.sqlite import SQLiteContext


class AddUserStatus(Change):
    """Two statements, one transaction: if the backfill failed, the new column would not be committed either."""

    id = "add-user-status"
    author = "quickstart"
    target_system = "app-db"

    async def execute(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("ALTER TABLE users ADD COLUMN status TEXT NOT NULL DEFAULT 'pending'")
        await ctx.connection.execute("UPDATE users SET status = 'active'")

    async def rollback(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("ALTER TABLE users DROP COLUMN status")
