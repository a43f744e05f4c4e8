from __future__ import annotations

import json

import anyio

from aioflamingock import Change, NonTransactionalContext

SETTINGS = {"index": "orders", "fields": ["customer", "status"]}


class ConfigureOrderSearch(Change):
    """Non-transactional: if the process dies while it runs, nobody knows whether the settings were written, and
    the change waits for a human (`aioflamingock issues list`, then `aioflamingock fix`)."""

    id = "configure-order-search"
    author = "bob"
    target_system = "search"
    transactional = False

    async def execute(self, ctx: NonTransactionalContext) -> None:
        await anyio.Path(ctx["settings_file"]).write_text(json.dumps(SETTINGS, indent=2) + "\n")

    async def rollback(self, ctx: NonTransactionalContext) -> None:
        await anyio.Path(ctx["settings_file"]).unlink(missing_ok=True)
