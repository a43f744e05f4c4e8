from __future__ import annotations

from aioflamingock import Change
from aioflamingock.sqlite import SQLiteContext


class CreateOrders(Change):
    id = "create-orders"
    author = "alice"
    target_system = "shop-db"

    async def execute(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL)")

    async def rollback(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("DROP TABLE orders")
