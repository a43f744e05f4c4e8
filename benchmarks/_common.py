"""What both benchmark runners share: trivial change classes, generated."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aioflamingock import Change, NonTransactionalContext

__all__ = ["count_call", "generate_changes"]


async def count_call(self: Change, ctx: NonTransactionalContext) -> None:
    """The non-transactional changes' work: one entry in the target's `calls` list."""
    ctx["calls"].append(1)


def generate_changes(
    count: int, target: str, execute: Callable[[Change, Any], Awaitable[None]], *, transactional: bool
) -> list[type[Change]]:
    """`count` change classes, ordered c00000, c00001...; explicit classes need `order` set."""
    return [
        type(
            f"Bench{i:05d}",
            (Change,),
            {
                "id": f"c{i:05d}",
                "order": f"{i:05d}",
                "author": "bench",
                "target_system": target,
                "transactional": transactional,
                "execute": execute,
            },
        )
        for i in range(count)
    ]
