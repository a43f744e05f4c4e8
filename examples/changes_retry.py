"""A non-transactional change that is safe to run twice, retried by the next run instead of waiting for a human.

    python examples/changes_retry.py

The broker below is a stand-in for a message broker's admin client. Its connection breaks once, after the first
topic was created: the change fails half-way. The next run applies it again, and `exist_ok=True` makes the
topic that already exists harmless.
"""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

from aioflamingock import (
    Change,
    ChangeFailedError,
    Flamingock,
    NonTransactionalContext,
    NonTransactionalTargetSystem,
    Recovery,
)
from aioflamingock.memory import InMemoryAuditStore

HERE = Path(__file__).resolve().parent


class Broker:
    def __init__(self, *, breaks_after: int) -> None:
        self.topics: list[str] = []
        self._breaks_after: int | None = breaks_after

    async def create_topics(self, names: Iterable[str], *, exist_ok: bool = False) -> None:
        for name in names:
            if name in self.topics:
                if exist_ok:
                    continue
                raise ValueError(f"topic {name!r} exists")
            if len(self.topics) == self._breaks_after:
                self._breaks_after = None
                raise ConnectionError("connection to the broker was reset")
            self.topics.append(name)


# --8<-- [start:retry]
class EnsureTopics(Change):
    id = "ensure-topics"
    author = "alice"
    target_system = "events"
    order = "0001"
    transactional = False
    recovery = Recovery.ALWAYS_RETRY
    idempotency = "create_topics is called with exist_ok=True: a topic that exists is left as it is"

    async def execute(self, ctx: NonTransactionalContext) -> None:
        await ctx["broker"].create_topics(["user-events", "audit-events"], exist_ok=True)
        # --8<-- [end:retry]


class EnsureTopicsWithoutNote(EnsureTopics):
    idempotency = None


async def main() -> None:
    broker = Broker(breaks_after=1)
    events = NonTransactionalTargetSystem("events", dependencies={"broker": broker})
    fl = Flamingock(audit_store=InMemoryAuditStore(), target_systems=[events], changes=[EnsureTopics])
    try:
        await fl.run()
    except ChangeFailedError as exc:
        print(f"first run: {exc}; topics: {broker.topics}")
    report = await fl.run()
    print(f"second run: {report.status.value} {report.applied}; topics: {broker.topics}")
    print("states:", [entry.state.value async for entry in fl.history()])

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        without_note = [EnsureTopicsWithoutNote]
        Flamingock(audit_store=InMemoryAuditStore(), target_systems=[events], changes=without_note).changes()
    for warning in caught:
        print(f"{warning.category.__name__}: {str(warning.message).replace(f'{HERE}{os.sep}', '')}")


if __name__ == "__main__":
    asyncio.run(main())
