"""The conformance suite: what every audit store must do, as plain pytest classes.

A store's test module subclasses `AuditStoreConformance` and provides the `store` fixture (an open store on a
fresh, empty backing) and, for the multi-process race, `process_factory` (see `race_worker`).
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from .. import AuditEntry, AuditState, AuditStore, Fence, LockLease, LockLostError, Recovery, TxStrategy
from ..backend import utc_now

__all__ = ["AuditStoreConformance", "ManualClock", "assert_no_overlap", "make_entry"]

SHORT_LEASE = 0.4


def make_entry(change_id: str, state: AuditState = AuditState.APPLIED, **fields: object) -> AuditEntry:
    """An entry with every field set to a non-default value, so a store that drops one is caught."""
    values: dict[str, object] = {
        "execution_id": uuid.uuid4().hex,
        "stage_id": "svc",
        "change_id": change_id,
        "author": "alice",
        "created_at": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        "state": state,
        "type": "EXECUTION",
        "invoked_class": "pkg.changes._0001_x.X",
        "invoked_method": "execute",
        "source_file": "pkg/changes/_0001_x.py",
        "metadata": {"team": "core", "nested": {"n": 1, "list": [1, "a"]}},
        "execution_millis": 1234,
        "execution_hostname": "host-1",
        "error_trace": "Traceback...\nValueError: boom",
        "system_change": True,
        "tx_strategy": TxStrategy.TX_AUDIT_STORE_SYNC,
        "target_system_id": "users-db",
        "change_order": "0001",
        "recovery_strategy": Recovery.ALWAYS_RETRY,
        "transaction_flag": True,
    }
    values.update(fields)
    return AuditEntry.model_validate(values)


class ManualClock:
    """A clock for a store whose leases are judged by a local clock (`clock=` of SQLite, DynamoDB, Couchbase and
    the in-memory store): epoch seconds that move only when told to."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _owner(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def _history(store: AuditStore) -> list[AuditEntry]:
    return [entry async for entry in store.history()]


class AuditStoreConformance:
    """Subclass me. Provide `store` (an open, empty store) as a pytest fixture."""

    lock_key = "conformance"
    supports_processes = True
    """Set to False for a store that lives in one process (the in-memory store)."""

    @pytest.fixture
    async def store(self) -> AsyncIterator[AuditStore]:
        raise NotImplementedError("override the `store` fixture")
        yield  # pragma: no cover

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    async def clocked_store(self, clock: ManualClock) -> AsyncIterator[AuditStore]:
        """Override for a store whose lock reads a local clock: like `store`, built with `clock=clock`."""
        pytest.skip("this store's leases are judged by its server's clock: the real-time lock tests cover them")
        yield  # pragma: no cover

    def process_factory(self) -> tuple[str, list[str]]:
        """`("module:function", args)`: `function(*args)` returns an unopened store on the same backing as
        `store`, in another process."""
        raise NotImplementedError

    async def _hold(self, store: AuditStore, lease: float = 30.0) -> LockLease:
        held = await store.lock.try_acquire(self.lock_key, _owner("holder"), lease)
        assert held is not None
        return held

    # -- the audit log ------------------------------------------------------------------------------------------

    async def test_append_and_read_back_every_field(self, store: AuditStore) -> None:
        lease = await self._hold(store)
        entry = make_entry("c1")
        await store.append(entry, fence=lease.fence)
        assert await _history(store) == [entry]
        assert (await store.current_states()) == {"c1": entry}

    async def test_minimal_entry_round_trips(self, store: AuditStore) -> None:
        lease = await self._hold(store)
        entry = AuditEntry(
            execution_id="e", stage_id="s", change_id="c", created_at=utc_now(), state=AuditState.STARTED
        )
        await store.append(entry, fence=lease.fence)
        assert await _history(store) == [entry]

    async def test_current_state_is_the_newest_entry_of_each_change(self, store: AuditStore) -> None:
        lease = await self._hold(store)
        same_time = datetime(2026, 5, 5, tzinfo=UTC)
        sequence = [
            ("a", AuditState.STARTED),
            ("b", AuditState.STARTED),
            ("a", AuditState.FAILED),
            ("b", AuditState.APPLIED),
            ("a", AuditState.ROLLED_BACK),
            ("c", AuditState.MANUAL_MARKED_AS_APPLIED),
            ("a", AuditState.APPLIED),
        ]
        for change_id, state in sequence:
            await store.append(make_entry(change_id, state, created_at=same_time), fence=lease.fence)
        states = {k: v.state for k, v in (await store.current_states()).items()}
        assert states == {"a": AuditState.APPLIED, "b": AuditState.APPLIED, "c": AuditState.MANUAL_MARKED_AS_APPLIED}
        only = await store.current_states(["b", "missing"])
        assert list(only) == ["b"]

    async def test_history_is_oldest_first(self, store: AuditStore) -> None:
        lease = await self._hold(store)
        written = [make_entry(f"c{i}", AuditState.APPLIED) for i in range(25)]
        for entry in written:
            await store.append(entry, fence=lease.fence)
        assert [e.change_id for e in await _history(store)] == [e.change_id for e in written]

    # -- the lock -----------------------------------------------------------------------------------------------

    async def test_acquire_is_exclusive(self, store: AuditStore) -> None:
        first = await store.lock.try_acquire(self.lock_key, _owner("a"), 30)
        assert first is not None and first.token >= 1
        assert await store.lock.try_acquire(self.lock_key, _owner("b"), 30) is None
        info = await store.lock.read(self.lock_key)
        assert info is not None and info.owner == first.owner and info.token == first.token
        assert 25 < info.remaining_seconds <= 30.5

    async def test_reacquire_by_the_holder_increments_the_token(self, store: AuditStore) -> None:
        first = await self._hold(store)
        again = await store.lock.try_acquire(self.lock_key, first.owner, 30)
        assert again is not None and again.token > first.token

    async def test_keys_are_independent(self, store: AuditStore) -> None:
        assert await store.lock.try_acquire("service-a", _owner("a"), 30) is not None
        assert await store.lock.try_acquire("service-b", _owner("b"), 30) is not None

    async def test_renew_extends_the_lease(self, store: AuditStore) -> None:
        lease = await store.lock.try_acquire(self.lock_key, _owner("a"), 1)
        assert lease is not None
        renewed = await store.lock.renew(lease, 60)
        assert renewed.token == lease.token
        info = await store.lock.read(self.lock_key)
        assert info is not None and info.remaining_seconds > 50

    async def test_renew_by_a_stranger_fails(self, store: AuditStore) -> None:
        lease = await self._hold(store)
        stranger = LockLease(lease.key, _owner("stranger"), lease.token)
        with pytest.raises(LockLostError):
            await store.lock.renew(stranger, 30)

    async def test_release_only_by_the_holder(self, store: AuditStore) -> None:
        lease = await self._hold(store)
        stranger = LockLease(lease.key, _owner("stranger"), lease.token)
        assert await store.lock.release(stranger) is False
        assert (await store.lock.read(self.lock_key)) is not None
        assert await store.lock.release(lease) is True
        assert await store.lock.read(self.lock_key) is None
        assert await store.lock.try_acquire(self.lock_key, _owner("next"), 30) is not None

    async def test_expired_lease_is_taken_over_with_a_higher_token(self, store: AuditStore) -> None:
        old = await store.lock.try_acquire(self.lock_key, _owner("old"), SHORT_LEASE)
        assert old is not None
        assert await store.lock.try_acquire(self.lock_key, _owner("new"), 30) is None
        await asyncio.sleep(SHORT_LEASE + 0.2)
        new = await store.lock.try_acquire(self.lock_key, _owner("new"), 30)
        assert new is not None and new.token > old.token
        with pytest.raises(LockLostError):
            await store.lock.renew(old, 30)
        assert await store.lock.release(old) is False

    async def test_an_injected_clock_decides_renewal_expiry_and_takeover(
        self, clocked_store: AuditStore, clock: ManualClock
    ) -> None:
        store = clocked_store
        old = await store.lock.try_acquire(self.lock_key, _owner("old"), 10)
        assert old is not None
        clock.advance(4)
        info = await store.lock.read(self.lock_key)
        assert info is not None and info.remaining_seconds == pytest.approx(6, abs=0.01)
        assert await store.lock.try_acquire(self.lock_key, _owner("new"), 10) is None
        renewed = await store.lock.renew(old, 10)  # until 14
        clock.advance(9)
        assert await store.lock.try_acquire(self.lock_key, _owner("new"), 10) is None, "the renewal counts"
        clock.advance(2)
        new = await store.lock.try_acquire(self.lock_key, _owner("new"), 10)
        assert new is not None and new.token > renewed.token
        with pytest.raises(LockLostError):
            await store.lock.renew(renewed, 10)
        with pytest.raises(LockLostError):
            await store.append(make_entry("late"), fence=renewed.fence)
        await store.append(make_entry("current"), fence=new.fence)
        assert [e.change_id for e in await _history(store)] == ["current"]
        assert await store.lock.release(new)
        assert await store.lock.read(self.lock_key) is None

    async def test_force_release(self, store: AuditStore) -> None:
        await self._hold(store)
        assert await store.lock.force_release(self.lock_key) is True
        assert await store.lock.read(self.lock_key) is None
        assert await store.lock.force_release(self.lock_key) is False

    # -- fencing ------------------------------------------------------------------------------------------------

    async def test_stale_token_cannot_write(self, store: AuditStore) -> None:
        old = await store.lock.try_acquire(self.lock_key, _owner("old"), SHORT_LEASE)
        assert old is not None
        await asyncio.sleep(SHORT_LEASE + 0.2)
        new = await store.lock.try_acquire(self.lock_key, _owner("new"), 30)
        assert new is not None
        with pytest.raises(LockLostError):
            await store.append(make_entry("late"), fence=old.fence)
        await store.append(make_entry("current"), fence=new.fence)
        assert [e.change_id for e in await _history(store)] == ["current"]

    async def test_no_write_without_the_lock(self, store: AuditStore) -> None:
        with pytest.raises(LockLostError):
            await store.append(make_entry("x"), fence=Fence(self.lock_key, "nobody", 1))
        lease = await self._hold(store)
        await store.lock.release(lease)
        with pytest.raises(LockLostError):
            await store.append(make_entry("y"), fence=lease.fence)
        assert await _history(store) == []

    # -- races --------------------------------------------------------------------------------------------------

    async def test_many_tasks_one_winner(self, store: AuditStore) -> None:
        owners = [_owner(f"t{i}") for i in range(20)]
        leases = await asyncio.gather(*(store.lock.try_acquire(self.lock_key, o, 30) for o in owners))
        assert sum(lease is not None for lease in leases) == 1

    async def test_many_tasks_take_turns_without_overlap(self, store: AuditStore) -> None:
        async def worker(name: str) -> None:
            owner = _owner(name)
            for _ in range(3):
                lease = None
                while lease is None:
                    lease = await store.lock.try_acquire(self.lock_key, owner, 30)
                    await asyncio.sleep(0 if lease else 0.005)
                await store.append(make_entry(f"{name}", AuditState.STARTED), fence=lease.fence)
                await asyncio.sleep(0.005)
                await store.append(make_entry(f"{name}", AuditState.APPLIED), fence=lease.fence)
                assert await store.lock.release(lease)

        await asyncio.gather(*(worker(f"w{i}") for i in range(6)))
        assert_no_overlap(await _history(store), workers=6, rounds=3)

    async def test_many_processes_take_turns_without_overlap(self, store: AuditStore) -> None:
        if not self.supports_processes:
            pytest.skip("this store lives in one process")
        factory, args = self.process_factory()
        workers, rounds = 8, 3
        command = [sys.executable, "-m", "aioflamingock.testing._race", factory, self.lock_key]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        procs = [
            await asyncio.create_subprocess_exec(*command, f"p{i}", str(rounds), *args, env=env) for i in range(workers)
        ]
        codes = [await asyncio.wait_for(p.wait(), 120) for p in procs]
        assert codes == [0] * workers
        assert_no_overlap(await _history(store), workers=workers, rounds=rounds)


def assert_no_overlap(history: list[AuditEntry], *, workers: int, rounds: int) -> None:
    """Each critical section (STARTED then APPLIED of one worker) is contiguous in the log."""
    assert len(history) == workers * rounds * 2
    for started, applied in zip(history[::2], history[1::2], strict=True):
        assert started.state is AuditState.STARTED and applied.state is AuditState.APPLIED
        assert started.change_id == applied.change_id, "two lock holders wrote at the same time"
