"""The safety protocol on a real MongoDB-compatible server, through `Flamingock.run()`: the three paths, marker
recovery, transactions the database aborts, commits whose outcome is unknown, and concurrent instances."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from aioflamingock import (
    AuditEntry,
    AuditState,
    Change,
    ChangeFailedError,
    ChangeOutcome,
    ConfigurationError,
    Flamingock,
    LockLostError,
    LockOptions,
    Marker,
    RunStatus,
    TransactionAbortedError,
    TransactionOutcomeUnknownError,
    TxStrategy,
)
from aioflamingock._model import utc_now
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


class InsertThenFail(Change):
    id = "insert-then-fail"
    order = "0002"
    author = "tester"
    target_system = "app"

    async def execute(self, ctx: MongoDBContext) -> None:
        await ctx.db.users.insert_one({"_id": "doomed"}, session=ctx.session)
        raise ValueError("boom")


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
def other_database(mongodb_uri: str) -> Any:
    from pymongo import MongoClient

    name = f"test_{uuid.uuid4().hex[:16]}"
    yield name
    with MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000) as client:
        client.drop_database(name)


@pytest.fixture
def app(mongodb_client: Any, mongodb_database: str) -> MongoDBTargetSystem:
    return MongoDBTargetSystem("app", client=mongodb_client, database=mongodb_database)


@pytest.fixture
def other(mongodb_client: Any, other_database: str) -> MongoDBTargetSystem:
    return MongoDBTargetSystem("other", client=mongodb_client, database=other_database)


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
    fl = flamingock(store, app, changes=[InsertUsers])
    report = await fl.run()
    assert report.applied == ["insert-users"]
    assert await app.db.users.count_documents({}) == 2
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


async def test_a_failing_shared_change_leaves_no_documents_and_only_a_failed_entry(
    app: MongoDBTargetSystem, store: MongoDBAuditStore
) -> None:
    fl = flamingock(store, app, changes=[InsertUsers, InsertThenFail])
    with pytest.raises(ChangeFailedError) as caught:
        await fl.run()
    assert isinstance(caught.value.__cause__, ValueError)
    assert await app.db.users.find_one({"_id": "doomed"}) is None
    assert await app.db.users.count_documents({}) == 2
    assert [(e.state, e.transaction_flag) for e in await entries(fl, "insert-then-fail")] == [(AuditState.FAILED, True)]
    assert await fl.lock_info() is None


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


# -- marker path --------------------------------------------------------------------------------------------------


async def test_marker_path_records_started_then_applied_and_deletes_the_marker(
    app: MongoDBTargetSystem, other: MongoDBTargetSystem, store: MongoDBAuditStore
) -> None:
    InsertThing.executions = 0
    fl = flamingock(store, app, other, changes=[InsertThing])
    report = await fl.run()
    assert report.applied == ["insert-thing"]
    assert [(e.state, e.tx_strategy) for e in await entries(fl, "insert-thing")] == [
        (AuditState.STARTED, TxStrategy.TX_AUDIT_STORE_SYNC),
        (AuditState.APPLIED, TxStrategy.TX_AUDIT_STORE_SYNC),
    ]
    assert await other.db.things.count_documents({}) == 1
    assert await other.read_marker("insert-thing") is None
    assert await other.db.flamingockMarker.count_documents({}) == 0


async def test_a_started_change_whose_marker_committed_is_recorded_applied_without_running(
    app: MongoDBTargetSystem, other: MongoDBTargetSystem, store: MongoDBAuditStore
) -> None:
    """What a run that crashed between its commit and its APPLIED entry leaves behind, made for real."""
    InsertThing.executions = 0
    async with store:
        lease = await store.lock.try_acquire("default", "crashed-run", 30)
        assert lease is not None
        started = AuditEntry(
            execution_id="crashed",
            stage_id="default",
            change_id="insert-thing",
            created_at=utc_now(),
            state=AuditState.STARTED,
            tx_strategy=TxStrategy.TX_AUDIT_STORE_SYNC,
            target_system_id="other",
            change_order="0004",
            transaction_flag=True,
        )
        await store.append(started, fence=lease.fence)
        async with other.transaction() as tx:
            await tx.context.db.things.insert_one({"_id": "thing"}, session=tx.context.session)
            await other.write_marker(tx, Marker("insert-thing", "crashed"))
        assert await store.lock.release(lease)
    assert await other.read_marker("insert-thing") == Marker("insert-thing", "crashed")

    fl = flamingock(store, app, other, changes=[InsertThing])
    report = await fl.run()
    assert [c.outcome for c in report.changes] == [ChangeOutcome.RECOVERED]
    assert InsertThing.executions == 0
    assert await other.db.things.count_documents({}) == 1
    newest = (await entries(fl, "insert-thing"))[-1]
    assert newest.state is AuditState.APPLIED and newest.metadata["recoveredFromExecutionId"] == "crashed"
    assert await other.read_marker("insert-thing") is None


# -- non-transactional path ---------------------------------------------------------------------------------------


async def test_non_transactional_change_gets_no_session_and_records_started_then_applied(
    app: MongoDBTargetSystem, store: MongoDBAuditStore
) -> None:
    CreateIndex.sessions = []
    fl = flamingock(store, app, changes=[CreateIndex])
    assert (await fl.run()).applied == ["create-index"]
    assert CreateIndex.sessions == [None]
    assert "email_1" in await app.db.users.index_information()
    assert [(e.state, e.tx_strategy, e.transaction_flag) for e in await entries(fl, "create-index")] == [
        (AuditState.STARTED, TxStrategy.NON_TX, False),
        (AuditState.APPLIED, TxStrategy.NON_TX, False),
    ]


# -- the lock -----------------------------------------------------------------------------------------------------


async def test_a_second_run_takes_no_lock_and_writes_nothing(
    app: MongoDBTargetSystem, other: MongoDBTargetSystem, store: MongoDBAuditStore
) -> None:
    changes: list[type[Change]] = [InsertUsers, InsertThing, CreateIndex]
    assert (await flamingock(store, app, other, changes=changes).run()).status is RunStatus.SUCCESS
    lock_before = await raw_lock(app)
    audit_before = await app.db.flamingockAuditLog.count_documents({})
    assert (await flamingock(store, app, other, changes=changes).run()).status is RunStatus.NO_CHANGES
    assert await raw_lock(app) == lock_before
    assert await app.db.flamingockAuditLog.count_documents({}) == audit_before


async def test_release_keeps_the_lock_and_fence_documents_so_tokens_and_seq_keep_counting(
    app: MongoDBTargetSystem, store: MongoDBAuditStore
) -> None:
    await flamingock(store, app, changes=[InsertUsers]).run()
    first, fence = await raw_lock(app), await raw_lock(app, "#fence")
    assert (first["status"], first["fencingToken"]) == ("RELEASED", 1)
    assert (fence["live"], fence["fencingToken"], fence["seq"]) == (False, 1, 1)
    assert {"key", "owner", "acquiredAt", "expiresAt"} <= set(first)
    with pytest.raises(ChangeFailedError):
        await flamingock(store, app, changes=[InsertUsers, InsertThenFail]).run()
    second, fence = await raw_lock(app), await raw_lock(app, "#fence")
    assert (second["status"], second["fencingToken"]) == ("RELEASED", 2)
    assert (fence["live"], fence["fencingToken"], fence["seq"]) == (False, 2, 2)
    seqs = [d["seq"] async for d in app.db.flamingockAuditLog.find({}, sort=[("seq", 1)])]
    assert seqs == [1, 2]


class SlowInsert(Change):
    """Shared path, longer than several lease renewals."""

    id = "slow-insert"
    order = "0001"
    author = "tester"
    target_system = "app"
    executions = 0

    async def execute(self, ctx: MongoDBContext) -> None:
        type(self).executions += 1
        await ctx.db.users.insert_one({"_id": "slow"}, session=ctx.session)
        await anyio.sleep(1.2)  # lease 0.6 s: renewed about 6 times meanwhile
        await ctx.db.users.insert_one({"_id": "slower"}, session=ctx.session)


async def test_a_shared_change_longer_than_its_lease_commits_once_despite_renewals(
    app: MongoDBTargetSystem, store: MongoDBAuditStore
) -> None:
    """Renewals write the lock document, never the fence: they don't conflict with the change's transaction."""
    SlowInsert.executions = 0
    lock = LockOptions(lease_seconds=0.6, acquire_timeout_seconds=10, retry_interval_seconds=0.05)
    fl = Flamingock(audit_store=store, target_systems=[app], changes=[SlowInsert], lock=lock)
    report = await fl.run()
    assert report.applied == ["slow-insert"]
    assert SlowInsert.executions == 1
    assert await app.db.users.count_documents({}) == 2
    assert [e.state for e in await entries(fl, "slow-insert")] == [AuditState.APPLIED]


async def test_a_takeover_during_a_shared_transaction_commits_nothing_of_it(
    app: MongoDBTargetSystem, store: MongoDBAuditStore
) -> None:
    """The late holder's transaction began before the takeover: its fence write conflicts with it."""
    async with store:
        old = await store.lock.try_acquire("default", "old", 0.3)
        assert old is not None
        applied = AuditEntry(
            execution_id="late", stage_id="default", change_id="late", created_at=utc_now(), state=AuditState.APPLIED
        )
        with pytest.raises(TransactionAbortedError):  # a write conflict: the engine would run it again
            async with app.transaction() as tx:
                await tx.context.db.users.insert_one({"_id": "late"}, session=tx.context.session)
                await anyio.sleep(0.5)
                assert await store.lock.try_acquire("default", "new", 30) is not None
                await store.append_in_transaction(tx, applied, fence=old.fence)
        with pytest.raises(LockLostError):  # and run again, it finds the lock taken
            async with app.transaction() as tx:
                await store.append_in_transaction(tx, applied, fence=old.fence)
        assert await app.db.users.count_documents({}) == 0
        assert await store.current_states() == {}


async def test_concurrent_runs_apply_each_change_once(
    mongodb_uri: str, mongodb_database: str, other_database: str
) -> None:
    from pymongo import AsyncMongoClient

    class Count(Change):
        id = "count"
        order = "0001"
        author = "tester"
        target_system = "app"

        async def execute(self, ctx: MongoDBContext) -> None:
            await ctx.db.effects.update_one({"_id": self.id}, {"$inc": {"n": 1}}, upsert=True, session=ctx.session)

    class CountElsewhere(Count):
        id = "count-elsewhere"
        order = "0002"
        target_system = "other"

    class CountWithoutTransaction(Count):
        id = "count-without-transaction"
        order = "0003"
        transactional = False

    clients = [AsyncMongoClient(mongodb_uri, serverSelectionTimeoutMS=5000) for _ in range(8)]
    try:
        runs = []
        for client in clients:
            app = MongoDBTargetSystem("app", client=client, database=mongodb_database)
            other = MongoDBTargetSystem("other", client=client, database=other_database)
            changes: list[type[Change]] = [Count, CountElsewhere, CountWithoutTransaction]
            runs.append(flamingock(MongoDBAuditStore.from_target(app), app, other, changes=changes).run())
        reports = await asyncio.gather(*runs)
        applied = sorted(change_id for report in reports for change_id in report.applied)
        assert applied == ["count", "count-elsewhere", "count-without-transaction"]
        db, elsewhere = clients[0][mongodb_database], clients[0][other_database]
        assert await db.effects.find().sort("_id").to_list() == [
            {"_id": "count", "n": 1},
            {"_id": "count-without-transaction", "n": 1},
        ]
        assert await elsewhere.effects.find().to_list() == [{"_id": "count-elsewhere", "n": 1}]
        states = [d["state"] async for d in db.flamingockAuditLog.find({"state": "APPLIED"})]
        assert len(states) == 3
    finally:
        for client in clients:
            await client.close()


async def test_a_cancelled_transaction_is_aborted(app: MongoDBTargetSystem) -> None:
    with anyio.move_on_after(0.3) as scope:
        async with app.transaction() as tx:
            await tx.context.db.users.insert_one({"_id": "never"}, session=tx.context.session)
            await anyio.sleep(30)
    assert scope.cancelled_caught
    assert await app.db.users.count_documents({}) == 0
    async with app.transaction() as tx:  # the document the cancelled transaction wrote is free again
        await tx.context.db.users.insert_one({"_id": "never"}, session=tx.context.session)
    assert await app.db.users.count_documents({}) == 1


async def test_a_motor_client_takes_the_same_three_paths(
    mongodb_uri: str, mongodb_database: str, other_database: str
) -> None:
    motor = pytest.importorskip("motor.motor_asyncio", reason="Motor is not installed")
    client = motor.AsyncIOMotorClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    try:
        app = MongoDBTargetSystem("app", client=client, database=mongodb_database)
        other = MongoDBTargetSystem("other", client=client, database=other_database)
        CreateIndex.sessions = []
        fl = flamingock(MongoDBAuditStore.from_target(app), app, other, changes=[InsertUsers, CreateIndex, InsertThing])
        assert (await fl.run()).applied == ["insert-users", "create-index", "insert-thing"]
        assert CreateIndex.sessions == [None]
        assert [e.state for e in await entries(fl, "insert-thing")] == [AuditState.STARTED, AuditState.APPLIED]
        assert (await fl.run()).status is RunStatus.NO_CHANGES
    finally:
        client.close()


# -- commits, configuration ---------------------------------------------------------------------------------------


@pytest.fixture
async def fail_commits(mongodb_client: Any) -> AsyncIterator[Any]:
    """`fail(times)`: the next `times` commitTransaction commands lose their connection."""
    from pymongo.errors import OperationFailure

    configured: list[int] = []

    async def fail(times: int) -> None:
        command = {
            "configureFailPoint": "failCommand",
            "mode": {"times": times},
            "data": {"failCommands": ["commitTransaction"], "closeConnection": True},
        }
        try:
            await mongodb_client.admin.command(command)
        except OperationFailure as exc:
            pytest.skip(f"the server has no failCommand fail point (mongod needs enableTestCommands=1): {exc}")
        configured.append(times)

    yield fail
    if configured:
        await mongodb_client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})


async def test_a_commit_whose_outcome_is_unknown_is_committed_again(
    app: MongoDBTargetSystem, fail_commits: Any
) -> None:
    await fail_commits(2)  # the driver's own retry and our first attempt
    async with app.transaction() as tx:
        await tx.context.db.users.insert_one({"_id": "once"}, session=tx.context.session)
    assert await app.db.users.count_documents({"_id": "once"}) == 1


async def test_a_commit_never_confirmed_raises_outcome_unknown(app: MongoDBTargetSystem, fail_commits: Any) -> None:
    await fail_commits(100)
    with pytest.raises(TransactionOutcomeUnknownError):
        async with app.transaction() as tx:
            await tx.context.db.users.insert_one({"_id": "maybe"}, session=tx.context.session)
    # The transaction is still open on the server (no commit ever reached it): end it, so that dropping the
    # database afterwards does not wait for the server to reap it.
    await app.client.admin.command({"killAllSessions": []})


async def test_without_create_indexes_a_missing_index_is_named(app: MongoDBTargetSystem) -> None:
    store = MongoDBAuditStore.from_target(app, create_indexes=False)
    with pytest.raises(ConfigurationError) as caught:
        await store.open()
    assert "createIndex({changeId: 1, seq: -1})" in str(caught.value)
    async with MongoDBAuditStore.from_target(app):  # creates them
        pass
    async with store:
        assert await store.current_states() == {}


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"database": "a.b"}, "database 'a.b'"),
        ({"database": ""}, "database ''"),
        ({"audit_collection": "system.audit"}, "system."),
        ({"lock_collection": "bad$name"}, "lock_collection"),
    ],
)
def test_bad_names_are_configuration_errors(mongodb_client: Any, options: dict[str, str], fragment: str) -> None:
    database = options.pop("database", "app")
    with pytest.raises(ConfigurationError, match=fragment.replace(".", r"\.").replace("$", r"\$")):
        MongoDBAuditStore.from_target(MongoDBTargetSystem("app", client=mongodb_client, database=database), **options)


def test_a_client_that_is_not_async_is_refused(mongodb_uri: str) -> None:
    from pymongo import MongoClient

    with MongoClient(mongodb_uri, connect=False) as client, pytest.raises(ConfigurationError, match="AsyncMongoClient"):
        MongoDBTargetSystem("app", client=client, database="app")  # type: ignore[arg-type]
