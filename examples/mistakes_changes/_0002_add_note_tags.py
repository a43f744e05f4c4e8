"""Add note tags."""

from __future__ import annotations

from typing import Any

from aioflamingock import Change


class AddNoteTags(Change):
    id = "add-note-tags"
    author = "alice"
    target_system = "app-db"
    # transactional = False                      # for a target without transactions (a queue, a bucket, an API)
    # recovery = "ALWAYS_RETRY"                  # only if running it twice is harmless

    async def execute(self, ctx: Any) -> None:
        raise NotImplementedError("AddNoteTags.execute: write the change")

    # async def rollback(self, ctx: Any) -> None:
    #     """Undo execute: for `aioflamingock undo` and after a non-transactional failure."""
