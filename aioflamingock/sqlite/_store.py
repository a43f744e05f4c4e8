from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..backend import (
    AUDIT_COLUMNS,
    AppliedSummary,
    AuditTable,
    ConfigurationError,
    DoctorCheck,
    Fence,
    LockLostError,
    StoreError,
    TargetStore,
    TargetSystem,
    Transaction,
    check_distinct,
    entry_row,
    library_logger,
)
from ._errors import translate_errors
from ._lock import SQLiteLock
from ._target import MARKER_TABLE, SQLiteTargetSystem, SQLiteTransaction

if TYPE_CHECKING:
    from aioflamingock.backend import AuditEntry

__all__ = ["DEFAULT_AUDIT_TABLE", "DEFAULT_LOCK_TABLE", "SQLiteAuditStore"]

DEFAULT_AUDIT_TABLE = "flamingock_audit_log"
DEFAULT_LOCK_TABLE = "flamingock_lock"
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

# Columns an existing table must have to be taken for ours.
_AUDIT_SIGNATURE = ("change_id", "execution_id", "state")
_LOCK_SIGNATURE = ("owner", "fencing_token", "expires_at")


def _table(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _TABLE_NAME.fullmatch(name):
        raise ConfigurationError([f"{kind} {name!r} must match [A-Za-z_][A-Za-z0-9_]{{0,62}}"])
    return name


logger = library_logger(__name__)

_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)
"""`INSERT ... RETURNING` (SQLite 3.35, 2021)."""


class SQLiteAuditStore(TargetStore[SQLiteTargetSystem, SQLiteLock]):
    """Audit log and lock in two tables of the target's own database file, on the target's connection.

    A transactional change on that same target takes the shared-transaction path: its writes, its APPLIED
    row and the lock check commit together.
    """

    def __init__(
        self,
        *,
        target: SQLiteTargetSystem,
        audit_table: str = DEFAULT_AUDIT_TABLE,
        lock_table: str = DEFAULT_LOCK_TABLE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(target, SQLiteTargetSystem):
            raise ConfigurationError([f"SQLiteAuditStore needs a SQLiteTargetSystem, got {type(target).__name__}"])
        self.target = target
        self.audit_table = _table("audit_table", audit_table)
        self.lock_table = _table("lock_table", lock_table)
        # The marker table lives in the same file when a change on this database takes the marker path.
        check_distinct(
            "SQLiteAuditStore",
            audit_table=audit_table,
            lock_table=lock_table,
            marker_table=MARKER_TABLE,
            summary_table=f"{audit_table}_summary",
        )
        self._lock = SQLiteLock(target, self.lock_table, clock)
        self._summary_table = f"{self.audit_table}_summary"
        self._summary_kept = True
        where = f"SQLite table {self.audit_table!r} in {target.path!r}"
        self._table = AuditTable(self.audit_table, lambda id: f"{where}, row id {id}")

    @classmethod
    def from_target(
        cls,
        target: SQLiteTargetSystem,
        *,
        audit_table: str = DEFAULT_AUDIT_TABLE,
        lock_table: str = DEFAULT_LOCK_TABLE,
        clock: Callable[[], float] = time.time,
    ) -> SQLiteAuditStore:
        """The store in `target`'s database, sharing its connection. SQLite has no server: leases are judged by
        `clock` (epoch seconds; this host's by default)."""
        return cls(target=target, audit_table=audit_table, lock_table=lock_table, clock=clock)

    def describe(self) -> str:
        return f"SQLiteAuditStore({self.target.path!r})"

    async def _prepare(self) -> None:
        await self._create_tables()

    def _schema(self) -> dict[str, str]:
        """Every table and index the store needs, by name, with the statement that creates it."""
        types = {"execution_millis": "INTEGER", "system_change": "INTEGER", "transaction_flag": "INTEGER"}
        columns = ", ".join(f"{c} {types.get(c, 'TEXT')}" for c in AUDIT_COLUMNS)
        return {
            self.audit_table: f"CREATE TABLE IF NOT EXISTS {self.audit_table} "
            f"(id INTEGER PRIMARY KEY AUTOINCREMENT, {columns})",
            f"{self.audit_table}_change": f"CREATE INDEX IF NOT EXISTS {self.audit_table}_change "
            f"ON {self.audit_table} (change_id, id)",
            self.lock_table: f"CREATE TABLE IF NOT EXISTS {self.lock_table} (key TEXT PRIMARY KEY, "
            "owner TEXT NOT NULL, status TEXT NOT NULL, acquired_at REAL NOT NULL, expires_at REAL NOT NULL, "
            "fencing_token INTEGER NOT NULL)",
            self._summary_table: f"CREATE TABLE IF NOT EXISTS {self._summary_table} (id INTEGER PRIMARY KEY "
            "CHECK (id = 1), last_id INTEGER NOT NULL, applied INTEGER NOT NULL, digest TEXT NOT NULL)",
            # Any entry changed or deleted, by anyone, with any tool: the summary is gone with it. (An entry added
            # is seen by the summary's `last_id`, which is then no longer the audit's newest id.)
            **{
                f"{self._summary_table}_on_{event.lower()}": f"CREATE TRIGGER IF NOT EXISTS "
                f"{self._summary_table}_on_{event.lower()} AFTER {event} ON {self.audit_table} "
                f"BEGIN DELETE FROM {self._summary_table}; END"
                for event in ("UPDATE", "DELETE")
            },
        }

    async def _create_tables(self) -> None:
        """One read when the schema is there (every start-up but the first); the missing pieces otherwise."""
        schema = self._schema()
        self._summary_kept = True
        with translate_errors("creating the audit tables"):
            missing = await self._missing(schema)
        for name in missing:
            try:
                with translate_errors("creating the audit tables"):
                    await self.target._write(schema[name])
            except StoreError:
                if not name.startswith(self._summary_table):
                    raise
                # A database this role may only read (a monitoring job's `plan`, say): no summary, every
                # start-up reads every state, as before the summary existed.
                self._summary_kept = False
                logger.info("no summary of the audit in %r (%s): start-ups read every state", self.target.path, name)

    async def _missing(self, schema: dict[str, str]) -> list[str]:
        """The tables and indexes of `schema` not in the database, in `schema`'s order. A table of that name that
        is not ours (an application's table given as `audit_table`) is refused before anything is written."""
        marks = ", ".join("?" for _ in schema)
        sql = f"SELECT name, sql FROM sqlite_master WHERE name IN ({marks})"
        present = dict(await self.target._fetch(sql, tuple(schema)))
        for name, columns in {self.audit_table: _AUDIT_SIGNATURE, self.lock_table: _LOCK_SIGNATURE}.items():
            statement = str(present.get(name) or "").lower()
            if name in present and not all(column in statement for column in columns):
                role = "audit_table" if name == self.audit_table else "lock_table"
                raise ConfigurationError(
                    [
                        f"{role} {name!r} exists in {self.target.path!r} but is not aioflamingock's (it has no "
                        f"{', '.join(columns)} column): pass another {role}, or rename that table"
                    ]
                )
        return [name for name in schema if name not in present]

    async def doctor(self) -> list[DoctorCheck]:
        if self.target.not_created_yet():
            detail = f"{self.target.path!r} does not exist yet: the first run creates it and the tables"
            return [DoctorCheck(self.subject(), "tables", True, detail)]
        return await super().doctor()

    async def _diagnose(self) -> list[DoctorCheck]:
        """The tables and index exist (nothing is created)."""
        schema = self._schema()
        with translate_errors("reading the schema"):
            missing = await self._missing(schema)
        if not missing:
            return [DoctorCheck(self.subject(), "tables", True, f"{', '.join(schema)} present")]
        return [
            DoctorCheck(
                self.subject(),
                "tables",
                False,
                f"{name!r} is missing from {self.target.path!r}",
                f"any run creates it, or run `{schema[name]}`",
            )
            for name in missing
        ]

    def _fenced_insert(self) -> str:
        placeholders = ", ".join("?" for _ in AUDIT_COLUMNS)
        return (
            f"INSERT INTO {self.audit_table} ({', '.join(AUDIT_COLUMNS)}) SELECT {placeholders} "
            f"WHERE EXISTS (SELECT 1 FROM {self.lock_table} WHERE key = ? AND owner = ? AND fencing_token = ?)"
        )

    async def append(self, entry: AuditEntry, *, fence: Fence) -> None:
        """One statement: `INSERT ... SELECT ... WHERE EXISTS (our lock row)`, atomic on its own. Inside a
        shared transaction (`append_in_transaction`) it runs on the same connection, so it joins that
        transaction."""
        params = (*entry_row(entry), fence.key, fence.owner, fence.token)
        with translate_errors(f"recording {entry.state.value} of {entry.change_id!r}"):
            if _RETURNING:  # one trip to SQLite's thread: the rows say what was inserted
                inserted = len(await self.target._fetch(f"{self._fenced_insert()} RETURNING 1", params))
            else:
                inserted = await self.target._write(self._fenced_insert(), params)
        if inserted != 1:
            raise LockLostError(
                f"{entry.state.value} of {entry.change_id!r} not recorded: lock {fence.key!r} is no longer held "
                f"by {fence.owner!r} with token {fence.token}"
            )

    def shares_transactions_with(self, target: TargetSystem) -> bool:
        return target is self.target

    async def append_in_transaction(self, tx: Transaction, entry: AuditEntry, *, fence: Fence) -> None:
        assert isinstance(tx, SQLiteTransaction) and tx.context.connection is self.target.connection
        await self.append(entry, fence=fence)

    async def current_states(self, change_ids: Iterable[str] | None = None) -> dict[str, AuditEntry]:
        with translate_errors("reading the current states"):
            rows = await self.target._fetch(self._table.newest_sql)
        return self._table.newest(rows, change_ids)

    def summary_removal(self) -> str:
        return f"`DELETE FROM {self._summary_table}`"

    async def applied_summary(self) -> AppliedSummary | None:
        """One statement, one row: the summary, if no entry was added since it was written (its `last_id` is the
        audit's newest id; the triggers drop it when an entry is changed or deleted)."""
        if not self._summary_kept:
            return None
        with translate_errors("reading the audit's summary"):
            return self._table.summary(await self.target._fetch(self._table.summary_sql(self._summary_table)))

    async def refresh_summary(self) -> None:
        """In one write transaction (no other writer meanwhile, on any connection): each change's newest state,
        then the summary of them."""
        if not self._summary_kept or self.target.connection.in_transaction:
            return  # no summary table, or inside someone's transaction
        async with self.target.transaction():  # BEGIN IMMEDIATE: the database's write lock until it commits
            with translate_errors("updating the audit's summary"):
                last_id, summary = self._table.summarize_applied(await self.target._fetch(self._table.applied_sql))
                await self.target._write(
                    f"INSERT OR REPLACE INTO {self._summary_table} (id, last_id, applied, digest) VALUES (1, ?, ?, ?)",
                    (last_id, summary.count, summary.digest),
                )

    async def _page(self, after: int, limit: int) -> list[tuple[Any, ...]]:
        with translate_errors("reading the history"):
            return await self.target._fetch(self._table.page_sql("?", "?"), (after, limit))

    def history(self) -> AsyncIterator[AuditEntry]:
        return self._table.history(self._page)
