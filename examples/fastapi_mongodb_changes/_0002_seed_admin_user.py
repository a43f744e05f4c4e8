from __future__ import annotations

from aioflamingock import Change
from aioflamingock.mongodb import MongoDBContext


class SeedAdminUser(Change):
    """Transactional on the audit store's own database: the user and the APPLIED entry commit together."""

    id = "seed-admin-user"
    author = "fastapi-example"
    target_system = "app-db"

    async def execute(self, ctx: MongoDBContext) -> None:
        # session=ctx.session on every operation, or it runs outside the transaction.
        await ctx.db.users.insert_one({"email": "admin@example.com", "name": "Administrator"}, session=ctx.session)

    async def rollback(self, ctx: MongoDBContext) -> None:
        await ctx.db.users.delete_one({"email": "admin@example.com"}, session=ctx.session)
