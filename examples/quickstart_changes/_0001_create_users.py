from __future__ import annotations

from aioflamingock import Change
from aioflamingock.sqlite import SQLiteContext


class CreateUsers(Change):
    """Transactional on the audit store's own database: the table and the APPLIED entry commit together."""

    id = "create-users"
    author = "quickstart"
    target_system = "app-db"

    async def execute(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL)"
        )

    async def rollback(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("DROP TABLE users")
