from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..backend import (
    AuditStore,
    Fence,
    LocallyTimedLock,
    LockInfo,
    LockLease,
    LockLostError,
    epoch_datetime,
)

if TYPE_CHECKING:
    from ..backend import AuditEntry

__all__ = ["InMemoryAuditStore", "InMemoryLock"]


@dataclass
class _Record:
    owner: str
    token: int
    acquired_at: float
    expires_at: float


class InMemoryLock(LocallyTimedLock):
    """The lock of an `InMemoryAuditStore`; it coordinates tasks of one process only."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self._records: dict[str, _Record] = {}
        self._tokens: dict[str, int] = {}

    def _lease(self, key: str, record: _Record) -> LockLease:
        return LockLease(key, record.owner, record.token)

    async def try_acquire(self, key: str, owner: str, lease_seconds: float) -> LockLease | None:
        now = self.clock()
        record = self._records.get(key)
        if record is not None and record.owner != owner and record.expires_at > now:
            return None
        token = self._tokens.get(key, 0) + 1
        self._tokens[key] = token
        self._records[key] = _Record(owner, token, now, now + lease_seconds)
        return self._lease(key, self._records[key])

    def holds(self, fence: Fence) -> bool:
        record = self._records.get(fence.key)
        return record is not None and record.owner == fence.owner and record.token == fence.token

    async def renew(self, lease: LockLease, lease_seconds: float) -> LockLease:
        if not self.holds(lease.fence):
            raise LockLostError(f"lock {lease.key!r} is no longer held by {lease.owner!r}")
        record = self._records[lease.key]
        record.expires_at = self.clock() + lease_seconds
        return self._lease(lease.key, record)

    async def release(self, lease: LockLease) -> bool:
        if not self.holds(lease.fence):
            return False
        del self._records[lease.key]
        return True

    async def read(self, key: str) -> LockInfo | None:
        record = self._records.get(key)
        if record is None:
            return None
        remaining = record.expires_at - self.clock()
        return LockInfo(
            key,
            record.owner,
            record.token,
            epoch_datetime(record.acquired_at),
            epoch_datetime(record.expires_at),
            remaining,
        )

    async def force_release(self, key: str) -> bool:
        return self._records.pop(key, None) is not None


class InMemoryAuditStore(AuditStore):
    """Keeps entries and the lock in this process's memory. For unit tests of your changes:

    ```python
    fl = Flamingock(audit_store=InMemoryAuditStore(), target_systems=[...], changes=[MyChange])
    ```
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._entries: list[AuditEntry] = []
        self._lock = InMemoryLock(clock)

    @property
    def lock(self) -> InMemoryLock:
        return self._lock

    async def append(self, entry: AuditEntry, *, fence: Fence) -> None:
        if not self._lock.holds(fence):
            raise LockLostError(f"not recorded: lock {fence.key!r} is no longer held with token {fence.token}")
        self._entries.append(entry)

    async def current_states(self, change_ids: Iterable[str] | None = None) -> dict[str, AuditEntry]:
        wanted = None if change_ids is None else set(change_ids)
        return {e.change_id: e for e in self._entries if wanted is None or e.change_id in wanted}

    async def history(self) -> AsyncIterator[AuditEntry]:
        for entry in list(self._entries):
            yield entry
