from __future__ import annotations

import json

import anyio

from aioflamingock import Change, NonTransactionalContext


class ConfigureOrderSearch(Change):
    id = "configure-order-search"
    author = "bob"
    target_system = "search"
    transactional = False

    async def execute(self, ctx: NonTransactionalContext) -> None:
        await anyio.Path(ctx["settings_file"]).write_text(json.dumps({"index": "orders"}) + "\n")

    async def rollback(self, ctx: NonTransactionalContext) -> None:
        await anyio.Path(ctx["settings_file"]).unlink(missing_ok=True)
