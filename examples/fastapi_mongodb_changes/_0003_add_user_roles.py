from __future__ import annotations

from aioflamingock import Change
from aioflamingock.mongodb import MongoDBContext


class AddUserRoles(Change):
    """A backfill in one transaction: every user gets `roles`, the admin gets `admin` too, or nobody gets anything."""

    id = "add-user-roles"
    author = "fastapi-example"
    target_system = "app-db"

    async def execute(self, ctx: MongoDBContext) -> None:
        await ctx.db.users.update_many({}, {"$push": {"roles": "user"}}, session=ctx.session)
        await ctx.db.users.update_one(
            {"email": "admin@example.com"}, {"$push": {"roles": "admin"}}, session=ctx.session
        )

    async def rollback(self, ctx: MongoDBContext) -> None:
        await ctx.db.users.update_many({}, {"$unset": {"roles": ""}}, session=ctx.session)
