from __future__ import annotations

import json

import anyio

from aioflamingock import Change, NonTransactionalContext

SETTINGS = {"index": "users", "fields": ["email", "name"], "analyzer": "standard", "replicas": 1}


class ConfigureUserSearch(Change):
    """Non-transactional: the settings file is written outside any transaction. The run records STARTED first;
    if `execute` raised, the run would record FAILED, call `rollback` and stop."""

    id = "configure-user-search"
    author = "quickstart"
    target_system = "search"
    transactional = False

    async def execute(self, ctx: NonTransactionalContext) -> None:
        await anyio.Path(ctx["settings_file"]).write_text(json.dumps(SETTINGS, indent=2) + "\n")

    async def rollback(self, ctx: NonTransactionalContext) -> None:
        await anyio.Path(ctx["settings_file"]).unlink(missing_ok=True)
