"""The lock: one document per key, taken and given back with key-value primitives only.

| operation | writes | fails (None / False / LockLostError) when |
|---|---|---|
| acquire, no document | `insert` | it exists: another instance came first |
| acquire, expired or ours | `replace` with the CAS read | the CAS changed: another instance came first |
| renew | `replace` with the CAS read | the document holds another owner or token, or is gone |
| release | `remove` with the CAS read | it holds another owner or token |
| force release | `remove` with the CAS read | nobody holds it |

A failed insert or CAS on acquire is not an error: another instance holds the lock, and the engine waits until its
lease ends and tries again. After taking the document, the new holder claims the audit log (see `_audit.py`) with
the same owner and token. Fencing tokens never go back: a new one is one more than both the document's and the
audit log's last claim, so they keep counting after a release deletes the document.

Couchbase's key-value service has no clock a condition can use: times are this host's, in epoch milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from ..backend import LOCK_HORIZON_SECONDS, Fence, LocallyTimedLock, LockInfo, LockLease, LockLostError, lock_info
from ._audit import AuditLog
from ._kv import Doc, Keyspace

__all__ = ["LOCKED", "CouchbaseLock", "lock_key"]

LOCKED = "LOCKED"
_LOCK_PREFIX = "flamingockLock::"
_CAS_ATTEMPTS = 10


def lock_key(key: str) -> str:
    return f"{_LOCK_PREFIX}{key}"


def _expiry(now_ms: int, lease_seconds: float) -> int:
    return now_ms + max(int(lease_seconds * 1000), 1)


def _holds(doc: Doc | None, lease: LockLease | Fence) -> bool:
    return doc is not None and doc.body.get("owner") == lease.owner and doc.body.get("fencingToken") == lease.token


def unexpired(doc: Doc | None, fence: Fence, now_ms: int) -> bool:
    """`doc` is `fence`'s lock with time left on its lease at `now_ms` (judged as acquisition judges it: a corrupt
    expiry has none)."""
    return _holds(doc, fence) and doc is not None and _live(doc.body, now_ms)


def _seconds(ms: object) -> object:
    """A time of the lock document (milliseconds) in seconds, or the value as found if it is not a number."""
    return ms / 1000 if isinstance(ms, int | float) and not isinstance(ms, bool) else ms


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _live(body: dict[str, Any], now_ms: int) -> bool:
    """The lease has time left, and its expiry is one a lease can have (a corrupt one counts as expired)."""
    expires = body.get("expiresAt")
    if not isinstance(expires, int) or isinstance(expires, bool):
        return False
    return now_ms < expires <= now_ms + LOCK_HORIZON_SECONDS * 1000


class CouchbaseLock(LocallyTimedLock):
    def __init__(self, keyspace: Keyspace, audit: AuditLog, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.keyspace = keyspace
        self._audit = audit

    async def get(self, key: str) -> Doc | None:
        return await self.keyspace.get(lock_key(key))

    def _body(self, key: str, owner: str, token: int, acquired: int, expires: int) -> dict[str, Any]:
        return {
            "key": key,
            "owner": owner,
            "status": LOCKED,
            "acquiredAt": acquired,
            "expiresAt": expires,
            "fencingToken": token,
        }

    async def try_acquire(self, key: str, owner: str, lease_seconds: float) -> LockLease | None:
        doc, claimed = await asyncio.gather(self.get(key), self._audit.holder_token(key))
        now = self.now_ms()
        if doc is not None and doc.body.get("owner") != owner and _live(doc.body, now):
            return None
        token = max(_int(doc.body.get("fencingToken")) if doc else 0, claimed) + 1
        expires = _expiry(now, lease_seconds)
        body = self._body(key, owner, token, now, expires)
        if doc is None:
            taken = await self.keyspace.insert(lock_key(key), body)
        else:
            taken = await self.keyspace.replace(lock_key(key), body, doc.cas)
        if taken is None:
            return None
        lease = LockLease(key, owner, token)
        return lease if await self._audit.claim(lease.fence) else None

    async def renew(self, lease: LockLease, lease_seconds: float) -> LockLease:
        for _ in range(_CAS_ATTEMPTS):
            doc = await self.get(lease.key)
            if doc is None or not _holds(doc, lease):
                raise LockLostError(f"lock {lease.key!r} is no longer held by {lease.owner!r} with token {lease.token}")
            expires = _expiry(self.now_ms(), lease_seconds)
            if await self.keyspace.replace(lock_key(lease.key), {**doc.body, "expiresAt": expires}, doc.cas):
                return LockLease(lease.key, lease.owner, lease.token)
        raise LockLostError(f"lock {lease.key!r} kept changing while {lease.owner!r} renewed it")

    async def release(self, lease: LockLease) -> bool:
        return await self._remove(lease.key, lambda doc: _holds(doc, lease))

    async def force_release(self, key: str) -> bool:
        return await self._remove(key, lambda doc: True)

    async def _remove(self, key: str, allowed: Any) -> bool:
        for _ in range(_CAS_ATTEMPTS):
            doc = await self.get(key)
            if doc is None or not allowed(doc):
                return False
            if await self.keyspace.remove(lock_key(key), doc.cas):
                return True
        return False

    async def read(self, key: str) -> LockInfo | None:
        doc = await self.get(key)
        if doc is None:
            return None
        body = doc.body if isinstance(doc.body, dict) else {}
        acquired, expires = _seconds(body.get("acquiredAt")), _seconds(body.get("expiresAt"))
        return lock_info(key, body.get("owner"), body.get("fencingToken"), acquired, expires, self.clock())

    async def check(self, fence: Fence, what: str) -> None:
        """Raise `LockLostError` unless the lock is `fence`'s, with time left."""
        if not unexpired(await self.get(fence.key), fence, self.now_ms()):
            raise LockLostError(
                f"{what} not recorded: lock {fence.key!r} is not held by {fence.owner!r} with token {fence.token}"
            )
