from __future__ import annotations

from aioflamingock import Change
from aioflamingock.sqlite import SQLiteContext


class SeedAdminUser(Change):
    id = "seed-admin-user"
    author = "alice"
    target_system = "app-db"

    async def execute(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute(
            "INSERT INTO users (email, name) VALUES (?, ?)", ("admin@example.com", "Administrator")
        )

    async def rollback(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("DELETE FROM users WHERE email = ?", ("admin@example.com",))
