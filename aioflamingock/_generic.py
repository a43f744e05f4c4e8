"""The target system for anything without transactions: queues, buckets, HTTP APIs, search indexes..."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from ._interfaces import TargetSystem, check_identifier

__all__ = ["NonTransactionalContext", "NonTransactionalTargetSystem"]


@dataclass(frozen=True)
class NonTransactionalContext:
    """What a change on a `NonTransactionalTargetSystem` receives: the target's id and its dependencies."""

    target_id: str
    dependencies: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        try:
            return self.dependencies[name]
        except KeyError:
            known = ", ".join(sorted(self.dependencies)) or "none"
            raise KeyError(f"target system {self.target_id!r} has no dependency {name!r} (has: {known})") from None


class NonTransactionalTargetSystem(TargetSystem):
    """A target with no transactions. Changes on it take the non-transactional path: STARTED, `execute`,
    APPLIED; on failure FAILED, then `rollback` if defined.

    ```python
    kafka = NonTransactionalTargetSystem("events", dependencies={"admin": admin_client})
    # in the change: await ctx["admin"].create_topics(...)
    ```

    Subclass it and override `context()` to hand changes a typed context of your own.
    """

    transactional = False

    def __init__(self, id: str, *, dependencies: Mapping[str, Any] | None = None) -> None:
        self.id = check_identifier("target system id", id)
        self.dependencies: Mapping[str, Any] = dict(dependencies or {})

    @asynccontextmanager
    async def context(self) -> AsyncIterator[Any]:
        yield NonTransactionalContext(self.id, self.dependencies)
