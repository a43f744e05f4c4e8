"""What only MongoDB's store does, on a real MongoDB-compatible server: the documents' shape, a real write
conflict, the lock's documents, Motor. The protocol kit's scenarios run in `test_mongodb.py`."""

from __future__ import annotations

from typing import Any

import pytest

from aioflamingock import (
    AuditEntry,
    AuditState,
    Change,
    Flamingock,
    LockOptions,
    RunStatus,
    TxStrategy,
)
from aioflamingock.mongodb import MongoDBAuditStore, MongoDBContext, MongoDBTargetSystem

FAST_LOCK = LockOptions(lease_seconds=10, acquire_timeout_seconds=30, retry_interval_seconds=0.05)


class InsertUsers(Change):
    """Shared path: on the store's own database."""

    id = "insert-users"
    order = "0001"
    author = "tester"
    target_system = "app"

    async def execute(self, ctx: MongoDBContext) -> None:
        await ctx.db.users.insert_many([{"_id": 1}, {"_id": 2}], session=ctx.session)


class InsertThing(Change):
    """Marker path: on another database than the store's."""

    id = "insert-thing"
    order = "0004"
    author = "tester"
    target_system = "other"
    executions = 0

    async def execute(self, ctx: MongoDBContext) -> None:
        type(self).executions += 1
        await ctx.db.things.insert_one({"_id": "thing"}, session=ctx.session)


class CreateIndex(Change):
    """Non-transactional path."""

    id = "create-index"
    order = "0003"
    author = "tester"
    target_system = "app"
    transactional = False
    sessions: list[object] = []

    async def execute(self, ctx: MongoDBContext) -> None:
        type(self).sessions.append(ctx.session)
        await ctx.db.users.create_index("email", name="email_1")


@pytest.fixture
def app(mongodb_client: Any, mongodb_database: str) -> MongoDBTargetSystem:
    return MongoDBTargetSystem("app", client=mongodb_client, database=mongodb_database)


@pytest.fixture
def other(mongodb_client: Any, mongodb_other_database: str) -> MongoDBTargetSystem:
    return MongoDBTargetSystem("other", client=mongodb_client, database=mongodb_other_database)


@pytest.fixture
def store(app: MongoDBTargetSystem) -> MongoDBAuditStore:
    return MongoDBAuditStore.from_target(app)


def flamingock(store: MongoDBAuditStore, *targets: MongoDBTargetSystem, changes: list[type[Change]]) -> Flamingock:
    return Flamingock(audit_store=store, target_systems=list(targets), changes=changes, lock=FAST_LOCK)


async def entries(fl: Flamingock, change_id: str) -> list[AuditEntry]:
    return [e async for e in fl.history() if e.change_id == change_id]


async def raw_lock(app: MongoDBTargetSystem, suffix: str = "") -> dict[str, Any]:
    document = await app.db.flamingockLock.find_one({"_id": f"default{suffix}"})
    assert document is not None
    return dict(document)


# -- shared transaction -------------------------------------------------------------------------------------------


async def test_shared_path_commits_the_documents_and_the_applied_entry_together(
    app: MongoDBTargetSystem, store: MongoDBAuditStore
) -> None:
    CreateIndex.sessions = []
    fl = flamingock(store, app, changes=[InsertUsers, CreateIndex])
    report = await fl.run()
    assert report.applied == ["insert-users", "create-index"]
    assert CreateIndex.sessions == [None], "a non-transactional change gets no session"
    assert await app.db.users.count_documents({}) == 2
    assert "email_1" in await app.db.users.index_information()
    [entry] = await entries(fl, "insert-users")
    assert (entry.state, entry.tx_strategy, entry.transaction_flag) == (
        AuditState.APPLIED,
        TxStrategy.TX_AUDIT_STORE_SHARED,
        True,
    )
    raw = await app.db.flamingockAuditLog.find_one({"changeId": "insert-users"})
    assert raw is not None
    assert raw["state"] == "APPLIED" and raw["txStrategy"] == "TX_AUDIT_STORE_SHARED" and raw["seq"] == 1
    assert raw["createdAt"] == entry.created_at.replace(tzinfo=None)  # a BSON date, not a string
    assert {"executionId", "stageId", "changeOrder", "recoveryStrategy", "transactionFlag"} <= set(raw)


class ConflictOnce(Change):
    """Meets a write conflict the first time: another transaction holds the document it updates."""

    id = "conflict-once"
    order = "0001"
    author = "tester"
    target_system = "app"
    executions = 0

    async def execute(self, ctx: MongoDBContext) -> None:
        type(self).executions += 1
        if type(self).executions == 1:
            async with ctx.client.start_session() as rival:
                await rival.start_transaction()
                await ctx.db.counters.update_one({"_id": "c"}, {"$set": {"rival": True}}, session=rival)
                try:
                    await ctx.db.counters.update_one({"_id": "c"}, {"$inc": {"n": 1}}, session=ctx.session)
                finally:
                    await rival.abort_transaction()
        await ctx.db.counters.update_one({"_id": "c"}, {"$inc": {"n": 1}}, session=ctx.session)


async def test_a_write_conflict_aborts_the_transaction_and_the_change_runs_again_once(
    app: MongoDBTargetSystem, store: MongoDBAuditStore
) -> None:
    ConflictOnce.executions = 0
    await app.db.counters.insert_one({"_id": "c", "n": 0})
    fl = flamingock(store, app, changes=[ConflictOnce])
    report = await fl.run()
    assert report.applied == ["conflict-once"]
    assert ConflictOnce.executions == 2
    assert await app.db.counters.find_one({"_id": "c"}) == {"_id": "c", "n": 1}
    assert [e.state for e in await entries(fl, "conflict-once")] == [AuditState.APPLIED]


async def test_release_keeps_the_lock_and_fence_documents_so_tokens_and_seq_keep_counting(
    app: MongoDBTargetSystem, store: MongoDBAuditStore
) -> None:
    await flamingock(store, app, changes=[InsertUsers]).run()
    first, fence = await raw_lock(app), await raw_lock(app, "#fence")
    assert (first["status"], first["fencingToken"]) == ("RELEASED", 1)
    assert (fence["live"], fence["fencingToken"], fence["seq"]) == (False, 1, 1)
    assert {"key", "owner", "acquiredAt", "expiresAt"} <= set(first)
    await flamingock(store, app, changes=[InsertUsers, CreateIndex]).run()
    second, fence = await raw_lock(app), await raw_lock(app, "#fence")
    assert (second["status"], second["fencingToken"]) == ("RELEASED", 2)
    assert (fence["live"], fence["fencingToken"], fence["seq"]) == (False, 2, 3)
    seqs = [d["seq"] async for d in app.db.flamingockAuditLog.find({}, sort=[("seq", 1)])]
    assert seqs == [1, 2, 3]


async def test_a_motor_client_takes_the_same_three_paths(
    mongodb_uri: str, mongodb_database: str, mongodb_other_database: str
) -> None:
    motor = pytest.importorskip("motor.motor_asyncio", reason="Motor is not installed")
    client = motor.AsyncIOMotorClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    try:
        app = MongoDBTargetSystem("app", client=client, database=mongodb_database)
        other = MongoDBTargetSystem("other", client=client, database=mongodb_other_database)
        CreateIndex.sessions = []
        fl = flamingock(MongoDBAuditStore.from_target(app), app, other, changes=[InsertUsers, CreateIndex, InsertThing])
        assert (await fl.run()).applied == ["insert-users", "create-index", "insert-thing"]
        assert CreateIndex.sessions == [None]
        assert [e.state for e in await entries(fl, "insert-thing")] == [AuditState.STARTED, AuditState.APPLIED]
        assert (await fl.run()).status is RunStatus.NO_CHANGES
    finally:
        client.close()
