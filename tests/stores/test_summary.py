"""The start-up summary: a run with nothing pending reads one row instead of every change's state, and the summary
never says something the full read does not. Random histories — applied and failed changes, on both
transactional and non-transactional paths, `fix` either way, `undo`, changes no longer declared and declared
again, an entry written by a tool that keeps no summary, an entry deleted by hand — are driven through a real
store (SQLite, PostgreSQL, MariaDB/MySQL); after each step the summary is either absent or exactly the summary of
the full read, and its fast answer never says "nothing pending" when the plan has something to do."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aioflamingock import Change, Flamingock, PendingChangesError, PlannedAction, RunError, RunStatus
from aioflamingock.backend import summary_of
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteContext, SQLiteTargetSystem
from tests.servers import Server

IDS = ("c0", "c1", "c2", "c3", "c4")
NON_TRANSACTIONAL = {"c2", "c3"}
"""c0, c1 and c4 take the shared-transaction path; c2 and c3 write outside a transaction (a failure there needs a
human, unless the change retries: c3 is ALWAYS_RETRY)."""


def changes(failing: set[str]) -> dict[str, type[Change]]:
    """One class per id, which fails when its id is in `failing`; on any SQL, MongoDB or DynamoDB target."""

    async def touch(ctx: Any) -> None:
        if hasattr(ctx, "db"):  # MongoDB
            await ctx.db["touched"].find_one({}, session=ctx.session)
            return
        if not hasattr(ctx, "connection"):  # DynamoDB: a change that writes nothing
            return
        from sqlalchemy import text

        await ctx.connection.execute("SELECT 1" if isinstance(ctx, SQLiteContext) else text("SELECT 1"))

    def make(change_id: str, order: int) -> type[Change]:
        async def execute(self: Change, ctx: Any) -> None:
            await touch(ctx)
            if change_id in failing:
                raise RuntimeError(f"{change_id} fails this time")

        async def rollback(self: Change, ctx: Any) -> None:
            await touch(ctx)

        attributes: dict[str, Any] = {
            "id": change_id,
            "order": f"{order:04d}",
            "author": "tests",
            "target_system": "db",
            "transactional": change_id not in NON_TRANSACTIONAL,
            "execute": execute,
            "rollback": rollback,
        }
        if change_id == "c3":
            attributes["recovery"] = "ALWAYS_RETRY"
            attributes["idempotency"] = "it only reads"
        return type(f"Change_{change_id}", (Change,), attributes)

    return {change_id: make(change_id, i) for i, change_id in enumerate(IDS)}


class Backend:
    """One database for one history: engines on it, and a connection for what is done by hand."""

    audit = "flamingock_audit_log"

    async def __aenter__(self) -> Backend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.by_hand.dispose()

    by_hand: Any

    def store(self) -> Any:
        raise NotImplementedError

    def engine(self, declared: list[str], failing: set[str] | frozenset[str] = frozenset()) -> Flamingock:
        store = self.store()
        made = changes(set(failing))
        return Flamingock(audit_store=store, target_systems=[store.target], changes=[made[i] for i in declared])

    async def foreign_entry(self, change_id: str, state: str) -> None:
        """An entry written by a tool that keeps no summary: an older version, say."""
        self.raw(
            f"INSERT INTO {self.audit} (execution_id, stage_id, change_id, created_at, state, type, "
            "metadata, execution_millis, system_change, tx_strategy, recovery_strategy, transaction_flag) "
            "VALUES (:e, 'default', :c, '2026-12-02T00:00:00Z', :s, 'EXECUTION', '{}', 0, :no, 'NON_TX', "
            "'MANUAL_INTERVENTION', :no)",
            {"e": uuid.uuid4().hex, "c": change_id, "s": state, "no": False},
        )

    async def delete_newest(self, change_id: str) -> None:
        """A human deleting a change's newest entry, as CorruptAuditError's fix says."""
        for (newest,) in self.raw(f"SELECT MAX(id) FROM {self.audit} WHERE change_id = :c", {"c": change_id}):
            if newest is not None:
                self.raw(f"DELETE FROM {self.audit} WHERE id = :id", {"id": newest})

    def raw(self, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        """A statement run by hand, as a human or another tool would; its rows (none if the audit is not made)."""
        from sqlalchemy import inspect, text

        with self.by_hand.begin() as connection:
            if not inspect(connection).has_table(self.audit):
                return []
            found = connection.execute(text(sql), params or {})
            return list(found.all()) if found.returns_rows else []


class SQLiteBackend(Backend):
    def __init__(self, directory: Path) -> None:
        from sqlalchemy import create_engine

        self.path = directory / "app.db"
        self.by_hand = create_engine(f"sqlite:///{self.path}")

    def store(self) -> Any:
        return SQLiteAuditStore.from_target(SQLiteTargetSystem("db", path=self.path))


class SQLBackend(Backend):
    def __init__(self, server: Server) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        from tests.stores.test_sql import _sync_engine, engine_url

        self.server, self.prefix = server, f"h{uuid.uuid4().hex[:10]}_"
        self.audit = f"{self.prefix}audit"
        self.made = create_async_engine(engine_url(server.uri))
        self.by_hand = _sync_engine(server)

    async def __aexit__(self, *exc: object) -> None:
        from tests.stores.test_sql import _drop_tables

        await self.made.dispose()
        self.by_hand.dispose()
        _drop_tables(self.server, self.prefix)

    def store(self) -> Any:
        from aioflamingock.sql import SQLAuditStore, SQLTargetSystem

        target = SQLTargetSystem("db", engine=self.made, marker_table=f"{self.prefix}marker")
        return SQLAuditStore.from_target(target, audit_table=self.audit, lock_table=f"{self.prefix}lock")


class MongoDBBackend(Backend):
    """What is done by hand is done with PyMongo: an entry appended by a tool that keeps no summary (as every
    version of this library appends: moving a fence, then inserting with its `seq`), an entry deleted."""

    audit = "flamingockAuditLog"

    def __init__(self, server: Server) -> None:
        from pymongo import AsyncMongoClient, MongoClient

        self.database = f"h{uuid.uuid4().hex[:10]}"
        self.client: Any = AsyncMongoClient(server.uri, serverSelectionTimeoutMS=10_000)
        self.hand: Any = MongoClient(server.uri, serverSelectionTimeoutMS=10_000)[self.database]

    async def __aexit__(self, *exc: object) -> None:
        self.hand.client.drop_database(self.database)
        self.hand.client.close()
        await self.client.close()

    def store(self) -> Any:
        from aioflamingock.mongodb import MongoDBAuditStore, MongoDBTargetSystem

        return MongoDBAuditStore.from_target(MongoDBTargetSystem("db", client=self.client, database=self.database))

    async def foreign_entry(self, change_id: str, state: str) -> None:
        from datetime import UTC, datetime

        fence = self.hand["flamingockLock"].find_one_and_update(
            {"_id": "default#fence"}, {"$inc": {"seq": 1}}, upsert=True, return_document=True
        )
        entry = {"executionId": uuid.uuid4().hex, "stageId": "default", "changeId": change_id, "state": state}
        self.hand[self.audit].insert_one(entry | {"createdAt": datetime(2026, 12, 2, tzinfo=UTC), "seq": fence["seq"]})

    async def delete_newest(self, change_id: str) -> None:
        newest = self.hand[self.audit].find_one({"changeId": change_id}, sort=[("seq", -1)])
        if newest is not None:
            self.hand[self.audit].delete_one({"_id": newest["_id"]})


class DynamoDBBackend(Backend):
    """What is done by hand is done with boto3: an entry appended by a tool that keeps no summary (at the next
    `seq`, as every version of this library appends); an entry deleted, then the summary, as DynamoDB's
    CorruptAuditError says to (DynamoDB sees only the newest entry move: docs/decisions.md)."""

    audit = "audit"

    def __init__(self, endpoint: str, prefix: str) -> None:
        import boto3

        from tests.servers import dynamodb_client_options

        self.endpoint, self.prefix = endpoint, prefix
        options = dynamodb_client_options(endpoint)
        options.pop("config")
        self.hand: Any = boto3.client("dynamodb", **options)
        self.audit = f"{prefix}audit"

    async def __aenter__(self) -> DynamoDBBackend:
        from tests.servers import dynamodb_client_options, dynamodb_session

        self._client_context = dynamodb_session().client("dynamodb", **dynamodb_client_options(self.endpoint))
        self.client = await self._client_context.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client_context.__aexit__(None, None, None)
        for name in (self.audit, f"{self.prefix}lock"):
            with contextlib.suppress(Exception):
                self.hand.delete_table(TableName=name)
        self.hand.close()

    def store(self) -> Any:
        from aioflamingock.dynamodb import DynamoDBAuditStore, DynamoDBTargetSystem

        target = DynamoDBTargetSystem("db", client=self.client, marker_table=f"{self.prefix}marker")
        return DynamoDBAuditStore.from_target(target, audit_table=self.audit, lock_table=f"{self.prefix}lock")

    def _items(self) -> list[dict[str, Any]]:
        from aioflamingock.dynamodb._store import SUMMARY_SEQ

        with contextlib.suppress(self.hand.exceptions.ResourceNotFoundException):
            found = self.hand.query(
                TableName=self.audit,
                KeyConditionExpression="partitionKey = :p AND seq < :s",
                ExpressionAttributeValues={":p": {"S": "auditLog"}, ":s": {"N": str(SUMMARY_SEQ)}},
                ConsistentRead=True,
            )
            return list(found["Items"])
        return []

    async def foreign_entry(self, change_id: str, state: str) -> None:
        items = self._items()
        seq = max((int(item["seq"]["N"]) for item in items), default=0) + 1
        if not items and not self.hand.list_tables()["TableNames"].count(self.audit):
            return  # no audit yet: nothing to write into
        self.hand.put_item(
            TableName=self.audit,
            Item={
                "partitionKey": {"S": "auditLog"},
                "seq": {"N": str(seq)},
                "executionId": {"S": uuid.uuid4().hex},
                "stageId": {"S": "default"},
                "changeId": {"S": change_id},
                "createdAt": {"S": "2026-12-02T00:00:00Z"},
                "state": {"S": state},
            },
        )

    async def delete_newest(self, change_id: str) -> None:
        from aioflamingock.dynamodb._store import SUMMARY_SEQ

        mine = [item for item in self._items() if item.get("changeId", {}).get("S") == change_id]
        if mine:
            newest = max(mine, key=lambda item: int(item["seq"]["N"]))
            self.hand.delete_item(
                TableName=self.audit, Key={"partitionKey": newest["partitionKey"], "seq": newest["seq"]}
            )
            summary_key = {"partitionKey": {"S": "auditLog"}, "seq": {"N": str(SUMMARY_SEQ)}}
            self.hand.delete_item(TableName=self.audit, Key=summary_key)


class CouchbaseBackend(Backend):
    """The audit in Couchbase (the key-value double here: no transactions, so the changes run on a SQLite target
    beside it, on the marker and non-transactional paths). By hand: an entry appended by a tool that keeps no summary
    (moving the head's `seq`, as every version of this library appends); an entry removed from the head's states,
    then the summary, as Couchbase's CorruptAuditError says to."""

    def __init__(self, server: Any, directory: Path) -> None:
        self.server, self.path = server, directory / "changes.db"
        suffix = uuid.uuid4().hex[:12]
        self.names = {"audit_collection": f"audit{suffix}", "lock_collection": f"lock{suffix}"}

    async def __aenter__(self) -> CouchbaseBackend:
        from tests.stores.conftest import connect_couchbase

        self.cluster = await connect_couchbase(self.server)
        return self

    async def __aexit__(self, *exc: object) -> None:
        manager = self.cluster.bucket(self.server.bucket).collections()
        for name in self.names.values():
            with contextlib.suppress(Exception):
                await manager.drop_collection("_default", name)
        await self.cluster.close()

    def store(self) -> Any:
        from aioflamingock.couchbase import CouchbaseAuditStore, CouchbaseTargetSystem

        target = CouchbaseTargetSystem("audit", cluster=self.cluster, bucket=self.server.bucket)
        return CouchbaseAuditStore.from_target(
            target, audit_collection=self.names["audit_collection"], lock_collection=self.names["lock_collection"]
        )

    def engine(self, declared: list[str], failing: set[str] | frozenset[str] = frozenset()) -> Flamingock:
        made = changes(set(failing))
        target = SQLiteTargetSystem("db", path=self.path)
        return Flamingock(audit_store=self.store(), target_systems=[target], changes=[made[i] for i in declared])

    async def _head(self) -> Any:
        from aioflamingock.couchbase._audit import HEAD_KEY
        from aioflamingock.couchbase._kv import Keyspace

        name = self.names["audit_collection"]
        scopes = await self.cluster.bucket(self.server.bucket).collections().get_all_scopes()
        if not any(c.name == name for scope in scopes for c in scope.collections):
            return None, None  # no run made the audit yet
        collection = self.cluster.bucket(self.server.bucket).scope("_default").collection(name)
        keyspace = Keyspace(collection, bucket=self.server.bucket, scope="_default", name=name)
        return keyspace, await keyspace.get(HEAD_KEY)

    async def foreign_entry(self, change_id: str, state: str) -> None:
        from aioflamingock.couchbase._audit import HEAD_KEY, entry_key

        keyspace, head = await self._head()
        if head is None:
            return
        seq = int(head.body["seq"]) + 1
        entry: dict[str, Any] = {"executionId": uuid.uuid4().hex, "stageId": "default", "changeId": change_id}
        entry |= {"state": state, "createdAt": "2026-12-02T00:00:00Z", "seq": seq}
        states = {**head.body["states"], change_id: entry}
        assert await keyspace.replace(HEAD_KEY, {**head.body, "seq": seq, "states": states, "last": entry}, head.cas)
        await keyspace.upsert(entry_key(seq), entry)

    async def delete_newest(self, change_id: str) -> None:
        from aioflamingock.couchbase._audit import HEAD_KEY

        keyspace, head = await self._head()
        if head is None or change_id not in head.body["states"]:
            return
        states = {k: v for k, v in head.body["states"].items() if k != change_id}
        body = {k: v for k, v in head.body.items() if k != "summary"} | {"states": states}
        assert await keyspace.replace(HEAD_KEY, body, head.cas)


async def check_summary(backend: Backend) -> None:
    """The summary is absent or equals the full read's; where it says a declared set has nothing pending, so does
    the plan."""
    fl = backend.engine(list(IDS))
    async with fl:
        store = fl.audit_store
        summary = await store.applied_summary()
        full = summary_of(await store.current_states())
    if summary is not None:
        assert summary == full, "the summary disagrees with the audit"
    for size in range(len(IDS) + 1):
        declared = list(IDS[:size])
        if summary is not None and summary.covers_exactly(declared):
            planned = await backend.engine(declared).plan()
            assert all(p.action is PlannedAction.SKIP for p in planned), planned
    # validate() answers from the summary where it can, and says what the plan says either way
    pending = [p.change_id for p in await backend.engine(list(IDS)).plan() if p.action is not PlannedAction.SKIP]
    try:
        await backend.engine(list(IDS)).validate()
        said: list[str] = []
    except PendingChangesError as caught:
        said = caught.pending
    assert said == pending


STEP = st.one_of(
    st.tuples(  # half of them with nothing failing: a run that ends with nothing pending writes the summary
        st.just("run"), st.integers(0, len(IDS)), st.one_of(st.just(set()), st.sets(st.sampled_from(IDS), max_size=2))
    ),
    st.tuples(st.just("fix"), st.sampled_from(IDS), st.sampled_from(["applied", "rolled-back"])),
    st.tuples(st.just("undo"), st.integers(1, len(IDS)), st.just(None)),
    st.tuples(st.just("foreign entry"), st.sampled_from(IDS), st.sampled_from(["STARTED", "APPLIED", "FAILED"])),
    st.tuples(st.just("delete newest"), st.sampled_from(IDS), st.just(None)),
)
EXAMPLES = [
    [("run", 5, set()), ("delete newest", "c0", None)],  # not the audit's newest row: only a trigger sees it
    [("run", 5, set()), ("run", 5, set()), ("foreign entry", "c1", "STARTED")],
    [("run", 3, set()), ("fix", "c4", "applied"), ("run", 5, set())],
]


async def play(backend: Backend, steps: list[tuple[str, Any, Any]]) -> None:
    async with backend:
        for kind, first, second in steps:
            if kind == "run":
                with contextlib.suppress(RunError):
                    await backend.engine(list(IDS[:first]), second).run()
            elif kind == "fix":
                await backend.engine(list(IDS)).fix(first, second)
            elif kind == "undo":
                with contextlib.suppress(RunError):
                    await backend.engine(list(IDS[:first])).undo(IDS[first - 1])
            elif kind == "foreign entry":
                await backend.foreign_entry(first, second)
            else:
                await backend.delete_newest(first)
            await check_summary(backend)


def with_examples(test: Any) -> Any:
    for steps in EXAMPLES:
        test = example(steps=steps)(test)
    return test


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=1, max_size=8))
@with_examples
def test_the_summary_never_says_more_than_the_full_read_on_sqlite(steps: list[tuple[str, Any, Any]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(play(SQLiteBackend(Path(directory)), steps))


def on_a_server(test: Any) -> Any:
    """25 random histories (and the fixed ones) a run of the suite, on a server: each is slower than on SQLite."""
    wrapped = with_examples(given(steps=st.lists(STEP, min_size=1, max_size=6))(test))
    too_slow = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
    return settings(max_examples=25, deadline=None, suppress_health_check=too_slow)(wrapped)


@pytest.fixture(params=["postgresql", "mysql"])
def sql_server_for_histories(request: pytest.FixtureRequest) -> Server:
    server: Server = request.getfixturevalue(f"{request.param}_server")
    return server


@on_a_server
def test_the_summary_never_says_more_than_the_full_read_on_sql_servers(
    sql_server_for_histories: Server, steps: list[tuple[str, Any, Any]]
) -> None:
    async def history() -> None:
        await play(SQLBackend(sql_server_for_histories), steps)

    asyncio.run(history())


# -- the fast path is taken, and left when it must be ---------------------------------------------------------------


async def every_state(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a run with nothing pending read every change's state")


async def test_a_run_with_nothing_pending_reads_the_summary_and_not_every_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SQLiteBackend(tmp_path) as db:
        assert len((await db.engine(list(IDS)).run()).applied) == len(IDS)
        with monkeypatch.context() as patched:
            patched.setattr(SQLiteAuditStore, "current_states", every_state)
            assert (await db.engine(list(IDS)).run()).status is RunStatus.NO_CHANGES

        db.raw(f"DELETE FROM {db.audit} WHERE change_id = 'c4'")  # a human deletes c4's APPLIED entry
        again = await db.engine(list(IDS)).run()
        assert again.applied == ["c4"], "the deleted entry's change was not seen as pending"


async def test_health_and_issues_answer_from_the_summary_and_still_see_what_is_not_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SQLiteBackend(tmp_path) as db:
        await db.engine(list(IDS[:3])).run()
        with monkeypatch.context() as patched:  # a readiness probe every few seconds reads one row
            patched.setattr(SQLiteAuditStore, "current_states", every_state)
            health = await db.engine(list(IDS[:3])).health()
            assert health.ready and health.issues == [] and health.pending == []
            assert await db.engine(list(IDS[:3])).issues() == []
        await db.foreign_entry("c2", "STARTED")  # c2 runs outside a transaction: a crash in it needs a human
        health = await db.engine(list(IDS)).health()
        assert [i.change_id for i in health.issues] == ["c2"] and health.pending == ["c3", "c4"]
        assert [i.change_id for i in await db.engine(list(IDS)).issues()] == ["c2"]


async def test_a_run_reads_the_summary_once_whatever_it_then_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[object] = []
    summary = SQLiteAuditStore.applied_summary

    async def counted(self: SQLiteAuditStore) -> Any:
        reads.append(self)
        return await summary(self)

    monkeypatch.setattr(SQLiteAuditStore, "applied_summary", counted)
    async with SQLiteBackend(tmp_path) as db:
        await db.engine(list(IDS[:3])).run()
        reads.clear()
        assert (await db.engine(list(IDS)).run()).applied == ["c3", "c4"]  # the summary is not enough here
        assert len(reads) == 1
        reads.clear()
        assert (await db.engine(list(IDS)).run()).status is RunStatus.NO_CHANGES  # here it is
        assert len(reads) == 1


async def test_a_new_change_is_never_taken_for_applied_by_the_summary(tmp_path: Path) -> None:
    async with SQLiteBackend(tmp_path) as db:
        await db.engine(list(IDS[:3])).run()
        await db.engine(list(IDS[:3])).run()  # the summary is now up to date with c0..c2
        report = await db.engine(list(IDS)).run()
        assert report.applied == ["c3", "c4"]


async def test_validate_answers_from_the_summary_and_still_names_what_is_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SQLiteBackend(tmp_path) as db:
        await db.engine(list(IDS[:3])).run()
        with monkeypatch.context() as patched:
            patched.setattr(SQLiteAuditStore, "current_states", every_state)
            await db.engine(list(IDS[:3])).validate()
        with pytest.raises(PendingChangesError) as caught:
            await db.engine(list(IDS)).validate()
        assert caught.value.pending == ["c3", "c4"]


async def test_a_database_where_the_summary_cannot_be_created_still_runs_reading_every_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An audit made before the summary existed, opened by a role that may not create tables there (simulated:
    root may write any file): the store opens, and runs and plans read every state as before."""
    async with SQLiteBackend(tmp_path) as db:
        await db.engine(list(IDS[:2])).run()
        for statement in (  # as an older version left it
            "DROP TRIGGER flamingock_audit_log_summary_on_update",
            "DROP TRIGGER flamingock_audit_log_summary_on_delete",
            "DROP TABLE flamingock_audit_log_summary",
        ):
            db.raw(statement)
        write = SQLiteTargetSystem._write

        async def read_only(self: SQLiteTargetSystem, sql: str, params: tuple[Any, ...] = ()) -> int:
            if "_summary" in sql:
                raise sqlite3.OperationalError("attempt to write a readonly database")
            return await write(self, sql, params)

        monkeypatch.setattr(SQLiteTargetSystem, "_write", read_only)
        report = await db.engine(list(IDS[:3])).run()
        assert report.applied == ["c2"]
        assert (await db.engine(list(IDS[:3])).run()).status is RunStatus.NO_CHANGES
        fl = db.engine(list(IDS[:3]))
        async with fl:
            assert await fl.audit_store.applied_summary() is None


@pytest.fixture(params=["mongodb", "dynamodb", "couchbase"])
def document_backend(request: pytest.FixtureRequest) -> tuple[Callable[[], Backend], type[Any]]:
    """A store without triggers: a maker of fresh databases on its server, and the store's class."""
    if request.param == "mongodb":
        from aioflamingock.mongodb import MongoDBAuditStore

        server = request.getfixturevalue("mongodb_server")
        return lambda: MongoDBBackend(server), MongoDBAuditStore
    if request.param == "dynamodb":
        from aioflamingock.dynamodb import DynamoDBAuditStore

        endpoint = request.getfixturevalue("dynamodb_endpoint")
        return lambda: DynamoDBBackend(endpoint, f"h{uuid.uuid4().hex[:10]}-"), DynamoDBAuditStore
    from aioflamingock.couchbase import CouchbaseAuditStore

    server = request.getfixturevalue("couchbase_server")
    return lambda: CouchbaseBackend(server, Path(tempfile.mkdtemp())), CouchbaseAuditStore


@on_a_server
def test_the_summary_never_says_more_than_the_full_read_without_triggers(
    document_backend: tuple[Callable[[], Backend], type[Any]], steps: list[tuple[str, Any, Any]]
) -> None:
    asyncio.run(play(document_backend[0](), steps))


async def test_without_triggers_a_run_with_nothing_pending_reads_the_summary_and_sees_every_append(
    document_backend: tuple[Callable[[], Backend], type[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    make, store_class = document_backend
    async with make() as db:
        assert len((await db.engine(list(IDS[:3])).run()).applied) == 3
        with monkeypatch.context() as patched:
            patched.setattr(store_class, "current_states", every_state)
            assert (await db.engine(list(IDS[:3])).run()).status is RunStatus.NO_CHANGES
            await db.engine(list(IDS[:3])).validate()
        await db.engine(list(IDS)).fix("c3", "applied")  # an append through the engine: the summary is stale
        assert (await db.engine(list(IDS)).run()).applied == ["c4"]
        with monkeypatch.context() as patched:
            patched.setattr(store_class, "current_states", every_state)
            assert (await db.engine(list(IDS)).run()).status is RunStatus.NO_CHANGES
        await db.foreign_entry("c1", "FAILED")  # by a tool that keeps no summary
        with pytest.raises(RunError):
            await db.engine(list(IDS)).run()  # c1 needs a human now: the summary did not hide it
        await db.engine(list(IDS)).fix("c1", "applied")
        await db.engine(list(IDS)).run()
        await db.delete_newest("c4")  # by hand, as a human who wants c4 to run again (see each backend)
        assert (await db.engine(list(IDS)).run()).applied == ["c4"]
