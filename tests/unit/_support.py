"""Shared helpers of the unit tests: a store that counts lock attempts, seeding audit state, test changes."""

from __future__ import annotations

from typing import Any

from aioflamingock import (
    AuditEntry,
    AuditState,
    AuditStore,
    Change,
    LockLease,
    NonTransactionalTargetSystem,
    Recovery,
    TxStrategy,
)
from aioflamingock.memory import InMemoryAuditStore
from aioflamingock.testing import make_entry

SERVICE = "default"
TARGET = "app"
SEEDER = "seeder"


class SpyStore(InMemoryAuditStore):
    """The in-memory store, recording the owner of every attempt to take its lock (a spy, not a fake)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock_attempts: list[str] = []
        take = self.lock.try_acquire

        async def counting(key: str, owner: str, lease_seconds: float) -> LockLease | None:
            self.lock_attempts.append(owner)
            return await take(key, owner, lease_seconds)

        self.lock.try_acquire = counting  # type: ignore[method-assign]

    @property
    def engine_lock_attempts(self) -> list[str]:
        """Attempts made by anyone but `seed()`."""
        return [owner for owner in self.lock_attempts if owner != SEEDER]


def entry(
    change_id: str,
    state: AuditState,
    *,
    transaction_flag: bool = False,
    tx_strategy: TxStrategy = TxStrategy.NON_TX,
    **fields: Any,
) -> AuditEntry:
    """An audit entry of `change_id` in `state`, as an earlier run of service `SERVICE` would have written it."""
    values: dict[str, Any] = {
        "stage_id": SERVICE,
        "target_system_id": TARGET,
        "tx_strategy": tx_strategy,
        "transaction_flag": transaction_flag,
        "error_trace": None,
        **fields,
    }
    return make_entry(change_id, state, **values)


async def seed(store: AuditStore, *entries: AuditEntry) -> None:
    """Write `entries` as a lock holder would, then release the lock."""
    async with store:
        lease = await store.lock.try_acquire(SERVICE, SEEDER, 30)
        assert lease is not None
        try:
            for item in entries:
                await store.append(item, fence=lease.fence)
        finally:
            assert await store.lock.release(lease)


async def history(store: AuditStore) -> list[AuditEntry]:
    async with store:
        return [item async for item in store.history()]


async def states_of(store: AuditStore, change_id: str) -> list[AuditState]:
    return [item.state for item in await history(store) if item.change_id == change_id]


async def lock_is_free(store: AuditStore) -> bool:
    async with store:
        return await store.lock.read(SERVICE) is None


def recording_change(
    change_id: str,
    order: str,
    *,
    recovery: Recovery = Recovery.MANUAL_INTERVENTION,
    idempotency: str | None = None,
) -> type[Change]:
    """A non-transactional change on `TARGET` whose `execute` appends its id to the target's `calls`."""
    change_order, change_recovery, change_idempotency = order, recovery, idempotency

    class Recorded(Change):
        id = change_id
        order = change_order
        author = "tester"
        target_system = TARGET
        transactional = False
        recovery = change_recovery
        idempotency = change_idempotency

        async def execute(self, ctx: Any) -> None:
            ctx["calls"].append(self.id)

    return Recorded


def target_with(calls: list[str]) -> NonTransactionalTargetSystem:
    return NonTransactionalTargetSystem(TARGET, dependencies={"calls": calls})
