"""The lock as two documents per key, every operation judged by the server's clock.

- The **lock document** (`_id` = key): owner, status, expiry, `fencingToken`. Acquire is one atomic update; renew
  and release are conditional updates of it.
- The **fence document** (`_id` = key + `#fence`): the token and owner allowed to write the audit, whether that
  holder is still live, and `seq`, the counter that orders the audit. Every audit append increments `seq` on it,
  conditional on our owner and token, inside the append's transaction. A new holder moves the fence to its token
  right after acquiring and before its first read of the audit: that write conflicts with a stale holder's
  transaction, so the stale holder can never commit an entry after it. Renewals never touch the fence, so a
  long shared-transaction change does not conflict with its own lease renewals.

Dates are compared as epoch milliseconds (`$toLong`) on both sides: plain MongoDB semantics, and what SecantusDB
evaluates correctly (it compares a stored date with `$$NOW` wrongly). Nothing is ever deleted: tokens and `seq`
only grow.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..backend import Lock, LockInfo, LockLease, LockLostError, StoreUnavailableError, lock_info
from ._errors import translate_errors
from ._target import aggregate

if TYPE_CHECKING:
    from pymongo.asynchronous.collection import AsyncCollection

__all__ = ["FENCE_SUFFIX", "LOCKED", "RELEASED", "MongoDBLock", "fence_filter", "lock_filter"]

LOCKED = "LOCKED"
RELEASED = "RELEASED"
MAX_TIME_MS = 5_000
"""Server-side limit of one lock command. A command can wait behind a transaction that holds the lock
document; past this limit it fails as `StoreUnavailableError` and acquisition tries again later."""
_UPSERT_ATTEMPTS = 5
_NOW_MS = {"$toLong": "$$NOW"}


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class _NotADate:
    """A lock time that is not a BSON date: never a number, so `lock_info` reports it."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"{self.value!r} (a {type(self.value).__name__}, not a date)"


def _seconds(value: object) -> object:
    """A BSON date as seconds since the epoch."""
    return _utc(value).timestamp() if isinstance(value, datetime) else _NotADate(value)


def lock_filter(key: str, owner: str, token: int) -> dict[str, Any]:
    """The lock document as long as it is held by `owner` with `token`."""
    return {"_id": key, "owner": owner, "fencingToken": token, "status": LOCKED}


FENCE_SUFFIX = "#fence"


def fence_id(key: str) -> str:
    return f"{key}{FENCE_SUFFIX}"  # `#` is not allowed in a key, so this never names a lock document


def fence_filter(key: str, owner: str, token: int) -> dict[str, Any]:
    """The fence document as long as `owner` with `token` may write the audit."""
    return {"_id": fence_id(key), "owner": owner, "fencingToken": token, "live": True}


def _move_fence_pipeline(owner: str, token: int) -> list[dict[str, Any]]:
    """Point the fence at a new holder, unless a newer holder already moved it (tokens only grow)."""
    newer = {"$lt": [{"$ifNull": ["$fencingToken", 0]}, token]}
    return [
        {
            "$set": {
                "owner": {"$cond": [newer, {"$literal": owner}, "$owner"]},
                "live": {"$cond": [newer, True, "$live"]},
                "fencingToken": {"$cond": [newer, token, "$fencingToken"]},
                "seq": {"$ifNull": ["$seq", 0]},
            }
        }
    ]


def _acquire_pipeline(key: str, owner: str, lease_ms: int) -> list[dict[str, Any]]:
    """Take the lock if it is free (never held, released, expired) or already `owner`'s; else change nothing.
    The decision is made inside the update, so it is atomic with the write."""
    mine = {"$eq": ["$owner", {"$literal": owner}]}
    expired = {"$lte": [{"$ifNull": [{"$toLong": "$expiresAt"}, 0]}, _NOW_MS]}
    win = "$_win"
    return [
        {"$set": {"_win": {"$or": [{"$ne": ["$status", LOCKED]}, expired, mine]}}},
        {
            "$set": {
                "key": {"$literal": key},
                "owner": {"$cond": [win, {"$literal": owner}, "$owner"]},
                "status": {"$cond": [win, LOCKED, "$status"]},
                "acquiredAt": {"$cond": [win, "$$NOW", "$acquiredAt"]},
                "expiresAt": {"$cond": [win, {"$add": ["$$NOW", lease_ms]}, "$expiresAt"]},
                "fencingToken": {"$cond": [win, {"$add": [{"$ifNull": ["$fencingToken", 0]}, 1]}, "$fencingToken"]},
            }
        },
        {"$unset": "_win"},
    ]


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)


class MongoDBLock(Lock):
    def __init__(self, collection: AsyncCollection[Any]) -> None:
        self._collection = collection

    async def try_acquire(self, key: str, owner: str, lease_seconds: float) -> LockLease | None:
        from pymongo import ReturnDocument
        from pymongo.errors import DuplicateKeyError

        pipeline = _acquire_pipeline(key, owner, _ms(lease_seconds))
        with translate_errors(f"acquiring lock {key!r}"):
            for _ in range(_UPSERT_ATTEMPTS):
                try:
                    document = await self._collection.find_one_and_update(
                        {"_id": key}, pipeline, upsert=True, return_document=ReturnDocument.AFTER, maxTimeMS=MAX_TIME_MS
                    )
                except DuplicateKeyError:  # mongod's answer to the loser of two first-time upserts: again
                    continue
                # SecantusDB's answer to that loser is no document at all (whether or not its update was
                # applied): asking again reads the outcome, and taking our own lock again is allowed.
                if document is not None:
                    lease = self._lease(document, key, owner)
                    if lease is not None:
                        await self._move_fence(lease)
                    return lease
        raise StoreUnavailableError(f"lock {key!r}: the acquisition kept colliding with concurrent ones")

    async def _move_fence(self, lease: LockLease) -> None:
        """Before we read or write the audit: from here on, no earlier holder can commit an entry. If this
        fails, the lock is ours but unusable; acquiring again (allowed, as ours) moves the fence then."""
        from pymongo.errors import DuplicateKeyError

        with translate_errors(f"moving the fence of lock {lease.key!r}"):
            for _ in range(_UPSERT_ATTEMPTS):
                try:
                    await self._collection.find_one_and_update(
                        {"_id": fence_id(lease.key)},
                        _move_fence_pipeline(lease.owner, lease.token),
                        projection={"_id": True},
                        upsert=True,
                        maxTimeMS=MAX_TIME_MS,
                    )
                    return
                except DuplicateKeyError:  # two first-time upserts: the other one created it
                    continue
        raise StoreUnavailableError(f"lock {lease.key!r}: moving the fence kept colliding with concurrent ones")

    @staticmethod
    def _lease(document: dict[str, Any], key: str, owner: str) -> LockLease | None:
        if document.get("owner") != owner or document.get("status") != LOCKED:
            return None
        return LockLease(key, owner, int(document["fencingToken"]))

    async def renew(self, lease: LockLease, lease_seconds: float) -> LockLease:
        from pymongo import ReturnDocument

        with translate_errors(f"renewing lock {lease.key!r}"):
            document = await self._collection.find_one_and_update(
                lock_filter(lease.key, lease.owner, lease.token),
                [{"$set": {"expiresAt": {"$add": ["$$NOW", _ms(lease_seconds)]}}}],
                projection={"expiresAt": True},
                return_document=ReturnDocument.AFTER,
                maxTimeMS=MAX_TIME_MS,
            )
        if document is None:
            raise LockLostError(f"lock {lease.key!r} is no longer held by {lease.owner!r} with token {lease.token}")
        return LockLease(lease.key, lease.owner, lease.token)

    async def release(self, lease: LockLease) -> bool:
        # The fence first: once it is closed, nothing more can be recorded under this lease.
        await self._close_fence(fence_filter(lease.key, lease.owner, lease.token), lease.key)
        return await self._release(lock_filter(lease.key, lease.owner, lease.token), f"releasing lock {lease.key!r}")

    async def force_release(self, key: str) -> bool:
        await self._close_fence({"_id": fence_id(key)}, key)
        return await self._release({"_id": key, "status": LOCKED}, f"force-releasing lock {key!r}")

    async def _close_fence(self, query: dict[str, Any], key: str) -> None:
        with translate_errors(f"closing the fence of lock {key!r}"):
            await self._collection.find_one_and_update(
                query, {"$set": {"live": False}}, projection={"_id": True}, maxTimeMS=MAX_TIME_MS
            )

    async def _release(self, query: dict[str, Any], what: str) -> bool:
        # Marked released and expired now, never deleted: the token keeps counting.
        with translate_errors(what):
            document = await self._collection.find_one_and_update(
                query,
                [{"$set": {"status": RELEASED, "expiresAt": "$$NOW"}}],
                projection={"_id": True},
                maxTimeMS=MAX_TIME_MS,
            )
        return document is not None

    async def read(self, key: str) -> LockInfo | None:
        """The record with the server's clock (`$$NOW`), judged here so that a field of the wrong type (a hand
        edit) makes a corrupt record instead of a failing command."""
        pipeline: list[dict[str, Any]] = [
            {"$match": {"_id": key, "status": LOCKED}},
            {"$project": {"owner": 1, "fencingToken": 1, "acquiredAt": 1, "expiresAt": 1, "nowMs": _NOW_MS}},
        ]
        with translate_errors(f"reading lock {key!r}"):
            documents = await aggregate(self._collection, pipeline)
        if not documents:
            return None
        d = documents[0]
        acquired, expires = _seconds(d.get("acquiredAt")), _seconds(d.get("expiresAt"))
        return lock_info(key, d.get("owner"), d.get("fencingToken"), acquired, expires, int(d["nowMs"]) / 1000)
