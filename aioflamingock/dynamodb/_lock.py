"""The lock: one item per key in the lock table, every operation one conditional write.

| operation | request | condition |
|---|---|---|
| acquire | `UpdateItem SET owner, status, acquiredAt, expiresAt ADD fencingToken 1` | free, expired or ours |
| renew | `UpdateItem SET expiresAt` | ours: `owner = :me AND fencingToken = :token` |
| release | `DeleteItem` | ours |
| fence | `ConditionCheck`, in the audit write's `TransactWriteItems` | ours |

"Free, expired or ours" is `attribute_not_exists(key) OR expiresAt <= :now OR owner = :me`.

A failed condition on acquire means another owner holds an unexpired lease: not acquired, and the engine waits.
DynamoDB has no clock in its expressions: times are this host's, as epoch milliseconds.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..backend import LOCK_HORIZON_SECONDS, Fence, LocallyTimedLock, LockInfo, LockLease, LockLostError, lock_info
from ._errors import botocore_errors
from ._items import number, string
from ._target import Action

if TYPE_CHECKING:
    from ._target import DynamoDBTargetSystem

__all__ = ["LOCKED", "DynamoDBLock"]

LOCKED = "LOCKED"
_CONDITION_FAILED = frozenset({"ConditionalCheckFailedException"})
_NAMES = {"#key": "key", "#owner": "owner", "#status": "status"}
_OURS = "#owner = :owner AND fencingToken = :token"


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)


def _seconds(ms: object) -> object:
    """A number the store gave as text (milliseconds), in seconds; the value as found if it is not one."""
    try:
        return int(str(ms)) / 1000
    except ValueError:
        return ms


class DynamoDBLock(LocallyTimedLock):
    def __init__(
        self,
        target: DynamoDBTargetSystem,
        table: str,
        clock: Callable[[], float] = time.time,
        *,
        prepare: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(clock)
        self._target = target
        self.table = table
        self._prepare = prepare  # the table checked (or created) before the first use: a start-up with nothing
        # pending never uses the lock, and saves that request

    def _key(self, key: str) -> dict[str, Any]:
        return {"key": string(key)}

    async def _conditional(self, what: str, operation: str, **arguments: Any) -> dict[str, Any] | None:
        """One conditional write; None if its condition failed."""
        send = getattr(self._target.client, operation)
        try:
            return await self._target.request(
                lambda: send(TableName=self.table, **arguments), what, passthrough=_CONDITION_FAILED
            )
        except botocore_errors().ClientError:
            return None

    async def try_acquire(self, key: str, owner: str, lease_seconds: float) -> LockLease | None:
        if self._prepare is not None:
            await self._prepare()
        now = self.now_ms()
        expires = now + _ms(lease_seconds)
        response = await self._conditional(
            f"acquiring lock {key!r}",
            "update_item",
            Key=self._key(key),
            UpdateExpression=(
                "SET #owner = :owner, #status = :locked, acquiredAt = :now, expiresAt = :expires ADD fencingToken :one"
            ),
            # an expiry farther than any lease is corrupt, and counts as expired
            ConditionExpression=(
                "attribute_not_exists(#key) OR expiresAt <= :now OR expiresAt > :far OR #owner = :owner "
                "OR NOT attribute_type(expiresAt, :number)"
            ),
            ExpressionAttributeNames=_NAMES,
            ExpressionAttributeValues={
                ":owner": string(owner),
                ":locked": string(LOCKED),
                ":now": number(now),
                ":far": number(now + int(LOCK_HORIZON_SECONDS * 1000)),
                ":number": string("N"),
                ":expires": number(expires),
                ":one": number(1),
            },
            ReturnValues="UPDATED_NEW",
        )
        if response is None:
            return None
        token = int(response["Attributes"]["fencingToken"]["N"])
        return LockLease(key, owner, token)

    def _ours(self, lease: LockLease | Fence) -> dict[str, Any]:
        return {
            "ConditionExpression": _OURS,
            "ExpressionAttributeNames": {"#owner": "owner"},
            "ExpressionAttributeValues": {":owner": string(lease.owner), ":token": number(lease.token)},
        }

    async def renew(self, lease: LockLease, lease_seconds: float) -> LockLease:
        expires = self.now_ms() + _ms(lease_seconds)
        ours = self._ours(lease)
        ours["ExpressionAttributeValues"][":expires"] = number(expires)
        response = await self._conditional(
            f"renewing lock {lease.key!r}",
            "update_item",
            Key=self._key(lease.key),
            UpdateExpression="SET expiresAt = :expires",
            **ours,
        )
        if response is None:
            raise LockLostError(f"lock {lease.key!r} is no longer held by {lease.owner!r} with token {lease.token}")
        return LockLease(lease.key, lease.owner, lease.token)

    async def release(self, lease: LockLease) -> bool:
        # Deleted, not kept: the audit's order comes from its own sequence numbers, and the owner is unique per
        # run, so a token counting again from 1 never makes an old (owner, token) pair valid again.
        response = await self._conditional(
            f"releasing lock {lease.key!r}", "delete_item", Key=self._key(lease.key), **self._ours(lease)
        )
        return response is not None

    async def force_release(self, key: str) -> bool:
        if self._prepare is not None:
            await self._prepare()
        response = await self._conditional(
            f"force-releasing lock {key!r}",
            "delete_item",
            Key=self._key(key),
            ConditionExpression="attribute_exists(#key)",
            ExpressionAttributeNames={"#key": "key"},
        )
        return response is not None

    async def read(self, key: str) -> LockInfo | None:
        if self._prepare is not None:
            await self._prepare()
        response = await self._target.request(
            lambda: self._target.client.get_item(TableName=self.table, Key=self._key(key), ConsistentRead=True),
            f"reading lock {key!r}",
        )
        item = response.get("Item")
        if item is None:
            return None

        def value(name: str, kind: str) -> object:
            return item.get(name, {}).get(kind)

        acquired, expires = _seconds(value("acquiredAt", "N")), _seconds(value("expiresAt", "N"))
        owner, token = value("owner", "S"), value("fencingToken", "N")
        return lock_info(key, owner, token, acquired, expires, self.clock())

    def fence_check(self, fence: Fence, what: str) -> Action:
        """The `ConditionCheck` that makes an audit write conditional on the lock still being `fence`'s."""
        check = {"TableName": self.table, "Key": self._key(fence.key), **self._ours(fence)}
        lost = f"{what} not recorded: lock {fence.key!r} is no longer held by {fence.owner!r} with token {fence.token}"
        return Action({"ConditionCheck": check}, lambda _old: LockLostError(lost))
