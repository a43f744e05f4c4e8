"""What only SQLite's store does: a commit that fails on a deferred foreign key, the driver's thread. The protocol
kit's scenarios run in `test_sqlite.py`."""

from __future__ import annotations

import subprocess
import sys
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
