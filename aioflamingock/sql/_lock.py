"""The lock as one row per key, judged by the server's clock (`Dialect.now_ms`), never a client's. Acquiring reads
the row `FOR UPDATE` and writes it in one transaction; renewing, releasing and reading are single statements on an
autocommit connection. A fenced audit write (`SQLAuditStore`) reads the same row `FOR UPDATE` in its own
transaction, so a takeover waits for that transaction to end."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..backend import (
    LOCK_HORIZON_SECONDS,
    Lock,
    LockInfo,
    LockLease,
    LockLostError,
    StoreError,
    lock_info,
)
from ._errors import is_aborted

if TYPE_CHECKING:
    from ._target import SQLTargetSystem

__all__ = ["SQLLock"]


def _lost_a_race(exc: StoreError) -> bool:
    """Another instance created or took the row at the same moment (a duplicate key; MySQL's deadlock between
    two first acquisitions)."""
    from sqlalchemy.exc import IntegrityError

    cause = exc.__cause__
    return isinstance(cause, IntegrityError) or (cause is not None and is_aborted(cause))


class SQLLock(Lock):
    def __init__(self, target: SQLTargetSystem, table: str) -> None:
        self._target = target
        self._table = table
        self._now = target.dialect.now_ms

    async def _execute(self, sql: str, params: dict[str, Any], what: str) -> Any:
        from sqlalchemy import text

        async with self._target.connect(what) as connection:
            return await connection.execute(text(sql), params)

    async def try_acquire(self, key: str, owner: str, lease_seconds: float) -> LockLease | None:
        from sqlalchemy import text

        table, now = self._table, self._now
        params = {"key": key, "owner": owner, "lease": int(lease_seconds * 1000)}
        try:
            async with self._target.begin(f"acquiring lock {key!r}") as connection:
                select = f"SELECT owner, fencing_token, expires_at, {now} FROM {table} WHERE lock_key = :key FOR UPDATE"
                row = (await connection.execute(text(select), params)).first()
                if row is None:
                    await connection.execute(
                        text(
                            f"INSERT INTO {table} (lock_key, owner, acquired_at, expires_at, fencing_token) "
                            f"VALUES (:key, :owner, {now}, {now} + :lease, 1)"
                        ),
                        params,
                    )
                    return LockLease(key, owner, 1)
                holder, token, expires, server_now = row
                horizon = server_now + LOCK_HORIZON_SECONDS * 1000
                if holder != owner and server_now < expires <= horizon:  # held; a lock beyond the horizon is corrupt
                    return None
                await connection.execute(
                    text(
                        f"UPDATE {table} SET owner = :owner, acquired_at = {now}, expires_at = {now} + :lease, "
                        "fencing_token = fencing_token + 1 WHERE lock_key = :key"
                    ),
                    params,
                )
                return LockLease(key, owner, int(token) + 1)
        except StoreError as exc:
            if _lost_a_race(exc):
                return None
            raise

    async def renew(self, lease: LockLease, lease_seconds: float) -> LockLease:
        done = await self._execute(
            f"UPDATE {self._table} SET expires_at = {self._now} + :lease "
            "WHERE lock_key = :key AND owner = :owner AND fencing_token = :token",
            {"lease": int(lease_seconds * 1000), "key": lease.key, "owner": lease.owner, "token": lease.token},
            f"renewing lock {lease.key!r}",
        )
        if done.rowcount != 1:
            raise LockLostError(f"lock {lease.key!r} is no longer held by {lease.owner!r} with token {lease.token}")
        return lease

    async def release(self, lease: LockLease) -> bool:
        done = await self._execute(
            f"DELETE FROM {self._table} WHERE lock_key = :key AND owner = :owner AND fencing_token = :token",
            {"key": lease.key, "owner": lease.owner, "token": lease.token},
            f"releasing lock {lease.key!r}",
        )
        return bool(done.rowcount == 1)

    async def read(self, key: str) -> LockInfo | None:
        from sqlalchemy import text

        columns = f"owner, fencing_token, acquired_at, expires_at, {self._now}"
        sql = f"SELECT {columns} FROM {self._table} WHERE lock_key = :key"

        async def query(connection: Any) -> Any:
            return (await connection.execute(text(sql), {"key": key})).first()

        row = await self._target.read(f"reading lock {key!r}", query)
        if row is None:
            return None
        owner, token, acquired, expires, now = row
        return lock_info(key, owner, token, _seconds(acquired), _seconds(expires), float(now) / 1000)

    async def force_release(self, key: str) -> bool:
        done = await self._execute(
            f"DELETE FROM {self._table} WHERE lock_key = :key", {"key": key}, f"force-releasing lock {key!r}"
        )
        return bool(done.rowcount == 1)


def _seconds(ms: object) -> object:
    return float(ms) / 1000 if isinstance(ms, int | float) else ms
