"""`doctor()` against real stores: it finds missing tables and indexes without creating them, names the statement
that fixes each, and checks what the server must offer (transactions, privileges)."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from aioflamingock import Change, DoctorCheck, Flamingock
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteContext, SQLiteTargetSystem

if TYPE_CHECKING:
    from pymongo import AsyncMongoClient


class CreateUsers(Change):
    id, order, author, target_system = "create-users", "0001", "tester", "app-db"

    async def execute(self, ctx: Any) -> None:
        if isinstance(ctx, SQLiteContext):
            await ctx.connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
        else:
            await ctx.db.create_collection("users", session=ctx.session)


def problems(checks: list[DoctorCheck]) -> dict[tuple[str, str], list[DoctorCheck]]:
    found: dict[tuple[str, str], list[DoctorCheck]] = {}
    for check in checks:
        if not check.ok:
            found.setdefault((check.subject, check.check), []).append(check)
    return found


def sqlite_engine(path: Path) -> Flamingock:
    db = SQLiteTargetSystem("app-db", path=path)
    return Flamingock(audit_store=SQLiteAuditStore.from_target(db), target_systems=[db], changes=[CreateUsers])


async def test_sqlite_doctor_on_a_new_database_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    checks = await sqlite_engine(path).doctor()
    assert not path.exists(), "doctor created the database file"
    assert problems(checks) == {}
    assert any("does not exist yet" in c.detail for c in checks)


async def test_sqlite_doctor_names_the_statement_creating_each_missing_table(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    await sqlite_engine(path).run()
    assert problems(await sqlite_engine(path).doctor()) == {}

    with closing(sqlite3.connect(path)) as conn:
        conn.execute("DROP INDEX flamingock_audit_log_change")
        conn.execute("DROP TABLE flamingock_lock")
    found = problems(await sqlite_engine(path).doctor())
    assert list(found) == [("audit store", "tables")]
    fixes = {c.detail.split("'")[1]: c.fix for c in found["audit store", "tables"]}
    assert set(fixes) == {"flamingock_audit_log_change", "flamingock_lock"}
    assert "CREATE INDEX IF NOT EXISTS flamingock_audit_log_change" in str(fixes["flamingock_audit_log_change"])
    with closing(sqlite3.connect(path)) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "flamingock_lock" not in tables, "doctor created what it reported missing"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any file, so a read-only database cannot be made")
async def test_sqlite_doctor_reports_a_database_this_process_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    await sqlite_engine(path).run()
    path.chmod(0o444)
    try:
        found = problems(await sqlite_engine(path).doctor())
    finally:
        path.chmod(0o644)
    assert list(found) == [("target system 'app-db'", "writable")]


async def test_sqlite_doctor_reports_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    path.write_bytes(b"this is not a database, it is a text file " * 100)
    found = problems(await sqlite_engine(path).doctor())
    assert ("target system 'app-db'", "reachable") in found
    assert "not a database" in found["target system 'app-db'", "reachable"][0].detail


# -- MongoDB -------------------------------------------------------------------------------------------------------


def mongodb_engine(client: AsyncMongoClient[Any], database: str) -> Flamingock:
    from aioflamingock.mongodb import MongoDBAuditStore, MongoDBTargetSystem

    db = MongoDBTargetSystem("app-db", client=client, database=database)
    return Flamingock(audit_store=MongoDBAuditStore.from_target(db), target_systems=[db], changes=[CreateUsers])


async def test_mongodb_doctor_finds_the_missing_indexes_without_creating_them(
    mongodb_client: AsyncMongoClient[Any], mongodb_database: str
) -> None:
    checks = await mongodb_engine(mongodb_client, mongodb_database).doctor()
    found = problems(checks)
    assert list(found) == [("audit store", "indexes")]
    fixes = sorted(str(c.fix) for c in found["audit store", "indexes"])
    assert fixes[0].startswith("create it with `db.flamingockAuditLog.createIndex({changeId: 1, seq: -1})`")
    assert fixes[1].startswith("create it with `db.flamingockAuditLog.createIndex({seq: 1})`")
    assert await mongodb_client[mongodb_database].list_collection_names() == []
    by_check = {(c.subject, c.check): c for c in checks}
    assert by_check["target system 'app-db'", "transactions"].detail.startswith("supported: replica set")
    assert by_check["audit store", "privileges"].ok

    await mongodb_engine(mongodb_client, mongodb_database).run()
    assert problems(await mongodb_engine(mongodb_client, mongodb_database).doctor()) == {}


async def test_mongodb_doctor_reports_a_server_that_does_not_answer_in_time() -> None:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[Any] = AsyncMongoClient(
        "mongodb://admin:s3cret@127.0.0.1:9/?serverSelectionTimeoutMS=30000", connect=False
    )
    try:
        checks = await mongodb_engine(client, "app").doctor(timeout_seconds=0.5)
    finally:
        await client.close()
    found = problems(checks)
    assert set(found) == {("target system 'app-db'", "reachable"), ("audit store", "reachable")}
    assert all("did not answer within 0.5 s" in c.detail for group in found.values() for c in group)
    assert all("s3cret" not in c.detail for group in found.values() for c in group)
