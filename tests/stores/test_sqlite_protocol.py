"""SQLite-specific behaviour of the safety protocol that the generic conformance suite cannot express."""

from __future__ import annotations

from pathlib import Path

import pytest

from aioflamingock import AuditState, Change, ChangeFailedError, Flamingock
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteContext, SQLiteTargetSystem


class CreateTables(Change):
    id = "create-tables"
    order = "0001"
    author = "tester"
    target_system = "app"

    async def execute(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        await ctx.connection.execute(
            "CREATE TABLE child (id INTEGER PRIMARY KEY, "
            "parent_id INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)"
        )


class OrphanChild(Change):
    """Breaks a deferred foreign key: every statement succeeds, the COMMIT fails."""

    id = "orphan-child"
    order = "0002"
    author = "tester"
    target_system = "app"

    async def execute(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("PRAGMA foreign_keys = ON")
        await ctx.connection.execute("INSERT INTO child (id, parent_id) VALUES (1, 42)")


async def test_a_commit_that_fails_is_rolled_back_and_recorded_as_failed(tmp_path: Path) -> None:
    db = SQLiteTargetSystem("app", path=str(tmp_path / "app.db"))
    store = SQLiteAuditStore.from_target(db)
    await Flamingock(audit_store=store, target_systems=[db], changes=[CreateTables]).run()
    # foreign_keys is a per-connection setting that cannot change inside a transaction: set it up front.
    db2 = SQLiteTargetSystem("app", path=str(tmp_path / "app.db"))
    store2 = SQLiteAuditStore.from_target(db2)
    fl = Flamingock(audit_store=store2, target_systems=[db2], changes=[CreateTables, OrphanChild])
    async with fl:
        await db2.connection.execute("PRAGMA foreign_keys = ON")
        with pytest.raises(ChangeFailedError) as caught:
            await fl.run()
        assert "FOREIGN KEY" in str(caught.value.__cause__)
        assert not db2.connection.in_transaction
        entries = [e async for e in fl.history() if e.change_id == "orphan-child"]
        assert [e.state for e in entries] == [AuditState.FAILED]
        assert entries[0].transaction_flag is True
        assert await fl.lock_info() is None
        async with db2.connection.execute("SELECT count(*) FROM child") as cursor:
            assert await cursor.fetchone() == (0,)
