"""Bad configuration is refused where it is given, with a `ConfigurationError` that names the argument and the
form it takes, before anything is opened or written."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from aioflamingock import Change, ConfigurationError, Flamingock, NonTransactionalTargetSystem
from aioflamingock.memory import InMemoryAuditStore
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteTargetSystem

NEWLINE_IDS = ["create-users\n", "create-users\r\n", "create-users\x00", " create-users", "create users"]


@pytest.mark.parametrize("value", NEWLINE_IDS)
def test_identifiers_are_matched_whole_so_a_trailing_newline_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match="service"):
        Flamingock(audit_store=InMemoryAuditStore(), service=value)
    with pytest.raises(ConfigurationError, match="target system id"):
        NonTransactionalTargetSystem(value)


@pytest.mark.parametrize("value", NEWLINE_IDS)
def test_a_change_id_or_order_with_a_trailing_newline_is_refused_at_load(value: str) -> None:
    class WithId(Change):
        id = value
        order = "0001"
        author = "alice"
        target_system = "app"

        async def execute(self, ctx: Any) -> None:
            pass

    class WithOrder(Change):
        id = "fine"
        order = value.replace("create-users", "0002")
        author = "alice"
        target_system = "app"

        async def execute(self, ctx: Any) -> None:
            pass

    fl = Flamingock(
        audit_store=InMemoryAuditStore(), target_systems=[NonTransactionalTargetSystem("app")], changes=[WithId]
    )
    with pytest.raises(ConfigurationError, match="id"):
        fl.changes()
    fl = Flamingock(
        audit_store=InMemoryAuditStore(), target_systems=[NonTransactionalTargetSystem("app")], changes=[WithOrder]
    )
    with pytest.raises(ConfigurationError, match="order"):
        fl.changes()


@pytest.mark.parametrize("table", ["flamingock_audit_log\n", "audit log", "1audit", "x" * 64, "", None])
def test_a_bad_sqlite_table_name_is_refused(tmp_path: Path, table: Any) -> None:
    db = SQLiteTargetSystem("app", path=tmp_path / "app.db")
    with pytest.raises(ConfigurationError, match="audit_table"):
        SQLiteAuditStore.from_target(db, audit_table=table)
    assert not (tmp_path / "app.db").exists()


@pytest.mark.parametrize(
    ("audit", "lock"),
    [("same", "same"), ("flamingock_marker", "flamingock_lock"), ("flamingock_audit_log", "flamingock_marker")],
)
def test_sqlite_store_tables_must_be_distinct(tmp_path: Path, audit: str, lock: str) -> None:
    db = SQLiteTargetSystem("app", path=tmp_path / "app.db")
    with pytest.raises(ConfigurationError, match="are both"):
        SQLiteAuditStore.from_target(db, audit_table=audit, lock_table=lock)


async def test_an_application_table_given_as_the_audit_table_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users (name) VALUES ('alice')")
    conn.close()
    db = SQLiteTargetSystem("app", path=path)
    fl = Flamingock(audit_store=SQLiteAuditStore.from_target(db, audit_table="users"), target_systems=[db])
    with pytest.raises(ConfigurationError, match=r"audit_table .users. exists .* but is not aioflamingock.s"):
        await fl.run()
    with sqlite3.connect(path) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master ORDER BY name")]
        rows = conn.execute("SELECT name FROM users").fetchall()
    conn.close()
    assert (tables, rows) == (["users"], [("alice",)])  # no lock table, no index, nothing added


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -5, 1e9, "10", True])
def test_a_bad_busy_timeout_is_refused(tmp_path: Path, value: Any) -> None:
    with pytest.raises(ConfigurationError, match="busy_timeout_seconds must be a number of seconds"):
        SQLiteTargetSystem("app", path=tmp_path / "app.db", busy_timeout_seconds=value)


@pytest.mark.parametrize("database", ["app\n", "a.b", "", "x" * 64])
def test_a_bad_mongodb_database_name_is_refused(database: str) -> None:
    from pymongo import AsyncMongoClient

    from aioflamingock.mongodb import MongoDBTargetSystem

    client: AsyncMongoClient[Any] = AsyncMongoClient("mongodb://127.0.0.1:1", connect=False)
    with pytest.raises(ConfigurationError, match="database"):
        MongoDBTargetSystem("users-db", client=client, database=database)


@pytest.mark.parametrize("collection", ["..", ".audit", "audit.", "a..b", "audit\n", "system.audit"])
def test_a_bad_mongodb_collection_name_is_refused(collection: str) -> None:
    from pymongo import AsyncMongoClient

    from aioflamingock.mongodb import MongoDBAuditStore, MongoDBTargetSystem

    client: AsyncMongoClient[Any] = AsyncMongoClient("mongodb://127.0.0.1:1", connect=False)
    db = MongoDBTargetSystem("users-db", client=client, database="app")
    with pytest.raises(ConfigurationError, match="audit_collection"):
        MongoDBAuditStore.from_target(db, audit_collection=collection)


def test_mongodb_store_collections_must_be_distinct() -> None:
    from pymongo import AsyncMongoClient

    from aioflamingock.mongodb import MongoDBAuditStore, MongoDBTargetSystem

    client: AsyncMongoClient[Any] = AsyncMongoClient("mongodb://127.0.0.1:1", connect=False)
    db = MongoDBTargetSystem("users-db", client=client, database="app")
    with pytest.raises(ConfigurationError, match="are both 'flamingockMarker'"):
        MongoDBAuditStore.from_target(db, lock_collection="flamingockMarker")


class _Base(Change):
    order = "0001"
    author = "alice"
    target_system = "app"


class NoContext(_Base):
    id = "no-context"

    async def execute(self) -> None:  # type: ignore[override]
        pass


class TwoArguments(_Base):
    id = "two-arguments"

    async def execute(self, ctx: Any, extra: Any) -> None:  # type: ignore[override]
        pass


class RequiredKeyword(_Base):
    id = "required-keyword"

    async def execute(self, ctx: Any, *, dry_run: bool) -> None:  # type: ignore[override]
        pass


class RollbackWithoutContext(_Base):
    id = "rollback-without-context"

    async def execute(self, ctx: Any) -> None:
        pass

    async def rollback(self) -> None:  # type: ignore[override]
        pass


class NeedsArguments(_Base):
    id = "needs-arguments"

    def __init__(self, client: Any) -> None:
        self.client = client

    async def execute(self, ctx: Any) -> None:
        pass


class Fine(_Base):
    id = "fine"

    def __init__(self, retries: int = 3) -> None:
        self.retries = retries

    async def execute(self, ctx: Any, *args: Any, note: str = "") -> None:
        pass


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (NoContext, "NoContext.execute must take the context"),
        (TwoArguments, "TwoArguments.execute must take the context"),
        (RequiredKeyword, "RequiredKeyword.execute must take the context"),
        (RollbackWithoutContext, "RollbackWithoutContext.rollback must take the context"),
        (NeedsArguments, "NeedsArguments.__init__ cannot be called without arguments"),
    ],
)
async def test_a_change_the_engine_could_not_call_is_refused_at_load_not_left_started(
    change: type[Change], fragment: str
) -> None:
    store = InMemoryAuditStore()
    fl = Flamingock(audit_store=store, target_systems=[NonTransactionalTargetSystem("app")], changes=[change])
    with pytest.raises(ConfigurationError, match=fragment):
        await fl.run()
    assert [e async for e in fl.history()] == []  # not STARTED then FAILED: nothing at all


def test_signatures_that_can_be_called_with_the_context_alone_are_accepted() -> None:
    fl = Flamingock(
        audit_store=InMemoryAuditStore(), target_systems=[NonTransactionalTargetSystem("app")], changes=[Fine]
    )
    assert [spec.id for spec in fl.changes()] == ["fine"]


def test_metadata_of_the_wrong_kind_is_refused_without_echoing_a_secret() -> None:
    with pytest.raises(ConfigurationError, match="metadata must be a dict") as caught:
        Flamingock(audit_store=InMemoryAuditStore(), metadata="password=Hunter2Secret")  # type: ignore[arg-type]
    assert "Hunter2Secret" not in str(caught.value)
