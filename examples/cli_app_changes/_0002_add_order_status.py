from __future__ import annotations

from aioflamingock import Change
from aioflamingock.sqlite import SQLiteContext


class AddOrderStatus(Change):
    id = "add-order-status"
    author = "alice"
    target_system = "shop-db"

    async def execute(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("ALTER TABLE orders ADD COLUMN status TEXT NOT NULL DEFAULT 'new'")

    async def rollback(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("ALTER TABLE orders DROP COLUMN status")
