from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING

from ..backend import (
    AppliedSummary,
    ConfigurationError,
    DoctorCheck,
    Fence,
    LockLostError,
    TargetStore,
    TargetSystem,
    Transaction,
    check_distinct,
    redact,
)
from ._audit import HEAD_KEY, AuditLog, entry_key, holder, next_head
from ._collections import CollectionSpec, ensure_collections, missing_collections
from ._errors import sdk_errors
from ._kv import Doc
from ._lock import CouchbaseLock, lock_key, unexpired
from ._target import DEFAULT_SCOPE, CouchbaseTargetSystem, CouchbaseTransaction, check_keyspace_name

if TYPE_CHECKING:
    from ..backend import AuditEntry

__all__ = ["DEFAULT_AUDIT_COLLECTION", "DEFAULT_LOCK_COLLECTION", "CouchbaseAuditStore"]

DEFAULT_AUDIT_COLLECTION = "flamingockAuditLog"
DEFAULT_LOCK_COLLECTION = "flamingockLock"


class CouchbaseAuditStore(TargetStore[CouchbaseTargetSystem, CouchbaseLock]):
    """Audit log and lock as documents in two collections of the target's bucket, through key-value operations
    only: no query service, no index.

    **What each write guarantees (fencing).**

    - Every append checks that the lock document still holds our owner and token with time left, and writes the
      audit's head document with compare-and-swap, only if the head still names us as its writer. Each new lock
      holder claims the head before reading any state. So once another instance has taken the lock, nothing of ours
      can be recorded any more, and what it read includes everything we recorded before. (The key-value service
      has no multi-document condition: between the lock check and the head's CAS write, our lease may end. Such a
      write lands only if nobody took the lock meanwhile, and then nothing else acted on what it records.)
    - Shared transaction (a transactional change on this store's own bucket): the change's writes, the lock
      check, the head and the entry are one Couchbase ACID transaction. A takeover between the transaction's lock
      read and its commit is kept out by the lease (the read requires time left on it), as on the marker path.
    """

    def __init__(
        self,
        *,
        target: CouchbaseTargetSystem,
        scope: str = DEFAULT_SCOPE,
        audit_collection: str = DEFAULT_AUDIT_COLLECTION,
        lock_collection: str = DEFAULT_LOCK_COLLECTION,
        create_collections: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(target, CouchbaseTargetSystem):
            raise ConfigurationError(
                [f"CouchbaseAuditStore needs a CouchbaseTargetSystem, got {type(target).__name__}"]
            )
        self.target = target
        self.scope = check_keyspace_name("scope", scope)
        self.audit_collection = check_keyspace_name("audit_collection", audit_collection)
        self.lock_collection = check_keyspace_name("lock_collection", lock_collection)
        check_distinct("CouchbaseAuditStore", audit_collection=audit_collection, lock_collection=lock_collection)
        self.create_collections = create_collections
        self._specs = tuple(
            CollectionSpec(role, self.scope, name)
            for role, name in (("audit", self.audit_collection), ("lock", self.lock_collection))
            if name != DEFAULT_SCOPE
        )
        self._clock = clock
        self._log: AuditLog | None = None

    @classmethod
    def from_target(
        cls,
        target: CouchbaseTargetSystem,
        *,
        scope: str = DEFAULT_SCOPE,
        audit_collection: str = DEFAULT_AUDIT_COLLECTION,
        lock_collection: str = DEFAULT_LOCK_COLLECTION,
        create_collections: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> CouchbaseAuditStore:
        """The store in `target`'s bucket, collections `scope.audit_collection` and `scope.lock_collection`
        (Flamingock's `_default.flamingockAuditLog` and `_default.flamingockLock`). Missing collections are created
        when it first opens; with `create_collections=False` it only checks that they exist, and the error names
        the command creating them. The key-value service has no clock a condition can use: leases are judged by
        `clock` (epoch seconds; this host's by default), which every instance sharing the collections must agree
        on."""
        return cls(
            target=target,
            scope=scope,
            audit_collection=audit_collection,
            lock_collection=lock_collection,
            create_collections=create_collections,
            clock=clock,
        )

    def describe(self) -> str:
        return (
            f"CouchbaseAuditStore(bucket={self.target.bucket_name!r}, audit={self.scope}.{self.audit_collection}, "
            f"lock={self.scope}.{self.lock_collection})"
        )

    @property
    def log(self) -> AuditLog:
        return self._while_open(self._log)

    async def _prepare(self) -> None:
        if self._log is None:
            await ensure_collections(
                self.target, self._specs, create=self.create_collections, option="create_collections"
            )
            self._log = AuditLog(self.target.keyspace(self.audit_collection, scope=self.scope))
            keyspace = self.target.keyspace(self.lock_collection, scope=self.scope)
            self._lock = CouchbaseLock(keyspace, self._log, self._clock)

    async def _diagnose(self) -> list[DoctorCheck]:
        """Both collections exist (nothing is created), and the store can read them."""
        missing = await missing_collections(self.target, self._specs)
        if missing:
            return [
                DoctorCheck(
                    self.subject(),
                    "collections",
                    False,
                    f"the {spec.role} collection {spec.scope}.{spec.name} does not exist",
                    self._fix(spec),
                )
                for spec in missing
            ]
        names = ", ".join(f"{spec.scope}.{spec.name}" for spec in self._specs) or "_default"
        checks = [DoctorCheck(self.subject(), "collections", True, f"present: {names}")]
        try:
            await self.target.keyspace(self.audit_collection, scope=self.scope).get(HEAD_KEY)
            await self.target.keyspace(self.lock_collection, scope=self.scope).get(lock_key("doctor"))
        except Exception as exc:
            fix = "grant the Data Reader and, for runs, Data Writer roles on both collections"
            return [*checks, DoctorCheck(self.subject(), "read", False, redact(f"{type(exc).__name__}: {exc}"), fix)]
        return [*checks, DoctorCheck(self.subject(), "read", True, "both collections can be read")]

    def _fix(self, spec: CollectionSpec) -> str:
        command = spec.fix(self.target.bucket_name)
        if self.create_collections:
            return f"any run creates it (create_collections=True), or: {command}"
        return command

    # -- writing ------------------------------------------------------------------------------------------------

    async def append(self, entry: AuditEntry, *, fence: Fence) -> None:
        what = f"{entry.state.value} of {entry.change_id!r}"
        await self.log.append(entry, fence, lambda: self.lock.check(fence, what))

    def shares_transactions_with(self, target: TargetSystem) -> bool:
        return (
            isinstance(target, CouchbaseTargetSystem)
            and target.shares_cluster_with(self.target)
            and target.bucket_name == self.target.bucket_name
        )

    async def append_in_transaction(self, tx: Transaction, entry: AuditEntry, *, fence: Fence) -> None:
        """The lock read, the head replaced and the entry inserted, all through the transaction's attempt."""
        assert isinstance(tx, CouchbaseTransaction) and tx.context.transaction is not None
        attempt = tx.context.transaction
        lock_doc = await _get(attempt, self.lock.keyspace.collection, lock_key(fence.key))
        what = f"{entry.state.value} of {entry.change_id!r} not recorded"
        if not unexpired(lock_doc, fence, self.lock.now_ms()):
            raise LockLostError(f"{what}: lock {fence.key!r} is not held by {fence.owner!r} with token {fence.token}")
        collection = self.log.keyspace.collection
        head_result = await attempt.get(collection, HEAD_KEY)
        head = head_result.content_as[dict]
        if head.get("holders", {}).get(fence.key) != holder(fence):
            raise LockLostError(f"{what}: the audit log was claimed by a newer holder of lock {fence.key!r}")
        head = next_head(head, entry)
        await attempt.replace(head_result, head)
        await attempt.insert(collection, entry_key(head["seq"]), head["last"])

    # -- reading ------------------------------------------------------------------------------------------------

    async def current_states(self, change_ids: Iterable[str] | None = None) -> dict[str, AuditEntry]:
        """One `get` of the audit's head document, whatever the number of changes."""
        return await self.log.current_states(change_ids)

    async def applied_summary(self) -> AppliedSummary | None:
        """One sub-document lookup of the head (`seq` and `summary`), whatever the size of the audit. What it cannot
        see is the head's states changed by hand (Couchbase has no triggers): see docs/decisions.md."""
        return await self.log.applied_summary()

    async def refresh_summary(self) -> None:
        await self.log.refresh_summary()

    def summary_removal(self) -> str:
        keyspace = f"`{self.target.bucket_name}`.`{self.scope}`.`{self.audit_collection}`"
        return f"`UPDATE {keyspace} USE KEYS {HEAD_KEY!r} UNSET summary`"

    async def history(self) -> AsyncIterator[AuditEntry]:
        """The head, then the entry documents, 64 `get`s at a time, oldest first."""
        async for entry in self.log.history():
            yield entry


async def _get(attempt: object, collection: object, key: str) -> Doc | None:
    """A document read in a transaction, None if there is none."""
    try:
        result = await attempt.get(collection, key)  # type: ignore[attr-defined]
    except sdk_errors().DocumentNotFoundException:
        return None
    if result is None:
        return None
    return Doc(key, result.content_as[dict], int(result.cas))
