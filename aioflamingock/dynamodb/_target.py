"""The DynamoDB target: a client the application owns, and transactions as one `TransactWriteItems` call.

A transactional change adds its writes to `ctx.transaction` while it runs; nothing reaches DynamoDB until the change
returns. Then the target sends them, with the actions aioflamingock adds (the audit entry and the lock check on the
shared path, the marker on the marker path), in one `TransactWriteItems` call: all of them are applied, or none.

How a commit ends:

| DynamoDB answers | the commit |
|---|---|
| success | committed |
| cancelled: the lock check failed | `LockLostError`, nothing written |
| cancelled: a condition of the change failed | `StoreError` naming the action, nothing written (the change failed) |
| cancelled: `TransactionConflict` or throttling | `TransactionAbortedError`, nothing written (the change runs again) |
| throttled, a server error, a lost connection | sent again, same `ClientRequestToken`; then `StoreUnavailableError` |
| no answer after a request may have been applied | `TransactionOutcomeUnknownError` |

Each library action carries a proof: an item only that commit can have written. When a request sent again (after an
answer was lost) is cancelled because that item already exists, the first one committed, which holds even where a
server does not honour `ClientRequestToken`.
"""

from __future__ import annotations

import importlib
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ..backend import (
    ChangeMisuseError,
    ConfigurationError,
    DoctorCheck,
    LockLostError,
    Marker,
    StoreError,
    Transaction,
    TransactionAbortedError,
    TransactionalTargetSystem,
    TransactionOutcomeUnknownError,
    check_identifier,
    check_seconds,
    library_logger,
    redact,
    set_while,
    utc_now,
)
from ._errors import (
    AMBIGUOUS_CODES,
    DEFAULT_RETRY_SECONDS,
    RETRYABLE_CODES,
    Backoff,
    botocore_errors,
    error_code,
    import_aiobotocore,
    is_connection_error,
    request,
    translate,
    was_not_sent,
)
from ._guard import WriteWatch, refuse_writes_outside, watching
from ._items import string
from ._tables import MARKER_KEYS, TableSpec, check_table_name, describe, ensure_table

__all__ = [
    "MARKER_TABLE",
    "MAX_TRANSACTION_ACTIONS",
    "Action",
    "AlreadyCommitted",
    "CommitPart",
    "DynamoDBContext",
    "DynamoDBTargetSystem",
    "DynamoDBTransaction",
    "DynamoDBTransactionBuilder",
    "Rebuild",
]

logger = library_logger(__name__)

MARKER_TABLE = "flamingockMarker"
MAX_TRANSACTION_ACTIONS = 100
"""DynamoDB's limit of actions in one `TransactWriteItems` call."""
_KINDS = ("Put", "Update", "Delete", "ConditionCheck")
_REBUILD_ATTEMPTS = 5
_RETRYABLE_REASONS = frozenset(
    {"TransactionConflict", "ProvisionedThroughputExceeded", "ThrottlingError", "RequestLimitExceeded"}
)


def _check_client(client: object) -> None:
    """An aioboto3 (aiobotocore) DynamoDB client; anything else is a mistake worth naming."""
    aio = import_aiobotocore()
    if isinstance(client, aio.AioBaseClient):
        service = client.meta.service_model.service_name
        if service != "dynamodb":
            raise ConfigurationError([f"client must be a DynamoDB client, got a client for {service!r}"])
        return
    hint = ""
    if isinstance(client, importlib.import_module("botocore.client").BaseClient):
        hint = " (a boto3 client is synchronous and would block the event loop: use aioboto3's)"
    elif type(client).__name__ == "ClientCreatorContext":
        hint = ' (enter it first: `async with session.client("dynamodb") as client:`)'
    elif hasattr(getattr(client, "meta", None), "client"):
        hint = ' (a resource: pass a low-level client, `session.client("dynamodb")`)'
    raise ConfigurationError([f"client must be an aioboto3 DynamoDB client, got {type(client).__name__}{hint}"])


class DynamoDBTransactionBuilder:
    """The writes of one transactional change, in the low-level client's format. They are sent together, with
    aioflamingock's own, in one `TransactWriteItems` call once the change returns; nothing is sent before.

    ```python
    ctx.transaction.put(TableName="users", Item={"id": {"S": "1"}}, ConditionExpression="attribute_not_exists(id)")
    ```
    """

    def __init__(self) -> None:
        self._actions: list[dict[str, Any]] = []

    def put(self, **put: Any) -> None:
        """A `Put` action: `TableName`, `Item`, optionally `ConditionExpression`..."""
        self.add({"Put": put})

    def update(self, **update: Any) -> None:
        """An `Update` action: `TableName`, `Key`, `UpdateExpression`..."""
        self.add({"Update": update})

    def delete(self, **delete: Any) -> None:
        """A `Delete` action: `TableName`, `Key`..."""
        self.add({"Delete": delete})

    def condition_check(self, **check: Any) -> None:
        """A `ConditionCheck` action: `TableName`, `Key`, `ConditionExpression`: the transaction is applied only
        if it holds."""
        self.add({"ConditionCheck": check})

    def add(self, action: Mapping[str, Any]) -> None:
        """One `TransactItems` element as the client takes it: `{"Put": {...}}`, `{"Update": {...}}`..."""
        if len(action) != 1 or next(iter(action)) not in _KINDS:
            raise ValueError(f"an action is one of {', '.join(_KINDS)} with its parameters, got {dict(action)!r}")
        [(kind, body)] = action.items()
        if not isinstance(body, Mapping) or not isinstance(body.get("TableName"), str):
            raise ValueError(f"a {kind} action needs TableName, got {body!r}")
        if len(self._actions) >= MAX_TRANSACTION_ACTIONS:
            raise ConfigurationError(
                [f"a DynamoDB transaction holds at most {MAX_TRANSACTION_ACTIONS} actions: split the change"]
            )
        self._actions.append({kind: dict(body)})

    @property
    def actions(self) -> list[dict[str, Any]]:
        """The actions added so far, in order."""
        return list(self._actions)

    def __len__(self) -> int:
        return len(self._actions)


class DynamoDBContext:
    """What a change on a DynamoDB target receives: the application's aioboto3 `client` and, in a transactional
    change, the `transaction` builder its writes go to."""

    def __init__(self, client: Any, transaction: DynamoDBTransactionBuilder | None) -> None:
        self.client = client
        self._transaction = transaction

    @property
    def in_transaction(self) -> bool:
        return self._transaction is not None

    @property
    def transaction(self) -> DynamoDBTransactionBuilder:
        """Where a transactional change adds its writes. A non-transactional change has none."""
        if self._transaction is None:
            raise ConfigurationError(
                ["ctx.transaction exists only in transactional changes: this one is not, so write with ctx.client"]
            )
        return self._transaction


class AlreadyCommitted(Exception):
    """A verdict: a request sent again was cancelled because of what its first sending committed."""


class Rebuild(Exception):
    """A verdict: build the library's actions again (an audit sequence number was taken) and send them."""


@dataclass(frozen=True)
class Action:
    """One element of a `TransactWriteItems` call, and what a failed condition on it means: given the item as it
    was (when the action asked for it), an exception to raise, `AlreadyCommitted` or `Rebuild`. None: the
    change's own action."""

    item: dict[str, Any]
    on_condition_failed: Callable[[dict[str, Any] | None], BaseException] | None = None

    def describe(self, index: int) -> str:
        [(kind, body)] = self.item.items()
        return f"action {index + 1} ({kind} on table {body.get('TableName')!r})"


class CommitPart(ABC):
    """Actions aioflamingock adds to a transaction, built when it is sent (again, after a `Rebuild`)."""

    @abstractmethod
    async def actions(self) -> list[Action]: ...

    @abstractmethod
    def committed(self) -> None:
        """Called once the transaction committed."""


class DynamoDBTransaction(Transaction):
    context: DynamoDBContext

    def __init__(self, context: DynamoDBContext) -> None:
        super().__init__(context)
        self.parts: list[CommitPart] = []
        self.watch = WriteWatch()

    def running_change(self) -> AbstractContextManager[None]:
        return set_while(watching, self.watch)

    async def bypassed(self) -> str | None:
        if self.watch.refused:  # refused, so nothing was written: a plain failure, not one for a human
            raise ChangeMisuseError(
                f"the change sent {', '.join(self.watch.refused)} with ctx.client inside its transaction and "
                "carried on after it was refused: those writes were not sent, so the change did not do what it "
                "says. Add them to ctx.transaction instead",
                None,
            )
        return None


class _MarkerWrite(CommitPart):
    """The marker, put only if no item of this very commit is there: finding one proves an earlier sending
    committed."""

    def __init__(self, table: str, marker: Marker) -> None:
        self._table = table
        self._marker = marker
        self._commit_id = uuid.uuid4().hex

    async def actions(self) -> list[Action]:
        put = {
            "TableName": self._table,
            "Item": {
                "changeId": string(self._marker.change_id),
                "executionId": string(self._marker.execution_id),
                "createdAt": string(utc_now().isoformat()),
                "commitId": string(self._commit_id),
            },
            "ConditionExpression": "attribute_not_exists(changeId) OR commitId <> :commit",
            "ExpressionAttributeValues": {":commit": string(self._commit_id)},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        return [Action({"Put": put}, lambda _old: AlreadyCommitted())]

    def committed(self) -> None:
        pass


class DynamoDBTargetSystem(TransactionalTargetSystem):
    """DynamoDB, reached through an aioboto3 client the application owns: created, entered and closed by it.

    `marker_table` holds the markers of the separate-transaction path; it is created (on-demand billing) by the
    first change that takes that path, unless `create_tables=False`. Requests DynamoDB throttles, and requests
    whose connection failed, are sent again for up to `retry_seconds`.
    """

    def __init__(
        self,
        id: str,
        *,
        client: Any,
        marker_table: str = MARKER_TABLE,
        create_tables: bool = True,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
    ) -> None:
        self.id = check_identifier("target system id", id)
        _check_client(client)
        self.client = client
        self.marker_table = check_table_name("marker_table", marker_table)
        self.create_tables = create_tables
        self.retry_seconds = check_seconds("retry_seconds", retry_seconds, maximum=3600)
        self._marker_spec = TableSpec(self.marker_table, "marker table", MARKER_KEYS)
        self._marker_ready = False

    def describe(self) -> str:
        meta = self.client.meta
        where = f"region={meta.region_name!r}, endpoint={redact(str(meta.endpoint_url))!r}"
        return f"DynamoDBTargetSystem({self.id!r}, {where})"

    def shares_client_with(self, other: object) -> bool:
        """One `TransactWriteItems` call can span both: the same client, so the same account and region."""
        return isinstance(other, DynamoDBTargetSystem) and other.client is self.client

    async def request(
        self, send: Callable[[], Awaitable[dict[str, Any]]], what: str, passthrough: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        """One request, sent again while throttled or disconnected, for up to `retry_seconds`."""
        return await request(send, what, retry_seconds=self.retry_seconds, passthrough=passthrough)

    @asynccontextmanager
    async def context(self) -> AsyncIterator[Any]:
        yield DynamoDBContext(self.client, None)

    # -- transactions -------------------------------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[DynamoDBTransaction]:
        """Collect the change's actions; send them with the library's in one call when the block ends normally.
        If the block raises or is cancelled, nothing was sent, so there is nothing to abort."""
        tx = DynamoDBTransaction(DynamoDBContext(self.client, DynamoDBTransactionBuilder()))
        refuse_writes_outside(self.client)
        yield tx
        await self.commit(tx)

    async def commit(self, tx: DynamoDBTransaction) -> None:
        own = [Action(item) for item in tx.context.transaction.actions]
        for _ in range(_REBUILD_ATTEMPTS):
            library = [action for part in tx.parts for action in await part.actions()]
            if not own and not library:
                return
            _check_size(len(own), len(library))
            try:
                await self._transact([*own, *library])
            except Rebuild:
                continue
            for part in tx.parts:
                part.committed()
            return
        raise TransactionAbortedError(
            f"the audit's next sequence number was taken {_REBUILD_ATTEMPTS} times in a row by concurrent writers; "
            "nothing was written"
        )

    async def _transact(self, actions: list[Action]) -> None:
        """One `TransactWriteItems`, sent again with the same token while its outcome is not known."""
        errors = botocore_errors()
        what = f"committing a transaction of {len(actions)} action(s)"
        items = [action.item for action in actions]
        token = uuid.uuid4().hex
        backoff = Backoff(self.retry_seconds)
        ambiguous = False
        while True:
            try:
                await self.client.transact_write_items(TransactItems=items, ClientRequestToken=token)
                return
            except errors.ClientError as exc:
                last: BaseException = exc
                code = error_code(exc)
                if code == "TransactionCanceledException":
                    verdict = _judge(actions, exc, ambiguous)
                    if isinstance(verdict, AlreadyCommitted):
                        return
                    if verdict is not None:
                        raise verdict from exc
                elif code in AMBIGUOUS_CODES or code == "TransactionInProgressException":
                    ambiguous = True
                elif code not in RETRYABLE_CODES:
                    raise translate(exc, what) from exc
            except errors.BotoCoreError as exc:
                if not is_connection_error(exc):
                    raise translate(exc, what) from exc
                last = exc
                ambiguous = ambiguous or not was_not_sent(exc)
            logger.debug("DynamoDB: %s failed, sending it again: %s", what, redact(str(last)))
            if not await backoff.wait():
                if ambiguous:
                    message = f"DynamoDB did not confirm a transaction within {self.retry_seconds:g} s"
                    raise TransactionOutcomeUnknownError(redact(f"{message}: {type(last).__name__}: {last}")) from last
                raise translate(last, what) from last

    # -- markers ------------------------------------------------------------------------------------------------

    async def write_marker(self, tx: Transaction, marker: Marker) -> None:
        assert isinstance(tx, DynamoDBTransaction)
        if not self._marker_ready:  # a table cannot be created inside a transaction: now, before it is sent
            await ensure_table(
                self.client, self._marker_spec, create=self.create_tables, option="create_tables",
                retry_seconds=self.retry_seconds,
            )  # fmt: skip
            self._marker_ready = True
        tx.parts.append(_MarkerWrite(self.marker_table, marker))

    async def read_marker(self, change_id: str) -> Marker | None:
        try:
            response = await self.request(
                lambda: self.client.get_item(
                    TableName=self.marker_table, Key={"changeId": string(change_id)}, ConsistentRead=True
                ),
                f"reading the marker of {change_id!r}",
                passthrough=frozenset({"ResourceNotFoundException"}),
            )
        except botocore_errors().ClientError:  # no marker table: no change ever took the marker path here
            return None
        item = response.get("Item")
        return None if item is None else Marker(change_id, item["executionId"]["S"])

    async def delete_marker(self, change_id: str) -> None:
        await self.request(
            lambda: self.client.delete_item(TableName=self.marker_table, Key={"changeId": string(change_id)}),
            f"deleting the marker of {change_id!r}",
        )

    async def _diagnose(self) -> list[DoctorCheck]:
        """DynamoDB answers; the marker table, if it exists, has the right keys (nothing is created)."""
        table = await describe(self.client, self.marker_table, self.retry_seconds)
        spec = self._marker_spec
        if table is None and self.create_tables:
            detail = f"{spec.missing()} yet: the first change that takes the marker path here creates it"
            return [DoctorCheck(self.subject(), "tables", True, detail)]
        if table is None:
            return [DoctorCheck(self.subject(), "tables", False, spec.missing(), spec.fix("create_tables"))]
        problem = spec.schema_problem(table)
        if problem is not None:
            return [DoctorCheck(self.subject(), "tables", False, problem, "see the detail")]
        return [DoctorCheck(self.subject(), "tables", True, f"marker table {self.marker_table!r} present")]


def _check_size(own: int, library: int) -> None:
    if own + library <= MAX_TRANSACTION_ACTIONS:
        return
    raise ConfigurationError(
        [
            f"the change adds {own} actions and aioflamingock {library} to its transaction, more than the "
            f"{MAX_TRANSACTION_ACTIONS} DynamoDB allows in one TransactWriteItems: nothing was written; split the "
            f"change into changes of at most {MAX_TRANSACTION_ACTIONS - library} actions"
        ]
    )


def _judge(actions: list[Action], exc: BaseException, ambiguous: bool) -> BaseException | None:
    """What a cancelled transaction means, from its `CancellationReasons` (one per action, in order). None: send
    it again as it is (an earlier sending may have committed, and only its token can tell)."""
    response: dict[str, Any] = getattr(exc, "response", {})
    reasons: list[dict[str, Any]] = response.get("CancellationReasons") or []
    verdicts = [
        _condition_failed(i, actions[i], reason.get("Item"))
        for i, reason in enumerate(reasons[: len(actions)])
        if reason.get("Code") == "ConditionalCheckFailed"
    ]
    for kind in (AlreadyCommitted, LockLostError, Rebuild):
        for verdict in verdicts:
            if isinstance(verdict, kind):
                return verdict
    if verdicts:
        return verdicts[0]
    codes = sorted({str(r.get("Code")) for r in reasons} - {"None"})
    said = ", ".join(
        f"{actions[i].describe(i)}: {r.get('Code')}" for i, r in enumerate(reasons) if r.get("Code") != "None"
    )
    if codes and set(codes) <= _RETRYABLE_REASONS:
        if ambiguous:
            return None
        return TransactionAbortedError(redact(f"DynamoDB cancelled the transaction ({said}); nothing was written"))
    return StoreError(redact(f"DynamoDB cancelled the transaction ({said or exc}); nothing was written"))


def _condition_failed(index: int, action: Action, old: dict[str, Any] | None) -> BaseException:
    if action.on_condition_failed is not None:
        return action.on_condition_failed(old)
    return StoreError(
        f"the condition of the change's {action.describe(index)} failed, so DynamoDB cancelled the transaction and "
        "nothing was written"
    )
