from __future__ import annotations

from aioflamingock import Change
from aioflamingock.sqlite import SQLiteContext


class CreateUsers(Change):
    id = "create-users"
    author = "alice"
    target_system = "app-db"

    async def execute(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL)"
        )

    async def rollback(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("DROP TABLE users")
