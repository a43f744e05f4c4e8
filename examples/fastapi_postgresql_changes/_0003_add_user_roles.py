from __future__ import annotations

from sqlalchemy import text

from aioflamingock import Change
from aioflamingock.sql import SQLContext


class AddUserRoles(Change):
    id = "add-user-roles"
    author = "fastapi-example"
    target_system = "app-db"

    async def execute(self, ctx: SQLContext) -> None:
        await ctx.connection.execute(text("ALTER TABLE users ADD COLUMN roles VARCHAR(200) NOT NULL DEFAULT 'user'"))
        await ctx.connection.execute(text("UPDATE users SET roles = 'user,admin' WHERE email = 'admin@example.com'"))

    async def rollback(self, ctx: SQLContext) -> None:
        await ctx.connection.execute(text("ALTER TABLE users DROP COLUMN roles"))
