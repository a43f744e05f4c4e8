"""An audit row that cannot be read — tampered with, or written by something else — is named with its fix: a
`CorruptAuditError` that says the store, the row, the field and what to do. It stops a run only when it is the
newest entry of a declared change (that change's state is then unknown); it never breaks `history()`, and
`doctor()` lists every one."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from aioflamingock import AuditState, Change, ChangeFailedError, CorruptAuditError, Flamingock, Remedy, RunStatus
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteTargetSystem

CORRUPTIONS = {
    "lower-case-state": ("state", "applied"),
    "unknown-state": ("state", "BOGUS"),
    "null-execution-id": ("execution_id", None),
    "millis-not-a-number": ("execution_millis", "abc"),
    "date-not-a-date": ("created_at", "yesterday"),
    "unknown-tx-strategy": ("tx_strategy", "NOPE"),
    "metadata-not-json": ("metadata", "{not json"),
    "recovery-unknown": ("recovery_strategy", "SOMETIMES"),
}


def change(change_id: str, order: str) -> type[Change]:
    class Created(Change):
        id, author, target_system = change_id, "alice", "app-db"

        async def execute(self, ctx: Any) -> None:
            await ctx.connection.execute(f"CREATE TABLE t{order} (id INTEGER)")

    Created.order = order
    return Created


FIRST, SECOND = change("first", "0001"), change("second", "0002")


def engine(path: Path, *changes: type[Change]) -> Flamingock:
    db = SQLiteTargetSystem("app-db", path=path)
    return Flamingock(audit_store=SQLiteAuditStore.from_target(db), target_systems=[db], changes=list(changes))


def corrupt(path: Path, change_id: str, column: str, value: object) -> int:
    with sqlite3.connect(path) as conn:
        (row_id,) = conn.execute(
            "SELECT MAX(id) FROM flamingock_audit_log WHERE change_id = ?", (change_id,)
        ).fetchone()
        conn.execute(f"UPDATE flamingock_audit_log SET {column} = ? WHERE id = ?", (value, row_id))
    conn.close()
    return int(row_id)


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
async def test_a_corrupt_newest_entry_of_a_declared_change_stops_the_run_naming_the_row_the_field_and_the_fix(
    tmp_path: Path, corruption: str
) -> None:
    path = tmp_path / "app.db"
    await engine(path, FIRST).run()
    column, value = CORRUPTIONS[corruption]
    row_id = corrupt(path, "first", column, value)
    fl = engine(path, FIRST, SECOND)
    for call in (fl.run, fl.plan):
        with pytest.raises(CorruptAuditError) as caught:
            await call()
        message = str(caught.value)
        assert "flamingock_audit_log" in message and f"row id {row_id}" in message and column in message
        assert f"DELETE FROM flamingock_audit_log WHERE id = {row_id}" in caught.value.fix
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM flamingock_audit_log").fetchone() == (1,)  # nothing written
        assert conn.execute("SELECT COUNT(*) FROM flamingock_lock").fetchone() == (0,)  # no lock taken
    conn.close()
    [check] = [c for c in await fl.doctor() if not c.ok]
    assert f"row id {row_id}" in check.detail and "DELETE FROM" in (check.fix or "")


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
async def test_a_corrupt_entry_of_a_change_no_longer_declared_breaks_nothing(
    tmp_path: Path, corruption: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "app.db"
    await engine(path, FIRST, SECOND).run()
    column, value = CORRUPTIONS[corruption]
    row_id = corrupt(path, "first", column, value)
    fl = engine(path, SECOND)  # "first" was removed from the code
    assert (await fl.run()).status is RunStatus.NO_CHANGES
    assert await fl.issues() == []
    with caplog.at_level(logging.WARNING, logger="aioflamingock"):
        history = [e async for e in fl.history()]
    assert [(e.change_id, e.state) for e in history] == [("second", AuditState.APPLIED)]
    assert any(f"row id {row_id}" in r.getMessage() for r in caplog.records)  # skipped, not silently
    problems = [c for c in await fl.doctor() if not c.ok]
    assert len(problems) == 1 and f"row id {row_id}" in problems[0].detail


async def test_doing_what_the_fix_says_lets_the_run_go_on(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    await engine(path, FIRST).run()
    corrupt(path, "first", "state", "BOGUS")
    with pytest.raises(CorruptAuditError) as caught:
        await engine(path, FIRST, SECOND).run()
    assert caught.value.remedy == Remedy.fix("first")  # once the entry is gone, what is true of `first`
    with sqlite3.connect(path) as conn:
        conn.execute(caught.value.fix.split("`")[1])  # the DELETE the fix names
    conn.close()
    fl = engine(path, FIRST, SECOND)
    await fl.fix("first", "applied")  # what is true: its table is there
    report = await fl.run()
    assert report.applied == ["second"]


# -- MongoDB ------------------------------------------------------------------------------------------------------


class SeedUsers(Change):
    id, order, author, target_system = "seed-users", "0001", "alice", "users-db"

    async def execute(self, ctx: Any) -> None:
        await ctx.db.users.insert_one({"_id": 1}, session=ctx.session)


def mongo_engine(client: Any, database: str, *changes: type[Change]) -> Flamingock:
    from aioflamingock.mongodb import MongoDBAuditStore, MongoDBTargetSystem

    db = MongoDBTargetSystem("users-db", client=client, database=database)
    return Flamingock(audit_store=MongoDBAuditStore.from_target(db), target_systems=[db], changes=list(changes))


async def test_mongodb_a_corrupt_entry_is_named_with_its_fix_and_an_undeclared_one_breaks_nothing(
    mongodb_client: Any, mongodb_database: str
) -> None:
    await mongo_engine(mongodb_client, mongodb_database, SeedUsers).run()
    audit = mongodb_client[mongodb_database].flamingockAuditLog
    await audit.update_one({"changeId": "seed-users"}, {"$set": {"state": "applied", "executionMillis": "abc"}})
    # An entry changed in place by hand: the start-up summary cannot see it (no triggers on MongoDB), so a run
    # with nothing pending answers from it; doctor() reads every entry and says what to do.
    assert (await mongo_engine(mongodb_client, mongodb_database, SeedUsers).run()).status is RunStatus.NO_CHANGES
    checks = await mongo_engine(mongodb_client, mongodb_database, SeedUsers).doctor()
    (bad,) = [c for c in checks if not c.ok]
    assert "flamingockAuditLog" in bad.detail and "#summary:flamingockAuditLog" in bad.fix
    await mongodb_client[mongodb_database].flamingockLock.delete_one({"_id": "#summary:flamingockAuditLog"})
    fl = mongo_engine(mongodb_client, mongodb_database, SeedUsers)
    with pytest.raises(CorruptAuditError) as caught:
        await fl.run()
    assert "flamingockAuditLog" in str(caught.value) and "state" in str(caught.value)
    assert "deleteOne" in caught.value.fix and caught.value.remedy == Remedy.fix("seed-users")
    assert await mongodb_client[mongodb_database].flamingockLock.count_documents({"status": "LOCKED"}) == 0
    undeclared = mongo_engine(mongodb_client, mongodb_database)  # the change was removed from the code
    assert (await undeclared.run()).status is RunStatus.NO_CHANGES
    assert [e async for e in undeclared.history()] == []
    assert any("flamingockAuditLog" in c.detail for c in await undeclared.doctor() if not c.ok)


async def test_mongodb_a_state_changed_by_hand_is_named_by_doctor_with_the_summarys_removal(
    mongodb_client: Any, mongodb_database: str
) -> None:
    await mongo_engine(mongodb_client, mongodb_database, SeedUsers).run()
    audit = mongodb_client[mongodb_database].flamingockAuditLog
    await audit.update_one({"changeId": "seed-users"}, {"$set": {"state": "ROLLED_BACK"}})  # to run it again
    (check,) = [c for c in await mongo_engine(mongodb_client, mongodb_database, SeedUsers).doctor() if not c.ok]
    assert check.check == "summary" and "1 change(s) applied, the audit 0" in check.detail
    assert (await mongo_engine(mongodb_client, mongodb_database, SeedUsers).run()).status is RunStatus.NO_CHANGES
    await mongodb_client[mongodb_database].flamingockLock.delete_one({"_id": "#summary:flamingockAuditLog"})
    with pytest.raises(ChangeFailedError, match="seed-users"):  # it runs again (and its user is there already)
        await mongo_engine(mongodb_client, mongodb_database, SeedUsers).run()


async def test_what_a_corrupt_entry_holds_is_quoted_without_its_secrets(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    await engine(path, FIRST).run()
    corrupt(path, "first", "metadata", "{oops mongodb://admin:Hunter2Secret@db/app")
    with pytest.raises(CorruptAuditError) as caught:
        await engine(path, FIRST).run()
    assert "metadata" in str(caught.value) and "Hunter2Secret" not in str(caught.value)
