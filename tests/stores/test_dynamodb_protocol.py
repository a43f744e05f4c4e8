"""The safety protocol on a DynamoDB endpoint (moto's server unless told otherwise), through `Flamingock.run()`: the
three paths, marker recovery, the 100-action limit, takeovers, throttling and lost answers, and the tables.

Throttling and lost answers are injected with botocore's own events on the client: `before-call` answers a request
with an error response instead of sending it (DynamoDB throttled it: nothing was applied); `after-call` raises a
read timeout once the real answer has arrived (the request was applied, the client never learns it)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from aioflamingock import (
    AuditEntry,
    AuditState,
    Change,
    ChangeFailedError,
    ChangeOutcome,
    ConfigurationError,
    Flamingock,
    LockAcquisitionTimeoutError,
    LockLostError,
    LockOptions,
    Marker,
    RunStatus,
    StoreError,
    StoreUnavailableError,
    TransactionOutcomeUnknownError,
    TxStrategy,
)
from aioflamingock._model import utc_now
from aioflamingock._redact import redact
from aioflamingock.dynamodb import DynamoDBAuditStore, DynamoDBContext, DynamoDBTargetSystem
from aioflamingock.dynamodb._errors import translate
from tests.servers import dynamodb_client_options

FAST_LOCK = LockOptions(lease_seconds=10, acquire_timeout_seconds=30, retry_interval_seconds=0.05)


class Names:
    """This test's table names (a fresh prefix per test), for the changes to use."""

    users = "users"
    things = "things"


def key(value: str) -> dict[str, Any]:
    return {"id": {"S": value}}


def count(n: int = 1) -> dict[str, Any]:
    """An `Update` that adds `n` to the `n` of the item `count`: applied twice, it shows."""
    return {
        "TableName": Names.users,
        "Key": key("count"),
        "UpdateExpression": "ADD n :n",
        "ExpressionAttributeValues": {":n": {"N": str(n)}},
    }


class InsertUsers(Change):
    """Shared path: on the store's own client."""

    id = "insert-users"
    order = "0001"
    author = "tester"
    target_system = "app"

    async def execute(self, ctx: DynamoDBContext) -> None:
        ctx.transaction.put(TableName=Names.users, Item=key("1"))
        ctx.transaction.put(TableName=Names.users, Item=key("2"))


class InsertThenFail(Change):
    id = "insert-then-fail"
    order = "0002"
    author = "tester"
    target_system = "app"

    async def execute(self, ctx: DynamoDBContext) -> None:
        ctx.transaction.put(TableName=Names.users, Item=key("doomed"))
        raise ValueError("boom")


class CreateIndexLater(Change):
    """Non-transactional path: a table is no transactional write."""

    id = "create-things"
    order = "0003"
    author = "tester"
    target_system = "app"
    transactional = False
    contexts: list[DynamoDBContext] = []

    async def execute(self, ctx: DynamoDBContext) -> None:
        type(self).contexts.append(ctx)
        await ctx.client.create_table(
            TableName=Names.things,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )


class InsertThing(Change):
    """Marker path: on a target with another client."""

    id = "insert-thing"
    order = "0004"
    author = "tester"
    target_system = "other"
    executions = 0

    async def execute(self, ctx: DynamoDBContext) -> None:
        type(self).executions += 1
        ctx.transaction.put(TableName=Names.users, Item=key("thing"))
        ctx.transaction.update(**count())


class CountOnce(Change):
    """Shared path; the item `count` shows how often its transaction was applied."""

    id = "count-once"
    order = "0005"
    author = "tester"
    target_system = "app"
    executions = 0

    async def execute(self, ctx: DynamoDBContext) -> None:
        type(self).executions += 1
        ctx.transaction.update(**count())

    async def rollback(self, ctx: DynamoDBContext) -> None:
        ctx.transaction.update(**count(-1))


# -- fixtures -----------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def names(dynamodb_prefix: str) -> Iterator[None]:
    Names.users, Names.things = f"{dynamodb_prefix}users", f"{dynamodb_prefix}things"
    InsertThing.executions = CountOnce.executions = 0
    CreateIndexLater.contexts = []
    yield


@pytest.fixture
async def users(dynamodb_client: Any) -> str:
    await dynamodb_client.create_table(
        TableName=Names.users,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return Names.users


@pytest.fixture
async def other_client(dynamodb_endpoint: str) -> AsyncIterator[Any]:
    """A second client: a target on it cannot share the store's transactions (marker path)."""
    import aioboto3

    async with aioboto3.Session().client("dynamodb", **dynamodb_client_options(dynamodb_endpoint)) as client:
        yield client


@pytest.fixture
def app(dynamodb_client: Any, dynamodb_prefix: str, users: str) -> DynamoDBTargetSystem:
    return DynamoDBTargetSystem("app", client=dynamodb_client, marker_table=f"{dynamodb_prefix}marker")


@pytest.fixture
def other(other_client: Any, dynamodb_prefix: str, users: str) -> DynamoDBTargetSystem:
    return DynamoDBTargetSystem("other", client=other_client, marker_table=f"{dynamodb_prefix}marker")


def tables(prefix: str) -> dict[str, str]:
    return {"audit_table": f"{prefix}audit", "lock_table": f"{prefix}lock"}


@pytest.fixture
def store(app: DynamoDBTargetSystem, dynamodb_prefix: str) -> DynamoDBAuditStore:
    return DynamoDBAuditStore.from_target(app, **tables(dynamodb_prefix))


def flamingock(store: DynamoDBAuditStore, *targets: DynamoDBTargetSystem, changes: list[type[Change]]) -> Flamingock:
    return Flamingock(audit_store=store, target_systems=list(targets), changes=changes, lock=FAST_LOCK)


async def entries(fl: Flamingock, change_id: str) -> list[AuditEntry]:
    return [e async for e in fl.history() if e.change_id == change_id]


async def items(client: Any, table: str) -> dict[str, dict[str, Any]]:
    response = await client.scan(TableName=table, ConsistentRead=True)  # a test may scan; the library never does
    return {
        item[next(iter(k for k in ("id", "changeId", "key") if k in item))]["S"]: item for item in response["Items"]
    }


async def counted(client: Any) -> int:
    item = (await items(client, Names.users)).get("count")
    return 0 if item is None else int(item["n"]["N"])


class Wire:
    """What a client sends, and the faults injected into it, through botocore's events."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.registered: list[tuple[str, Callable[..., Any]]] = []
        self._on("provide-client-params.dynamodb", self._record)

    def _on(self, event: str, handler: Callable[..., Any]) -> None:
        self.client.meta.events.register(event, handler)
        self.registered.append((event, handler))

    def _record(self, params: dict[str, Any], model: Any, **kwargs: Any) -> None:
        self.sent.append((model.name, dict(params)))

    def operations(self) -> Counter[str]:
        return Counter(name for name, _ in self.sent)

    def transactions(self) -> list[list[dict[str, Any]]]:
        return [params["TransactItems"] for name, params in self.sent if name == "TransactWriteItems"]

    def refuse(self, operation: str, code: str, times: int, **response: Any) -> list[int]:
        """The next `times` `operation` requests get error `code` without reaching the server."""
        refused = [0]

        def handler(**kwargs: Any) -> Any:
            if refused[0] >= times:
                return None
            refused[0] += 1
            parsed = {"Error": {"Code": code, "Message": f"injected {code}"}, **response}
            parsed["ResponseMetadata"] = {"HTTPStatusCode": 400}
            return SimpleNamespace(status_code=400, headers={}), parsed

        self._on(f"before-call.dynamodb.{operation}", handler)
        return refused

    def lose_answers(self, operation: str, times: int) -> list[int]:
        """The next `times` `operation` requests are applied by the server, but the client sees a read timeout."""
        from botocore.exceptions import ReadTimeoutError

        lost = [0]

        def handler(**kwargs: Any) -> None:
            if lost[0] < times:
                lost[0] += 1
                raise ReadTimeoutError(endpoint_url="http://injected")

        self._on(f"after-call.dynamodb.{operation}", handler)
        return lost

    def close(self) -> None:
        for event, handler in self.registered:
            self.client.meta.events.unregister(event, handler)


@pytest.fixture
def wire(dynamodb_client: Any) -> Iterator[Wire]:
    recorder = Wire(dynamodb_client)
    yield recorder
    recorder.close()


# -- shared transaction -------------------------------------------------------------------------------------------


async def test_shared_path_sends_the_items_the_applied_entry_and_the_lock_check_in_one_call(
    app: DynamoDBTargetSystem, store: DynamoDBAuditStore, dynamodb_client: Any, dynamodb_prefix: str, wire: Wire
) -> None:
    fl = flamingock(store, app, changes=[InsertUsers])
    report = await fl.run()
    assert report.applied == ["insert-users"]
    assert "Scan" not in wire.operations()
    assert set(await items(dynamodb_client, Names.users)) == {"1", "2"}
    [entry] = await entries(fl, "insert-users")
    assert (entry.state, entry.tx_strategy, entry.transaction_flag) == (
        AuditState.APPLIED,
        TxStrategy.TX_AUDIT_STORE_SHARED,
        True,
    )
    [transaction] = wire.transactions()
    assert [next(iter(action)) for action in transaction] == ["Put", "Put", "ConditionCheck", "Put"]
    assert transaction[2]["ConditionCheck"]["TableName"] == f"{dynamodb_prefix}lock"
    raw = (await dynamodb_client.scan(TableName=f"{dynamodb_prefix}audit"))["Items"]
    assert len(raw) == 1
    assert raw[0]["partitionKey"] == {"S": "auditLog"} and raw[0]["seq"] == {"N": "1"}
    assert raw[0]["state"] == {"S": "APPLIED"} and raw[0]["txStrategy"] == {"S": "TX_AUDIT_STORE_SHARED"}
    assert {"executionId", "stageId", "changeOrder", "recoveryStrategy", "transactionFlag", "createdAt"} <= set(raw[0])


async def test_a_failing_shared_change_sends_nothing_of_it_and_only_a_failed_entry(
    app: DynamoDBTargetSystem, store: DynamoDBAuditStore, dynamodb_client: Any
) -> None:
    fl = flamingock(store, app, changes=[InsertUsers, InsertThenFail])
    with pytest.raises(ChangeFailedError) as caught:
        await fl.run()
    assert isinstance(caught.value.__cause__, ValueError)
    assert set(await items(dynamodb_client, Names.users)) == {"1", "2"}
    assert [(e.state, e.transaction_flag) for e in await entries(fl, "insert-then-fail")] == [(AuditState.FAILED, True)]
    assert await fl.lock_info() is None


class PutExistingUser(Change):
    """Its condition fails: user 1 exists. Its other write must not happen either."""

    id = "put-existing-user"
    order = "0002"
    author = "tester"
    target_system = "app"

    async def execute(self, ctx: DynamoDBContext) -> None:
        ctx.transaction.put(TableName=Names.users, Item=key("3"))
        ctx.transaction.put(TableName=Names.users, Item=key("1"), ConditionExpression="attribute_not_exists(id)")


async def test_a_failed_condition_of_the_change_fails_it_and_writes_nothing_of_it(
    app: DynamoDBTargetSystem, store: DynamoDBAuditStore, dynamodb_client: Any
) -> None:
    fl = flamingock(store, app, changes=[InsertUsers, PutExistingUser])
    with pytest.raises(ChangeFailedError) as caught:
        await fl.run()
    cause = caught.value.__cause__
    assert isinstance(cause, StoreError) and not isinstance(cause, StoreUnavailableError)
    assert f"action 2 (Put on table {Names.users!r})" in str(cause)
    assert set(await items(dynamodb_client, Names.users)) == {"1", "2"}
    assert [e.state for e in await entries(fl, "put-existing-user")] == [AuditState.FAILED]
    assert (await fl.plan())[1].action.value == "APPLY"  # nothing was committed: the next run tries again


class ManyPuts(Change):
    id = "many-puts"
    order = "0001"
    author = "tester"
    target_system = "app"
    puts = 99

    async def execute(self, ctx: DynamoDBContext) -> None:
        for i in range(type(self).puts):
            ctx.transaction.put(TableName=Names.users, Item=key(f"u{i}"))


async def test_more_actions_than_dynamodb_takes_is_an_error_before_anything_is_sent(
    app: DynamoDBTargetSystem, store: DynamoDBAuditStore, dynamodb_client: Any, wire: Wire
) -> None:
    fl = flamingock(store, app, changes=[ManyPuts])
    with pytest.raises(ChangeFailedError) as caught:
        await fl.run()
    assert isinstance(caught.value.__cause__, ConfigurationError)
    message = str(caught.value.__cause__)
    assert "the change adds 99 actions and aioflamingock 2" in message and "at most 98 actions" in message
    assert await items(dynamodb_client, Names.users) == {}
    assert [len(t) for t in wire.transactions()] == [2]  # only the FAILED entry: lock check and put
    ManyPuts.puts = 98
    try:
        assert (await fl.run()).applied == ["many-puts"]
    finally:
        ManyPuts.puts = 99
    assert len(await items(dynamodb_client, Names.users)) == 98


def test_the_builder_refuses_a_101st_action_and_malformed_ones() -> None:
    from aioflamingock.dynamodb import DynamoDBTransactionBuilder

    builder = DynamoDBTransactionBuilder()
    for i in range(100):
        builder.put(TableName="t", Item=key(str(i)))
    with pytest.raises(ConfigurationError, match="at most 100 actions"):
        builder.delete(TableName="t", Key=key("x"))
    with pytest.raises(ValueError, match="needs TableName"):
        DynamoDBTransactionBuilder().put(Item=key("1"))
    with pytest.raises(ValueError, match="one of Put, Update, Delete, ConditionCheck"):
        DynamoDBTransactionBuilder().add({"Get": {"TableName": "t"}})


async def test_undo_on_the_shared_path_sends_the_rollback_with_its_entry(
    app: DynamoDBTargetSystem, store: DynamoDBAuditStore, dynamodb_client: Any
) -> None:
    fl = flamingock(store, app, changes=[InsertUsers, CountOnce])
    await fl.run()
    assert await counted(dynamodb_client) == 1
    await fl.undo(to="insert-users")
    assert await counted(dynamodb_client) == 0
    assert [e.state for e in await entries(fl, "count-once")] == [AuditState.APPLIED, AuditState.ROLLED_BACK]


# -- marker path --------------------------------------------------------------------------------------------------


async def test_marker_path_records_started_then_applied_and_deletes_the_marker(
    app: DynamoDBTargetSystem, other: DynamoDBTargetSystem, store: DynamoDBAuditStore, other_client: Any
) -> None:
    fl = flamingock(store, app, other, changes=[InsertThing])
    report = await fl.run()
    assert report.applied == ["insert-thing"]
    assert [(e.state, e.tx_strategy) for e in await entries(fl, "insert-thing")] == [
        (AuditState.STARTED, TxStrategy.TX_AUDIT_STORE_SYNC),
        (AuditState.APPLIED, TxStrategy.TX_AUDIT_STORE_SYNC),
    ]
    assert await counted(other_client) == 1
    assert await other.read_marker("insert-thing") is None
    assert await items(other_client, other.marker_table) == {}  # created by the change, empty again


async def _crash_after_commit(store: DynamoDBAuditStore, other: DynamoDBTargetSystem, *, committed: bool) -> None:
    """What a run that died after STARTED leaves behind, made for real: with its transaction (and marker)
    committed, or not."""
    async with store:
        lease = await store.lock.try_acquire("default", "crashed-run", 30)
        assert lease is not None
        started = AuditEntry(
            execution_id="crashed",
            stage_id="default",
            change_id="insert-thing",
            created_at=utc_now(),
            state=AuditState.STARTED,
            tx_strategy=TxStrategy.TX_AUDIT_STORE_SYNC,
            target_system_id="other",
            change_order="0004",
            transaction_flag=True,
        )
        await store.append(started, fence=lease.fence)
        if committed:
            async with other.transaction() as tx:
                tx.context.transaction.put(TableName=Names.users, Item=key("thing"))
                tx.context.transaction.update(**count())
                await other.write_marker(tx, Marker("insert-thing", "crashed"))
        assert await store.lock.release(lease)


async def test_a_started_change_whose_marker_committed_is_recorded_applied_without_running(
    app: DynamoDBTargetSystem, other: DynamoDBTargetSystem, store: DynamoDBAuditStore, other_client: Any
) -> None:
    await _crash_after_commit(store, other, committed=True)
    assert await other.read_marker("insert-thing") == Marker("insert-thing", "crashed")
    fl = flamingock(store, app, other, changes=[InsertThing])
    report = await fl.run()
    assert [c.outcome for c in report.changes] == [ChangeOutcome.RECOVERED]
    assert InsertThing.executions == 0
    assert await counted(other_client) == 1
    newest = (await entries(fl, "insert-thing"))[-1]
    assert newest.state is AuditState.APPLIED and newest.metadata["recoveredFromExecutionId"] == "crashed"
    assert await other.read_marker("insert-thing") is None


async def test_a_started_change_without_its_marker_is_applied_again(
    app: DynamoDBTargetSystem, other: DynamoDBTargetSystem, store: DynamoDBAuditStore, other_client: Any
) -> None:
    await _crash_after_commit(store, other, committed=False)
    fl = flamingock(store, app, other, changes=[InsertThing])
    assert (await fl.run()).applied == ["insert-thing"]
    assert InsertThing.executions == 1
    assert await counted(other_client) == 1


# -- non-transactional path ---------------------------------------------------------------------------------------


async def test_non_transactional_change_gets_the_client_and_no_transaction(
    app: DynamoDBTargetSystem, store: DynamoDBAuditStore, dynamodb_client: Any
) -> None:
    fl = flamingock(store, app, changes=[CreateIndexLater])
    assert (await fl.run()).applied == ["create-things"]
    [ctx] = CreateIndexLater.contexts
    assert ctx.client is dynamodb_client and not ctx.in_transaction
    with pytest.raises(ConfigurationError, match=r"write with ctx\.client"):
        ctx.transaction  # noqa: B018
    assert Names.things in (await dynamodb_client.list_tables())["TableNames"]
    assert [(e.state, e.tx_strategy, e.transaction_flag) for e in await entries(fl, "create-things")] == [
        (AuditState.STARTED, TxStrategy.NON_TX, False),
        (AuditState.APPLIED, TxStrategy.NON_TX, False),
    ]


# -- the lock -----------------------------------------------------------------------------------------------------


async def test_a_second_run_takes_no_lock_and_writes_nothing(
    app: DynamoDBTargetSystem, other: DynamoDBTargetSystem, store: DynamoDBAuditStore, wire: Wire
) -> None:
    changes: list[type[Change]] = [InsertUsers, CreateIndexLater, InsertThing]
    assert (await flamingock(store, app, other, changes=changes).run()).status is RunStatus.SUCCESS
    wire.sent.clear()
    assert (await flamingock(store, app, other, changes=changes).run()).status is RunStatus.NO_CHANGES
    assert wire.operations() == Counter({"Query": 1})  # the tables were checked when the store first opened


async def test_release_deletes_the_lock_item(
    app: DynamoDBTargetSystem, store: DynamoDBAuditStore, dynamodb_client: Any, dynamodb_prefix: str
) -> None:
    await flamingock(store, app, changes=[InsertUsers]).run()
    assert await items(dynamodb_client, f"{dynamodb_prefix}lock") == {}


async def test_a_takeover_during_a_shared_transaction_commits_nothing_of_it(
    app: DynamoDBTargetSystem, store: DynamoDBAuditStore, dynamodb_client: Any
) -> None:
    async with store:
        old = await store.lock.try_acquire("default", "old", 0.3)
        assert old is not None
        applied = AuditEntry(
            execution_id="late", stage_id="default", change_id="late", created_at=utc_now(), state=AuditState.APPLIED
        )
        with pytest.raises(LockLostError, match="no longer held by 'old'"):
            async with app.transaction() as tx:
                tx.context.transaction.put(TableName=Names.users, Item=key("late"))
                await store.append_in_transaction(tx, applied, fence=old.fence)
                await anyio.sleep(0.5)
                assert await store.lock.try_acquire("default", "new", 30) is not None
        assert await items(dynamodb_client, Names.users) == {}
        assert await store.current_states() == {}


async def test_the_lock_waits_while_another_owner_holds_it(
    app: DynamoDBTargetSystem, store: DynamoDBAuditStore, dynamodb_client: Any
) -> None:
    async with store:
        holder = await store.lock.try_acquire("default", "holder", 30)
        assert holder is not None

        async def release_soon() -> None:
            await anyio.sleep(0.6)
            assert await store.lock.release(holder)

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(release_soon)
            report = await flamingock(store, app, changes=[InsertUsers]).run()
        assert report.applied == ["insert-users"]
        assert time.monotonic() - started >= 0.6

        holder = await store.lock.try_acquire("default", "holder", 30)
        assert holder is not None
        impatient = LockOptions(lease_seconds=10, acquire_timeout_seconds=0.5, retry_interval_seconds=0.05)
        fl = Flamingock(audit_store=store, target_systems=[app], changes=[InsertUsers, CountOnce], lock=impatient)
        with pytest.raises(LockAcquisitionTimeoutError, match="held by 'holder'"):
            await fl.run()
        assert await counted(dynamodb_client) == 0


async def test_concurrent_runs_apply_each_change_once(
    dynamodb_endpoint: str, dynamodb_prefix: str, users: str, other_client: Any
) -> None:
    import aioboto3

    class CountWithoutTransaction(CountOnce):
        id = "count-without-transaction"
        order = "0006"
        transactional = False

        async def execute(self, ctx: DynamoDBContext) -> None:
            await ctx.client.update_item(**count(100))

    session = aioboto3.Session()
    clients = [session.client("dynamodb", **dynamodb_client_options(dynamodb_endpoint)) for _ in range(8)]
    entered = [await c.__aenter__() for c in clients]
    try:
        runs = []
        for client in entered:
            app = DynamoDBTargetSystem("app", client=client, marker_table=f"{dynamodb_prefix}marker")
            other = DynamoDBTargetSystem("other", client=other_client, marker_table=f"{dynamodb_prefix}marker")
            store = DynamoDBAuditStore.from_target(app, **tables(dynamodb_prefix))
            changes: list[type[Change]] = [CountOnce, InsertThing, CountWithoutTransaction]
            runs.append(flamingock(store, app, other, changes=changes).run())
        reports = await asyncio.gather(*runs)
        applied = sorted(change_id for report in reports for change_id in report.applied)
        assert applied == ["count-once", "count-without-transaction", "insert-thing"]
        assert await counted(other_client) == 1 + 1 + 100
    finally:
        for c in clients:
            await c.__aexit__(None, None, None)


# -- throttling, lost answers -------------------------------------------------------------------------------------


async def test_throttled_requests_are_sent_again(
    app: DynamoDBTargetSystem, store: DynamoDBAuditStore, dynamodb_client: Any, wire: Wire
) -> None:
    queries = wire.refuse("Query", "ThrottlingException", times=2)
    commits = wire.refuse("TransactWriteItems", "ProvisionedThroughputExceededException", times=3)
    locks = wire.refuse("UpdateItem", "RequestLimitExceeded", times=1)
    fl = flamingock(store, app, changes=[CountOnce])
    assert (await fl.run()).applied == ["count-once"]
    assert (queries[0], commits[0], locks[0]) == (2, 3, 1)
    assert CountOnce.executions == 1
    assert await counted(dynamodb_client) == 1


async def test_throttling_that_does_not_end_is_store_unavailable_in_time(
    app: DynamoDBTargetSystem, store: DynamoDBAuditStore
) -> None:
    app.retry_seconds = 0.5
    await store.open()  # the tables exist
    await store.close()
    wire = Wire(app.client)
    try:
        wire.refuse("Query", "ProvisionedThroughputExceededException", times=1000)
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="ProvisionedThroughputExceededException"):
            await flamingock(store, app, changes=[CountOnce]).run()
        assert time.monotonic() - started < 3
    finally:
        wire.close()


def cancelled(*codes: str) -> dict[str, Any]:
    return {"CancellationReasons": [{"Code": c} for c in codes]}


async def test_a_transaction_conflict_runs_the_change_again(
    app: DynamoDBTargetSystem, store: DynamoDBAuditStore, dynamodb_client: Any, wire: Wire
) -> None:
    refused = wire.refuse(
        "TransactWriteItems", "TransactionCanceledException", 1, **cancelled("TransactionConflict", "None", "None")
    )
    fl = flamingock(store, app, changes=[CountOnce])
    assert (await fl.run()).applied == ["count-once"]
    assert refused == [1] and CountOnce.executions == 2
    assert await counted(dynamodb_client) == 1
    assert [e.state for e in await entries(fl, "count-once")] == [AuditState.APPLIED]


async def test_a_lost_answer_is_asked_again_and_the_change_applied_once(
    app: DynamoDBTargetSystem, store: DynamoDBAuditStore, dynamodb_client: Any, wire: Wire
) -> None:
    """moto ignores `ClientRequestToken`: the second sending is cancelled by the entry the first one wrote, which
    proves that one committed."""
    lost = wire.lose_answers("TransactWriteItems", times=1)
    fl = flamingock(store, app, changes=[CountOnce])
    assert (await fl.run()).applied == ["count-once"]
    assert lost == [1] and len(wire.transactions()) == 2
    assert CountOnce.executions == 1
    assert await counted(dynamodb_client) == 1
    assert [e.state for e in await entries(fl, "count-once")] == [AuditState.APPLIED]


async def test_a_lost_answer_on_the_marker_path_is_proven_by_the_marker(
    app: DynamoDBTargetSystem, other: DynamoDBTargetSystem, store: DynamoDBAuditStore, other_client: Any
) -> None:
    wire = Wire(other_client)
    try:
        lost = wire.lose_answers("TransactWriteItems", times=1)
        fl = flamingock(store, app, other, changes=[InsertThing])
        assert (await fl.run()).applied == ["insert-thing"]
        assert lost == [1] and len(wire.transactions()) == 2
    finally:
        wire.close()
    assert InsertThing.executions == 1
    assert await counted(other_client) == 1


async def test_a_commit_never_confirmed_raises_outcome_unknown_and_the_next_run_reads_the_truth(
    app: DynamoDBTargetSystem, store: DynamoDBAuditStore, dynamodb_client: Any, wire: Wire
) -> None:
    app.retry_seconds = 0.5
    fl = flamingock(store, app, changes=[CountOnce])
    wire.lose_answers("TransactWriteItems", times=1000)
    with pytest.raises(TransactionOutcomeUnknownError, match="did not confirm"):
        await fl.run()
    wire.close()
    assert [e.state for e in await entries(fl, "count-once")] == [AuditState.APPLIED]  # it had committed
    assert (await fl.run()).status is RunStatus.NO_CHANGES
    assert await counted(dynamodb_client) == 1


async def test_a_refused_connection_is_store_unavailable_not_unknown(dynamodb_prefix: str) -> None:
    import aioboto3

    from tests.servers import free_port

    options = dynamodb_client_options(f"http://127.0.0.1:{free_port()}")
    async with aioboto3.Session().client("dynamodb", **options) as client:
        target = DynamoDBTargetSystem("app", client=client, retry_seconds=0.3)
        with pytest.raises(StoreUnavailableError) as caught:
            async with target.transaction() as tx:
                tx.context.transaction.put(TableName="t-users", Item=key("1"))
        assert not isinstance(caught.value, TransactionOutcomeUnknownError)
        assert "Could not connect" in str(caught.value)


# -- tables, clients, messages ------------------------------------------------------------------------------------


async def test_without_create_tables_a_missing_table_is_named_with_its_command(
    app: DynamoDBTargetSystem, dynamodb_prefix: str, dynamodb_client: Any
) -> None:
    store = DynamoDBAuditStore.from_target(app, **tables(dynamodb_prefix), create_tables=False)
    with pytest.raises(ConfigurationError) as caught:
        await store.open()
    message = str(caught.value)
    assert f"the audit table '{dynamodb_prefix}audit' does not exist" in message
    assert f"aws dynamodb create-table --table-name {dynamodb_prefix}audit" in message
    assert "KeyType=HASH AttributeName=seq,KeyType=RANGE --billing-mode PAY_PER_REQUEST" in message
    assert not any(t.startswith(f"{dynamodb_prefix}a") for t in (await dynamodb_client.list_tables())["TableNames"])
    async with DynamoDBAuditStore.from_target(app, **tables(dynamodb_prefix)):  # creates them
        pass
    async with store:
        assert await store.current_states() == {}


async def test_a_table_with_other_keys_is_refused(app: DynamoDBTargetSystem, dynamodb_prefix: str) -> None:
    store = DynamoDBAuditStore.from_target(app, audit_table=Names.users, lock_table=f"{dynamodb_prefix}lock")
    with pytest.raises(ConfigurationError, match="exists with another key schema; it needs partitionKey"):
        await store.open()


async def test_without_create_tables_the_marker_path_names_the_missing_marker_table(
    app: DynamoDBTargetSystem, other_client: Any, store: DynamoDBAuditStore, dynamodb_prefix: str
) -> None:
    other = DynamoDBTargetSystem(
        "other", client=other_client, marker_table=f"{dynamodb_prefix}marker", create_tables=False
    )
    with pytest.raises(ChangeFailedError) as caught:
        await flamingock(store, app, other, changes=[InsertThing]).run()
    assert f"the marker table '{dynamodb_prefix}marker' does not exist" in str(caught.value.__cause__)
    assert InsertThing.executions == 1 and await counted(other_client) == 0


async def test_a_client_that_is_not_an_aioboto3_dynamodb_client_is_refused(dynamodb_endpoint: str) -> None:
    import aioboto3
    import boto3

    options = dynamodb_client_options(dynamodb_endpoint)
    options.pop("config")
    sync = boto3.client("dynamodb", **options)
    try:
        with pytest.raises(ConfigurationError, match="synchronous"):
            DynamoDBTargetSystem("app", client=sync)
    finally:
        sync.close()
    session = aioboto3.Session()
    not_entered = session.client("dynamodb", **options)
    with pytest.raises(ConfigurationError, match="enter it first"):
        DynamoDBTargetSystem("app", client=not_entered)
    async with not_entered:  # what the application forgot
        pass
    async with session.client("s3", **options) as s3:
        with pytest.raises(ConfigurationError, match="a client for 's3'"):
            DynamoDBTargetSystem("app", client=s3)
    async with session.resource("dynamodb", **options) as resource:
        with pytest.raises(ConfigurationError, match="a resource"):
            DynamoDBTargetSystem("app", client=resource)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"audit_table": "ab"}, "at least 3 characters"),
        ({"lock_table": "bad/name"}, "lock_table"),
        ({"audit_table": "same", "lock_table": "same"}, "both 'same'"),
    ],
)
def test_bad_table_names_are_configuration_errors(dynamodb_client: Any, options: dict[str, str], fragment: str) -> None:
    target = DynamoDBTargetSystem("app", client=dynamodb_client)
    with pytest.raises(ConfigurationError, match=fragment):
        DynamoDBAuditStore.from_target(target, **options)


def test_messages_never_show_credentials() -> None:
    from botocore.exceptions import ClientError

    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    text = (
        "Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, "
        f"Signature=0123abcd aws_secret_access_key={secret} http://user:pw@host"
    )
    redacted = redact(text)
    assert "AKIAIOSFODNN7EXAMPLE" not in redacted and secret not in redacted and "0123abcd" not in redacted
    assert ":pw@" not in redacted
    error = ClientError({"Error": {"Code": "UnrecognizedClientException", "Message": text}}, "Query")
    assert "AKIAIOSFODNN7EXAMPLE" not in str(translate(error, "reading"))


# -- doctor -------------------------------------------------------------------------------------------------------


async def test_doctor_finds_missing_tables_without_creating_them(
    app: DynamoDBTargetSystem, store: DynamoDBAuditStore, dynamodb_client: Any, dynamodb_prefix: str
) -> None:
    fl = flamingock(store, app, changes=[InsertUsers])
    checks = await fl.doctor()
    problems = {(c.subject, c.check, c.detail): c.fix for c in checks if not c.ok}
    assert set(problems) == {
        ("audit store", "tables", f"the audit table '{dynamodb_prefix}audit' does not exist"),
        ("audit store", "tables", f"the lock table '{dynamodb_prefix}lock' does not exist"),
    }
    assert all(str(fix).startswith("any run creates it") for fix in problems.values())
    assert set((await dynamodb_client.list_tables())["TableNames"]) == {Names.users}
    await fl.run()
    checks = await fl.doctor()
    assert [c for c in checks if not c.ok] == []
    by_check = {(c.subject, c.check): c for c in checks}
    assert by_check["audit store", "read"].ok
    assert "does not exist yet" in by_check["target system 'app'", "tables"].detail


async def test_doctor_reports_an_endpoint_that_does_not_answer() -> None:
    import aioboto3

    from tests.servers import free_port

    options = dynamodb_client_options(f"http://127.0.0.1:{free_port()}")
    options["aws_secret_access_key"] = "s3cretKEY"
    async with aioboto3.Session().client("dynamodb", **options) as client:
        app = DynamoDBTargetSystem("app", client=client, retry_seconds=0.2)
        fl = Flamingock(audit_store=DynamoDBAuditStore.from_target(app), target_systems=[app], changes=[InsertUsers])
        checks = await fl.doctor(timeout_seconds=5)
    failed = {(c.subject, c.check) for c in checks if not c.ok}
    assert failed == {("target system 'app'", "reachable"), ("audit store", "reachable")}
    assert all("s3cretKEY" not in c.detail for c in checks)
