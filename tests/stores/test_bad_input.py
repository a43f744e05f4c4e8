"""Bad input, given the way a user gives it, on real stores: every case is refused with a `FlamingockError` whose
message names the problem, and nothing is written — every table (collection) of the store is the same after the
attempt as before it. The families: identifiers, lock options and durations, metadata, change classes, and each
store's own names and settings.

The store already holds an applied change when a case runs, so "nothing written" is checked against real tables.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aioflamingock import Change, Flamingock, FlamingockError

NAN, INF = float("nan"), float("inf")


# -- the stores ---------------------------------------------------------------------------------------------------


class Kit:
    """How a case builds a target and a store of one backend, and reads back everything the store holds."""

    name: str

    def target(self, id: str = "app", **options: Any) -> Any:
        raise NotImplementedError

    def store(self, target: Any, **options: Any) -> Any:
        raise NotImplementedError

    async def snapshot(self) -> Any:
        raise NotImplementedError


class SQLiteKit(Kit):
    name = "sqlite"

    def __init__(self, folder: Path) -> None:
        self.path = folder / "app.db"

    def target(self, id: str = "app", **options: Any) -> Any:
        from aioflamingock.sqlite import SQLiteTargetSystem

        return SQLiteTargetSystem(id, path=self.path, **options)

    def store(self, target: Any, **options: Any) -> Any:
        from aioflamingock.sqlite import SQLiteAuditStore

        return SQLiteAuditStore.from_target(target, **options)

    async def snapshot(self) -> Any:
        with sqlite3.connect(self.path) as conn:
            names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master ORDER BY name")]
            tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            dump = {n: conn.execute(f"SELECT * FROM {n}").fetchall() for n in tables if not n.startswith("sqlite_")}
        conn.close()
        return names, dump


class MongoKit(Kit):
    name = "mongodb"

    def __init__(self, client: Any, database: str) -> None:
        self.client, self.database = client, database

    def target(self, id: str = "app", **options: Any) -> Any:
        from aioflamingock.mongodb import MongoDBTargetSystem

        return MongoDBTargetSystem(id, client=self.client, **{"database": self.database, **options})

    def store(self, target: Any, **options: Any) -> Any:
        from aioflamingock.mongodb import MongoDBAuditStore

        return MongoDBAuditStore.from_target(target, **options)

    async def snapshot(self) -> Any:
        db = self.client[self.database]
        names = sorted(await db.list_collection_names())
        return {name: await db[name].find({}, sort=[("_id", 1)]).to_list(None) for name in names}


class DynamoKit(Kit):
    name = "dynamodb"

    def __init__(self, client: Any, prefix: str) -> None:
        self.client, self.prefix = client, prefix

    def target(self, id: str = "app", **options: Any) -> Any:
        from aioflamingock.dynamodb import DynamoDBTargetSystem

        return DynamoDBTargetSystem(id, client=self.client, **{"marker_table": f"{self.prefix}marker", **options})

    def store(self, target: Any, **options: Any) -> Any:
        from aioflamingock.dynamodb import DynamoDBAuditStore

        names = {"audit_table": f"{self.prefix}audit", "lock_table": f"{self.prefix}lock"}
        return DynamoDBAuditStore.from_target(target, **{**names, **options})

    async def snapshot(self) -> Any:
        tables = [t for t in (await self.client.list_tables())["TableNames"] if t.startswith(self.prefix)]
        dump = {}
        for table in sorted(tables):
            items = (await self.client.scan(TableName=table, ConsistentRead=True))["Items"]
            dump[table] = sorted(str(item) for item in items)
        return dump


# -- changes ------------------------------------------------------------------------------------------------------


async def _noop(self: Change, ctx: Any) -> None:
    pass


def change_class(**attributes: Any) -> type[Change]:
    """A change class as a user writes one; `attributes` override the valid defaults."""
    values = {"id": f"c-{uuid.uuid4().hex[:8]}", "order": "0002", "author": "alice", "target_system": "app"}
    values.update(attributes)
    values.setdefault("execute", _noop)
    return type("UserChange", (Change,), {"transactional": False, **values})


class Seed(Change):
    id, order, author, target_system, transactional = "seed", "0001", "alice", "app", False

    async def execute(self, ctx: Any) -> None:
        pass


async def _skeleton(self: Change, ctx: Any) -> None:
    raise NotImplementedError("UserChange.execute: write the change")


async def _no_context(self: Change) -> None:
    pass


async def _two(self: Change, ctx: Any, extra: Any) -> None:
    pass


async def _keyword(self: Change, ctx: Any, *, dry_run: bool) -> None:
    pass


def _sync(self: Change, ctx: Any) -> None:
    pass


class _NeedsClient(Change):
    def __init__(self, client: Any) -> None:
        self.client = client


# -- the cases ----------------------------------------------------------------------------------------------------

Attempt = Callable[[Kit], Awaitable[Any]]


@dataclass(frozen=True)
class Case:
    name: str
    attempt: Attempt
    says: str  # a fragment of the message that names the problem


def engine(kit: Kit, *, changes: list[type[Change]] | None = None, **options: Any) -> Flamingock:
    target = kit.target()
    return Flamingock(audit_store=kit.store(target), target_systems=[target], changes=changes or [Seed], **options)


def run_with(**options: Any) -> Attempt:
    async def attempt(kit: Kit) -> Any:
        return await engine(kit, **options).run()

    return attempt


def run_changes(*changes: type[Change]) -> Attempt:
    async def attempt(kit: Kit) -> Any:
        return await engine(kit, changes=[Seed, *changes]).run()

    return attempt


def build(make: Callable[[Kit], Any]) -> Attempt:
    async def attempt(kit: Kit) -> Any:
        store = make(kit)
        return await Flamingock(audit_store=store, target_systems=[store.target], changes=[Seed]).run()

    return attempt


BAD_IDENTIFIERS = ["default\n", "", "a b", "x" * 129, "ünïcode"]
GENERIC = [
    *[Case(f"service-{i}", run_with(service=v), "service ") for i, v in enumerate(BAD_IDENTIFIERS)],
    Case("service-none", run_with(service=None), "service"),
    *[
        Case(f"lock-{k}-{v!r}", run_with(lock={k: v}), k)
        for k, v in [
            ("lease_seconds", INF),
            ("lease_seconds", NAN),
            ("lease_seconds", 1e12),
            ("lease_seconds", 1e-9),
            ("lease_seconds", -1),
            ("acquire_timeout_seconds", INF),
            ("acquire_timeout_seconds", -1),
            ("retry_interval_seconds", 0),
            ("retry_interval_seconds", NAN),
            ("lease", 60),
        ]
    ],
    Case("lock-a-number", run_with(lock=60), "lock must be a LockOptions"),
    Case("lock-a-string", run_with(lock="fast"), "lock must be a LockOptions"),
    Case("metadata-object", run_with(metadata={"owner": object()}), "metadata['owner']"),
    Case("metadata-function", run_with(metadata={"hook": print}), "metadata['hook']"),
    Case("metadata-non-string-key", run_with(metadata={1: "x"}), "string keys"),
    Case("metadata-not-a-dict", run_with(metadata="team=payments"), "metadata must be a dict"),
    Case("target-id-newline", build(lambda kit: kit.store(kit.target("app\n"))), "target system id"),
    Case("change-id-newline", run_changes(change_class(id="x\n")), "must be 1-128 characters"),
    Case("change-order-newline", run_changes(change_class(order="0002\n")), "must be 1-64 characters"),
    Case("change-id-missing", run_changes(change_class(id=None)), "id is missing"),
    Case("change-author-missing", run_changes(change_class(author="  ")), "author"),
    Case("change-unknown-target", run_changes(change_class(target_system="nope")), "not a configured target"),
    Case("change-bad-recovery", run_changes(change_class(recovery="SOMETIMES")), "recovery"),
    Case("change-transactional-yes", run_changes(change_class(transactional="yes")), "transactional"),
    Case("change-sync-execute", run_changes(change_class(execute=_sync)), "async def"),
    Case("change-execute-no-context", run_changes(change_class(execute=_no_context)), "take the context"),
    Case("change-execute-two-arguments", run_changes(change_class(execute=_two)), "take the context"),
    Case("change-execute-required-keyword", run_changes(change_class(execute=_keyword)), "take the context"),
    Case("change-rollback-no-context", run_changes(change_class(rollback=_no_context)), "rollback must take"),
    Case(
        "change-constructor-arguments",
        run_changes(
            type(
                "C",
                (_NeedsClient,),
                {"id": "ctor", "order": "0002", "author": "a", "target_system": "app", "execute": _noop},
            )
        ),
        "__init__",
    ),
    Case("change-untouched-skeleton", run_changes(change_class(execute=_skeleton)), "skeleton"),
    Case("change-duplicate-id", run_changes(change_class(id="seed", order="0002")), "also the id"),
    Case("change-duplicate-order", run_changes(change_class(order="0001")), "also the order"),
]

PER_STORE = {
    "sqlite": [
        Case("table-newline", build(lambda kit: kit.store(kit.target(), audit_table="audit\n")), "audit_table"),
        Case("table-digit", build(lambda kit: kit.store(kit.target(), audit_table="1audit")), "audit_table"),
        Case("table-same", build(lambda kit: kit.store(kit.target(), lock_table="flamingock_audit_log")), "are both"),
        Case("table-marker", build(lambda kit: kit.store(kit.target(), audit_table="flamingock_marker")), "are both"),
        Case(
            "table-of-the-app", build(lambda kit: kit.store(kit.target(), audit_table="users")), "not aioflamingock's"
        ),
        *[
            Case(
                f"busy-timeout-{v!r}",
                build(lambda kit, v=v: kit.store(kit.target(busy_timeout_seconds=v))),
                "busy_timeout_seconds must be a number of seconds",
            )
            for v in (NAN, -5, INF, 1e9)
        ],
    ],
    "mongodb": [
        Case("database-newline", build(lambda kit: kit.store(kit.target(database="app\n"))), "must be 1-63 bytes"),
        Case("database-dot", build(lambda kit: kit.store(kit.target(database="a.b"))), "must be 1-63 bytes"),
        Case("collection-dots", build(lambda kit: kit.store(kit.target(), audit_collection="..")), "'.'"),
        Case("collection-system", build(lambda kit: kit.store(kit.target(), audit_collection="system.x")), "system."),
        Case(
            "collection-same", build(lambda kit: kit.store(kit.target(), lock_collection="flamingockAuditLog")), "both"
        ),
        Case(
            "collection-marker", build(lambda kit: kit.store(kit.target(), audit_collection="flamingockMarker")), "both"
        ),
    ],
    "dynamodb": [
        *[
            Case(
                f"retry-seconds-{v!r}",
                build(lambda kit, v=v: kit.store(kit.target(retry_seconds=v))),
                "retry_seconds must be a number of seconds",
            )
            for v in (NAN, -1, INF)
        ],
        Case("table-too-short", build(lambda kit: kit.store(kit.target(), audit_table="ab")), "at least 3"),
        Case("table-same", build(lambda kit: kit.store(kit.target(), lock_table=f"{kit.prefix}audit")), "are both"),  # type: ignore[attr-defined]
        Case("table-marker", build(lambda kit: kit.store(kit.target(), audit_table=f"{kit.prefix}marker")), "are both"),  # type: ignore[attr-defined]
    ],
}
CASES = [(store, case) for store in ("sqlite", "mongodb", "dynamodb") for case in [*GENERIC, *PER_STORE[store]]]


def test_the_suite_holds_at_least_120_cases() -> None:
    assert len(CASES) >= 120, len(CASES)


def cases(store: str) -> Any:
    chosen = [case for name, case in CASES if name == store]
    return pytest.mark.parametrize("case", chosen, ids=[case.name for case in chosen])


async def refused_and_nothing_written(kit: Kit, case: Case) -> None:
    await engine(kit).run()  # the store holds something, so "nothing written" is checked against real tables
    before = await kit.snapshot()
    with pytest.raises(FlamingockError) as caught:
        await case.attempt(kit)
    assert case.says in str(caught.value), str(caught.value)
    assert await kit.snapshot() == before


@cases("sqlite")
async def test_sqlite_refuses_bad_input_and_writes_nothing(tmp_path: Path, case: Case) -> None:
    kit = SQLiteKit(tmp_path)
    with sqlite3.connect(kit.path) as conn:  # an application table, for the case that names it as the audit table
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.close()
    await refused_and_nothing_written(kit, case)


@cases("mongodb")
async def test_mongodb_refuses_bad_input_and_writes_nothing(
    mongodb_client: Any, mongodb_database: str, case: Case
) -> None:
    await refused_and_nothing_written(MongoKit(mongodb_client, mongodb_database), case)


@cases("dynamodb")
async def test_dynamodb_refuses_bad_input_and_writes_nothing(
    dynamodb_client: Any, dynamodb_prefix: str, case: Case
) -> None:
    await refused_and_nothing_written(DynamoKit(dynamodb_client, dynamodb_prefix), case)
