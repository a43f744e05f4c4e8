from __future__ import annotations

from aioflamingock import Change
from aioflamingock.mongodb import MongoDBContext


class CreateUsersCollection(Change):
    """Non-transactional: MongoDB builds indexes outside transactions. The run records STARTED, builds the index,
    then records APPLIED; if the build failed it would record FAILED, call `rollback` and stop."""

    id = "create-users-collection"
    author = "fastapi-example"
    target_system = "app-db"
    transactional = False

    async def execute(self, ctx: MongoDBContext) -> None:
        await ctx.db.users.create_index("email", unique=True, name="email_unique")

    async def rollback(self, ctx: MongoDBContext) -> None:
        await ctx.db.users.drop_index("email_unique")
