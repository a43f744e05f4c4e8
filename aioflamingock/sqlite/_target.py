from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from ..backend import (
    ChangeMisuseError,
    ClosedResourceError,
    DoctorCheck,
    Marker,
    StoreError,
    Transaction,
    TransactionalTargetSystem,
    check_identifier,
    check_seconds,
    utc_now,
)
from ._errors import is_busy, translate_errors

if TYPE_CHECKING:
    import aiosqlite

__all__ = [
    "DEFAULT_BUSY_TIMEOUT_SECONDS",
    "MARKER_TABLE",
    "SQLiteContext",
    "SQLiteTargetSystem",
    "SQLiteTransaction",
]

MARKER_TABLE = "flamingock_marker"
ENGINE_SAVEPOINT = "flamingock_change"
"""Opened right after `BEGIN IMMEDIATE`: while it exists, the connection is still in the transaction the engine
began. A change that commits (even if it then begins again) or rolls back takes it with it."""
DEFAULT_BUSY_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class SQLiteContext:
    """What a change on a SQLite target receives. In a transactional change the connection is inside a
    transaction the engine commits: don't `BEGIN`, `COMMIT` or `ROLLBACK` yourself."""

    connection: aiosqlite.Connection
    target_id: str


class SQLiteTransaction(Transaction):
    context: SQLiteContext

    def __init__(self, context: SQLiteContext, run: Callable[[str], Awaitable[None]]) -> None:
        super().__init__(context)
        self._run = run  # the target's: our statements on the connection take turns

    async def bypassed(self) -> str | None:
        connection = self.context.connection
        if not connection.in_transaction:
            return (
                "ended the engine's transaction itself: the connection was no longer in it when the change's code "
                "returned (a COMMIT, a ROLLBACK or `connection.commit()`; or, after an error such as a full disk, "
                "SQLite rolled it back)"
            )
        try:
            with translate_errors("checking the engine's transaction"):
                await self._run(f"RELEASE {ENGINE_SAVEPOINT}")
        except StoreError as exc:
            if "no such savepoint" not in str(exc.__cause__):
                raise
            return (
                "ended the engine's transaction itself and began another one (a COMMIT or `connection.commit()` "
                "followed by a BEGIN, or a ROLLBACK TO/RELEASE of the engine's savepoint)"
            )
        return None


class SQLiteTargetSystem(TransactionalTargetSystem):
    """A SQLite database file. The engine opens one connection (WAL mode) and closes it after use.

    `path` may be `":memory:"` for a database that lives as long as the open connection (one process only).
    """

    def __init__(
        self,
        id: str,
        *,
        path: str | os.PathLike[str],
        busy_timeout_seconds: float = DEFAULT_BUSY_TIMEOUT_SECONDS,
    ) -> None:
        self.id = check_identifier("target system id", id)
        self.path = os.fspath(path)
        self.busy_timeout_seconds = check_seconds("busy_timeout_seconds", busy_timeout_seconds, maximum=3600)
        self._connection: aiosqlite.Connection | None = None
        self._marker_table = False  # seen to exist on this connection
        # asyncio's lock, not anyio's: anyio's yields to the event loop on every acquisition, even an uncontended
        # one, which was a fifth of a change's time on this path
        self._turn = asyncio.Lock()

    def describe(self) -> str:
        return f"SQLiteTargetSystem({self.id!r}, path={self.path!r})"

    @property
    def connection(self) -> aiosqlite.Connection:
        if self._connection is None:
            raise ClosedResourceError(f"{self.describe()} is not open")
        return self._connection

    async def _fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one of our own statements to completion and return its rows.

        Our statements on the shared connection take turns: a write left half-stepped (an `UPDATE ... RETURNING`
        of the lock's renewal, say) would make a concurrent `COMMIT` fail with "SQL statements in progress", and
        an unfinished `PRAGMA` keeps a new database file locked. The change's own statements are its business.
        """
        async with self._turn:  # one trip to SQLite's thread: the cursor is dropped there, run to its end
            return [tuple(row) for row in await self.connection.execute_fetchall(sql, params)]

    async def _run(self, sql: str) -> None:
        """Like `_fetch`, for a statement whose rows and count are not needed (`BEGIN`, `COMMIT`, a savepoint)."""
        async with self._turn:
            await self.connection.execute_fetchall(sql)

    async def _script(self, sql: str) -> None:
        """Several statements (no parameters, no rows) in one trip to SQLite's thread."""
        async with self._turn:
            await self.connection.executescript(sql)

    async def _write(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Like `_fetch`, for a statement without rows; returns the number of rows it changed."""
        async with self._turn:
            cursor = await self.connection.execute(sql, params)
            try:
                return cursor.rowcount
            finally:
                await cursor.close()

    async def _open(self) -> None:
        import aiosqlite

        with translate_errors(f"opening {self.path!r}"):
            connection = aiosqlite.connect(self.path, isolation_level=None)
            try:
                self._connection = await connection
            except BaseException:
                # aiosqlite stops its thread without waiting for it; the thread then owes this event loop a
                # callback, and dies printing "Event loop is closed" if the loop ends first (a CLI, asyncio.run).
                thread = getattr(connection, "_thread", None)
                if thread is not None and thread.is_alive():
                    with anyio.move_on_after(5, shield=True):
                        await anyio.to_thread.run_sync(thread.join)
                raise
            try:
                await self._fetch(f"PRAGMA busy_timeout = {int(self.busy_timeout_seconds * 1000)}")
                if self.path != ":memory:":
                    await self._wal()
            except BaseException:
                await self._close()
                raise

    async def _wal(self) -> None:
        """Switch to WAL. SQLite answers "database is locked" at once, without waiting `busy_timeout`, when other
        connections are opening the same new file at that moment (instances of a service starting together): it
        is asked again, for up to `busy_timeout_seconds`."""
        deadline = time.monotonic() + self.busy_timeout_seconds
        pause = 0.005
        while True:
            try:
                await self._fetch("PRAGMA journal_mode = WAL")
                return
            except Exception as exc:
                if not is_busy(exc) or time.monotonic() + pause > deadline:
                    raise
            await anyio.sleep(pause)
            pause = min(pause * 2, 0.1)

    async def _close(self) -> None:
        conn, self._connection, self._marker_table = self._connection, None, False
        if conn is not None:
            await conn.close()

    @asynccontextmanager
    async def context(self) -> AsyncIterator[Any]:
        """The context of a non-transactional change. A transaction the change began and left open would swallow
        the audit entries written after it on this connection, and vanish with them when it closes: it is rolled
        back here, and a change that returns with one open fails."""
        try:
            yield SQLiteContext(self.connection, self.id)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._rollback()
            raise
        if self.connection.in_transaction:
            await self._rollback()
            raise ChangeMisuseError(
                "a non-transactional change began a transaction on the SQLite connection and returned without "
                "ending it: the engine rolled back what it wrote since its BEGIN. Commit what you begin in a "
                "non-transactional change, or make it transactional and let the engine commit",
                None,
            )

    def not_created_yet(self) -> bool:
        """The database file does not exist: opening it would create it."""
        return self.path != ":memory:" and not self.path.startswith("file:") and not os.path.exists(self.path)

    async def doctor(self) -> list[DoctorCheck]:
        if self.not_created_yet():  # opening would create the file; say what the first run will need instead
            return [self._writable(exists=False)]
        return await super().doctor()

    async def _diagnose(self) -> list[DoctorCheck]:
        with translate_errors(f"reading {self.path!r}"):
            await self._fetch("SELECT 1")
        if self.path == ":memory:" or self.path.startswith("file:"):
            return []
        return [self._writable(exists=True)]

    def _writable(self, *, exists: bool) -> DoctorCheck:
        """SQLite writes the database and, in WAL mode, `-wal` and `-shm` files next to it."""
        directory = os.path.dirname(os.path.abspath(self.path))
        blocked = [p for p in ({self.path, directory} if exists else {directory}) if not os.access(p, os.W_OK)]
        detail = f"{self.path!r} exists" if exists else f"{self.path!r} does not exist yet: the first run creates it"
        if not blocked:
            return DoctorCheck(self.subject(), "writable", True, f"{detail}; it and its directory are writable")
        return DoctorCheck(
            self.subject(),
            "writable",
            False,
            f"{detail}; this process may not write {', '.join(repr(p) for p in sorted(blocked))}",
            "let the service's user write the file and its directory (SQLite creates -wal and -shm files there)",
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SQLiteTransaction]:
        with translate_errors("beginning a transaction"):
            await self._begin()
        try:
            yield SQLiteTransaction(SQLiteContext(self.connection, self.id), self._run)
            with translate_errors("committing"):
                await self._run("COMMIT")
        except BaseException:
            # Also after a failed COMMIT (a deferred constraint, say): SQLite leaves the transaction open, and
            # every later statement on this connection would silently join it.
            with anyio.CancelScope(shield=True):
                await self._rollback()
            raise

    async def _begin(self) -> None:
        if self.connection.in_transaction:
            raise StoreError(
                f"{self.describe()}: a transaction is already open on the connection (an earlier change, or code "
                "sharing the connection, began one and did not end it); refusing to begin the engine's transaction"
            )
        try:
            await self._script(f"BEGIN IMMEDIATE; SAVEPOINT {ENGINE_SAVEPOINT};")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._rollback()  # if the BEGIN was made and the SAVEPOINT was not
            raise

    async def _rollback(self) -> None:
        if self.connection.in_transaction:
            with translate_errors("rolling back"):
                await self._write("ROLLBACK")

    async def write_marker(self, tx: Transaction, marker: Marker) -> None:
        assert isinstance(tx, SQLiteTransaction) and tx.context.connection is self.connection
        with translate_errors("writing the marker"):
            # Created on first use, inside the change's transaction: a database never on the marker path stays
            # free of it, and opening a target costs no schema statement.
            if not self._marker_table:
                await self._write(
                    f"CREATE TABLE IF NOT EXISTS {MARKER_TABLE} "
                    "(change_id TEXT PRIMARY KEY, execution_id TEXT NOT NULL, created_at TEXT NOT NULL)"
                )
            await self._write(
                f"INSERT OR REPLACE INTO {MARKER_TABLE} (change_id, execution_id, created_at) VALUES (?, ?, ?)",
                (marker.change_id, marker.execution_id, utc_now().isoformat()),
            )

    async def _has_marker_table(self) -> bool:
        if not self._marker_table:
            sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
            self._marker_table = bool(await self._fetch(sql, (MARKER_TABLE,)))
        return self._marker_table

    async def read_marker(self, change_id: str) -> Marker | None:
        with translate_errors("reading the marker"):
            if not await self._has_marker_table():
                return None
            rows = await self._fetch(f"SELECT execution_id FROM {MARKER_TABLE} WHERE change_id = ?", (change_id,))
        return Marker(change_id, rows[0][0]) if rows else None

    async def delete_marker(self, change_id: str) -> None:
        with translate_errors("deleting the marker"):
            if await self._has_marker_table():
                await self._write(f"DELETE FROM {MARKER_TABLE} WHERE change_id = ?", (change_id,))
