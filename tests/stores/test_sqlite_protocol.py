"""SQLite-specific behaviour of the safety protocol that the generic conformance suite cannot express."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from aioflamingock import AuditState, Change, ChangeFailedError, Flamingock, TransactionAbortedError
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteContext, SQLiteTargetSystem, SQLiteTransaction


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


class AbortingTarget(SQLiteTargetSystem):
    """A real SQLite target whose database aborts the first `aborts` transactions after their body ran, the way
    MongoDB reports a write conflict (TransientTransactionError)."""

    aborts = 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SQLiteTransaction]:
        async with super().transaction() as tx:
            yield tx
            if self.aborts:
                self.aborts -= 1
                raise TransactionAbortedError("WriteConflict (simulated by the database)")


class InsertRow(Change):
    id = "insert-row"
    order = "0001"
    author = "tester"
    target_system = "app"
    executions = 0

    async def execute(self, ctx: SQLiteContext) -> None:
        type(self).executions += 1
        await ctx.connection.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
        await ctx.connection.execute("INSERT INTO t VALUES (1)")


@pytest.mark.parametrize("aborts", [1, 2, 5])
async def test_a_transaction_the_database_aborted_is_run_again_and_applied_once(tmp_path: Path, aborts: int) -> None:
    InsertRow.executions = 0
    db = AbortingTarget("app", path=str(tmp_path / "app.db"))
    db.aborts = aborts
    fl = Flamingock(audit_store=SQLiteAuditStore.from_target(db), target_systems=[db], changes=[InsertRow])
    async with fl:
        report = await fl.run()
        assert report.applied == ["insert-row"]
        assert InsertRow.executions == aborts + 1
        assert [e.state async for e in fl.history()] == [AuditState.APPLIED]
        async with db.connection.execute("SELECT count(*) FROM t") as cursor:
            assert await cursor.fetchone() == (1,)


async def test_a_transaction_aborted_every_time_fails_the_change_with_nothing_committed(tmp_path: Path) -> None:
    InsertRow.executions = 0
    db = AbortingTarget("app", path=str(tmp_path / "app.db"))
    db.aborts = 1_000
    db.transaction_retry_seconds = 0.5  # pauses of 0.05, 0.1, 0.2 s fit; the next one, 0.4 s, would not
    fl = Flamingock(audit_store=SQLiteAuditStore.from_target(db), target_systems=[db], changes=[InsertRow])
    async with fl:
        started = time.monotonic()
        with pytest.raises(ChangeFailedError) as caught:
            await fl.run()
        assert time.monotonic() - started < 5
        assert isinstance(caught.value.__cause__, TransactionAbortedError)
        assert InsertRow.executions >= 3
        entries = [e async for e in fl.history()]
        assert [(e.state, e.transaction_flag) for e in entries] == [(AuditState.FAILED, True)]
        async with db.connection.execute("SELECT count(*) FROM sqlite_master WHERE name = 't'") as cursor:
            assert await cursor.fetchone() == (0,)


def test_a_failed_open_leaves_no_driver_thread_behind_the_event_loop(tmp_path: Path) -> None:
    """aiosqlite's thread, stopped after a failed connect, must not outlive `asyncio.run`: it would die printing
    "Event loop is closed" after a CLI's error line. Without the wait it did, in most of 100 runs."""
    script = tmp_path / "failing_opens.py"
    script.write_text(
        "import asyncio\n"
        "from aioflamingock.sqlite import SQLiteTargetSystem\n"
        "async def main():\n"
        f"    target = SQLiteTargetSystem('x', path={str(tmp_path / 'missing' / 'app.db')!r})\n"
        "    try:\n"
        "        await target.open()\n"
        "    except Exception:\n"
        "        pass\n"
        "    else:\n"
        "        raise SystemExit('opened a database in a directory that does not exist')\n"
        "for _ in range(100):\n"
        "    asyncio.run(main())\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Event loop is closed" not in done.stderr
