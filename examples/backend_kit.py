"""Proving a backend with `aioflamingock.testing`: the conformance suite and the protocol kit, here on the in-memory
store (the smallest complete backend). Put the same two classes in your backend's test suite.

    python -m pytest examples/backend_kit.py     # with pytest and pytest-asyncio (asyncio_mode = "auto")
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import pytest

from aioflamingock import NonTransactionalContext, NonTransactionalTargetSystem
from aioflamingock.memory import InMemoryAuditStore
from aioflamingock.testing import AuditStoreConformance, BackendProtocol, Instance, ManualClock, ProtocolKit


# --8<-- [start:conformance]
class TestInMemoryAuditStore(AuditStoreConformance):
    supports_processes = False  # this store lives in one process: no multi-process race

    @pytest.fixture
    async def store(self) -> AsyncIterator[InMemoryAuditStore]:
        async with InMemoryAuditStore() as store:  # open, on a fresh and empty backing
            yield store

    @pytest.fixture
    async def clocked_store(self, clock: ManualClock) -> AsyncIterator[InMemoryAuditStore]:
        async with InMemoryAuditStore(clock=clock) as store:  # its lock reads the time from `clock`
            yield store
        # --8<-- [end:conformance]


# --8<-- [start:kit]
class InMemoryKit(ProtocolKit):
    """Every instance shares one store (it lives in this process); changes add to a counter."""

    transactions_skip = "the in-memory store shares no transaction with any target"

    def __init__(self) -> None:
        super().__init__()
        self.store = InMemoryAuditStore()
        self.effects: Counter[str] = Counter()

    async def instance(self) -> Instance:
        target = NonTransactionalTargetSystem("app", dependencies={"effects": self.effects})
        return Instance(store=self.store, app=target)

    async def write(self, ctx: NonTransactionalContext, key: str, amount: int = 1) -> None:
        ctx["effects"][key] += amount

    async def count(self, key: str) -> int:
        return self.effects[key]


class TestInMemoryProtocol(BackendProtocol):
    @pytest.fixture
    async def kit(self) -> AsyncIterator[ProtocolKit]:
        kit = InMemoryKit()
        yield kit
        await kit.aclose()
        # --8<-- [end:kit]
