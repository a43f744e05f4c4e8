from __future__ import annotations

from aioflamingock import Change
from aioflamingock.sqlite import SQLiteContext


class IndexOrdersByStatus(Change):
    id = "index-orders-by-status"
    author = "alice"
    target_system = "shop-db"

    async def execute(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("CREATE INDEX orders_by_status ON orders (status)")

    async def rollback(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("DROP INDEX orders_by_status")
