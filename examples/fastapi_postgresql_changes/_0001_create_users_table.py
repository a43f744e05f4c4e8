from __future__ import annotations

from sqlalchemy import text

from aioflamingock import Change
from aioflamingock.sql import SQLContext


class CreateUsersTable(Change):
    """PostgreSQL's DDL is transactional: the table and the APPLIED entry commit together, or neither does."""

    id = "create-users-table"
    author = "fastapi-example"
    target_system = "app-db"

    async def execute(self, ctx: SQLContext) -> None:
        await ctx.connection.execute(
            text("CREATE TABLE users (email VARCHAR(200) PRIMARY KEY, name VARCHAR(200) NOT NULL)")
        )

    async def rollback(self, ctx: SQLContext) -> None:
        await ctx.connection.execute(text("DROP TABLE users"))
