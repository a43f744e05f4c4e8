"""SQLite: the conformance suite and the protocol kit's scenarios."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aioflamingock.sqlite import SQLiteAuditStore, SQLiteContext, SQLiteTargetSystem
from aioflamingock.testing import (
    AuditStoreConformance,
    BackendProtocol,
    Instance,
    ManualClock,
    ProtocolKit,
    simulated_aborts,
)


def open_store(path: str) -> SQLiteAuditStore:
    """Used by the multi-process race: the same database file, from another process."""
    return SQLiteAuditStore.from_target(SQLiteTargetSystem("db", path=path))


class TestSQLiteAuditStore(AuditStoreConformance):
    @pytest.fixture
    def db_path(self, tmp_path: Path) -> str:
        return str(tmp_path / "audit.db")

    @pytest.fixture
    async def store(self, db_path: str) -> AsyncIterator[SQLiteAuditStore]:
        self._db_path = db_path
        async with open_store(db_path) as store:
            yield store

    @pytest.fixture
    async def clocked_store(self, db_path: str, clock: ManualClock) -> AsyncIterator[SQLiteAuditStore]:
        async with SQLiteAuditStore.from_target(SQLiteTargetSystem("db", path=db_path), clock=clock) as store:
            yield store

    def process_factory(self) -> tuple[str, list[str]]:
        return "tests.stores.test_sqlite:open_store", [self._db_path]


EFFECTS = "CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, n INTEGER NOT NULL)"


class SQLiteKit(ProtocolKit):
    """`app` and its store on one database file, `other` on a second file (the marker path)."""

    def __init__(self, directory: str | Path) -> None:
        super().__init__()
        self.directory = str(directory)
        self.files = {"app": str(Path(directory, "app.db")), "other": str(Path(directory, "other.db"))}
        for path in self.files.values():
            with sqlite3.connect(path) as db:
                db.execute(EFFECTS)

    async def instance(self) -> Instance:
        app = SQLiteTargetSystem("app", path=self.files["app"])
        return Instance(SQLiteAuditStore.from_target(app), app, SQLiteTargetSystem("other", path=self.files["other"]))

    async def write(self, ctx: SQLiteContext, key: str, amount: int = 1) -> None:
        await ctx.connection.execute(
            "INSERT INTO effects VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET n = n + excluded.n", (key, amount)
        )

    async def count(self, key: str) -> int:
        total = 0
        for path in self.files.values():
            with sqlite3.connect(path) as db:
                total += sum(n for (n,) in db.execute("SELECT n FROM effects WHERE key = ?", (key,)))
        return total

    def process_kit(self) -> tuple[str, list[str]]:
        return "tests.stores.test_sqlite:SQLiteKit", [self.directory]

    def lose_commit_answers(self, target: Any, times: int) -> Any:
        raise NotImplementedError("a commit to a local SQLite file has no answer to lose")

    def abort_commits(self, target: Any, times: int) -> Any:
        return simulated_aborts(target, times)  # the database cannot be made to abort one on demand


class TestSQLiteProtocol(BackendProtocol):
    @pytest.fixture
    async def kit(self, tmp_path: Path) -> AsyncIterator[ProtocolKit]:
        kit = SQLiteKit(tmp_path)
        yield kit
        await kit.aclose()

    @pytest.fixture
    async def outage_kit(self) -> AsyncIterator[ProtocolKit]:
        pytest.skip("a local SQLite file cannot become unreachable while its data stays")
        yield  # pragma: no cover


@pytest.mark.parametrize("returning", [True, False], ids=["insert-returning", "sqlite-before-3.35"])
async def test_an_entry_is_written_only_under_the_live_fence_with_or_without_insert_returning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, returning: bool
) -> None:
    """The audit insert learns whether it wrote from its returned row (one trip to SQLite's thread) or, on SQLite
    before 3.35, from its row count: either way a stale fence writes nothing and says so."""
    from aioflamingock import AuditState, LockLostError
    from aioflamingock.backend import AuditEntry, Fence, utc_now
    from aioflamingock.sqlite import _store

    monkeypatch.setattr(_store, "_RETURNING", returning)
    target = SQLiteTargetSystem("db", path=tmp_path / "audit.db")
    async with SQLiteAuditStore.from_target(target) as store:
        lease = await store.lock.try_acquire("svc", "me", 30)
        assert lease is not None
        entry = AuditEntry(
            execution_id="e1", stage_id="svc", change_id="c1", created_at=utc_now(), state=AuditState.APPLIED
        )
        await store.append(entry, fence=Fence("svc", "me", lease.token))
        with pytest.raises(LockLostError, match="no longer held"):
            await store.append(entry, fence=Fence("svc", "me", lease.token + 1))
        assert [e.change_id async for e in store.history()] == ["c1"]
