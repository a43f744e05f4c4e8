from __future__ import annotations

from aioflamingock import Change
from aioflamingock.mongodb import MongoDBContext


class AddOrderStatus(Change):
    id = "add-order-status"
    author = "alice"
    target_system = "shop-db"

    async def execute(self, ctx: MongoDBContext) -> None:
        await ctx.db.orders.update_many({}, {"$set": {"status": "new"}}, session=ctx.session)

    async def rollback(self, ctx: MongoDBContext) -> None:
        await ctx.db.orders.update_many({}, {"$unset": {"status": ""}}, session=ctx.session)
