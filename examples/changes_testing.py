"""Unit tests of myapp's changes, as they would sit in the application's own test suite.

    python -m pytest examples/changes_testing.py     # with pytest and pytest-asyncio (asyncio_mode = "auto")
    python examples/changes_testing.py               # or without pytest: runs each test once

The in-memory audit store and a `":memory:"` SQLite database: nothing to set up, nothing left behind.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from myapp.search import SearchClient
from myapp.startup import build_flamingock

from aioflamingock import Flamingock, NonTransactionalTargetSystem, RunStatus
from aioflamingock.memory import InMemoryAuditStore
from aioflamingock.sqlite import SQLiteTargetSystem


# --8<-- [start:valid]
def test_changes_are_valid(tmp_path: Path) -> None:
    build_flamingock(tmp_path).changes()  # raises ConfigurationError naming every problem
    # --8<-- [end:valid]


# --8<-- [start:run]
async def test_changes_create_the_users_table(tmp_path: Path) -> None:
    db = SQLiteTargetSystem("app-db", path=":memory:")
    client = SearchClient(tmp_path / "search.json")
    search = NonTransactionalTargetSystem("search", dependencies={"client": client, "index": "users"})
    fl = Flamingock(audit_store=InMemoryAuditStore(), target_systems=[db, search], changes=["myapp.changes"])
    async with fl:  # keeps the ":memory:" database open while the test looks at it
        report = await fl.run()
        assert report.applied == ["create-users", "seed-admin-user", "add-user-status", "create-users-index"]
        async with db.connection.execute("SELECT name, status FROM users") as cursor:
            assert await cursor.fetchall() == [("Administrator", "active")]
        assert await client.read() == {"users": {}}

        assert (await fl.undo(to="create-users")).status is RunStatus.SUCCESS
        async with db.connection.execute("SELECT * FROM users") as cursor:
            assert [column[0] for column in cursor.description] == ["id", "email", "name"]
            assert await cursor.fetchall() == []
        assert await client.read() == {}
        # --8<-- [end:run]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        test_changes_are_valid(Path(tmp))
        asyncio.run(test_changes_create_the_users_table(Path(tmp)))
    print("2 tests passed")
