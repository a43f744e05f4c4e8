"""The lock as one row per key. Each operation is a single statement, so it is atomic on its own and never
opens a transaction that could swallow other statements on the shared connection. Times are the clock of the
machine (SQLite has no server): processes sharing a database file share that clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..backend import LOCK_HORIZON_SECONDS, LocallyTimedLock, LockInfo, LockLease, LockLostError, lock_info
from ._errors import translate_errors

if TYPE_CHECKING:
    from ._target import SQLiteTargetSystem

__all__ = ["SQLiteLock"]


class SQLiteLock(LocallyTimedLock):
    def __init__(self, target: SQLiteTargetSystem, table: str, clock: Callable[[], float]) -> None:
        super().__init__(clock)
        self._target = target
        self._table = table

    async def _one(self, sql: str, params: tuple[object, ...], what: str) -> tuple[Any, ...] | None:
        with translate_errors(what):
            rows = await self._target._fetch(sql, params)
        return rows[0] if rows else None

    async def try_acquire(self, key: str, owner: str, lease_seconds: float) -> LockLease | None:
        now = self.clock()
        row = await self._one(
            f"INSERT INTO {self._table} (key, owner, status, acquired_at, expires_at, fencing_token) "
            "VALUES (?1, ?2, 'LOCKED', ?3, ?4, 1) "
            "ON CONFLICT (key) DO UPDATE SET owner = ?2, status = 'LOCKED', acquired_at = ?3, expires_at = ?4, "
            f"fencing_token = {self._table}.fencing_token + 1 "
            f"WHERE {self._table}.expires_at <= ?3 OR {self._table}.owner = ?2 "
            # a corrupt lock (tampered with, or written by a broken clock) counts as expired
            f"OR typeof({self._table}.expires_at) NOT IN ('integer', 'real') OR {self._table}.expires_at > ?5 "
            "RETURNING fencing_token, expires_at",
            (key, owner, now, now + lease_seconds, now + LOCK_HORIZON_SECONDS),
            f"acquiring lock {key!r}",
        )
        if row is None:
            return None
        return LockLease(key, owner, int(row[0]))

    async def renew(self, lease: LockLease, lease_seconds: float) -> LockLease:
        expires = self.clock() + lease_seconds
        row = await self._one(
            f"UPDATE {self._table} SET expires_at = ? WHERE key = ? AND owner = ? AND fencing_token = ? "
            "RETURNING expires_at",
            (expires, lease.key, lease.owner, lease.token),
            f"renewing lock {lease.key!r}",
        )
        if row is None:
            raise LockLostError(f"lock {lease.key!r} is no longer held by {lease.owner!r} with token {lease.token}")
        return LockLease(lease.key, lease.owner, lease.token)

    async def release(self, lease: LockLease) -> bool:
        row = await self._one(
            f"DELETE FROM {self._table} WHERE key = ? AND owner = ? AND fencing_token = ? RETURNING key",
            (lease.key, lease.owner, lease.token),
            f"releasing lock {lease.key!r}",
        )
        return row is not None

    async def read(self, key: str) -> LockInfo | None:
        row = await self._one(
            f"SELECT owner, fencing_token, acquired_at, expires_at FROM {self._table} WHERE key = ?",
            (key,),
            f"reading lock {key!r}",
        )
        if row is None:
            return None
        owner, token, acquired, expires = row
        return lock_info(key, owner, token, acquired, expires, self.clock())

    async def force_release(self, key: str) -> bool:
        row = await self._one(
            f"DELETE FROM {self._table} WHERE key = ? RETURNING key", (key,), f"force-releasing lock {key!r}"
        )
        return row is not None
