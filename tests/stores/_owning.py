"""A store that connects its own client when it opens, for the conformance suite's multi-process race: the race's
factory cannot await, and a DynamoDB client or a Couchbase cluster must be entered or connected before the store
is built on it."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack

from aioflamingock import AuditEntry, AuditStore, Fence, Lock


class OwningStore(AuditStore):
    """Opens what `connect` builds on `stack` (closed with it), then passes every call to the store it returns."""

    def __init__(self) -> None:
        self._stack = AsyncExitStack()
        self._store: AuditStore | None = None

    @abstractmethod
    async def connect(self, stack: AsyncExitStack) -> AuditStore:
        """Connect a client on `stack` and return the store on it, opened."""

    async def _open(self) -> None:
        self._store = await self.connect(self._stack)

    async def _close(self) -> None:
        await self._stack.aclose()

    @property
    def _opened(self) -> AuditStore:
        assert self._store is not None, "open the store first"
        return self._store

    @property
    def lock(self) -> Lock:
        return self._opened.lock

    async def append(self, entry: AuditEntry, *, fence: Fence) -> None:
        await self._opened.append(entry, fence=fence)

    async def current_states(self, change_ids: Iterable[str] | None = None) -> dict[str, AuditEntry]:
        return await self._opened.current_states(change_ids)

    def history(self) -> AsyncIterator[AuditEntry]:
        return self._opened.history()
