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
    """One class per id, which fails when its id is in `failing`; on any SQL or MongoDB target."""

    async def touch(ctx: Any) -> None:
        if not hasattr(ctx, "connection"):  # MongoDB
            await ctx.db["touched"].find_one({}, session=ctx.session)
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

    def foreign_entry(self, change_id: str, state: str) -> None:
        """An entry written by a tool that keeps no summary: an older version, say."""
        self.raw(
            f"INSERT INTO {self.audit} (execution_id, stage_id, change_id, created_at, state, type, "
            "metadata, execution_millis, system_change, tx_strategy, recovery_strategy, transaction_flag) "
            "VALUES (:e, 'default', :c, '2026-12-02T00:00:00Z', :s, 'EXECUTION', '{}', 0, :no, 'NON_TX', "
            "'MANUAL_INTERVENTION', :no)",
            {"e": uuid.uuid4().hex, "c": change_id, "s": state, "no": False},
        )

    def delete_newest(self, change_id: str) -> None:
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

    def foreign_entry(self, change_id: str, state: str) -> None:
        from datetime import UTC, datetime

        fence = self.hand["flamingockLock"].find_one_and_update(
            {"_id": "default#fence"}, {"$inc": {"seq": 1}}, upsert=True, return_document=True
        )
        entry = {"executionId": uuid.uuid4().hex, "stageId": "default", "changeId": change_id, "state": state}
        self.hand[self.audit].insert_one(entry | {"createdAt": datetime(2026, 12, 2, tzinfo=UTC), "seq": fence["seq"]})

    def delete_newest(self, change_id: str) -> None:
        newest = self.hand[self.audit].find_one({"changeId": change_id}, sort=[("seq", -1)])
        if newest is not None:
            self.hand[self.audit].delete_one({"_id": newest["_id"]})


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
                backend.foreign_entry(first, second)
            else:
                backend.delete_newest(first)
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


@pytest.fixture(params=["postgresql", "mysql"])
def sql_server_for_histories(request: pytest.FixtureRequest) -> Server:
    server: Server = request.getfixturevalue(f"{request.param}_server")
    return server


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=st.lists(STEP, min_size=1, max_size=6))
@with_examples
def test_the_summary_never_says_more_than_the_full_read_on_sql_servers(
    sql_server_for_histories: Server, steps: list[tuple[str, Any, Any]]
) -> None:
    async def history() -> None:
        await play(SQLBackend(sql_server_for_histories), steps)

    asyncio.run(history())


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=st.lists(STEP, min_size=1, max_size=6))
@with_examples
def test_the_summary_never_says_more_than_the_full_read_on_mongodb(
    mongodb_server: Server, steps: list[tuple[str, Any, Any]]
) -> None:
    async def history() -> None:
        await play(MongoDBBackend(mongodb_server), steps)

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


async def test_on_mongodb_a_run_with_nothing_pending_reads_the_summary_and_sees_every_append(
    mongodb_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aioflamingock.mongodb import MongoDBAuditStore

    async with MongoDBBackend(mongodb_server) as db:
        assert len((await db.engine(list(IDS[:3])).run()).applied) == 3
        with monkeypatch.context() as patched:
            patched.setattr(MongoDBAuditStore, "current_states", every_state)
            assert (await db.engine(list(IDS[:3])).run()).status is RunStatus.NO_CHANGES
            await db.engine(list(IDS[:3])).validate()
        await db.engine(list(IDS)).fix("c3", "applied")  # an append through the engine: the summary is stale
        assert (await db.engine(list(IDS)).run()).applied == ["c4"]
        await db.engine(list(IDS)).undo("c2")  # c3 and c4 rolled back
        assert (await db.engine(list(IDS)).run()).applied == ["c3", "c4"]
        with monkeypatch.context() as patched:
            patched.setattr(MongoDBAuditStore, "current_states", every_state)
            assert (await db.engine(list(IDS)).run()).status is RunStatus.NO_CHANGES
        db.foreign_entry("c1", "FAILED")  # by a tool that keeps no summary
        with pytest.raises(RunError):
            await db.engine(list(IDS)).run()  # c1 needs a human now: the summary did not hide it
        await db.engine(list(IDS)).fix("c1", "applied")
        await db.engine(list(IDS)).run()
        db.delete_newest("c4")  # by hand, as a human who wants c4 to run again: no fence moved, one entry less
        assert (await db.engine(list(IDS)).run()).applied == ["c4"]
