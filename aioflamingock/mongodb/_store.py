from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from ..backend import (
    AppliedSummary,
    ConfigurationError,
    DoctorCheck,
    Fence,
    LockLostError,
    TargetStore,
    TargetSystem,
    Transaction,
    TransactionAbortedError,
    check_distinct,
    decode_entry,
    entry_fix,
    library_logger,
    redact,
    retrying,
    skip_corrupt,
    summary_of,
)
from ._errors import translate_errors
from ._lock import FENCE_SUFFIX, MongoDBLock, fence_filter
from ._target import (
    CLEANUP_SECONDS,
    MARKER_COLLECTION,
    MongoDBTargetSystem,
    MongoDBTransaction,
    aggregate,
    check_collection_name,
    close_cursor,
)

if TYPE_CHECKING:
    from ..backend import AuditEntry

if TYPE_CHECKING:
    from pymongo.asynchronous.client_session import AsyncClientSession

__all__ = ["AUDIT_INDEXES", "DEFAULT_AUDIT_COLLECTION", "DEFAULT_LOCK_COLLECTION", "MongoDBAuditStore"]

logger = library_logger(__name__)

DEFAULT_AUDIT_COLLECTION = "flamingockAuditLog"
DEFAULT_LOCK_COLLECTION = "flamingockLock"
AUDIT_INDEXES: dict[str, list[tuple[str, int]]] = {
    "changeId_1_seq_-1": [("changeId", 1), ("seq", -1)],  # the newest entry of each change
    "seq_1": [("seq", 1)],  # history, oldest first
}
_NOT_STORED = ("_id", "seq")
_MATCH_AT_MOST = 100
_ACTIONS = ("find", "insert", "update", "listIndexes")  # what a run does to the audit and lock collections
_ONE_BATCH = 1_000_000  # documents; the server also stops a batch at 16 MB
_SUMMARY_PREFIX = "#summary:"
"""The summary's `_id` in the lock collection is this and the audit collection's name: never a lock key
(`[A-Za-z0-9._-]`) nor a fence (`<key>#fence`)."""


def _document(entry: AuditEntry) -> dict[str, Any]:
    """Flamingock's field names; enums as their values; `createdAt` stays a datetime (a BSON date)."""
    data = entry.model_dump(by_alias=True)
    return {k: v.value if isinstance(v, enum.Enum) else v for k, v in data.items()}


def _entry(document: dict[str, Any], collection: str, removal: str) -> AuditEntry:
    where = f"MongoDB collection {collection!r}, document _id {document.get('_id')!r}"
    remove = (
        f"`db.{collection}.deleteOne({{_id: ...}})` with that _id, then remove the start-up summary, which cannot "
        f"see an edit by hand: {removal}"
    )
    return decode_entry({k: v for k, v in document.items() if k not in _NOT_STORED}, where=where, fix=entry_fix(remove))


def _shell_keys(keys: list[tuple[str, int]]) -> str:
    return "{" + ", ".join(f"{field}: {direction}" for field, direction in keys) + "}"


class MongoDBAuditStore(TargetStore[MongoDBTargetSystem, MongoDBLock]):
    """Audit log and lock in two collections of the target's database, on the target's client.

    Every append is a transaction that increments `seq` on the lock's fence document, conditional on our owner
    and token, and inserts the entry with that `seq`; a transactional change on the same database takes the
    shared-transaction path.
    """

    def __init__(
        self,
        *,
        target: MongoDBTargetSystem,
        audit_collection: str = DEFAULT_AUDIT_COLLECTION,
        lock_collection: str = DEFAULT_LOCK_COLLECTION,
        create_indexes: bool = True,
    ) -> None:
        if not isinstance(target, MongoDBTargetSystem):
            raise ConfigurationError([f"MongoDBAuditStore needs a MongoDBTargetSystem, got {type(target).__name__}"])
        self.target = target
        self.audit_collection = check_collection_name("audit_collection", audit_collection)
        self.lock_collection = check_collection_name("lock_collection", lock_collection)
        check_distinct(
            "MongoDBAuditStore",
            audit_collection=audit_collection,
            lock_collection=lock_collection,
            marker_collection=MARKER_COLLECTION,
        )
        self.create_indexes = create_indexes
        self._audit = target.collection(self.audit_collection)
        self._locks = target.collection(self.lock_collection)
        self._lock = MongoDBLock(self._locks)

    @classmethod
    def from_target(
        cls,
        target: MongoDBTargetSystem,
        *,
        audit_collection: str = DEFAULT_AUDIT_COLLECTION,
        lock_collection: str = DEFAULT_LOCK_COLLECTION,
        create_indexes: bool = True,
    ) -> MongoDBAuditStore:
        """The store in `target`'s database, on its client. With `create_indexes=False` the store only checks
        that its indexes exist (for accounts without the right to create them)."""
        return cls(
            target=target,
            audit_collection=audit_collection,
            lock_collection=lock_collection,
            create_indexes=create_indexes,
        )

    def describe(self) -> str:
        return f"MongoDBAuditStore(database={self.target.database!r}, audit_collection={self.audit_collection!r})"

    async def _prepare(self) -> None:
        """One read when the indexes are there (every start-up but the first); the missing ones otherwise.
        Creating an index also creates the collection, which must exist before a transaction inserts in it."""
        missing = await self._missing_indexes()
        if missing and not self.create_indexes:
            raise ConfigurationError([self._missing_index(keys) for keys in missing.values()])
        for name, keys in missing.items():
            with translate_errors(f"creating the index {name!r} on {self.audit_collection!r}"):
                await self._audit.create_index(keys, name=name)

    async def _missing_indexes(self) -> dict[str, list[tuple[str, int]]]:
        with translate_errors(f"reading the indexes of {self.audit_collection!r}"):
            present = [info["key"] for info in (await self._audit.index_information()).values()]
        return {name: keys for name, keys in AUDIT_INDEXES.items() if keys not in present}

    async def _diagnose(self) -> list[DoctorCheck]:
        """The audit indexes exist (nothing is created), and the account holds the actions the store uses."""
        missing = await self._missing_indexes()
        checks = [
            DoctorCheck(self.subject(), "indexes", False, self._index_problem(keys), self._index_fix(keys))
            for keys in missing.values()
        ]
        if not missing:
            checks.append(DoctorCheck(self.subject(), "indexes", True, f"present on {self.audit_collection!r}"))
        return [*checks, await self._check_privileges()]

    async def _check_privileges(self) -> DoctorCheck:
        with translate_errors("reading the connection's privileges"):
            status = await self.target.db.command({"connectionStatus": 1, "showPrivileges": True})
        auth = status.get("authInfo", {})
        if not auth.get("authenticatedUsers"):
            detail = "no authenticated user: the server does not enforce access control, so nothing to check"
            return DoctorCheck(self.subject(), "privileges", True, detail)
        needed = set(_ACTIONS) | ({"createIndex", "createCollection"} if self.create_indexes else set())
        held: set[str] = set()
        for privilege in auth.get("authenticatedUserPrivileges", []):
            resource = privilege.get("resource", {})
            if resource.get("anyResource") or (
                resource.get("db") in {"", self.target.database}
                and resource.get("collection") in {"", self.audit_collection, self.lock_collection}
            ):
                held.update(privilege.get("actions", []))
        missing = sorted(needed - held)
        if not missing:
            return DoctorCheck(self.subject(), "privileges", True, f"{', '.join(sorted(needed))} granted")
        fix = f"grant the account the role readWrite on {self.target.database!r}"
        if {"createIndex", "createCollection"} & set(missing):
            fix += " and dbAdmin there (to create the indexes), or have an administrator create them and open the "
            fix += "store with create_indexes=False"
        detail = f"the account lacks {', '.join(missing)} on database {self.target.database!r}"
        return DoctorCheck(self.subject(), "privileges", False, detail, fix)

    def _missing_index(self, keys: list[tuple[str, int]]) -> str:
        return f"{self._index_problem(keys)}: {self._index_fix(keys)}"

    def _index_problem(self, keys: list[tuple[str, int]]) -> str:
        return (
            f"the index {_shell_keys(keys)} on collection {self.audit_collection!r} of database "
            f"{self.target.database!r} is missing"
        )

    def _index_fix(self, keys: list[tuple[str, int]]) -> str:
        return (
            f"create it with `db.{self.audit_collection}.createIndex({_shell_keys(keys)})`, or open the store once "
            "with create_indexes=True"
        )

    # -- writing ------------------------------------------------------------------------------------------------

    async def append(self, entry: AuditEntry, *, fence: Fence) -> None:
        """A transaction of its own: the fence and the insert. A write conflict (a takeover landing in between)
        aborts it with nothing written; it is then run again, and the takeover shows as `LockLostError`."""

        async def once() -> None:
            async with self.target.transaction() as tx:
                await self._append_in(tx, entry, fence)

        def again(exc: Exception) -> None:
            logger.debug("audit append aborted by the database, again: %s", redact(str(exc)))

        await retrying(
            once,
            seconds=self.target.transaction_retry_seconds,
            transient=lambda exc: isinstance(exc, TransactionAbortedError),
            again=again,
        )

    def shares_transactions_with(self, target: TargetSystem) -> bool:
        return target is self.target or self.target.same_database(target)

    async def append_in_transaction(self, tx: Transaction, entry: AuditEntry, *, fence: Fence) -> None:
        await self._append_in(tx, entry, fence)

    async def _append_in(self, tx: Transaction, entry: AuditEntry, fence: Fence) -> None:
        """Two statements in `tx`: `$inc seq` on the fence document, then the insert with that `seq`.

        The increment is a real write, so a new holder moving the fence before our commit conflicts with it and
        one of the two aborts; a read alone would not (write skew)."""
        from pymongo import ReturnDocument

        assert isinstance(tx, MongoDBTransaction) and tx.context.session is not None
        session: AsyncClientSession = tx.context.session
        what = f"recording {entry.state.value} of {entry.change_id!r}"
        with translate_errors(what):
            lock = await self._locks.find_one_and_update(
                fence_filter(fence.key, fence.owner, fence.token),
                {"$inc": {"seq": 1}},
                projection={"seq": True},
                return_document=ReturnDocument.AFTER,
                session=session,
            )
        if lock is None:
            raise LockLostError(
                f"{entry.state.value} of {entry.change_id!r} not recorded: lock {fence.key!r} is no longer held "
                f"by {fence.owner!r} with token {fence.token}"
            )
        with translate_errors(what):
            await self._audit.insert_one({**_document(entry), "seq": lock["seq"]}, session=session)

    # -- reading ------------------------------------------------------------------------------------------------

    async def current_states(self, change_ids: Iterable[str] | None = None) -> dict[str, AuditEntry]:
        """One aggregation, answered in one batch (up to the server's 16 MB reply). A few ids are matched on the
        server; a whole run's worth are filtered here, so the command stays small whatever the number of
        changes."""
        wanted = None if change_ids is None else set(change_ids)
        pipeline: list[dict[str, Any]] = []
        if wanted is not None and len(wanted) <= _MATCH_AT_MOST:
            pipeline.append({"$match": {"changeId": {"$in": sorted(wanted)}}})
        pipeline += [
            {"$sort": {"changeId": 1, "seq": -1}},
            {"$group": {"_id": "$changeId", "doc": {"$first": "$$ROOT"}}},
        ]
        with translate_errors("reading the current states"):
            groups = await aggregate(self._audit, pipeline, batchSize=_ONE_BATCH)
        removal = self.summary_removal()
        return {
            str(group["_id"]): _entry(group["doc"], self.audit_collection, removal)
            for group in groups
            if wanted is None or group["_id"] in wanted
        }

    # -- the start-up summary -------------------------------------------------------------------------------------

    @property
    def _summary_id(self) -> str:
        return f"{_SUMMARY_PREFIX}{self.audit_collection}"

    async def _look(self) -> tuple[list[list[Any]], int, dict[str, Any] | None]:
        """In one aggregation: every fence's `seq` (sorted), the audit's document count (`$collStats`: the
        collection's metadata, not a scan), and the summary document, if any."""
        summary_id = self._summary_id
        pipeline: list[dict[str, Any]] = [
            {"$collStats": {"count": {}}},
            {
                "$lookup": {
                    "from": self.lock_collection,
                    "pipeline": [
                        {"$match": {"$or": [{"_id": summary_id}, {"seq": {"$exists": True}}]}},
                        {"$project": {"seq": True, "fences": True, "entries": True, "applied": True, "digest": True}},
                    ],
                    "as": "locks",
                }
            },
        ]
        with translate_errors("reading the audit's summary"):
            found = await aggregate(self._audit, pipeline)
        count = sum(int(part.get("count", 0)) for part in found)  # one part per shard
        locks: list[dict[str, Any]] = found[0]["locks"] if found else []
        fences = sorted(
            [document["_id"], document["seq"]]
            for document in locks
            if isinstance(document.get("_id"), str) and document["_id"].endswith(FENCE_SUFFIX)
        )
        return fences, count, next((d for d in locks if d.get("_id") == summary_id), None)

    def summary_removal(self) -> str:
        return f"`db.{self.lock_collection}.deleteOne({{_id: {self._summary_id!r}}})`"

    async def applied_summary(self) -> AppliedSummary | None:
        """One aggregation (fences, the audit's count, the summary). The summary holds when every fence's `seq`
        and the audit's document count are what they were when it was computed: no entry appended since, by any
        instance or any version of this library (every append moves a fence, in its transaction), and none
        inserted or deleted by hand. An entry changed by hand in place it cannot see (MongoDB has no triggers):
        see docs/decisions.md."""
        fences, count, summary = await self._look()
        if summary is None or summary.get("fences") != fences or summary.get("entries") != count:
            return None
        applied, digest = summary.get("applied"), summary.get("digest")
        if not isinstance(applied, int) or not isinstance(digest, str):
            return None
        return AppliedSummary(applied, digest)

    async def refresh_summary(self) -> None:
        """Fences and count, every change's newest state, fences and count again: when neither moved in between,
        no entry was appended, inserted or deleted during the read (an append moves a fence and inserts its
        entry in one transaction), so the states are those the first look accounts for. Written with it;
        skipped when anything moved."""
        fences, count, _ = await self._look()
        summary = summary_of(await self.current_states())
        if (await self._look())[:2] != (fences, count):
            return
        document = {"fences": fences, "entries": count, "applied": summary.count, "digest": summary.digest}
        with translate_errors("writing the audit's summary"):
            await self._locks.replace_one({"_id": self._summary_id}, document, upsert=True)

    async def history(self) -> AsyncIterator[AuditEntry]:
        """Oldest first, streamed in the driver's batches."""
        cursor = self._audit.find({}, sort=[("seq", 1), ("_id", 1)])
        removal = self.summary_removal()
        try:
            with translate_errors("reading the history"):
                async for document in cursor:
                    entry = skip_corrupt(partial(_entry, document, self.audit_collection, removal))
                    if entry is not None:
                        yield entry
        finally:
            with anyio.move_on_after(CLEANUP_SECONDS, shield=True):
                await close_cursor(cursor)
