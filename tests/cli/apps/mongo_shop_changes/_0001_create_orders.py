from __future__ import annotations

from aioflamingock import Change
from aioflamingock.mongodb import MongoDBContext


class CreateOrders(Change):
    id = "create-orders"
    author = "alice"
    target_system = "shop-db"

    async def execute(self, ctx: MongoDBContext) -> None:
        await ctx.db.orders.insert_one({"_id": 1, "customer": "ada"}, session=ctx.session)

    async def rollback(self, ctx: MongoDBContext) -> None:
        await ctx.db.orders.delete_many({}, session=ctx.session)
