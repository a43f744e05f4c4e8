from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from ..backend import (
    AppliedSummary,
    ConfigurationError,
    CorruptAuditError,
    DoctorCheck,
    Fence,
    TargetStore,
    TargetSystem,
    Transaction,
    TransactionAbortedError,
    check_distinct,
    decode_entry,
    entry_fix,
    library_logger,
    redact,
    skip_corrupt,
    summary_of,
)
from ._items import Item, from_item, number, string, to_item
from ._lock import DynamoDBLock
from ._tables import AUDIT_KEYS, LOCK_KEYS, TableSpec, check_table_name, describe, ensure_table
from ._target import Action, AlreadyCommitted, CommitPart, DynamoDBTargetSystem, DynamoDBTransaction, Rebuild

if TYPE_CHECKING:
    from ..backend import AuditEntry

__all__ = ["AUDIT_PARTITION", "DEFAULT_AUDIT_TABLE", "DEFAULT_LOCK_TABLE", "DynamoDBAuditStore"]

logger = library_logger(__name__)

DEFAULT_AUDIT_TABLE = "flamingockAuditLog"
DEFAULT_LOCK_TABLE = "flamingockLock"
AUDIT_PARTITION = "auditLog"
"""The one partition key value of the audit table: every read is a `Query` of it, ordered by `seq`."""
_NOT_STORED = ("partitionKey", "seq", "appendId")
_APPEND_ATTEMPTS = 3
_APPEND_BACKOFF_SECONDS = 0.05
_MATCH_AT_MOST = 100  # DynamoDB's limit of operands of IN
SUMMARY_SEQ = 10**30
"""The start-up summary is the item of the audit's partition at this `seq`, above any entry's: a `Query` of the
partition's top two items returns it and the newest entry together. Every other read stops below it."""


def _item(entry: AuditEntry, seq: int, append_id: str) -> Item:
    """Flamingock's field names; `createdAt` as ISO 8601 text, the enums as their values, None as NULL."""
    return {
        "partitionKey": string(AUDIT_PARTITION),
        "seq": number(seq),
        "appendId": string(append_id),
        **to_item(entry.to_document()),
    }


def _entry(item: Item, table: str, removal: str) -> AuditEntry:
    seq = item.get("seq", {}).get("N")
    where = f"DynamoDB table {table!r}, item seq {seq}"
    change_id = item.get("changeId", {}).get("S")
    fix = entry_fix(f"delete that item, then the start-up summary, which cannot see an edit by hand: {removal}")
    try:
        document = from_item(item)
    except (KeyError, TypeError, ValueError) as exc:
        problem = f"holds a value DynamoDB's types cannot be read as ({exc})"
        raise CorruptAuditError(where, "the item", problem, fix, change_id=change_id) from None
    return decode_entry({k: v for k, v in document.items() if k not in _NOT_STORED}, where=where, fix=fix)


class _AuditWrite(CommitPart):
    """The entry at the next sequence number, put only if that number is free, with the lock check beside it."""

    def __init__(self, store: DynamoDBAuditStore, entry: AuditEntry, fence: Fence) -> None:
        self._store = store
        self._entry = entry
        self._fence = fence
        self._append_id = uuid.uuid4().hex
        self._seq = 0

    async def actions(self) -> list[Action]:
        await self._store._prepare_lock_table()  # its check needs the table (known once the lock was used)
        self._seq = await self._store._next_seq()
        put = {
            "TableName": self._store.audit_table,
            "Item": _item(self._entry, self._seq, self._append_id),
            "ConditionExpression": "attribute_not_exists(seq)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        what = f"{self._entry.state.value} of {self._entry.change_id!r}"
        return [self._store.lock.fence_check(self._fence, what), Action({"Put": put}, self._taken)]

    def _taken(self, old: dict[str, Any] | None) -> BaseException:
        if old is not None and old.get("appendId") == string(self._append_id):
            return AlreadyCommitted()  # this very entry: an earlier sending of this transaction committed
        self._store._forget_seq()
        return Rebuild()

    def committed(self) -> None:
        self._store._seq_used(self._seq)


class DynamoDBAuditStore(TargetStore[DynamoDBTargetSystem, DynamoDBLock]):
    """Audit log and lock in two tables reached through the target's client.

    Every append is one `TransactWriteItems`: a `ConditionCheck` that the lock item still holds our owner and token,
    and the `Put` of the entry at the next sequence number of the audit, only if that number is free. A transactional
    change on a target with the same client takes the shared-transaction path: its actions join that call.
    """

    def __init__(
        self,
        *,
        target: DynamoDBTargetSystem,
        audit_table: str = DEFAULT_AUDIT_TABLE,
        lock_table: str = DEFAULT_LOCK_TABLE,
        create_tables: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(target, DynamoDBTargetSystem):
            raise ConfigurationError([f"DynamoDBAuditStore needs a DynamoDBTargetSystem, got {type(target).__name__}"])
        self.target = target
        self.audit_table = check_table_name("audit_table", audit_table)
        self.lock_table = check_table_name("lock_table", lock_table)
        check_distinct(
            "DynamoDBAuditStore", audit_table=audit_table, lock_table=lock_table, marker_table=target.marker_table
        )
        self.create_tables = create_tables
        self._specs = (
            TableSpec(self.audit_table, "audit table", AUDIT_KEYS),
            TableSpec(self.lock_table, "lock table", LOCK_KEYS),
        )
        self._lock = DynamoDBLock(target, self.lock_table, clock, prepare=self._prepare_lock_table)
        self._last_seq: int | None = None
        self._tables_ready: set[str] = set()

    @classmethod
    def from_target(
        cls,
        target: DynamoDBTargetSystem,
        *,
        audit_table: str = DEFAULT_AUDIT_TABLE,
        lock_table: str = DEFAULT_LOCK_TABLE,
        create_tables: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> DynamoDBAuditStore:
        """The store on `target`'s client. Missing tables are created (on-demand billing) when it first opens;
        with `create_tables=False` it only checks that they exist, and the error names the command creating them.

        DynamoDB has no clock in its expressions: the lock's leases are judged by `clock` (epoch seconds; this
        host's by default), which every instance sharing the tables must agree on."""
        return cls(
            target=target, audit_table=audit_table, lock_table=lock_table, create_tables=create_tables, clock=clock
        )

    def describe(self) -> str:
        return f"DynamoDBAuditStore(audit_table={self.audit_table!r}, lock_table={self.lock_table!r})"

    async def _prepare(self) -> None:
        """The audit table, checked (or created) with one `DescribeTable` on the first open of this store object;
        the lock table when the lock is first used."""
        await self._ensure(self._specs[0])

    async def _prepare_lock_table(self) -> None:
        await self._ensure(self._specs[1])

    async def _ensure(self, spec: TableSpec) -> None:
        if spec.name not in self._tables_ready:
            await ensure_table(
                self.target.client, spec, create=self.create_tables, option="create_tables",
                retry_seconds=self.target.retry_seconds,
            )  # fmt: skip
            self._tables_ready.add(spec.name)

    async def _diagnose(self) -> list[DoctorCheck]:
        """Both tables exist with their keys (nothing is created), and the store can read them."""
        checks = [await self._check_table(spec) for spec in self._specs]
        if all(check.ok for check in checks):
            checks.append(await self._check_read())
        return checks

    async def _check_table(self, spec: TableSpec) -> DoctorCheck:
        table = await describe(self.target.client, spec.name, self.target.retry_seconds)
        if table is None:
            fix = spec.fix("create_tables", creates=self.create_tables)
            return DoctorCheck(self.subject(), "tables", False, spec.missing(), fix)
        problem = spec.schema_problem(table)
        if problem is not None:
            return DoctorCheck(self.subject(), "tables", False, problem, "see the detail")
        if table.get("TableStatus") not in {"ACTIVE", "UPDATING"}:
            detail = f"the {spec.role} {spec.name!r} is {table.get('TableStatus')}"
            return DoctorCheck(self.subject(), "tables", False, detail, "wait until it is ACTIVE")
        return DoctorCheck(self.subject(), "tables", True, f"{spec.role} {spec.name!r} present: {spec.describe_keys()}")

    async def _check_read(self) -> DoctorCheck:
        try:
            await self._last_in_audit()
            await self.lock.read("doctor")
        except Exception as exc:
            fix = (
                f"grant dynamodb:Query on {self.audit_table!r}, dynamodb:GetItem on {self.lock_table!r}, and for runs "
                "dynamodb:PutItem, UpdateItem, DeleteItem, ConditionCheckItem on both"
            )
            return DoctorCheck(self.subject(), "read", False, redact(f"{type(exc).__name__}: {exc}"), fix)
        return DoctorCheck(self.subject(), "read", True, "both tables can be read")

    # -- writing ------------------------------------------------------------------------------------------------

    async def append(self, entry: AuditEntry, *, fence: Fence) -> None:
        """A transaction of its own. Cancelled by a conflict (nothing written), it is sent again."""
        for attempt in range(1, _APPEND_ATTEMPTS + 1):
            try:
                async with self.target.transaction() as tx:
                    tx.parts.append(_AuditWrite(self, entry, fence))
                return
            except TransactionAbortedError as exc:
                if attempt == _APPEND_ATTEMPTS:
                    raise
                logger.debug("audit append cancelled by DynamoDB, again: %s", redact(str(exc)))
                await anyio.sleep(_APPEND_BACKOFF_SECONDS * attempt)

    def shares_transactions_with(self, target: TargetSystem) -> bool:
        return target is self.target or self.target.shares_client_with(target)

    async def append_in_transaction(self, tx: Transaction, entry: AuditEntry, *, fence: Fence) -> None:
        assert isinstance(tx, DynamoDBTransaction)
        tx.parts.append(_AuditWrite(self, entry, fence))

    async def _next_seq(self) -> int:
        if self._last_seq is None:
            self._last_seq = await self._last_in_audit()
        return self._last_seq + 1

    def _seq_used(self, seq: int) -> None:
        self._last_seq = max(self._last_seq or 0, seq)

    def _forget_seq(self) -> None:
        self._last_seq = None

    async def _last_in_audit(self) -> int:
        response = await self.target.request(
            lambda: self.target.client.query(
                **self._partition(), ScanIndexForward=False, Limit=1, ProjectionExpression="seq"
            ),
            "reading the audit's last sequence number",
        )
        items = response.get("Items", [])
        return int(items[0]["seq"]["N"]) if items else 0

    # -- reading ------------------------------------------------------------------------------------------------

    def _partition(self) -> dict[str, Any]:
        """The audit's entries: its partition, below the summary."""
        return {
            "TableName": self.audit_table,
            "KeyConditionExpression": "partitionKey = :partition AND seq < :summary",
            "ExpressionAttributeValues": {":partition": string(AUDIT_PARTITION), ":summary": number(SUMMARY_SEQ)},
            "ConsistentRead": True,
        }

    async def _query(self, what: str, **arguments: Any) -> AsyncIterator[Item]:
        """Every item of the audit's partition, oldest first, one page (up to 1 MB) per request."""
        arguments = {**self._partition(), **arguments}
        arguments["ExpressionAttributeValues"] = {
            **self._partition()["ExpressionAttributeValues"],
            **arguments.get("ExpressionAttributeValues", {}),
        }
        while True:
            response = await self.target.request(lambda: self.target.client.query(**arguments), what)
            for item in response.get("Items", []):
                yield item
            if "LastEvaluatedKey" not in response:
                return
            arguments["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    async def current_states(self, change_ids: Iterable[str] | None = None) -> dict[str, AuditEntry]:
        """One `Query` of the audit's partition (a request per MB of entries); the newest entry of each change is
        the one with the highest `seq`. A few ids are filtered by DynamoDB, to send less back."""
        return (await self._current(change_ids))[0]

    async def _current(self, change_ids: Iterable[str] | None) -> tuple[dict[str, AuditEntry], int]:
        """The current states asked for, and the highest `seq` the read saw (0 when it was filtered)."""
        wanted = None if change_ids is None else set(change_ids)
        if wanted is not None and not wanted:
            return {}, 0
        arguments: dict[str, Any] = {}
        if wanted is not None and len(wanted) <= _MATCH_AT_MOST:
            values = {f":c{i}": string(change_id) for i, change_id in enumerate(sorted(wanted))}
            arguments = {"FilterExpression": f"changeId IN ({', '.join(values)})", "ExpressionAttributeValues": values}
        newest: dict[str, Item] = {}  # decoded at the end, and only for the changes asked about
        last = 0
        async for item in self._query("reading the current states", **arguments):
            newest[str(item.get("changeId", {}).get("S"))] = item
            last = int(item["seq"]["N"])
        if arguments:
            last = 0
        else:
            self._seq_used(last)  # the highest number in use: the next append needs no read to find it
        removal = self.summary_removal()
        states = {k: _entry(v, self.audit_table, removal) for k, v in newest.items() if wanted is None or k in wanted}
        return states, last

    # -- the start-up summary -------------------------------------------------------------------------------------

    def _summary_key(self) -> dict[str, Any]:
        return {"partitionKey": string(AUDIT_PARTITION), "seq": number(SUMMARY_SEQ)}

    def summary_removal(self) -> str:
        key = json.dumps(self._summary_key(), separators=(", ", ": "))
        return f"`aws dynamodb delete-item --table-name {self.audit_table} --key '{key}'`"

    async def applied_summary(self) -> AppliedSummary | None:
        """One `Query`, two items: the summary and the newest entry. The summary holds when that entry's `seq` is
        the one it was computed at: every append, by any instance or any version of this library, puts its entry
        at the next `seq`. What it cannot see is an older entry changed or deleted by hand (DynamoDB has no
        triggers): see docs/decisions.md."""
        response = await self.target.request(
            lambda: self.target.client.query(
                TableName=self.audit_table,
                KeyConditionExpression="partitionKey = :partition",
                ExpressionAttributeValues={":partition": string(AUDIT_PARTITION)},
                ConsistentRead=True,
                ScanIndexForward=False,
                Limit=2,
                ProjectionExpression="seq, lastSeq, applied, digest",
            ),
            "reading the audit's summary",
        )
        items = response.get("Items", [])
        if not items or int(items[0]["seq"]["N"]) != SUMMARY_SEQ:
            return None
        summary, newest = items[0], (int(items[1]["seq"]["N"]) if len(items) > 1 else 0)
        try:
            if int(summary["lastSeq"]["N"]) != newest:
                return None
            return AppliedSummary(int(summary["applied"]["N"]), summary["digest"]["S"])
        except (KeyError, TypeError, ValueError):
            return None

    async def refresh_summary(self) -> None:
        """Every change's newest state, then the summary, written with the highest `seq` that read saw: an entry
        appended meanwhile sits above it, and makes the summary stale as soon as it is written."""
        current, newest = await self._current(None)
        summary = summary_of(current)
        item = {
            **self._summary_key(),
            "lastSeq": number(newest),
            "applied": number(summary.count),
            "digest": string(summary.digest),
        }
        await self.target.request(
            lambda: self.target.client.put_item(TableName=self.audit_table, Item=item),
            "writing the audit's summary",
        )

    async def history(self) -> AsyncIterator[AuditEntry]:
        """Oldest first, streamed page by page."""
        removal = self.summary_removal()
        async for item in self._query("reading the history"):
            entry = skip_corrupt(partial(_entry, item, self.audit_table, removal))
            if entry is not None:
                yield entry
