from __future__ import annotations

from aioflamingock import Change, NonTransactionalContext


class CreateUsersIndex(Change):
    id = "create-users-index"
    author = "alice"
    target_system = "search"
    transactional = False

    async def execute(self, ctx: NonTransactionalContext) -> None:
        await ctx["client"].indices.create(index=ctx["index"])

    async def rollback(self, ctx: NonTransactionalContext) -> None:
        await ctx["client"].indices.delete(index=ctx["index"], ignore_unavailable=True)
