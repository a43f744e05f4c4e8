"""What only Couchbase's store does, on the key-value test double unless told otherwise: what the audit's head
document guarantees and costs, and the lock's tokens. The protocol kit's scenarios run in `test_couchbase.py`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from aioflamingock import (
    AuditState,
    Change,
    Flamingock,
    LockLostError,
    LockOptions,
    Recovery,
    RunStatus,
    StoreError,
)
from aioflamingock.couchbase import CouchbaseAuditStore, CouchbaseContext, CouchbaseTargetSystem
from aioflamingock.couchbase._audit import HEAD_KEY, entry_key
from aioflamingock.couchbase._kv import Keyspace
from aioflamingock.testing import make_entry
from tests.servers import CouchbaseServer

FAST_LOCK = LockOptions(lease_seconds=10, acquire_timeout_seconds=30, retry_interval_seconds=0.05)
ROWS = "_default"


class SeedRows(Change):
    """Non-transactional: key-value writes."""

    id = "seed-rows"
    order = "0001"
    author = "tester"
    target_system = "app"
    transactional = False
    recovery = Recovery.ALWAYS_RETRY
    idempotency = "upserts"

    async def execute(self, ctx: CouchbaseContext) -> None:
        assert ctx.transaction is None
        for n in range(3):
            await ctx.collection(ROWS).upsert(f"row::{n}", {"n": n})


@pytest.fixture
def app(couchbase_cluster: Any, couchbase_server: CouchbaseServer) -> CouchbaseTargetSystem:
    return CouchbaseTargetSystem("app", cluster=couchbase_cluster, bucket=couchbase_server.bucket)


@pytest.fixture
async def store(app: CouchbaseTargetSystem, couchbase_collections: dict[str, str]) -> CouchbaseAuditStore:
    return CouchbaseAuditStore.from_target(app, **couchbase_collections)


@pytest.fixture
async def opened(store: CouchbaseAuditStore) -> AsyncIterator[CouchbaseAuditStore]:
    async with store:
        yield store


def flamingock(store: CouchbaseAuditStore, *targets: CouchbaseTargetSystem, changes: list[type[Change]]) -> Flamingock:
    return Flamingock(audit_store=store, target_systems=list(targets), changes=changes, lock=FAST_LOCK)


async def rows(app: CouchbaseTargetSystem) -> dict[str, Any]:
    async with app:
        keyspace = app.keyspace(ROWS, scope="_default")
        found = {}
        for key in ("row::0", "row::1", "row::2"):
            doc = await keyspace.get(key)
            if doc is not None:
                found[key] = doc.body["n"]
        return found


class Counting:
    """Counts the key-value operations a store sends, by wrapping its keyspaces' collections."""

    def __init__(self, *keyspaces: Keyspace) -> None:
        self.calls: list[str] = []
        for keyspace in keyspaces:
            keyspace.collection = self._wrap(keyspace.collection)

    def _wrap(self, collection: Any) -> Any:
        calls = self.calls

        class Wrapped:
            def __getattr__(self, name: str) -> Any:
                operation = getattr(collection, name)

                def counted(*args: Any, **kwargs: Any) -> Any:
                    calls.append(name)
                    return operation(*args, **kwargs)

                return counted

        return Wrapped()


# -- runs -------------------------------------------------------------------------------------------------------------


async def test_a_run_with_nothing_pending_reads_one_document(
    app: CouchbaseTargetSystem, store: CouchbaseAuditStore
) -> None:
    report = await flamingock(store, app, changes=[SeedRows]).run()
    assert report.status is RunStatus.SUCCESS and report.applied == ["seed-rows"]
    assert await rows(app) == {"row::0": 0, "row::1": 1, "row::2": 2}
    async with store:
        counting = Counting(store.log.keyspace, store.lock.keyspace)
        again = await flamingock(store, app, changes=[SeedRows]).run()
    assert again.status is RunStatus.NO_CHANGES
    # the head's `seq` and `summary` (one sub-document lookup), and nothing else
    assert counting.calls == ["lookup_in"], "a run with nothing pending reads the head's summary and nothing else"


# -- the head document ------------------------------------------------------------------------------------------------


async def test_current_states_is_one_get_whatever_the_size_of_the_audit(opened: CouchbaseAuditStore) -> None:
    lease = await opened.lock.try_acquire("svc", "me", 30)
    assert lease is not None
    for i in range(40):
        await opened.append(
            make_entry(f"c{i % 20}", AuditState.STARTED if i < 20 else AuditState.APPLIED), fence=lease.fence
        )
    counting = Counting(opened.log.keyspace, opened.lock.keyspace)
    states = await opened.current_states()
    assert counting.calls == ["get"]
    assert len(states) == 20 and {e.state for e in states.values()} == {AuditState.APPLIED}


async def test_change_ids_with_dots_are_keys_of_their_own_in_the_head(opened: CouchbaseAuditStore) -> None:
    lease = await opened.lock.try_acquire("svc", "me", 30)
    assert lease is not None
    for change_id in ("a", "a.b", "a.b.c", "v1.2_x-y"):
        await opened.append(make_entry(change_id), fence=lease.fence)
    assert sorted(await opened.current_states()) == ["a", "a.b", "a.b.c", "v1.2_x-y"]
    assert [e.change_id async for e in opened.history()] == ["a", "a.b", "a.b.c", "v1.2_x-y"]


async def test_an_append_costs_a_bounded_number_of_operations(opened: CouchbaseAuditStore) -> None:
    lease = await opened.lock.try_acquire("svc", "me", 30)
    assert lease is not None
    await opened.append(make_entry("first"), fence=lease.fence)
    counting = Counting(opened.log.keyspace, opened.lock.keyspace)
    await opened.append(make_entry("second"), fence=lease.fence)
    # the lock read and three paths of the head looked up, at once; three paths of the head written with CAS (the
    # commit point); the entry written, beside an insert of the previous one that fills in a crash's gap. The
    # head itself, which grows with the number of changes, is neither read nor written whole.
    assert sorted(counting.calls) == ["get", "insert", "lookup_in", "mutate_in", "upsert"]


async def test_an_entry_whose_document_a_crash_kept_out_is_still_read_then_written_again(
    opened: CouchbaseAuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    lease = await opened.lock.try_acquire("svc", "me", 30)
    assert lease is not None
    await opened.append(make_entry("a"), fence=lease.fence)

    async def crash(*args: Any) -> None:
        raise RuntimeError("the process died after the head was written")

    with monkeypatch.context() as patch:
        patch.setattr(opened.log, "_write_entries", crash)
        with pytest.raises(RuntimeError):
            await opened.append(make_entry("b"), fence=lease.fence)
    assert await opened.log.keyspace.get(entry_key(2)) is None
    assert [e.change_id async for e in opened.history()] == ["a", "b"], "the newest entry is read from the head"
    await opened.append(make_entry("c"), fence=lease.fence)
    assert await opened.log.keyspace.get(entry_key(2)) is not None, "the next append wrote it"
    assert [e.change_id async for e in opened.history()] == ["a", "b", "c"]


async def test_a_holder_that_passed_its_lock_check_cannot_write_once_another_claimed_the_log(
    opened: CouchbaseAuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window the key-value service leaves open: the lock check passed (a paused process), the lease ended and
    another instance took the lock. The head's claim still stops the late write."""
    old = await opened.lock.try_acquire("svc", "old", 0.2)
    assert old is not None
    await opened.append(make_entry("before"), fence=old.fence)
    import asyncio

    await asyncio.sleep(0.3)
    new = await opened.lock.try_acquire("svc", "new", 30)
    assert new is not None and new.token > old.token

    async def passed() -> None:
        return None

    monkeypatch.setattr(opened.lock, "check", lambda fence, what: passed())
    with pytest.raises(LockLostError, match="claimed by a newer holder"):
        await opened.append(make_entry("late"), fence=old.fence)
    assert [e.change_id async for e in opened.history()] == ["before"]


async def test_tokens_keep_counting_after_a_release_deletes_the_lock(opened: CouchbaseAuditStore) -> None:
    first = await opened.lock.try_acquire("svc", "a", 30)
    assert first is not None and await opened.lock.release(first)
    assert await opened.lock.read("svc") is None
    second = await opened.lock.try_acquire("svc", "b", 30)
    assert second is not None and second.token == first.token + 1


async def test_a_head_written_by_something_else_is_a_store_error(opened: CouchbaseAuditStore) -> None:
    await opened.log.keyspace.upsert(HEAD_KEY, {"unexpected": True})
    with pytest.raises((StoreError, KeyError)):
        await opened.current_states()
